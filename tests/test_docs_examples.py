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


def test_plugins_md_pyproject_installs_as_written(tmp_path):
    """The pyproject.toml of "1. Package it" installs, and gis finds the entry point."""
    import os
    import subprocess
    import sys

    text = (DOCS / "PLUGINS.md").read_text(encoding="utf-8")
    start = text.index("## 1. Package it")
    toml = re.search(r"```toml\n(.*?)```", text[start:], re.S).group(1)
    pkg = tmp_path / "gis-myplugin"
    (pkg / "gis_myplugin").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(toml.replace('dependencies = ["gis"]',
                                                     "dependencies = []"))  # gis: this tree
    (pkg / "gis_myplugin" / "__init__.py").write_text(
        "import gis\n\n\n@gis.hookimpl\ndef register_losses(register):\n    pass\n")
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(target), str(pkg)],
                   check=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target),
                                                        os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-m", "gis.cli", "plugins"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "myplugin: entry point myplugin = gis_myplugin (gis-myplugin 0.1.0)" in res.stdout
