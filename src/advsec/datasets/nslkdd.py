"""NSL-KDD (Canadian Institute for Cybersecurity, UNB): KDD'99 without duplicates, by difficulty.

Files (headerless CSV, plain or .gz, 43 fields: 41 features, label without a dot, difficulty):
``KDDTrain+.txt`` (125,973 rows), ``KDDTrain+_20Percent.txt`` (25,192), ``KDDTest+.txt``
(22,544) and ``KDDTest-21.txt`` (11,850, the records fewer than all 21 learners got right).
The published train/test partition is used as is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from advsec.datasets._checks import tag_source
from advsec.datasets._common import builtin_schema, check_scheme, drop_duplicate_rows, finish
from advsec.datasets._kdd import ATTACK, KDD_FEATURES, KDD_SCHEMES, kdd_labels, read_kdd_file
from advsec.datasets._readers import find_file
from advsec.datasets.base import Dataset, register
from advsec.datasets.fetch import hint
from advsec.errors import ConfigError

__all__ = ["DIFFICULTY", "TEST_FILES", "TRAIN_FILES", "load_nsl_kdd"]

log = logging.getLogger(__name__)

NAME = "nsl-kdd"
DIFFICULTY = "difficulty"
#: Accepted ``train`` values (file stems) and their short aliases.
TRAIN_FILES = {"KDDTrain+": "KDDTrain+", "KDDTrain+_20Percent": "KDDTrain+_20Percent",
               "full": "KDDTrain+", "20percent": "KDDTrain+_20Percent"}
#: Accepted ``test`` values (file stems) and their short aliases.
TEST_FILES = {"KDDTest+": "KDDTest+", "KDDTest-21": "KDDTest-21", "plus": "KDDTest+",
              "21": "KDDTest-21"}


@register(
    NAME,
    description="NSL-KDD (CIC/UNB): KDD'99 features without duplicates; KDDTrain+/KDDTest+",
    files=("KDDTrain+.txt", "KDDTrain+_20Percent.txt", "KDDTest+.txt", "KDDTest-21.txt"),
    url="https://www.unb.ca/cic/datasets/nsl.html",
)
def load_nsl_kdd(
    *,
    root: str | Path | None = None,
    scheme: str = "binary",
    seed: int = 0,
    train: str = "KDDTrain+",
    test: str = "KDDTest+",
    drop_duplicates: bool = False,
    category_map: Mapping[str, str] | None = None,
    unknown_attacks: str = "drop",
    schema_file: str | Path | None = None,
    **unused: object,
) -> Dataset:
    """Load NSL-KDD.

    Args:
        root: folder with the files (else ``$ADVSEC_DATA`` and the fetch cache are searched).
        scheme: ``"binary"``, ``"category"`` or ``"attack"`` (as for ``kdd99``).
        seed: unused (the published partition is used); accepted for a uniform interface.
        train: ``"KDDTrain+"`` (default, alias ``"full"``) or ``"KDDTrain+_20Percent"``
            (``"20percent"``).
        test: ``"KDDTest+"`` (default, alias ``"plus"``) or ``"KDDTest-21"`` (``"21"``).
        drop_duplicates: drop exact duplicate rows in each split (NSL-KDD has none).
        category_map, unknown_attacks: as for ``kdd99``.
        schema_file: TOML/YAML file changing the built-in schema (``schemas/kdd.toml``).

    Returns:
        A :class:`Dataset` with the 41 features, ``label``, ``attack`` (raw attack name) and
        ``difficulty`` (0-21; not a feature).
    """
    check_scheme(NAME, scheme, KDD_SCHEMES)
    if train not in TRAIN_FILES:
        raise ConfigError(f"{NAME}: train must be one of {sorted(TRAIN_FILES)}, got {train!r}")
    if test not in TEST_FILES:
        raise ConfigError(f"{NAME}: test must be one of {sorted(TEST_FILES)}, got {test!r}")
    if unused:
        log.debug("%s: ignoring options %s (seed=%s)", NAME, sorted(unused), seed)
    notes: list[str] = []
    frames, paths = [], []
    for stem in (TRAIN_FILES[train], TEST_FILES[test]):
        path = find_file(NAME, (f"{stem}.txt", stem), root=root, hint=hint(NAME))
        frames.append(tag_source(read_kdd_file(path, extra=(DIFFICULTY,)), path))
        paths.append(path)
        notes.append(f"file {path}")
    train_df, test_df = frames
    if drop_duplicates:
        cols = [*KDD_FEATURES, ATTACK]
        train_df = drop_duplicate_rows(train_df, cols, split="train", notes=notes)
        test_df = drop_duplicate_rows(test_df, cols, split="test", notes=notes)
    train_df, test_df, classes = kdd_labels(
        train_df, test_df, dataset=NAME, scheme=scheme, category_map=category_map,
        unknown_attacks=unknown_attacks, notes=notes,
    )
    schema = builtin_schema("kdd", benign_label=classes[0], schema_file=schema_file,
                            columns=list(train_df.columns))
    return finish(name=NAME, train=train_df, test=test_df, schema=schema, scheme=scheme,
                  classes=classes, notes=notes, extra=(ATTACK, DIFFICULTY), source=str(paths[0]))
