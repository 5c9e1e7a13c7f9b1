"""Fuzzing the input boundaries: generated experiment files, schema files, data files, model
files and command lines end in a result or a one-line :class:`~advsec.errors.AdvsecError`
(the CLI: exit code 0 or 2 and no traceback), never in any other exception.

Five targets, each a hypothesis test with a fixed example count (``BUDGET``), derandomized so
that every CI run tests the same cases; ``test_fuzz_budget`` checks the total and each test
checks that its cases all ran. A failure is a bug in the library, not in this file: the
falsifying example hypothesis prints (its draws) is the reproducer.

Speed (10,000 cases in well under a minute): a hypothesis draw costs about 0.05 ms, so values
come from fixed corpora (odd scalars, nested lists and tables, feature and relation tables;
built once from a fixed seed) with one draw each, several choices share a draw, and bulk
content (CSV cells, garbage text) comes from a drawn seed. Hypothesis still chooses and
shrinks the structure: which keys are edited and to what, which tables a file has, how many
rows. The cases' files live in memory (``/dev/shm``) where possible.

No case does real work: nothing trains, attacks or downloads (every CLI case carries an input
that must fail first, and tripwires on the expensive entry points catch a slip), and mutated
model architectures stay tiny or absurdly large (refused at once, never allocated).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import datetime as dt
import gzip
import io
import itertools
import json
import logging
import math
import os
import random
import re
import shutil
import string
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advsec.errors import AdvsecError, ConfigError

Draw = Callable[[st.SearchStrategy[Any]], Any]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]

# Cases per target and the wall time each took (pytest --durations) on the shared 2-core dev
# machine: all seven tests 33 s at load ~1.5 (45 s at load ~6.5, other suites running), plus
# ~2 s for the detector fixture. The cost per case sets the counts: the CLI builds its whole
# command tree per call (~9 ms), a table load ~6 ms, a schema file ~1.5 ms.
BUDGET = {
    "config": 1800,        # experiment TOML texts -> parse_config / load_config: 4.8 s
    "config_empty": 200,   # experiment files without a key -> ConfigError: 0.2 s
    "schema": 4700,        # schema files -> FeatureSchema.from_file: 7.4 s
    "data": 450,           # CSV / Parquet files -> load("tabular", ...): 3.1 s
    "model": 2250,         # detector JSON + safetensors -> Detector.load: 4.7 s
    "cli": 600,            # argv lists -> advsec.cli.main: 5.8 s
}
MIN_TOTAL = 10_000

#: cases run per target in this process (each test counts its own)
CALLS = dict.fromkeys(BUDGET, 0)


def fuzz_settings(target: str) -> settings:
    return settings(
        max_examples=BUDGET[target], deadline=None, derandomize=True, database=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much, HealthCheck.large_base_example],
    )


def run_counted(target: str, fuzz: Callable[[], None]) -> None:
    """Run the hypothesis test ``fuzz`` and check that it ran its whole budget."""
    CALLS[target] = 0
    fuzz()
    assert CALLS[target] >= BUDGET[target], (
        f"{target}: only {CALLS[target]} of {BUDGET[target]} cases ran")


@pytest.fixture
def scratch(tmp_path):
    """A folder for the cases' files: in memory (``/dev/shm``) where there is one, as
    overwriting a file on a disk can cost 2 ms, more than a whole case."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="advsec-fuzz-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_fuzz_budget():
    assert sum(BUDGET.values()) >= MIN_TOTAL, BUDGET


def one_line(exc: BaseException, *, names: str | None = None) -> str:
    """The message of a user-facing error: one line, not empty, naming ``names`` if given."""
    assert isinstance(exc, AdvsecError), f"{type(exc).__name__}: {exc}"
    msg = str(exc)
    assert msg.strip(), f"empty {type(exc).__name__} message"
    assert "\n" not in msg and "\r" not in msg, f"message is not one line: {msg!r}"
    if names is not None:
        assert names in msg, f"message does not name {names!r}: {msg!r}"
    return msg


def rarely(n: int) -> list[bool]:
    """``True`` once among ``n`` (for :func:`variants`; a case shrinks to ``False``)."""
    return [False] * (n - 1) + [True]


def variants(**choices: list[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Independent choices (values repeated for weight; a case shrinks towards the first
    values) in few draws: the product of several lists is one draw while it has at most 250
    entries (hypothesis favours the start of a longer sampled_from)."""
    groups: list[list[str]] = [[]]
    size = 1
    for key, values in choices.items():
        if groups[-1] and size * len(values) > 250:
            groups.append([])
            size = 1
        groups[-1].append(key)
        size *= len(values)
    parts = [st.sampled_from([dict(zip(keys, combo, strict=True)) for combo in
                              itertools.product(*(choices[k] for k in keys))]) for keys in groups]
    return st.tuples(*parts).map(lambda ds: {k: v for d in ds for k, v in d.items()})


def mostly(good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any],
           n: int = 10) -> st.SearchStrategy[Any]:
    """``good`` values, and about once in ``n`` an ``odd`` one (``|`` would be half and half)."""
    return st.sampled_from(rarely(n)).flatmap(lambda is_odd: odd if is_odd else good)


def seeded(draw: Draw) -> random.Random:
    """A random generator for bulk content, seeded by one draw."""
    return random.Random(draw(st.integers(0, 2**32 - 1)))


# --------------------------------------------------------------------------- corpora
_RNG = random.Random(20240601)  # fixed: the corpora, and so every CI run, are the same
_ALPHABET = (string.ascii_letters + string.digits + string.punctuation + " \t\n\r"
             + "éßÅ中文🙂\u200b\u0301\ufeff\x7f\x00\x1b")
ODD_TEXTS = ["", " ", "x", "X", "a b", "\n", "\r\n", "\t", "é", "中文", "🙂", "\u200b",
             "\ufeff", "\x7f", "\x1b[31m", "'", '"', "\\", "#", "=", "[", "]", ",", ";", "{",
             "a.b", "-", "_", "$HOME", "~", "../x", "/", "NaN", "nan", "inf", "-inf", "1e400",
             "0", "1", "-1", "true", "null", "None", "x" * 300]


def random_text(rng: random.Random, n: int = 10) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, n)))


TEXTS = ODD_TEXTS + [random_text(_RNG) for _ in range(100)]
INTS = ([0, 1, -1, 2, 3, 7, 10, 64, 100, 255, 1000, 10**6, 2**31, 2**53 + 1, 2**63 - 1,
         -(2**63), -5] + [_RNG.randint(-(10**k), 10**k) for k in range(1, 19) for _ in range(3)])
FLOATS = ([0.0, -0.0, 0.5, 1.0, -1.0, 0.1, 1e-9, 1e-300, 5e-324, 1e300, 1.7976931348623157e308,
           math.inf, -math.inf, math.nan, 2.5, 0.999]
          + [_RNG.uniform(-1, 1) * 10.0 ** _RNG.randint(-10, 20) for _ in range(40)])
TIMES = [dt.date(2000, 1, 1), dt.datetime(1979, 5, 27, 7, 32),
         dt.datetime(2024, 2, 29, tzinfo=dt.timezone.utc), dt.time(23, 59, 59, 999999)]
SCALARS = [True, False, *INTS, *FLOATS, *TEXTS, *TIMES]


def nested(rng: random.Random, scalars: list[Any], keys: list[str], leaves: int = 8) -> Any:
    """A random scalar, list or table (of lists and tables ...) of ``scalars``."""
    roll = rng.random()
    if leaves <= 1 or roll < 0.35:
        return rng.choice(scalars)
    items = range(rng.randint(0, 3))
    if roll < 0.7:
        return [nested(rng, scalars, keys, leaves // 2) for _ in items]
    return {rng.choice(keys): nested(rng, scalars, keys, leaves // 2) for _ in items}


def corpus(words: list[str], keys: list[str], scalars: list[Any] = SCALARS,
           n_nested: int = 250) -> list[Any]:
    """Values to draw from: words of the format, odd scalars, empty and nested containers."""
    rng = random.Random(len(words) * 7919 + len(keys))
    return [*words, *scalars, [], {}, [[]], [{}], {"": {}},
            *[nested(rng, [*words, *scalars], keys) for _ in range(n_nested)]]


def pick(values: list[Any], chunk: int = 200) -> st.SearchStrategy[Any]:
    """A value of ``values`` (a fresh copy: edits never reach the corpus), drawn as a chunk and
    a place in it: hypothesis favours the start of a sampled_from of more than a few hundred."""
    if len(values) <= chunk:
        return st.sampled_from(range(len(values))).map(lambda i: copy.deepcopy(values[i]))
    chunks = [values[i:i + chunk] for i in range(0, len(values), chunk)]
    index = st.tuples(st.integers(0, len(chunks) - 1), st.integers(0, chunk - 1))
    return index.map(lambda ij: copy.deepcopy(chunks[ij[0]][ij[1] % len(chunks[ij[0]])]))


def containers(node: Any, path: str = "") -> dict[str, Any]:
    """Every dict and list inside ``node`` by its path (``""``: ``node`` itself)."""
    out: dict[str, Any] = {}
    if isinstance(node, (dict, list)):
        out[path] = node
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            out.update(containers(child, f"{path}[{key!r}]"))
    return out


def mutate(draw: Draw, doc: Any, *, keys: list[str],
           values: st.SearchStrategy[Any], max_edits: int = 3) -> Any:
    """``doc`` (changed in place) after deleting, adding or replacing a few keys and items."""
    for _ in range(draw(st.integers(1, max_edits))):
        boxes = containers(doc)
        if not boxes:
            break
        box = boxes[draw(st.sampled_from(sorted(boxes)))]
        how = draw(st.sampled_from(["set", "set", "delete"]))
        if isinstance(box, dict):
            if how == "delete" and box:
                del box[draw(st.sampled_from(sorted(box)))]
            else:
                key = draw(st.sampled_from([*sorted(box), *keys]))
                box[key] = draw(values)
        elif how == "delete" and box:
            box.pop(draw(st.integers(0, len(box) - 1)))
        else:
            at = draw(st.integers(0, len(box)))
            value = draw(values)
            box[at:at + 1] = [value]
    return doc


# --------------------------------------------------------------------------- TOML text
_BARE = re.compile(r"[A-Za-z0-9_-]+\Z")


def toml_string(s: str) -> str:
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def toml_key(k: str) -> str:
    return k if _BARE.match(k) else toml_string(k)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_dumps(doc: dict[str, Any], *, inline: bool = False) -> str:
    """TOML text of ``doc``: tables as ``[a.b]``, lists of tables as ``[[a]]`` (unless
    ``inline``), everything else inline."""
    lines: list[str] = []

    def table(d: dict[str, Any], prefix: tuple[str, ...]) -> None:
        subs = [(k, v) for k, v in d.items() if isinstance(v, dict)]
        arrays = [(k, v) for k, v in d.items() if not inline and isinstance(v, list) and v
                  and all(isinstance(x, dict) for x in v)]
        nested_keys = {k for k, _ in subs} | {k for k, _ in arrays}
        lines.extend(f"{toml_key(k)} = {toml_value(v)}" for k, v in d.items()
                     if k not in nested_keys)
        for k, v in subs:
            lines.append("[" + ".".join(map(toml_key, (*prefix, k))) + "]")
            table(v, (*prefix, k))
        for k, items in arrays:
            for item in items:
                lines.append("[[" + ".".join(map(toml_key, (*prefix, k))) + "]]")
                lines.extend(f"{toml_key(ik)} = {toml_value(iv)}" for ik, iv in item.items())

    table(doc, ())
    return "\n".join(lines) + "\n"


SNIPPETS = ["[", "]]", "=", '"', "'''", "\n[data]\n", "\n[[attacks]]\n", "\x00", "\ufeff", "\r",
            "\\", "#", "[[features]]\n", "{", "}", ",", "\n", "= 1\n", "x.y = 2\n", "\n\n[x]\n"]
TEXT_EDITS = ["none"] * 24 + ["truncate", "drop line", "double line", "insert", "garbage", "bytes"]


def mutate_text(draw: Draw, text: str, op: str) -> str:
    """``text`` unchanged (``op`` "none"), cut short, with a line dropped or doubled, with a
    snippet inserted, or replaced by random text or random bytes (decoded with
    surrogateescape)."""
    if op == "none":
        return text
    rng = seeded(draw)
    lines = text.splitlines(keepends=True)
    i = rng.randint(0, len(text))
    if op == "truncate":
        return text[:i]
    if op in ("drop line", "double line") and lines:
        j = rng.randrange(len(lines))
        return "".join(lines[:j] + [lines[j]] * (2 if op == "double line" else 0) + lines[j + 1:])
    if op == "insert":
        return text[:i] + rng.choice(SNIPPETS + TEXTS) + text[i:]
    if op == "garbage":
        return random_text(rng, 200)
    return rng.randbytes(rng.randint(0, 200)).decode("utf-8", "surrogateescape")


def write_text(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    return path


# =========================================================================== 1. experiment files
def _config_vocabulary() -> tuple[list[str], list[str]]:
    from advsec.attacks.registry import ATTACKS
    from advsec.attacks.spec import attack_spec
    from advsec.defenses import METHODS
    from advsec.experiments import config as c

    keys: set[str] = set()
    for model in (c.ExperimentConfig, c.ExperimentMeta, c.DataConfig, c.DetectorConfig,
                  c.AttackConfig, c.ThreatConfig, c.DefenseConfig, c.TrackingConfig):
        keys |= set(model.model_fields)
    for name in ATTACKS:
        keys |= set(attack_spec(name).config_options())
    words = {*ATTACKS, *METHODS, "mlp", "random_forest", "hist_gradient_boosting",
             "logistic_regression", "box", "valid", "all", "evasion", "binary", "attack",
             "category", "synthetic", "nsl-kdd", "kdd99", "unsw-nb15", "cicids2017", "tabular",
             "csv", "parquet", "linf", "l2", "ce", "margin", "rows", "label", "benign"}
    return sorted(keys), sorted(words)


CONFIG_KEYS, CONFIG_WORDS = _config_vocabulary()
EXAMPLE_TEXTS = {p.name: p.read_text(encoding="utf-8")
                 for p in sorted((REPO / "examples").glob("*.toml"))}
EXAMPLE_DOCS = {name: tomllib.loads(text) for name, text in EXAMPLE_TEXTS.items()}
config_keys = CONFIG_KEYS + TEXTS[:60]
config_values = pick(corpus(CONFIG_WORDS, CONFIG_KEYS))


def check_config(text: str, *, source: str = "fuzz.toml", path: Path | None = None) -> Any:
    """``parse_config(text)`` (or ``load_config(path)`` with ``text`` written to ``path``)
    returns a config or raises a one-line ConfigError naming the source; an unknown key lists
    the allowed ones."""
    from advsec.experiments.config import ExperimentConfig, load_config, parse_config

    try:
        if path is None:
            cfg = parse_config(text, source=source)
        else:
            source = str(path)
            cfg = load_config(write_text(path, text))
    except AdvsecError as exc:
        assert isinstance(exc, ConfigError), f"{type(exc).__name__}: {exc}"
        msg = one_line(exc, names=source)
        if "unknown key" in msg:
            assert "allowed" in msg, f"unknown key without the allowed keys: {msg!r}"
        return None
    assert isinstance(cfg, ExperimentConfig)
    return cfg


CONFIG_CASES = variants(start=[*EXAMPLE_DOCS] * 3 + ["{}", "random"], text_edit=TEXT_EDITS,
                        inline=rarely(4), via_file=rarely(10))


@st.composite
def experiment_files(draw: Draw) -> dict[str, Any]:
    """An example experiment file (or none, or random tables) with a few keys deleted, added or
    replaced by odd values, written as TOML, maybe cut short or garbled."""
    case = draw(CONFIG_CASES)
    if case["start"] == "random":
        doc: Any = dict(draw(st.lists(st.tuples(st.sampled_from(config_keys), config_values),
                                      max_size=4)))
    else:
        doc = mutate(draw, copy.deepcopy(EXAMPLE_DOCS.get(case["start"], {})),
                     keys=config_keys, values=config_values)
    text = mutate_text(draw, toml_dumps(doc, inline=case["inline"]), case["text_edit"])
    return {"text": text, "via_file": case["via_file"]}


#: files without any key: blank, spaces, comments
empty_experiment_files = st.builds(
    str.join, st.sampled_from(["\n", "\r\n"]),
    st.lists(st.sampled_from(["", " ", "\t", "# comment", "#", "  # x = 1"]), max_size=6))


def run_experiment_file(case: dict[str, Any], folder: Path) -> None:
    check_config(case["text"], path=folder / "fuzz.toml" if case["via_file"] else None)


def test_fuzz_experiment_files(scratch):
    @fuzz_settings("config")
    @given(experiment_files())
    def fuzz(case):
        CALLS["config"] += 1
        run_experiment_file(case, scratch)

    run_counted("config", fuzz)


def run_empty_experiment_file(text: str, via_file: bool, folder: Path) -> None:
    assert tomllib.loads(text) == {}
    cfg = check_config(text, path=folder / "empty.toml" if via_file else None)
    assert cfg is None, f"an experiment file without any key was accepted: {text!r}"


def test_fuzz_empty_experiment_files(scratch):
    """A file without any key is an error, not a study of all defaults."""

    @fuzz_settings("config_empty")
    @given(empty_experiment_files, st.booleans())
    def fuzz(text, via_file):
        CALLS["config_empty"] += 1
        run_empty_experiment_file(text, via_file, scratch)

    run_counted("config_empty", fuzz)


# =========================================================================== 2. schema files
def _schemas() -> dict[str, Any]:
    import advsec.datasets
    from advsec.features.schema import Feature, FeatureKind, FeatureSchema

    small = FeatureSchema(
        features=(Feature("a", FeatureKind.CONTINUOUS, lower=0.0),
                  Feature("b", FeatureKind.INTEGER, lower=0.0, transform="log1p"),
                  Feature("c", FeatureKind.BINARY),
                  Feature("d", FeatureKind.CATEGORICAL, mutable=False)),
        relations=({"type": "order", "name": "a_le_b", "features": ["a", "b"]},),
    )
    folder = Path(advsec.datasets.__file__).with_name("schemas")
    return {"none": None, "small": small,
            "unsw-nb15": FeatureSchema.from_file(folder / "unsw-nb15.toml")}


BASES = _schemas()
FEATURE_NAMES = ["a", "b", "c", "d", "e", "label", "dur", "spkts", "sbytes", "smean", "dpkts",
                 "dbytes", "proto"]
KINDS = ["continuous", "integer", "binary", "categorical"]
RELATION_TYPES = ["sum", "ratio", "order", "zero_if_zero"]
SCHEMA_KEYS = ["name", "kind", "lower", "upper", "mutable", "transform", "categories",
               "description", "type", "features", "target"]
SCHEMA_ODD = corpus([*FEATURE_NAMES, *KINDS, *RELATION_TYPES, "log1p", "none"], SCHEMA_KEYS,
                    n_nested=80)
GOOD_FIELDS: dict[str, list[Any]] = {
    "lower": [0, 1, -1, 0.5, 100, 1e9, -math.inf, math.inf, math.nan],
    "upper": [0, 1, 10, 0.5, 255, 1e12, math.inf, -1],
    "mutable": [True, False], "transform": ["none", "log1p"],
    "categories": [["tcp", "udp"], [], ["x"], ["1", 2]], "description": ["", "a feature"],
}


def _feature(rng: random.Random, *, partial: bool = False) -> Any:
    """A feature table: mostly well formed, with odd values, extra keys or a missing key."""
    if rng.random() < 0.03:
        return rng.choice(SCHEMA_ODD)
    table: dict[str, Any] = {}
    if not partial or rng.random() < 0.3:
        table["kind"] = rng.choice(KINDS) if rng.random() < 0.95 else rng.choice(SCHEMA_ODD)
    if not partial:
        table["name"] = rng.choice(FEATURE_NAMES) if rng.random() < 0.95 else rng.choice(
            SCHEMA_ODD)
    for key, good in GOOD_FIELDS.items():
        if rng.random() < 0.3:
            table[key] = rng.choice(good) if rng.random() < 0.92 else rng.choice(SCHEMA_ODD)
    if rng.random() < 0.03:
        table[rng.choice(TEXTS)] = rng.choice(SCALARS)
    if not partial and rng.random() < 0.03:
        del table[rng.choice(["name", "kind"])]
    return table


def _relation(rng: random.Random) -> Any:
    """A relation table of any type, naming the usual features (mostly) or odd values."""
    if rng.random() < 0.03:
        return rng.choice(SCHEMA_ODD)

    def member() -> Any:
        return rng.choice(FEATURE_NAMES) if rng.random() < 0.95 else rng.choice(SCHEMA_ODD)

    def number() -> Any:
        return rng.choice([0, 0.5, 1, 1e-5, -1, math.nan, math.inf]) if rng.random() < 0.92 \
            else rng.choice(SCHEMA_ODD)

    kind = rng.choice(RELATION_TYPES) if rng.random() < 0.9 else rng.choice(SCHEMA_ODD)
    table: dict[str, Any] = {"type": kind}
    keys = {"sum": ["features", "target", "op", "tol", "rtol"],
            "ratio": ["target", "numerator", "denominator", "scale", "tol", "rtol"],
            "order": ["features", "tol"], "zero_if_zero": ["when", "features", "tol"]}
    for key in keys.get(kind, ["features"]) if isinstance(kind, str) else ["features"]:
        if rng.random() < 0.9:
            if key == "features":
                table[key] = [member() for _ in range(rng.randint(0, 4))] if rng.random() < 0.9 \
                    else member()
            elif key in ("tol", "rtol", "scale"):
                table[key] = number()
            elif key == "op":
                table[key] = rng.choice(["==", "<=", "<", ""])
            else:
                table[key] = member() if rng.random() < 0.8 else number()
    if rng.random() < 0.5:
        table["name"] = rng.choice(["r1", "r2", "r1", ""]) if rng.random() < 0.9 else rng.choice(
            SCHEMA_ODD)
    if rng.random() < 0.05:
        table[rng.choice(["extra", "feature", *TEXTS[:10]])] = rng.choice(SCALARS)
    return table


FEATURES = [_feature(_RNG) for _ in range(200)]
PARTIAL_FEATURES = [_feature(_RNG, partial=True) for _ in range(200)]
RELATIONS = [_relation(_RNG) for _ in range(200)]
schema_odd = pick(SCHEMA_ODD)
schema_members = mostly(st.sampled_from(FEATURE_NAMES), schema_odd)
#: the top-level keys of a schema file and what each may hold
SCHEMA_PARTS: dict[str, st.SearchStrategy[Any]] = {
    "features": mostly(st.lists(pick(FEATURES), min_size=1, max_size=5), schema_odd),
    "relations": mostly(st.lists(pick(RELATIONS), max_size=3), schema_odd),
    "add_relations": mostly(st.lists(pick(RELATIONS), max_size=2), schema_odd),
    "override": mostly(st.dictionaries(st.sampled_from(FEATURE_NAMES + TEXTS[:20]),
                                pick(PARTIAL_FEATURES), max_size=3), schema_odd),
    "drop": mostly(st.lists(schema_members, max_size=3), schema_odd),
    "label": schema_members, "benign_label": schema_odd, "description": schema_odd,
    "extra": schema_odd,
}
_PART_WEIGHTS = {"features": 0.7, "relations": 0.35, "add_relations": 0.15, "override": 0.3,
                 "drop": 0.2, "label": 0.1, "benign_label": 0.1, "description": 0.1,
                 "extra": 0.03}
#: which top-level keys a schema file has (one draw), e.g. ("features", "relations")
SCHEMA_SHAPES = sorted({tuple(k for k, p in _PART_WEIGHTS.items() if _RNG.random() < p)
                        for _ in range(400)}, key=lambda keys: (len(keys), keys))


def check_schema(path: Path, *, base: Any, columns: list[str] | None) -> Any:
    """``FeatureSchema.from_file`` returns a schema or raises a one-line AdvsecError naming
    the file."""
    from advsec.features.schema import FeatureSchema

    try:
        schema = FeatureSchema.from_file(path, base=base, columns=columns)
    except AdvsecError as exc:
        one_line(exc, names=path.name)
        return None
    assert isinstance(schema, FeatureSchema)
    return schema


SCHEMA_CASES = variants(base=sorted(BASES), suffix=[".toml"] * 16 + [".yaml", ".txt", ""],
                        text_edit=TEXT_EDITS, inline=rarely(5), columns=rarely(5))


@st.composite
def schema_files(draw: Draw) -> dict[str, Any]:
    """A schema file (some of features, relations, override, drop, label...; mostly well
    formed tables with odd values), maybe garbled; a base schema; maybe the table's columns."""
    case = draw(SCHEMA_CASES)
    shape = draw(st.sampled_from(SCHEMA_SHAPES))
    doc = {key: draw(SCHEMA_PARTS[key]) for key in shape}
    columns = draw(st.lists(st.sampled_from(FEATURE_NAMES), max_size=6)) if case["columns"] \
        else None
    text = mutate_text(draw, toml_dumps(doc, inline=case["inline"]), case["text_edit"])
    return {"text": text, "suffix": case["suffix"], "base": case["base"], "columns": columns}


def run_schema_file(case: dict[str, Any], folder: Path) -> None:
    path = write_text(folder / f"schema{case['suffix']}", case["text"])
    check_schema(path, base=BASES[case["base"]], columns=case["columns"])


def test_fuzz_schema_files(scratch):
    @fuzz_settings("schema")
    @given(schema_files())
    def fuzz(case):
        CALLS["schema"] += 1
        run_schema_file(case, scratch)

    run_counted("schema", fuzz)


# =========================================================================== 3. data files
HEADERS = ["a", "b", "c", "label", "Label", " label ", "", "x y", "ä", "a,b", '"q"', "label.1",
           "id", "proto", "class", "a", "b", "column_0", "__index_level_0__"]
LABELS = ["benign", "attack", "normal", "BENIGN", "dos", "0", "1", "", " ", "nan", "NA", "\t",
          "a\nb", "ä", "benign "]
CELLS = ["", " ", "0", "1", "-1", "2", "0.5", "1e3", "nan", "NaN", "inf", "-inf", "1e400", "-0",
         "99999999999999999999", "0x10", "1,5", "true", "tcp", "udp", "é", '"', "a b", "N/A",
         "null", "\n", "1_000", "+5", ".5", "5.", "1e-400"]
COLUMN_CELLS = {
    "int": [str(v) for v in INTS if abs(v) < 10**7] + ["0", "1", "2"] * 5,
    "float": [repr(v) for v in FLOATS if math.isfinite(v) and abs(v) < 1e15] + ["0.5", "1.25"],
    "category": ["tcp", "udp", "icmp", "x", "y", "-"],
    "binary": ["0", "1"],
    "mixed": CELLS + [str(v) for v in INTS] + [repr(v) for v in FLOATS] + TEXTS[:60],
}
COLUMN_KINDS = sorted(COLUMN_CELLS)
HUGE_FIELD = "9" * 140_000  # over the csv module's 131,072-character field limit
#: how a table is written: line end, quoted fields, BOM, blank lines, gzip (or cut short)
WRITE_STYLES = [
    *[{"eol": "\n", "quoted": True}] * 6, *[{"eol": "\n", "quoted": False}] * 2,
    *[{"eol": "\r\n", "quoted": True}] * 2, {"eol": "\n", "quoted": True, "bom": True},
    {"eol": "\n", "quoted": True, "blank": True}, {"eol": "\n", "quoted": True, "gzip": "full"},
    {"eol": "\n", "quoted": True, "gzip": "cut"}, {"eol": "\r\n", "bom": True, "blank": True},
    {"eol": "\n", "gzip": "full"}, {"random bytes": True},
]
#: the file's shape, one draw: columns, where the label is (an index modulo the columns),
#: which labels occur, something odd, the suffix, how it is written
TABLE_SHAPES = variants(
    n=[3, 1, 2, 2, 3, 3, 4, 4, 5], label_at=[0, 0, 0, 1, 2, 3, 4, -1, None],
    labels=[LABELS[:2]] * 6 + [LABELS[:3], LABELS[:5], LABELS[:1], LABELS[1:2], LABELS, LABELS],
    rows=[8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] * 2 + [30],
    odd=["plain"] * 14 + ["ragged", "huge cell", "huge header", "huge label"],
    suffix=[".csv"] * 14 + [".txt", ".gz", ".tsv", ".parquet", ".parquet", ".parquet garbage"],
    label_header=["label"] * 6 + ["Label", " label ", "class", "label\nx"],
)
#: a column's cells: mostly plausible (numbers, categories), now and then anything
COLUMN_WEIGHTS = ["int", "float", "category", "binary"] * 4 + ["mixed"]
#: a column's name: mostly plain, sometimes odd (empty, spaces, unicode, a newline, a name the
#: reader gives a duplicate: "a.1")
HEADER_NAMES = ["a", "b", "c", "d", "x", "y", "proto", "bytes", "dur", "rate", "id", "flag"] * 4 \
    + HEADERS + TEXTS[:30]


class Blob(bytes):
    """File content whose repr stays short (an enormous field would flood a failure report)."""

    def __repr__(self) -> str:
        if len(self) <= 600:
            return f"Blob({bytes.__repr__(self)})"
        return f"Blob({bytes.__repr__(self[:300])} + ... {len(self):,} bytes in all)"


def table_file(draw: Draw, stem: str) -> tuple[str, Blob, list[str], str | None]:
    """A small table file ``stem.<suffix>``: plausible columns (numbers, categories, labels;
    about half the files load) under odd headers, with odd cells, and now and then a ragged
    row, an enormous field, odd line ends, a BOM, gzip or random bytes. Returns its name,
    content, header and label column."""
    shape = draw(TABLE_SHAPES)
    n = shape["n"]
    style = draw(st.sampled_from(WRITE_STYLES))
    rng = seeded(draw)
    header = rng.sample(HEADER_NAMES, n)
    kinds = [rng.choice(COLUMN_WEIGHTS) for _ in range(n)]
    label_at = None if shape["label_at"] is None else shape["label_at"] % n
    if label_at is not None:
        header[label_at] = shape["label_header"]
    pools = [shape["labels"] if j == label_at else COLUMN_CELLS[k] for j, k in enumerate(kinds)]
    rows = [[rng.choice(pool) for pool in pools] for _ in range(shape["rows"])]
    if shape["odd"] == "ragged" and rows:
        row = rng.choice(rows)
        row[:] = row[:-1] if rng.random() < 0.5 else [*row, rng.choice(CELLS)]
    elif shape["odd"] == "huge cell" and rows:
        rng.choice(rows)[rng.randrange(n)] = HUGE_FIELD
    elif shape["odd"] == "huge label" and rows and label_at is not None:
        rng.choice(rows)[label_at] = HUGE_FIELD
    elif shape["odd"] == "huge header":
        header[rng.randrange(n)] = HUGE_FIELD
    suffix = shape["suffix"]
    if style.get("random bytes") or suffix == ".parquet garbage":
        content = rng.randbytes(rng.randint(0, 300))
    elif suffix == ".parquet":
        content = parquet_bytes(header, rows)
    else:
        content = csv_bytes(header, rows, "\t" if suffix == ".tsv" else ",", style)
    label = None if label_at is None else header[label_at]
    return f"{stem}{suffix.split()[0]}", Blob(content), header, label


def csv_bytes(header: list[str], rows: list[list[str]], delimiter: str,
              style: dict[str, Any]) -> bytes:
    """The table as CSV bytes in ``style`` (see :data:`WRITE_STYLES`)."""
    out = io.StringIO()
    eol = style["eol"]
    if style.get("quoted") and len(delimiter) == 1:
        csv.writer(out, delimiter=delimiter, lineterminator=eol).writerows([header, *rows])
    else:
        out.write("".join(delimiter.join(r) + eol for r in [header, *rows]))
    text = ("\ufeff" if style.get("bom") else "") + out.getvalue()
    if style.get("blank"):
        text = text.replace(eol, eol + eol, 2)
    raw = text.encode("utf-8")
    if style.get("gzip"):
        raw = gzip.compress(raw, mtime=0)
        if style["gzip"] == "cut":
            raw = raw[:max(2, len(raw) * 2 // 3)]
    return raw


def parquet_bytes(header: list[str], rows: list[list[str]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = [pa.array([r[j] if j < len(r) else None for r in rows], pa.string())
               for j in range(len(header))]
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(columns, names=header), sink)
    return sink.getvalue()


SMALL_SCHEMAS = [
    "[override.a]\nmutable = false\n", 'drop = ["a"]\n', 'drop = ["label"]\n',
    '[[features]]\nname = "a"\nkind = "integer"\n',
    '[[features]]\nname = "b"\nkind = "categorical"\n[[features]]\nname = "a"\nkind = "binary"\n',
    '[[add_relations]]\ntype = "order"\nfeatures = ["a", "b"]\n', "not toml [", "",
]
LOADER_OPTIONS = {  # options an experiment file may pass under [data] options
    "seed": st.sampled_from([0, 1, -1, 2**32, -(2**63)]),
    "test_size": st.sampled_from([0.3, 0.0, 1.0, 0.5, -0.1, 2.0, math.nan, 1e-9]),
    "delimiter": st.sampled_from([",", ";", "\t", "", ",,", "\n", '"']),
    "max_categories": st.sampled_from([100, 0, 1, -1, 2]),
    "drop_duplicates": st.booleans(),
}


def check_dataset(options: dict[str, Any]) -> Any:
    """``load("tabular", ...)`` gives a dataset with two classes or more in training,
    non-empty splits and no empty label, or raises a one-line AdvsecError."""
    from advsec.datasets import load

    try:
        ds = load("tabular", **options)
    except AdvsecError as exc:
        one_line(exc)
        return None
    assert len(ds.classes) >= 2, f"classes {ds.classes}"
    train_classes = set(ds.train[ds.label].astype(str))
    assert len(train_classes) >= 2, f"the training split has one class only: {train_classes}"
    label_columns = {ds.label, "raw_label", str(options.get("label_column", "label"))}
    for split, table in (("train", ds.train), ("test", ds.test)):
        assert len(table) > 0, f"empty {split} split"
        for col in label_columns - set(ds.schema.names):
            if col in table.columns:
                labels = table[col]
                assert not labels.isna().any(), f"{split}: missing label in {col!r}"
                empty = labels.astype(str).str.strip() == ""
                assert not empty.any(), f"{split}: empty label in {col!r}"
    return ds


DATA_CASES = variants(scheme=["binary"] * 8 + ["attack"] * 4 + ["category"], benign=rarely(3),
                      label=["the label"] * 10 + ["another column", "nope"],
                      options=rarely(4), test_file=rarely(6), schema_file=rarely(6))


@st.composite
def data_files(draw: Draw) -> dict[str, Any]:
    """A table file (sometimes a test file and a schema file too) and the loader's options:
    the label column (one of the header's names, or absent), a benign label, odd options."""
    name, content, header, label = table_file(draw, "train")
    files = {name: content}
    case = draw(DATA_CASES)
    if case["label"] == "another column" or label is None:
        label = draw(st.sampled_from([*header, "label"]))
    elif case["label"] == "nope":
        label = "nope"
    options: dict[str, Any] = {"path": name, "label_column": label, "scheme": case["scheme"]}
    if case["benign"]:
        options["benign_label"] = draw(st.sampled_from(["benign"] * 6 + LABELS + TEXTS[:10]))
    if name.endswith(".tsv"):
        options["delimiter"] = "\t"
    if case["options"]:
        options.update(draw(st.fixed_dictionaries({}, optional=LOADER_OPTIONS)))
    if case["test_file"]:
        test_name, test_content, _, _ = table_file(draw, "test")
        files[test_name] = test_content
        options["test_path"] = test_name
    if case["schema_file"]:
        files["schema.toml"] = Blob(draw(st.sampled_from(SMALL_SCHEMAS)).encode())
        options["schema_file"] = "schema.toml"
    return {"files": files, "options": options}


def run_data_files(case: dict[str, Any], folder: Path) -> None:
    for name, content in case["files"].items():
        (folder / name).write_bytes(content)
    paths = ("path", "test_path", "schema_file")
    check_dataset({k: folder / v if k in paths else v for k, v in case["options"].items()})


def test_fuzz_data_files(scratch, monkeypatch):
    monkeypatch.delenv("ADVSEC_PARSE_CACHE", raising=False)

    @fuzz_settings("data")
    @given(data_files())
    def fuzz(case):
        CALLS["data"] += 1
        run_data_files(case, scratch)

    run_counted("data", fuzz)


# =========================================================================== 4. model files
def make_detectors(folder: Path) -> dict[str, Any]:
    """A tiny fitted detector with a FeatureSpace (four feature kinds and a relation), saved;
    the weights of another architecture; and a detector saved without a FeatureSpace."""
    from advsec.features.space import FeatureSpace
    from advsec.models import Detector

    raw = pd.DataFrame({"a": [0.1, 0.5, 0.9, 0.3, 0.7, 0.2], "b": [1, 2, 3, 4, 5, 60],
                        "c": [0, 1, 0, 1, 0, 1], "d": ["x", "y", "x", "y", "z", "x"]})
    space = FeatureSpace(BASES["small"]).fit(raw)
    x = space.encode(raw)
    y = np.array(["benign", "attack"] * 3)
    opts = {"epochs": 1, "batch_size": 4, "validation_split": 0.0, "seed": 0, "device": "cpu"}
    _, meta = Detector(hidden=(4,), **opts).fit(x, y).save(folder / "model", feature_space=space)
    other, _ = Detector(hidden=(3, 2), **opts).fit(x, y).save(folder / "other")
    Detector(hidden=(2,), **opts).fit(x, y).save(folder / "nofs")
    return {"meta": json.loads(meta.read_text()), "weights": (folder / "model.safetensors")
            .read_bytes(), "other": other.read_bytes(), "folder": folder}


@pytest.fixture(scope="module")
def saved_detector(tmp_path_factory):
    return make_detectors(tmp_path_factory.mktemp("detector"))


JSON_KEYS = ["format", "architecture", "params", "classes", "classes_dtype", "history",
             "feature_space", "schema", "lo", "span", "categories", "decimals", "features",
             "relations", "name", "kind", "hidden", "n_inputs", "n_outputs", "dropout",
             "activation", "a", "b", "d"]
# integers stay tiny or absurd (refused at once): a mutated architecture never allocates much
JSON_SCALARS = [None, True, False, *[v for v in INTS if abs(v) <= 70 or abs(v) >= 10**15],
                10**15, -(10**15), 2**63, 10**30, 1e15, *TEXTS,
                *[v for v in FLOATS if not math.isfinite(v) or abs(v) <= 100 or abs(v) >= 1e15]]
JSON_WORDS = ["str", "int64", "float32", "object", "U3", "relu", "tanh", "gelu",
              "advsec.detector/1", "mlp", *KINDS, "log1p", "none", "benign", "attack", "x"]
json_values = pick(corpus(JSON_WORDS, JSON_KEYS, scalars=JSON_SCALARS))
json_keys = JSON_KEYS + TEXTS[:20]
MODEL_CASES = variants(
    metadata=["mutate"] * 14 + ["not an object", "text", "bytes", "truncated"],
    weights=["same"] * 10 + ["other", "truncated", "flipped", "empty", "random", "header"])


def check_model(prefix: Path) -> Any:
    """``Detector.load`` returns a detector or raises a one-line AdvsecError."""
    from advsec.models import Detector

    try:
        det = Detector.load(prefix)
    except AdvsecError as exc:
        one_line(exc)
        return None
    assert isinstance(det, Detector)
    return det


@st.composite
def model_files(draw: Draw, saved: dict[str, Any]) -> dict[str, Any]:
    """The saved detector's two files: the JSON metadata with a few keys deleted, added or
    replaced (or not an object, garbage, cut short) and the weights as saved, of another
    architecture, cut short, with a flipped byte, a rewritten header or random."""
    case = draw(MODEL_CASES)
    how, change = case["metadata"], case["weights"]
    if how == "mutate":
        meta = mutate(draw, copy.deepcopy(saved["meta"]), keys=json_keys, values=json_values)
        text = json.dumps(meta).encode()
    elif how == "not an object":
        text = json.dumps(draw(json_values.filter(lambda v: not isinstance(v, dict)))).encode()
    else:
        rng = seeded(draw)
        full = json.dumps(saved["meta"]).encode()
        text = {"text": random_text(rng, 100).encode("utf-8", "surrogateescape"),
                "bytes": rng.randbytes(rng.randint(0, 100)),
                "truncated": full[:rng.randrange(len(full))]}[how]
    weights = saved["weights"]
    if change != "same":
        rng = seeded(draw)
        i = rng.randrange(len(weights))
        head = json.dumps(draw(json_values)).encode() if change == "header" else b""
        weights = {"other": saved["other"], "truncated": weights[:i], "empty": b"",
                   "flipped": weights[:i] + bytes([weights[i] ^ rng.randint(1, 255)])
                   + weights[i + 1:],
                   "random": rng.randbytes(rng.randint(0, 200)),
                   "header": len(head).to_bytes(8, "little") + head + weights[8:]}[change]
    return {"model.json": Blob(text), "weights": change, "model.safetensors": Blob(weights)}


def run_model_files(case: dict[str, Any], folder: Path) -> None:
    for name in ("model.json", "model.safetensors"):
        (folder / name).write_bytes(case[name])
    check_model(folder / "model")


def test_fuzz_model_files(scratch, saved_detector):
    @fuzz_settings("model")
    @given(model_files(saved_detector))
    def fuzz(case):
        CALLS["model"] += 1
        run_model_files(case, scratch)

    run_counted("model", fuzz)


# =========================================================================== 5. command lines
class ReachedRealWork(BaseException):
    """A fuzzed command line got past every check to real work (a generator mistake)."""


TRIPWIRES = [
    "advsec.experiments.demo.run_demo",
    "advsec.experiments.runner.run_experiment",
    "advsec.experiments.reproductions.run_reproduction",
    "advsec.cli.attack._sweep",
    "advsec.datasets.fetch._download",
]
_OPTION = re.compile(r"^  (?:(-\w), )?(--[\w-]+)(?: / (--[\w-]+))?(?: <(\w+)>)?(?:\s|$)")
_COMMAND = re.compile(r"^  ([a-z][\w-]*)(?:\s{2,}|$)")
_ARGUMENT = re.compile(r"^  (\w+) <(\w+)>")
_TRACEBACK_FILE = re.compile(r"traceback in (\S+\.log)")


def cli(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` with stdout and stderr captured."""
    from advsec.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def discover_commands() -> dict[tuple[str, ...], dict[str, Any]]:
    """Every leaf command with its options (``(form, metavar, long name)`` for each spelling:
    ``-m``, ``--model``, ``--model=``, ``--unconstrained``) and its arguments, read from
    ``advsec ... --help``."""
    found: dict[tuple[str, ...], dict[str, Any]] = {}

    def walk(path: tuple[str, ...]) -> None:
        code, text, _ = cli([*path, "--help"])
        assert code == 0, f"advsec {' '.join(path)} --help exited {code}"
        section, options, commands, arguments = "", [], [], []
        for line in text.splitlines():
            if line and not line.startswith(" "):
                section = line.rstrip(":")
            elif section == "Options" and (m := _OPTION.match(line)):
                short, long, negation, metavar = m.groups()
                if long != "--help":
                    forms = [long] * 4 + [short] * 4 if short else [long] * 8
                    glued = [f"{long}="] if metavar else []  # --eps=0.1
                    options += [(form, metavar, long) for form in forms + glued]
                    options += [(negation, None, long)] * 4 if negation else []
            elif section == "Commands" and (m := _COMMAND.match(line)):
                commands.append(m.group(1))
            elif section == "Arguments" and (m := _ARGUMENT.match(line)):
                arguments.append(m.group(1))
        for c in commands:
            walk((*path, c))
        if path and not commands:
            found[path] = {"options": options, "arguments": arguments}

    walk(())
    assert len(found) >= 8 and ("attack",) in found and ("data", "info") in found, found
    return found


# paths relative to the CLI cases' working directory (see make_cli_files); none is usable for
# real work: models fail to load or hold no FeatureSpace, run directories are empty or broken
MODELS = ["nofs"] * 6 + ["missing/model", "dir", "nofs.json", "nofs.safetensors", "garbage",
                         "garbage.json", ".", "/", "plain.txt"]
DIRS = ["dir", "missing", "plain.txt", ".", "tables"]
FILES = ["tables/good.csv", "tables/bad.csv", "schema.toml", "plain.txt", "missing.csv", "dir",
         "garbage.toml", "tables/good.parquet"]
OUTS = ["out-new", "dir", "plain.txt", "missing/deeper/out"]
CONFIGS = ["missing.toml", "dir", "plain.txt", "bad.toml", "unknown.toml", "empty.toml",
           "garbage.toml", *[str(REPO / "examples" / n) for n in EXAMPLE_TEXTS]]
RUN_DIRS = ["missing-run", "dir", "plain.txt", "run-empty", "run-broken", "."]
STUDIES = ["kdd99-adversarial-training", "KDD99_adversarial_training", "nope", ""]
CLI_TEXTS = [t for t in TEXTS if "\x00" not in t]  # a shell cannot pass NUL in an argument
#: appended last (the last value of an option wins): a check that must fail before real work
POISON = {("demo",): ["--out", "plain.txt"], ("run",): ["--out", "plain.txt"],
          ("reproduce",): ["--out", "plain.txt"]}


def make_cli_files(folder: Path, saved: dict[str, Any]) -> None:
    (folder / "dir").mkdir()
    (folder / "plain.txt").write_text("not a model, not a table\n")
    (folder / "garbage.json").write_bytes(b"\xff\xfe{not json")
    (folder / "garbage.safetensors").write_bytes(b"\x00" * 16)
    (folder / "garbage.toml").write_bytes(b"\x80\x81[[[")
    for suffix in (".json", ".safetensors"):
        (folder / f"nofs{suffix}").write_bytes((saved["folder"] / f"nofs{suffix}").read_bytes())
    (folder / "tables").mkdir()
    rows = [[str(i % 4), f"{i * 0.25:.2f}", "tcp" if i % 3 else "udp",
             "benign" if i % 2 else "attack"] for i in range(12)]
    good = "a,b,c,label\n" + "".join(",".join(r) + "\n" for r in rows)
    (folder / "tables" / "good.csv").write_text(good)
    (folder / "tables" / "bad.csv").write_text(good + "1,2\n")
    (folder / "tables" / "good.parquet").write_bytes(parquet_bytes(["a", "b", "c", "label"],
                                                                   rows))
    (folder / "schema.toml").write_text(SMALL_SCHEMAS[0])
    (folder / "bad.toml").write_text("[experiment\nname = 1\n")
    (folder / "unknown.toml").write_text("[experiment]\nnmae = 'x'\n")
    (folder / "empty.toml").write_text("")
    (folder / "run-empty" / "combos").mkdir(parents=True)
    (folder / "run-broken" / "combos" / "s0__mlp__none").mkdir(parents=True)
    (folder / "run-broken" / "combos" / "s0__mlp__none" / "DONE").write_text("")
    for name in ("data-home", "cache", "tmp"):
        (folder / name).mkdir()


def cli_strategy(commands: dict[tuple[str, ...], dict[str, Any]]) -> st.SearchStrategy[Any]:
    """argv lists: a command, a few of its options with values (typed by the help's metavar,
    or from a pool per option name), now and then a stray token, its arguments, the poison."""
    from advsec.attacks.registry import ATTACKS
    from advsec.datasets import registered
    from advsec.datasets.fetch import SOURCES

    text = CLI_TEXTS[:80]
    by_name = {
        "--model": MODELS, "--root": DIRS, "--data-root": DIRS, "--cache-dir": DIRS,
        "--out": OUTS, "--schema": FILES, "--test": FILES,
        "--attack": [*ATTACKS, "PGD", "apgd_margin", "nope", *text[:10]],
        "--dataset": [*registered(), "nope", *text[:10]],
        "--norm": ["linf", "l2", "l1", ""], "--split": ["test", "train", "all"],
        "--eps": ["0.1", "0,0.1", "0.01,0.05", "-1", "nan", "x", "", ",", "1e9", "0,,1"],
        "--format": ["csv", "parquet", "json", ""],
        "--scheme": ["binary", "category", "attack", "5class", ""],
        "--device": ["cpu", "auto", "cuda", "cuda:7", "tpu", ""],
        "--hidden": ["64,32", "8", "0", "-1,4", "x", "", ","],
        "--label-column": ["label", "a", "nope", *text[:10]],
        "--benign-label": ["benign", "attack", "nope", "", *text[:10]],
    }
    by_metavar = {
        "int": [str(v) for v in INTS[:20]] + ["x", "", "1.5", "99999999999999999999", "-0"],
        "float": [repr(v) for v in FLOATS[:20]] + ["x", "", "1e400", "-1"],
        "str": text, "path": FILES,
    }
    fetchable = {name for name, src in SOURCES.items() if src.fetchable}
    positional = {"config": CONFIGS, "run_dir": RUN_DIRS, "study": [*STUDIES, *text[:10]],
                  "name": [*registered(), "synthetic", "synthetic", "tables/good.csv",
                           "tables/good.csv", "nope", *FILES, *text[:10]]}
    fetch_names = [*sorted(set(SOURCES) - fetchable), "nope", ""]
    junk = [None] * 16 + ["--bogus", "-x", "--", "-", "--help", "-h", "--version", "x",
                          "--model", "--eps=", "--seed", *text[:5]]
    root_cases = [[], ["data"], ["--version"], ["-h"], ["nope"], ["-v"], ["--bogus", "demo"]]
    shapes = variants(command=sorted(commands), prefix=[[]] * 3 + [["-v"], ["--verbose"]],
                      junk=junk, model=MODELS)
    pools = {path: [positional.get(a, text) if path != ("data", "fetch") else fetch_names
                    for a in spec["arguments"]] for path, spec in commands.items()}

    @st.composite
    def argv(draw: Callable[[Any], Any]) -> list[str]:
        if draw(st.sampled_from([False] * 30 + [True])):
            return draw(st.sampled_from(root_cases))
        shape = draw(shapes)
        path = shape["command"]
        spec = commands[path]
        tokens: list[str] = []
        for form, metavar, long in draw(st.lists(st.sampled_from(spec["options"]), max_size=4)
                                        if spec["options"] else st.just([])):
            if metavar is None:
                tokens.append(form)
                continue
            value = draw(st.sampled_from(by_name.get(long, by_metavar.get(metavar, text))))
            tokens += [form + value] if form.endswith("=") else [form, value]
        stray = [shape["junk"]] if shape["junk"] is not None else []
        for pool in pools[path]:
            if not draw(st.sampled_from(rarely(16))):  # else the argument is left out
                stray.append(draw(st.sampled_from(pool)))
        for token in stray:
            tokens.insert(draw(st.integers(0, len(tokens))), token)
        tail = POISON.get(path, [])
        if path == ("attack",):
            tail = ["--model", shape["model"]]
        return [*shape["prefix"], *path, *tokens, *tail]

    return argv()


def check_cli(argv: list[str]) -> int:
    """``main(argv)`` returns 0 or 2 and prints no traceback; on 2 the last line of stderr is
    the one-line ``...: error: ...`` message."""
    try:
        code, out, err = cli(argv)
    except ReachedRealWork as exc:
        raise AssertionError(f"{argv} got to real work ({exc}): make the generator stricter") \
            from None
    detail = out + err
    log = _TRACEBACK_FILE.search(err)
    if log and Path(log.group(1)).is_file():  # an internal error (exit 1) wrote its traceback
        detail += "".join(Path(log.group(1)).read_text().splitlines(keepends=True)[-6:])
    assert "Traceback" not in out + err and code in (0, 2), f"{argv}: exit {code}\n{detail}"
    if code == 2:
        lines = err.rstrip("\n").splitlines()
        assert lines and ": error: " in lines[-1], f"{argv}: no error line on stderr: {err!r}"
    return code


@contextlib.contextmanager
def cli_sandbox(folder: Path, saved: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
    """CLI cases run in ``folder`` (with the pool files), with no real data reachable,
    temporary files inside ``folder``, the expensive entry points replaced by tripwires, and
    the logging setup (``advsec -v`` changes it) restored afterwards."""
    import advsec.experiments.reproductions  # noqa: F401  (loaded, so its tripwire can be set)

    make_cli_files(folder, saved)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("ADVSEC_DATA", str(folder / "data-home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder / "cache"))
    monkeypatch.delenv("ADVSEC_PARSE_CACHE", raising=False)
    monkeypatch.delenv("ADVSEC_DEBUG", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(folder / "tmp"))

    def tripwire(name: str) -> Callable[..., Any]:
        def fire(*args: Any, **kwargs: Any) -> Any:
            raise ReachedRealWork(name)
        return fire

    for target in TRIPWIRES:
        monkeypatch.setattr(target, tripwire(target))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    advsec_level = logging.getLogger("advsec").level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("advsec").setLevel(advsec_level)


def test_fuzz_command_lines(scratch, saved_detector, monkeypatch):
    with cli_sandbox(scratch, saved_detector, monkeypatch):
        argv_strategy = cli_strategy(discover_commands())

        @fuzz_settings("cli")
        @given(argv_strategy)
        def fuzz(argv):
            CALLS["cli"] += 1
            check_cli(argv)

        run_counted("cli", fuzz)
