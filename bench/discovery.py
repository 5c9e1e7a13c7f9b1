"""Report: constraint discovery on the training splits of the real datasets, against the schemas.

Usage: ``python bench/discovery.py [--root DIR] [--min-share 0.98] [--out FILE]``. Prints one
JSON object (and writes it to ``--out`` when given) with, for each of

- ``unsw-nb15``: the built-in loader (``UNSW_NB15_testing-set.csv.gz`` only: a seeded split);
- ``nsl-kdd``: ``KDDTrain+``;
- ``kdd99``: ``kddcup.data_10_percent``;
- ``unsw-nb15-tabular``: the same UNSW CSV read by the generic ``tabular`` loader (inferred
  schema, ``label_column="label"``),

the rows and numeric features of the training split, the seconds to load and to discover, the
relations found (holding on every training row), the candidates (holding on at least
``--min-share`` of rows; default 0.98 so that the near-holding UNSW rate and load formulas
show), their ``holds_on``, the value sets and the notes; and ``builtin``: for every hand-written
relation of the built-in schema (for the tabular read: the UNSW schema's relations whose
features it has), the training rows that break it as
``FeatureSpace(schema).fit(train, check=False).validate(train)`` counts them, and the discovered
relations or candidates of the same type over the same features (``matched_by``);
``stated_holds_on`` / ``meets_stated``: the share a partial built-in relation claims, and whether
the training split reaches it.

Data: ``--root`` (default ``$ADVSEC_DATA``, else ``../shared/datasets`` next to the checkout)
holding ``unsw-nb15/``, ``nsl-kdd/`` and ``kdd99/``; a dataset whose folder is missing is
reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from advsec.datasets import load
from advsec.features.constraints import parse_relation
from advsec.features.discovery import discover
from advsec.features.schema import FeatureSchema
from advsec.features.space import FeatureSpace

REPO = Path(__file__).resolve().parents[1]
UNSW_CSV = "UNSW_NB15_testing-set.csv.gz"


def default_root() -> Path:
    if os.environ.get("ADVSEC_DATA"):
        return Path(os.environ["ADVSEC_DATA"])
    return REPO.parent / "shared" / "datasets"


def builtin_check(schema: FeatureSchema, train: Any, relations: list[dict[str, Any]],
                  found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each relation of ``relations`` checked on ``train`` with a FeatureSpace of ``schema``."""
    numeric = {f.name for f in schema if f.is_numeric}
    usable = [r for r in relations if set(parse_relation(r).features) <= numeric]
    out: list[dict[str, Any]] = []
    if not usable:
        return out
    space = FeatureSpace(replace(schema, relations=tuple(usable))).fit(train, check=False)
    checks = space.validate(train)
    for rel in usable:
        parsed = parse_relation(rel)
        broken = int(checks[f"relation:{parsed.name}"].sum())
        feats = set(parsed.features)
        matched = [f["name"] for f in found if f["type"] == rel["type"]
                   and set(parse_relation(f).features) & feats
                   and _same_core(rel, f)]
        share = 1 - broken / len(train)
        stated = rel.get("holds_on")
        out.append({"name": parsed.name, "type": rel["type"], "features": list(parsed.features),
                    "broken_rows": broken, "holds_on": round(share, 6),
                    "holds_on_every_row": broken == 0, "stated_holds_on": stated,
                    "meets_stated": share >= (1.0 if stated is None else float(stated)),
                    "matched_by": matched})
    return out


def _same_core(builtin: dict[str, Any], found: dict[str, Any]) -> bool:
    """Whether a discovered relation states (part of) the built-in one."""
    kind = builtin["type"]
    if kind == "zero_if_zero":
        return bool(builtin["when"] == found["when"]
                    or builtin["when"] in found["features"])
    if kind in ("ratio", "formula") or (kind == "sum" and isinstance(builtin["target"], str)):
        same = set(parse_relation(builtin).features) == set(parse_relation(found).features)
        return bool(builtin["target"] == found.get("target") and same)
    return set(parse_relation(builtin).features) <= set(parse_relation(found).features)


def run_one(label: str, loader: str, options: dict[str, Any], *, min_share: float,
            builtin_from: FeatureSchema | None = None) -> tuple[dict[str, Any], FeatureSchema]:
    start = time.perf_counter()
    ds = load(loader, **options)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    found = discover(ds.train, ds.schema, min_share=min_share)
    discover_s = time.perf_counter() - start
    reference = builtin_from if builtin_from is not None else ds.schema
    everything = [*found.relations, *found.candidates]
    builtin = builtin_check(ds.schema, ds.train, list(reference.relations), everything)
    numeric = sum(1 for f in ds.schema if f.is_numeric)
    own = list(ds.schema.relations) if builtin_from is not None else []
    return {
        "dataset": label,
        "loader": loader,
        "train_rows": len(ds.train),
        "numeric_features": numeric,
        "load_seconds": round(load_s, 3),
        "discover_seconds": round(discover_s, 3),
        "relations": found.relations,
        "candidates": found.candidates,
        "value_sets": found.value_sets,
        "notes": found.notes,
        "summary": {
            "relations": len(found.relations),
            "candidates": len(found.candidates),
            "value_sets": len(found.value_sets),
            "relations_by_type": _count(found.relations),
            "candidates_by_type": _count(found.candidates),
        },
        "builtin_source": "unsw-nb15" if builtin_from is not None else loader,
        "builtin": builtin,
        "builtin_failing": [b["name"] for b in builtin if not b["holds_on_every_row"]],
        "builtin_below_stated": [b["name"] for b in builtin if not b["meets_stated"]],
        "loader_relations": own,
    }, ds.schema


def _count(rels: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rels:
        out[r["type"]] = out.get(r["type"], 0) + 1
    return dict(sorted(out.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--min-share", type=float, default=0.98)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    root = args.root or default_root()
    runs: list[dict[str, Any]] = []
    unsw_schema: FeatureSchema | None = None
    plan = [
        ("unsw-nb15", "unsw-nb15", {"root": root / "unsw-nb15"}, root / "unsw-nb15" / UNSW_CSV),
        ("nsl-kdd", "nsl-kdd", {"root": root / "nsl-kdd"}, root / "nsl-kdd"),
        ("kdd99", "kdd99", {"root": root / "kdd99"}, root / "kdd99"),
        ("unsw-nb15-tabular", "tabular",
         {"path": root / "unsw-nb15" / UNSW_CSV, "label_column": "label"},
         root / "unsw-nb15" / UNSW_CSV),
    ]
    for label, loader, options, needed in plan:
        if not needed.exists():
            runs.append({"dataset": label, "skipped": f"{needed} not found"})
            continue
        print(f"discovery: {label} ...", file=sys.stderr)
        result, schema = run_one(label, loader, options, min_share=args.min_share,
                                 builtin_from=unsw_schema if loader == "tabular" else None)
        if label == "unsw-nb15":
            unsw_schema = schema
        runs.append(result)
    report = {
        "min_share": args.min_share,
        "root": str(root),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "datasets": runs,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
