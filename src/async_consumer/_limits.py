"""What one trial may use of the machine: memory, CPUs and processes, enforced by the kernel."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Limits", "parse_size"]

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """
    A size in bytes from ``"2G"``, ``"512M"``, ``"1.5GiB"`` or ``"1048576"`` (units of 1024).

    Raises:
        ValueError: not a size.
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        msg = f"expected a size such as 512M or 2G, not {text!r}"
        raise ValueError(msg)
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


class Limits(BaseModel):
    """
    What each trial may use, enforced by the kernel through the trial's own cgroup.

    A trial over its memory limit is killed by the kernel and ends ``broken`` with reason
    ``out_of_memory``; one over its process limit cannot fork (a fork bomb is contained); its
    CPU time is throttled to ``cpus`` CPUs. Its siblings and the consumer are not touched. A
    consumer asked for a limit the machine cannot enforce refuses to start
    (:class:`LimitsUnavailable`), never running the trial unlimited.

    Attributes:
        memory: bytes of memory (``"2G"`` is accepted), the trial's processes together.
        cpus: CPUs' worth of time, e.g. ``1.5`` (a quota of 150 ms every 100 ms).
        pids: processes and threads at once, the trial's processes together.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory: int | None = Field(default=None, ge=1 << 20)
    cpus: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    pids: int | None = Field(default=None, ge=1)

    @field_validator("memory", mode="before")
    @classmethod
    def _size(cls, value: object) -> object:
        return parse_size(value) if isinstance(value, str) else value

    @property
    def is_empty(self) -> bool:
        """Whether no limit is asked for."""
        return self.memory is None and self.cpus is None and self.pids is None

    def describe(self) -> str:
        """The limits as the command line writes them, e.g. ``--memory 2G --pids 512``."""
        parts = []
        if self.memory is not None:
            parts.append(f"--memory {_size_text(self.memory)}")
        if self.cpus is not None:
            parts.append(f"--cpus {self.cpus:g}")
        if self.pids is not None:
            parts.append(f"--pids {self.pids}")
        return " ".join(parts)


def _size_text(size: int) -> str:
    for unit in "TGMK":
        if size % _UNITS[unit.lower()] == 0:
            return f"{size // _UNITS[unit.lower()]}{unit}"
    return str(size)
