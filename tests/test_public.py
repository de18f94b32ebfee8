"""The public door: one import, everything named in ``__all__``."""

from __future__ import annotations

import async_consumer


def test_public_names_are_exported() -> None:
    """Every public name of the package is in a sorted ``__all__``, and nothing else."""
    public = {n for n in vars(async_consumer) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(async_consumer, n)).__name__ == "module"}
    assert async_consumer.__all__ == sorted(public - modules)
