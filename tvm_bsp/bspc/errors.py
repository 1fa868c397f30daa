"""Errors raised by the BSPC format."""


class BSPCFormatError(ValueError):
    """A BSPC matrix or file breaks an invariant of the format (the message names which)."""
