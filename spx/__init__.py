"""spx-kfp core: configuration, object storage, local services and the `spx` CLI."""

__version__ = "0.1.0"
