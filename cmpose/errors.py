"""Error types. Every input problem becomes a ``CmposeError`` whose message names the file,
the record and the field, so that the CLI can print one line instead of a traceback."""

from __future__ import annotations


class CmposeError(Exception):
    """Base class of the errors a user can fix (bad input, bad config)."""


class DataError(CmposeError):
    """A dataset or annotation file is malformed."""

    def __init__(self, message: str, *, path: object = None, record: object = None, field: str | None = None):
        self.path, self.record, self.field = path, record, field
        where = []
        if path is not None:
            where.append(str(path))
        if record is not None:
            where.append(str(record))
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__((": ".join([", ".join(where), message])) if where else message)


class ConfigError(CmposeError):
    """A config file or ``--set`` override is invalid."""


class EvaluationError(CmposeError):
    """Ground truth and predictions cannot be evaluated together."""
