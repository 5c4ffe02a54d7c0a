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


class IngestError(EtaError):
    """Orders cannot be ingested: a source as a whole, an output that cannot work, or a
    lake another ingest is writing; the message names the file and the problem.

    Defined here, below the lake's store and its lock, which both raise it.
    """


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-blank line of an exception's text, for a one-line message or log field.

    Drivers wrapped by SQLAlchemy keep their own message in ``exc.orig``; that one is
    used because the wrapper repeats the SQL statement. Secrets are redacted
    (:func:`eta_cli.redact.redact_text`: libraries quote the raw URL they were given,
    password included), then long texts are cut at ``limit`` characters so a huge
    driver message cannot flood a terminal or a log.
    """
    from eta_cli.redact import redact_text

    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc)
    for line in text.splitlines():
        if line.strip():
            return redact_text(line.strip())[:limit]
    return type(exc).__name__
