"""The base every stage stands on: the typed configuration, the Parquet contract and the run
layout, storage (local or object store) and locks, the console, and the Spark and Ray session
helpers. It imports no stage."""

__version__ = "0.1.0"  # stamped into every manifest; pyproject.toml's version says the same
