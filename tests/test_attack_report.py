"""``advsec attack`` writes report.html (one self-contained page) and always measures eps 0,
the clean baseline, as the first row of results.csv."""

from __future__ import annotations

import math
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from advsec.cli.attack import attack_command
from advsec.datasets import load
from advsec.features.space import FeatureSpace
from advsec.models import Detector
from advsec.models.io import load_model
from advsec.reporting.tables import fmt, label

ROWS = 80
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small detector saved with its FeatureSpace (as tests/test_attacks_cli.py makes it)."""
    ds = load("synthetic", rows=1000, seed=0)
    space = FeatureSpace(ds.schema).fit(ds.train)
    det = Detector(hidden=(16,), epochs=20, batch_size=64, lr=3e-3, seed=0, device="cpu").fit(
        space.encode(ds.train), ds.labels("train"))
    path = tmp_path_factory.mktemp("model") / "detector"
    det.save(path, feature_space=space)
    return path


@pytest.fixture(scope="module")
def app():
    app = typer.Typer()
    app.command("attack")(attack_command)
    app.command("other")(lambda: None)  # keep "attack" a subcommand
    return app


def attack(app, model, out, *args: str):
    res = CliRunner().invoke(app, ["attack", "--model", str(model), "--dataset", "synthetic",
                                   "--max-rows", str(ROWS), "--out", str(out), *args])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def pgd_run(saved, app, tmp_path_factory):
    out = tmp_path_factory.mktemp("pgd") / "run"
    return attack(app, saved, out, "--attack", "pgd", "--eps", "0.05,0.2", "--steps", "5")


class Page(HTMLParser):
    """The tables of a page (rows of cell texts, keyed by the id of the enclosing element),
    its images, links and whether every opened element was closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str | None]] = []
        self.balanced = True
        self.tables: dict[str | None, list[list[str]]] = {}
        self.images: list[str] = []
        self.links: list[str] = []
        self.changed = 0
        self._cell: list[str] | None = None
        self._rows: list[list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src") or "")
        if tag in ("a", "link", "script"):
            self.links.append(a.get("href") or a.get("src") or "")
        if tag in VOID:
            return
        owner = next((i for _, i in reversed(self.stack) if i), None)
        self.stack.append((tag, a.get("id")))
        if tag == "table":
            self._rows = self.tables.setdefault(a.get("id") or owner, [])
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
            self.changed += "changed" in (a.get("class") or "")
        elif tag == "span" and self._cell is not None:
            self._cell.append("\x00")  # "was ..." below a changed value: cut at this mark

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1][0] != tag:
            self.balanced = False
            return
        self.stack.pop()
        if tag in ("td", "th") and self._cell is not None and self._rows:
            self._rows[-1].append("".join(self._cell).split("\x00")[0].strip())
            self._cell = None
        elif tag == "table":
            self._rows = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert page.balanced and not page.stack, "unbalanced HTML"
    return page


def clean_accuracy(model, rows: int) -> float:
    """Accuracy of ``model``'s own predictions on the first ``rows`` clean test records."""
    det = load_model(model)
    test = load("synthetic", seed=0).test.iloc[:rows]  # what the command loads
    pred = det.predict(det.feature_space_.encode(test))
    return float(np.mean(np.asarray(pred).astype(str) == test["label"].astype(str).to_numpy()))


def test_report_is_one_self_contained_page(pgd_run):
    assert (pgd_run / "report.html").is_file()
    page = parse(pgd_run / "report.html")
    assert page.images and all(s.startswith("data:image/png;base64,") for s in page.images)
    assert all(link.startswith("#") for link in page.links if link)  # no network, no other
    # file (the one inline script, which sorts tables, has no src)
    text = (pgd_run / "report.html").read_text(encoding="utf-8")
    for part in ("Summary", "Results per ε", "Robust accuracy against ε", "Red-flag checks",
                 "Sample of adversarial records", "pgd (valid records, L∞, evasion)",
                 "synthetic"):  # evasion: the default with a benign class
        assert part in text


def test_the_page_shows_results_csv_with_eps_0_first(pgd_run):
    table = pd.read_csv(pgd_run / "results.csv")
    assert list(table["eps"]) == [0.0, 0.05, 0.2]
    rows = parse(pgd_run / "report.html").tables["results-table"]
    head, body = rows[0], rows[1:]
    column = {label(c): c for c in table.columns}  # headers: plain words with units
    names = [column[h] for h in head]
    assert names[0] == "eps" and {"accuracy", "detection_rate", "evasion_rate",
                                  "false_alarm_rate", "attack_success_rate", "valid_share",
                                  "mean_linf", "seconds"} <= set(names)
    assert [float(r[0]) for r in body] == [0.0, 0.05, 0.2]
    for i, row in enumerate(body):
        for name, cell in zip(names, row, strict=True):
            value = table.loc[i, name]  # 3 significant digits, NaN as n/a
            assert cell == fmt(value), (name, i)
            if isinstance(value, float) and math.isnan(value):
                assert cell == "n/a"


def test_eps_0_is_the_clean_baseline_and_not_exported_unless_asked(saved, pgd_run):
    table = pd.read_csv(pgd_run / "results.csv")
    zero = table.iloc[0]
    assert zero["accuracy"] == pytest.approx(clean_accuracy(saved, ROWS))
    assert zero["attack_success_rate"] == 0 and zero["max_linf"] == 0 and zero["seconds"] == 0
    records = pd.read_csv(pgd_run / "adversarial.csv")
    assert sorted(records["eps"].unique()) == [0.05, 0.2]  # --eps did not list 0
    assert len(records) == 2 * ROWS


def test_eps_0_asked_for_is_one_row_and_one_clean_block(saved, app, tmp_path):
    out = attack(app, saved, tmp_path / "run", "--attack", "fgsm", "--eps", "0.1,0",
                 "--unconstrained")
    table = pd.read_csv(out / "results.csv")
    assert list(table["eps"]) == [0.0, 0.1]
    assert table.loc[0, "accuracy"] == pytest.approx(clean_accuracy(saved, ROWS))
    records = pd.read_csv(out / "adversarial.csv")
    block = records[records["eps"] == 0]
    assert len(block) == ROWS
    assert (block["pred_adv"] == block["pred_clean"]).all() and not block["success"].any()
    page = parse(out / "report.html")
    assert [float(r[0]) for r in page.tables["results-table"][1:]] == [0.0, 0.1]
    # unconstrained records are invalid: a raised red flag, on the page
    flags = {r[1]: r[2] for r in page.tables["red-flag-checks"][1:]}
    assert flags["adversarial records are valid records"] == "RED FLAG"
    assert flags["no attack success at ε = 0"] == "ok"


def test_the_sample_shows_changed_cells_in_original_columns(pgd_run):
    page = parse(pgd_run / "report.html")
    rows = page.tables["sample-records"]
    head, body = rows[0], rows[1:]
    assert head[:5] == ["Record id", "True label", "Prediction (clean → adversarial)",
                        "Attack succeeded", "Valid record"]
    assert 0 < len(body) <= 6
    records = pd.read_csv(pgd_run / "adversarial.csv")
    block = records[records["eps"] == 0.2].set_index("record_id")
    column = {c.replace("_", " "): c for c in block.columns}  # underscores shown as spaces
    assert set(head[5:]) <= set(column)
    for row in body:
        rec = block.loc[int(row[0])]
        assert row[1] == rec["true_label"] and row[2] == f"{rec['pred_clean']} → {rec['pred_adv']}"
        assert row[3] in ("yes", "no") and row[4] in ("yes", "no")
        for name, cell in zip((column[h] for h in head[5:]), row[5:], strict=True):
            value = rec[name]
            assert (cell == str(value) if isinstance(value, str)
                    else float(cell) == pytest.approx(float(value), rel=1e-5)), name
    assert page.changed > 0  # the attack changed something, highlighted


def test_no_report(saved, app, tmp_path):
    out = attack(app, saved, tmp_path / "run", "--attack", "fgsm", "--eps", "0.1",
                 "--no-report")
    assert not (out / "report.html").exists()
    assert sorted(p.name for p in out.iterdir()) == ["adversarial.csv", "attack.json",
                                                     "results.csv"]
    assert list(pd.read_csv(out / "results.csv")["eps"]) == [0.0, 0.1]
