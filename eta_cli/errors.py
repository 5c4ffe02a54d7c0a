"""Errors a user can act on. The CLI prints their message (no traceback) and exits non-zero."""

from __future__ import annotations


class EtaError(Exception):
    """Base of every expected failure: bad input, unreachable service, missing model.

    ``exit_code`` lets a command say what kind of failure it was (cron reads it).
    """

    exit_code: int = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
