"""Errors shared by the stages."""


class DataValidationError(ValueError):
    """Raw or intermediate data is malformed; the message names the problem and the object."""
