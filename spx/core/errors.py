"""One error hierarchy. The CLI turns an :class:`SpxError` into one line and its ``exit_code``; anything
else is a bug and keeps its traceback."""

from __future__ import annotations


class SpxError(Exception):
    """Base of every error spx raises on purpose: the message names the object and what to do."""

    exit_code = 1


class ConfigError(SpxError, ValueError):
    """A setting (environment variable or option) has a value spx cannot use."""

    exit_code = 2


class DataValidationError(SpxError, ValueError):
    """Raw or intermediate data is malformed; the message names the problem and the object."""


class ImmutableObjectError(SpxError, RuntimeError):
    """A write-once (bronze) key already holds different content."""


class ObjectNotFoundError(SpxError, FileNotFoundError):
    """A key or URI does not exist in the bucket."""


class ServiceError(SpxError, RuntimeError):
    """A service spx starts or calls (S3 server, model server, Kubernetes/KFP API) failed or refused."""
