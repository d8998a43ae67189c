"""watchnext: deep candidate generation (YouTube DNN recall) as a batch pipeline."""

__version__ = "0.1.0"
