"""PyTTI-Flow's rendering engine: a plain torch library (it never imports prefect)."""

__version__ = "0.1.0"
"""The version in the source tree; :func:`engine_version` prefers the installed package's."""

PACKAGE = "pytti-flow"


def engine_version() -> str:
    """The engine's version from the installed package's metadata (``pyproject.toml``'s ``version``),
    else :data:`__version__` (running from a source tree that is not installed)."""
    from importlib import metadata

    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return __version__
