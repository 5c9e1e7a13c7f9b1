"""The report a security researcher trusts at a glance (issue 15), parsed with html.parser.

On the demo, on a small NSL-KDD run and on an ``advsec attack`` report of its detector: the
headline names the valid-record worst case, evasion and induced false alarms are stated apart
(or the headline says benign records are not attacked, in evasion mode, the default with a
benign class), every detector has a clean-metrics card that agrees with the ε = 0 rows, no NaN
text, no check that did not run shown as ok, human-readable table headers, every contents link
has its target, and the terminal ends with the headline and the report path.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from advsec.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

NSL_SMALL = """\
[experiment]
name = "NSL-KDD small"
seeds = [0]

[data]
dataset = "nsl-kdd"
scheme = "binary"
root = "{root}"
max_train_rows = 3000
max_eval_rows = 200

[[detectors]]
name = "mlp"
hidden = [32]
epochs = 3
batch_size = 256

[[detectors]]
name = "forest"
kind = "random_forest"
n_estimators = 10

[[attacks]]
attack = "fgsm"

[[attacks]]
attack = "pgd"
steps = 3

[threat]
eps = [0, 0.01, 0.1]
constraints = ["box", "valid"]
"""

SNAKE = re.compile(r"[a-z0-9]_[a-z0-9]")


class Page(HTMLParser):
    """Visible text, table headers and rows, ids, links, cards and the headline of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.headers: list[str] = []
        self.rows: list[list[str]] = []
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.cards: dict[str, str] = {}
        self.headline = ""
        self._skip = 0
        self._cell: list[str] | None = None
        self._th = False
        self._card: str | None = None
        self._card_num: list[str] | None = None
        self._in_headline = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag in ("script", "style"):
            self._skip += 1
        if tag == "a" and a.get("href"):
            self.links.append(str(a["href"]))
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self._cell, self._th = [], tag == "th"
        if "clean-card" in (a.get("class") or ""):
            self._card = str(a.get("data-detector"))
        if tag == "b" and self._card is not None:
            self._card_num = []
        if a.get("id") == "headline":
            self._in_headline = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1
        if tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            (self.headers if self._th else self.rows[-1]).append(text)
            self._cell = None
        if tag == "b" and self._card_num is not None and self._card is not None:
            self.cards[self._card] = "".join(self._card_num)
            self._card, self._card_num = None, None
        if tag == "p" and self._in_headline:
            self._in_headline = False

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._card_num is not None:
            self._card_num.append(data)
        if self._in_headline:
            self.headline += data


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "demo"
    assert main(["demo", "--out", str(out), "--rows", "1500", "--epochs", "15",
                 "--eps", "0,0.05,0.1,0.2"]) == 0
    return out


@pytest.fixture(scope="module")
def nsl(tmp_path_factory, shared_datasets) -> Path:
    root = tmp_path_factory.mktemp("report")
    f = root / "nsl.toml"
    f.write_text(NSL_SMALL.format(root=shared_datasets / "nsl-kdd"))
    assert main(["run", str(f), "--out", str(root / "nsl")]) == 0
    return root / "nsl"


def _check_common(page: Page, *, benign_attacked: bool) -> None:
    """What every report must satisfy (``benign_attacked``: every record attacked, not evasion
    only)."""
    visible = " ".join(page.text)
    assert not re.search(r"\bnan\b", visible, re.IGNORECASE), "NaN shown as text"
    assert page.headers and not [h for h in page.headers if SNAKE.search(h)], [
        h for h in page.headers if SNAKE.search(h)]
    contents = [link for link in page.links if link.startswith("#")]
    assert contents  # the table of contents
    for link in page.links:
        assert not link.startswith(("http:", "https:", "//"))
        if link.startswith("#"):
            assert link[1:] in page.ids, link
    assert "Valid-record" in page.headline and "worst case" in page.headline
    assert "evasion rate" in page.headline
    if benign_attacked:  # evasion and induced false alarms, apart
        assert "induced false-alarm rate" in page.headline
        assert "benign records are not attacked" not in page.headline
    else:
        assert "benign records are not attacked" in page.headline
        assert "induced false-alarm rate" not in page.headline
    assert "Evasion rate (malicious → benign)" in page.headers
    assert "Induced false-alarm rate (benign → malicious)" in page.headers
    assert page.cards and all(re.fullmatch(r"[01]\.\d{3}", v) for v in page.cards.values())
    # a check that could not run (its detail "n/a: ...") is never shown as ok
    for row in page.rows:
        if "ok" in row:
            assert not any(cell.startswith("n/a") for cell in row), row


def test_demo_report(demo):
    out = demo
    page = parse(out / "report.html")
    _check_common(page, benign_attacked=True)  # the classic study: every record attacked
    sweep = pd.read_csv(out / "sweep.csv")
    assert set(page.cards) == {"mlp"}
    zero = sweep[sweep.eps == 0].accuracy.mean()
    assert float(page.cards["mlp"]) == pytest.approx(zero, abs=5e-4)
    assert {"evasion_rate", "false_alarm_rate"} <= set(sweep.columns)


def test_nsl_kdd_report(nsl):
    page = parse(nsl / "report.html")
    _check_common(page, benign_attacked=False)  # no [threat] mode: evasion, the data have normal
    assert json.loads((nsl / "metrics.json").read_text())["threat_mode"] == "evasion"
    sweep = pd.read_csv(nsl / "sweep.csv")
    assert (sweep[sweep.evaluation == "adaptive"].false_alarm_rate == 0).all()
    zero = sweep[sweep.eps == 0].groupby(["detector", "defense"]).accuracy.mean()
    expected = {d if f == "none" else f"{d} + {f}": v for (d, f), v in zero.items()}
    assert set(page.cards) == set(expected) == {"mlp", "forest"}  # the baseline has a card
    for name, value in expected.items():
        assert float(page.cards[name]) == pytest.approx(value, abs=5e-4), name
    text = " ".join(" ".join(page.text).split())  # whitespace normalised
    # the data section: splits, the subset and how it was drawn, test-only classes, features
    assert "200 of the 22,544 test records" in text and "uniformly at random" in text
    assert "Threat mode: evasion" in text and 'mode = "auto"' in text
    assert "17 attack names absent from training" in text
    assert "attacker-controlled" in text and "increase" in text
    # checks that did not run are "not run", never "ok"
    header = page.headers
    checks = [r for r in page.rows if len(r) >= 3 and r[-2] in ("ok", "RED FLAG", "not run")]
    not_run = [r for r in checks if r[-1].startswith("n/a")]
    assert not_run and all(r[-2] == "not run" for r in not_run)
    assert "could not run" in text
    # per-class: the benign class is never said to evade
    benign_rows = [r for r in page.rows if "benign" in r]
    assert benign_rows and all("evad" not in " ".join(r) for r in benign_rows)
    assert "Kept in class, clean (share)" in header
    worst = pd.read_csv(nsl / "worst_case.csv")
    assert {"worst_case_detection_rate", "worst_case_evasion_rate",
            "worst_case_false_alarm_rate"} <= set(worst.columns)


def test_terminal_ends_with_the_headline_and_the_report(tmp_path, shared_datasets, capsys):
    f = tmp_path / "nsl.toml"
    f.write_text(NSL_SMALL.format(root=shared_datasets / "nsl-kdd").replace(
        'steps = 3', 'steps = 1').replace("[0, 0.01, 0.1]", "[0, 0.1]").replace(
        "[threat]", '[threat]\nmode = "all"'))  # every record: false alarms stated apart
    assert main(["run", str(f), "--out", str(tmp_path / "run")]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert lines[-1].startswith("report: ") and lines[-1].endswith("report.html")
    assert lines[-2].startswith("Valid-record attacks at ε 0.1, worst case over 2 attacks")
    assert "induced false-alarm rate" in lines[-2]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["threat_mode"] == "all"
    page = parse(tmp_path / "run" / "report.html")
    _check_common(page, benign_attacked=True)
    assert "Threat mode: every record attacked" in " ".join(" ".join(page.text).split())


def test_attack_report(nsl, shared_datasets, tmp_path, capsys):
    out = tmp_path / "attack"
    assert main(["attack", "--model", str(nsl / "models" / "mlp-s0"), "--root",
                 str(shared_datasets / "nsl-kdd"), "--attack", "pgd", "--steps", "3",
                 "--eps", "0.05,0.1", "--max-rows", "200", "--out", str(out)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert lines[-1] == f"report: {out / 'report.html'}"
    page = parse(out / "report.html")
    assert lines[-2] == page.headline  # the terminal and the page: the same headline
    _check_common(page, benign_attacked=False)  # evasion: the default with a benign class
    results = pd.read_csv(out / "results.csv")
    assert set(page.cards) == {"mlp-s0"}
    assert float(page.cards["mlp-s0"]) == pytest.approx(results.accuracy.iloc[0], abs=5e-4)
    assert json.loads((out / "attack.json").read_text())["mode"] == "auto: evasion"
    assert "Valid-record pgd at ε 0.1 (the worst case: the only attack" in page.headline


def test_the_default_threat_resolves_with_the_data():
    from advsec.cli.attack import resolve_evasion
    from advsec.experiments.config import ThreatConfig

    assert ThreatConfig().mode == "auto"
    assert ThreatConfig().resolved_mode(has_benign=True) == "evasion"
    assert ThreatConfig().resolved_mode(has_benign=False) == "all"
    assert resolve_evasion(None, has_benign=True) == (True, "auto: evasion")
    assert resolve_evasion(None, has_benign=False)[0] is False
    assert resolve_evasion(False, has_benign=True) == (False, "all")
    assert resolve_evasion(True, has_benign=True) == (True, "evasion")
