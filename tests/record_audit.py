"""An audit of adversarial records written apart from advsec's validator and repair.

It reads the schema as plain data (``FeatureSchema.to_dict()``) and re-implements every check
with pandas/NumPy: bounds, whole numbers, value sets, each relation type (``formula``
expressions through ``pandas.eval``), directions against the original record, immutables. Tests
compare attack outputs against it, so a bug shared by the attack code and
``FeatureSpace.validate`` would not hide here.
"""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SLACK = 1e-9  # the float round-off a relation may show on exact data


def real_cases(data: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """``{case: (loader, options)}``: the built-in UNSW-NB15, NSL-KDD and KDD'99 loaders and the
    UNSW-NB15 testing CSV read as a user's own file, under the shared datasets folder ``data``."""
    return {
        "unsw-nb15": ("unsw-nb15", {"root": data / "unsw-nb15"}),
        "nsl-kdd": ("nsl-kdd", {"root": data / "nsl-kdd"}),
        "kdd99": ("kdd99", {"root": data / "kdd99"}),
        "unsw-as-own-csv": ("tabular", {
            "path": data / "unsw-nb15" / "UNSW_NB15_testing-set.csv.gz", "label_column": "label"}),
    }


def _num(col: pd.Series) -> np.ndarray:
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1.0), 0.0)


def _formula(expr: str, raw: pd.DataFrame) -> np.ndarray:
    """``expr`` on ``raw`` with x / 0 = 0: every division is rewritten as a call of _div."""
    names = {}

    def hold(m: re.Match[str]) -> str:
        names[f"q{len(names)}"] = m.group(1)
        return f"q{len(names) - 1}"

    text = re.sub(r"`([^`]*)`", hold, expr)
    env = {k: _num(raw[v]) for k, v in names.items()}
    for ident in set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", text)) - set(env):
        env[ident] = _num(raw[ident])
    class Div(ast.NodeTransformer):
        def visit_BinOp(self, node: ast.BinOp) -> Any:
            self.generic_visit(node)
            if isinstance(node.op, ast.Div):
                return ast.Call(ast.Name("_div", ast.Load()), [node.left, node.right], [])
            return node

    tree = ast.fix_missing_locations(Div().visit(ast.parse(text, mode="eval")))
    out = eval(compile(tree, "<formula>", "eval"), {"_div": _div, "__builtins__": {}}, env)
    return np.broadcast_to(np.asarray(out, dtype=np.float64), (len(raw),))


def relation_broken(rel: dict[str, Any], raw: pd.DataFrame) -> np.ndarray:
    """``(N,)`` True where the relation table ``rel`` fails on ``raw``."""
    kind = rel["type"]
    tol, rtol = float(rel.get("tol", 0.0)), float(rel.get("rtol", 0.0))
    if kind == "ratio":
        t = _num(raw[rel["target"]])
        e = float(rel.get("scale", 1.0)) * _div(_num(raw[rel["numerator"]]),
                                                 _num(raw[rel["denominator"]]))
        return np.abs(t - e) > tol + rtol * np.abs(t) + SLACK
    if kind == "formula":
        t = _num(raw[rel["target"]])
        return np.abs(t - _formula(rel["expr"], raw)) > tol + rtol * np.abs(t) + SLACK
    if kind == "sum":
        total = sum(_num(raw[f]) for f in rel["features"])
        target = rel["target"]
        t = _num(raw[target]) if isinstance(target, str) else np.full(len(raw), float(target))
        slack = tol + rtol * np.abs(t) + SLACK
        gap = total - t if rel.get("op", "==") == "<=" else np.abs(total - t)
        return gap > slack
    if kind == "order":
        vals = [_num(raw[f]) for f in rel["features"]]
        return np.any([a > b + tol + SLACK for a, b in itertools.pairwise(vals)], axis=0)
    if kind == "zero_if_zero":
        gate = np.abs(_num(raw[rel["when"]])) <= tol
        some = np.any([np.abs(_num(raw[f])) > tol + SLACK for f in rel["features"]], axis=0)
        return gate & some
    raise AssertionError(f"unknown relation type {kind}")


def audit(schema: dict[str, Any], values: dict[str, list[float]], adv: pd.DataFrame,
          orig: pd.DataFrame) -> dict[str, int]:
    """How many records of ``adv`` break each check that their original record (``orig``, the
    same rows) passes; ``values``: the allowed values of value-set features."""
    out: dict[str, int] = {}

    def count(name: str, bad_adv: np.ndarray, bad_orig: np.ndarray) -> None:
        n = int((bad_adv & ~bad_orig).sum())
        if n:
            out[name] = n

    for f in schema["features"]:
        name = f["name"]
        if f["kind"] == "categorical":
            if not f.get("mutable", True):
                a = adv[name].astype(str).to_numpy()
                b = orig[name].astype(str).to_numpy()
                count(f"immutable:{name}", a != b, np.zeros(len(a), bool))
            continue
        a, b = _num(adv[name]), _num(orig[name])

        def bound(v: np.ndarray, f: dict[str, Any] = f) -> np.ndarray:
            bad = ~np.isfinite(v)
            if "lower" in f:
                bad |= v < f["lower"]
            if "upper" in f:
                bad |= v > f["upper"]
            if f["kind"] != "continuous":
                bad |= np.floor(v) != v
            return bad

        count(f"bound:{name}", bound(a), bound(b))
        if name in values:
            allowed = np.asarray(values[name], dtype=np.float64)
            count(f"values:{name}", ~np.isin(a, allowed), ~np.isin(b, allowed))
        if not f.get("mutable", True):
            count(f"immutable:{name}", a != b, np.zeros(len(a), bool))
        elif f.get("direction") == "increase":
            count(f"direction:{name}", a < b, np.zeros(len(a), bool))
        elif f.get("direction") == "decrease":
            count(f"direction:{name}", a > b, np.zeros(len(a), bool))
    for rel in schema["relations"]:
        count(f"relation:{rel.get('name', rel['type'])}", relation_broken(rel, adv),
              relation_broken(rel, orig))
    return out


def training_failures(schema: dict[str, Any], values: dict[str, list[float]],
                      train: pd.DataFrame) -> dict[str, float]:
    """Checks the training table fails: bounds and value sets (share of records failing) and
    relations that hold on less than their stated share (or on less than every record)."""
    out: dict[str, float] = {}
    for f in schema["features"]:
        if f["kind"] == "categorical":
            continue
        v = _num(train[f["name"]])
        bad = ~np.isfinite(v) | (v < f.get("lower", -np.inf)) | (v > f.get("upper", np.inf))
        if f["kind"] != "continuous":
            bad |= np.floor(v) != v
        if f["name"] in values:
            bad |= ~np.isin(v, np.asarray(values[f["name"]], dtype=np.float64))
        if bad.any():
            out[f"feature:{f['name']}"] = float(bad.mean())
    for rel in schema["relations"]:
        held = 1.0 - float(relation_broken(rel, train).mean())
        need = float(rel.get("holds_on", 1.0))
        margin = 0.005 + 3 * np.sqrt(need * (1 - need) / len(train)) if "holds_on" in rel else 0
        if held + margin < need:
            out[f"relation:{rel.get('name')}"] = held
    return out
