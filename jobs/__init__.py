"""PySpark data prep: click logs to windowed training examples and serving features."""
