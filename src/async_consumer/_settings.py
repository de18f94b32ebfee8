"""The checks of a consumer's settings: a bad value is refused with its name, before anything runs."""

from __future__ import annotations

__all__ = ["check_limits", "positive"]


def positive(**values: float | None) -> None:
    """Refuse a value given (not ``None``) that is zero or less."""
    for name, value in values.items():
        if value is not None and value <= 0:
            msg = f"{name} must be positive, not {value}"
            raise ValueError(msg)


def check_limits(grace: float, interrupt_code: int, heartbeat_failures: int) -> None:
    """Refuse a negative grace, an exit code out of range, fewer than one heartbeat failure."""
    if grace < 0:
        msg = f"grace must not be negative, not {grace}"
        raise ValueError(msg)
    if not 1 <= interrupt_code <= 255:
        msg = f"interrupt_code must be an exit code from 1 to 255, not {interrupt_code}"
        raise ValueError(msg)
    if heartbeat_failures < 1:
        msg = f"heartbeat_failures must be 1 or more, not {heartbeat_failures}"
        raise ValueError(msg)
