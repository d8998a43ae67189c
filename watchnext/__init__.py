"""watchnext: deep candidate generation (YouTube DNN recall) as a batch pipeline.

This package holds the commands a person or a scheduler runs (the `watchnext` console script,
or `python -m watchnext`): the stages one at a time or all of them, tune, ablate and nightly.
It sits above every stage package; what the stages share is the base, `core/`."""

from core import __version__  # the version every manifest carries

__all__ = ["__version__"]
