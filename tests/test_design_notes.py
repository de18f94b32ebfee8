"""The design notes' layer map names every module of the package, so a newcomer finds each."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "async_consumer"


def _layer_map() -> list[str]:
    notes = (ROOT / "docs" / "design-notes.md").read_text(encoding="utf-8")
    section = notes.split("## Where things are: the layers", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ")]


def _modules_column(row: str) -> str:
    return row.split("|")[2]


def test_the_layer_map_names_every_module() -> None:
    rows = [_modules_column(row) for row in _layer_map()]
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == PACKAGE:
            continue
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if len(parts) == 1:
            named = any(f"`{parts[0]}`" in row for row in rows)
        else:
            package, module = parts[0], parts[-1]
            if module == "__init__":
                named = any(f"`{package}/`" in row for row in rows)
            else:
                words = r"[\s(`+,]" + re.escape(module) + r"[\s)`,]"
                named = any(f"`{package}/`" in row and re.search(words, row) for row in rows)
        if not named:
            missing.append("/".join(parts))
    assert missing == []
