"""What one ingest run did, the same for both engines."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class IngestResult:
    """What one run did; ``rows_read == rows_written + rows_quarantined`` always holds."""

    run_id: str
    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    rows_cleaned: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    cleaned: dict[str, int] = field(default_factory=dict)
    output: str = ""
    quarantine: str | None = None
    files: list[str] = field(default_factory=list)
    partitions: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_written + self.rows_quarantined

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["balanced"] = self.balanced
        return data

    def add_quarantined(self, reasons: dict[str, int]) -> None:
        """Count rejected rows by reason (the total follows the reasons)."""
        for reason, count in reasons.items():
            self.rows_quarantined += count
            self.reasons[reason] = self.reasons.get(reason, 0) + count

    def check_balanced(self) -> None:
        """Every row is accounted for before anything is visible, or nothing is published."""
        if not self.balanced:
            raise AssertionError(f"row accounting broken: {self.to_dict()}")

    def sort_totals(self) -> None:
        """Reasons and cleaning rules by count (most first), partitions by date."""
        self.reasons = dict(sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0])))
        self.cleaned = dict(sorted(self.cleaned.items(), key=lambda kv: (-kv[1], kv[0])))
        self.partitions.sort()
