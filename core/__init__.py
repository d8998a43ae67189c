"""The base every stage stands on: the typed configuration, the Parquet contract and the run
layout, storage (local or object store) and locks, the console, and the Spark and Ray session
helpers. It imports no stage."""

import os
import sys

__version__ = "0.1.0"  # stamped into every manifest; pyproject.toml's version says the same


def _without_huge_page_advice() -> None:
    """numpy advises the kernel to back every large array with transparent huge pages. Where
    the kernel then compacts memory to find them on the first touch (THP defrag "madvise",
    a common default), a fresh array of tens of MB can stall for a second: the co-watch
    similarity of 100k users took 36 s with the advice and 15 s without it (2-core VM). So
    every process of the pipeline, and the Spark and Ray workers it starts, goes without it,
    unless NUMPY_MADVISE_HUGEPAGE says otherwise."""
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    if os.environ["NUMPY_MADVISE_HUGEPAGE"] == "0" and "numpy" in sys.modules:  # read at numpy's import
        try:
            from numpy._core.multiarray import _set_madvise_hugepage
        except ImportError:  # another numpy: it keeps its advice
            return
        _set_madvise_hugepage(False)


_without_huge_page_advice()
