"""KDD Cup 1999 (UCI KDD Archive): 41 connection features, 22 training attack types.

Files (headerless CSV, plain or .gz, label with a trailing dot): ``kddcup.data_10_percent``
(494,021 rows; also accepted as ``kddcup.data_10_percent_corrected``), the full ``kddcup.data``
(4,898,431 rows) and the labelled test set ``corrected`` (311,029 rows, 17 attack types absent
from training).

Default split: the 10 % file is the training split and ``corrected`` the test split when it is
found (``test="auto"``); without it (or with ``test="split"``) a seeded split stratified on the
raw attack name holds out ``test_size`` of the training file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from advsec.datasets._checks import tag_source
from advsec.datasets._common import builtin_schema, check_scheme, drop_duplicate_rows, finish
from advsec.datasets._kdd import ATTACK, KDD_FEATURES, KDD_SCHEMES, kdd_labels, read_kdd_file
from advsec.datasets._readers import find_file
from advsec.datasets._split import split_table
from advsec.datasets.base import Dataset, register
from advsec.datasets.fetch import hint
from advsec.errors import ConfigError, DataError

__all__ = ["TRAIN_FILES", "load_kdd99"]

log = logging.getLogger(__name__)

NAME = "kdd99"
#: Training files by option value; each entry lists accepted file names.
TRAIN_FILES: dict[str, tuple[str, ...]] = {
    "10_percent": ("kddcup.data_10_percent", "kddcup.data_10_percent_corrected"),
    "full": ("kddcup.data", "kddcup.data.corrected"),
}
TEST_FILES = ("corrected",)


@register(
    NAME,
    description="KDD Cup 1999 (UCI): 41 connection features; 10% or full training set, "
    "labelled test set 'corrected'",
    files=(*TRAIN_FILES["10_percent"][:1], *TEST_FILES, *TRAIN_FILES["full"][:1]),
    url="https://kdd.ics.uci.edu/databases/kddcup99/kddcup99.html",
)
def load_kdd99(
    *,
    root: str | Path | None = None,
    scheme: str = "binary",
    seed: int = 0,
    train: str = "10_percent",
    test: str = "auto",
    test_size: float = 0.3,
    drop_duplicates: bool = False,
    category_map: Mapping[str, str] | None = None,
    unknown_attacks: str = "drop",
    schema_file: str | Path | None = None,
    **unused: object,
) -> Dataset:
    """Load KDD Cup 1999.

    Args:
        root: folder with the files (else ``$ADVSEC_DATA`` and the fetch cache are searched).
        scheme: ``"binary"`` (normal/attack), ``"category"`` (normal, dos, probe, r2l, u2r) or
            ``"attack"`` (raw attack names).
        seed: seed of the stratified split (used only when splitting).
        train: ``"10_percent"`` (default) or ``"full"`` (``kddcup.data``).
        test: ``"auto"`` (``corrected`` when present, else a split), ``"corrected"`` (required)
            or ``"split"``.
        test_size: held-out share when splitting, in (0, 1).
        drop_duplicates: drop exact duplicate rows (features and attack name) of each file,
            before any split (the 10 % file has 348,435 of them, 145,586 rows remain).
        category_map: changes to the attack-name -> category table (``category`` scheme).
        unknown_attacks: attack names outside that table: ``"drop"`` (with a note), ``"error"``
            or ``"keep"`` (class ``"unknown"``).
        schema_file: TOML/YAML file changing the built-in schema (``schemas/kdd.toml``).

    Returns:
        A :class:`Dataset` whose tables hold the 41 features, ``label`` (scheme labels) and
        ``attack`` (raw attack name without the trailing dot).
    """
    check_scheme(NAME, scheme, KDD_SCHEMES)
    if train not in TRAIN_FILES:
        raise ConfigError(f"{NAME}: train must be one of {sorted(TRAIN_FILES)}, got {train!r}")
    if test not in ("auto", "corrected", "split"):
        raise ConfigError(f"{NAME}: test must be 'auto', 'corrected' or 'split', got {test!r}")
    if unused:
        log.debug("%s: ignoring options %s", NAME, sorted(unused))
    notes: list[str] = []
    train_path = find_file(NAME, TRAIN_FILES[train], root=root, hint=hint(NAME))
    test_path: Path | None = None
    if test != "split":
        try:
            test_path = find_file(NAME, TEST_FILES, root=root, hint=hint(NAME))
        except DataError:
            if test == "corrected":
                raise
            notes.append("test file 'corrected' not found: holding out a stratified split")
            log.warning("%s: %s", NAME, notes[-1])
    cols = [*KDD_FEATURES, ATTACK]
    train_df = tag_source(read_kdd_file(train_path), train_path)
    notes.append(f"train file {train_path}")
    if drop_duplicates:
        train_df = drop_duplicate_rows(train_df, cols, split=train_path.name, notes=notes)
    if test_path is not None:
        test_df = tag_source(read_kdd_file(test_path), test_path)
        notes.append(f"test file {test_path}")
        if drop_duplicates:
            test_df = drop_duplicate_rows(test_df, cols, split=test_path.name, notes=notes)
    else:
        train_df, test_df = split_table(train_df, train_df[ATTACK].to_numpy(),
                                        test_size=test_size, seed=seed)
        notes.append(f"split {train_path.name}: test_size={test_size}, seed={seed}, "
                     f"stratified on the attack name")
    train_df, test_df, classes = kdd_labels(
        train_df, test_df, dataset=NAME, scheme=scheme, category_map=category_map,
        unknown_attacks=unknown_attacks, notes=notes,
    )
    schema = builtin_schema("kdd", benign_label=classes[0], schema_file=schema_file,
                            columns=list(train_df.columns))
    return finish(name=NAME, train=train_df, test=test_df, schema=schema, scheme=scheme,
                  classes=classes, notes=notes, extra=(ATTACK,), source=str(train_path))


