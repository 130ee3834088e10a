"""Collecting data problems instead of dying on the first one.

A reader in lenient mode records a problem, skips the bad item and goes on (one missing frame in
100k should not stop a training run); in strict mode the first error raises ``DataError``.
``Problems.summary()`` gives the counts a user sees at the end.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from cmpose.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    severity: str  # "error": the item was skipped; "warning": kept, but suspicious
    kind: str  # short category for counting, e.g. "missing image"
    message: str  # full text naming file, record and field


@dataclass
class Problems:
    strict: bool = False
    items: list[Problem] = field(default_factory=list)

    def error(
        self, kind: str, message: str, *, path: object = None, record: object = None, field: str | None = None
    ) -> None:
        """Record an error (the item is skipped); raise it at once in strict mode."""
        err = DataError(message, path=path, record=record, field=field)
        if self.strict:
            raise err
        self.items.append(Problem("error", kind, str(err)))

    def warning(
        self, kind: str, message: str, *, path: object = None, record: object = None, field: str | None = None
    ) -> None:
        self.items.append(
            Problem("warning", kind, str(DataError(message, path=path, record=record, field=field)))
        )

    @property
    def num_errors(self) -> int:
        return sum(p.severity == "error" for p in self.items)

    def counts(self) -> Counter:
        return Counter((p.severity, p.kind) for p in self.items)

    def summary(self) -> str:
        if not self.items:
            return "no problems found"
        return ", ".join(f"{n} x {kind} ({sev})" for (sev, kind), n in sorted(self.counts().items()))

    def log_summary(self, what: str) -> None:
        """One warning line with the counts (the details are in ``items``)."""
        if self.items:
            log.warning("%s: skipped or flagged %d item(s): %s", what, len(self.items), self.summary())
