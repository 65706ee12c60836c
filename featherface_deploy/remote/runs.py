"""What a remote benchmark asks for and brings back, whichever runner (ssh, adb) ran it.

A :class:`DeviceReport` keeps every row obtained: a configuration that failed on the device becomes a row
with an ``error`` (and the ``skipped`` note the benchmark table shows), and the rows measured before it stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BenchmarkSettings:
    """One remote benchmark: the local ``benchmark`` command's options.

    Attributes:
        imgsz: (height, width) box images are fitted into (any-size models).
        batches: Batch sizes.
        threads: Thread counts.
        warmup: Untimed steps.
        iters: Timed steps.
        compute_units: Core ML compute units (``all``, ``cpu``, ``cpu-and-ne``, ``cpu-and-gpu``) for a Core ML
            package; ``None``: the runtime's default.
    """

    imgsz: tuple[int, int]
    batches: tuple[int, ...] = (1,)
    threads: tuple[int, ...] = (1,)
    warmup: int = 10
    iters: int = 100
    compute_units: str | None = None


@dataclass
class DeviceReport:
    """The result of a remote run.

    Attributes:
        device: The device as messages name it (``user@host:port``, ``adb:SERIAL``).
        runner: ``ssh`` or ``adb``.
        rows: One row per configuration (as the local benchmark's), failed ones with ``error``.
        facts: The device's facts before the first configuration (CPU, OS, versions, governor, temperatures).
        facts_after: Facts read after the last configuration (temperatures).
        notes: Anything the runner reported that a reader must see (e.g. delegate fallbacks).
    """

    device: str
    runner: str
    rows: list[dict] = field(default_factory=list)
    facts: dict = field(default_factory=dict)
    facts_after: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add_error(self, row: dict, message: str) -> None:
        """Records a configuration that failed on the device."""
        self.rows.append({**row, "error": message, "skipped": f"failed: {message}"})

    @property
    def errors(self) -> list[str]:
        """The error of every failed configuration."""
        return [row["error"] for row in self.rows if row.get("error")]

    def to_dict(self) -> dict:
        """JSON form."""
        return {"device": self.device, "runner": self.runner, "facts": self.facts, "facts_after": self.facts_after,
                "notes": list(self.notes), "rows": list(self.rows)}
