"""Helpers shared by the wire-format modules."""

from __future__ import annotations


class FormatError(ValueError):
    """A body that does not fit its wire format.

    ``param`` names the offending field (dotted path, ``messages.0.content``) when known, so
    the client's 400 says exactly what to fix.
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
