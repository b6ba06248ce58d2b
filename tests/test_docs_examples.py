"""The code examples in the docs run as written (docs/PLUGINS.md, "Test it")."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _python_block_after(doc: Path, heading: str) -> str:
    text = doc.read_text(encoding="utf-8")
    start = text.index(heading)
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match, f"no python block after {heading!r} in {doc.name}"
    return match.group(1)


def test_plugins_md_test_example_runs():
    code = _python_block_after(DOCS / "PLUGINS.md", "## 4. Test it")
    namespace: dict = {}
    exec(compile(code, "docs/PLUGINS.md", "exec"), namespace)  # noqa: S102 - our own docs
    namespace["test_my_loss"]()  # registers, checks, shifts with the term, unregisters
    import gis

    assert "brightness" not in [e.name for e in gis.plugins.REGISTRIES["losses"]]
