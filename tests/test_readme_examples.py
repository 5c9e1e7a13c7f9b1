"""The README's "Attack your own model" examples run as written (so they cannot rot)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Attack your own model"

pytestmark = pytest.mark.usefixtures("one_thread")


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no section {SECTION!r}"
    body = text.split(SECTION, 1)[1]
    return body.split("\n## ", 1)[0]


def _blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", _section(), flags=re.S | re.M)


def test_the_section_has_the_examples():
    blocks = _blocks()
    assert len(blocks) >= 5
    joined = "\n".join(blocks)
    for needle in ('inputs="raw"', 'inputs="encoded"', 'inputs="table"', "Pipeline",
                   "XGBClassifier", "LGBMClassifier", "def detector"):
        assert needle in joined or needle in _section(), needle
    assert ("advsec attack --model detector.onnx --data flows.csv --label-column label "
            "--schema schema.toml --inputs raw") in " ".join(_section().split())
    assert 'kind = "onnx"' in _section()


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_example_runs(index, tmp_path, monkeypatch):
    code = _blocks()[index]
    for package in ("xgboost", "lightgbm"):
        if re.search(rf"^\s*(from|import) {package}\b", code, flags=re.M):
            pytest.importorskip(package)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md ({SECTION}, example {index + 1})", "exec"), {})
