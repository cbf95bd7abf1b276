"""PyTTI-Flow's rendering engine: a plain torch library (it never imports prefect)."""

__version__ = "0.1.0"
