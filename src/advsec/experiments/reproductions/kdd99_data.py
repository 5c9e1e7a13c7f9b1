"""The KDD Cup 99 data exactly as the adversarial-training study prepared it.

Protocol (rows in file order throughout):

1. the 10 % file ``kddcup.data_10_percent`` (494,021 rows);
2. drop exact duplicate rows (41 features + label), keeping the first: 145,586 rows;
3. map attack names to dos / probe / r2l / u2r and drop u2r: 145,534 rows, 4 classes
   (dos, normal, probe, r2l: the alphabetical order of the original's one-hot columns);
4. keep the 34 numeric features (drop protocol_type, service, flag, land, logged_in,
   is_host_login, is_guest_login);
5. standardise every feature over all rows (zero mean, unit variance; a constant feature keeps
   scale 1, as scikit-learn's StandardScaler does);
6. ``np.random.seed(10)`` then scikit-learn's ``train_test_split(test_size=0.2)`` with no
   ``random_state`` (NumPy's global RNG): test set dos 10,889, normal 17,568, probe 441,
   r2l 209.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from advsec.errors import DataError

__all__ = [
    "CLASSES",
    "DROPPED_FEATURES",
    "EXPECTED_TEST_COUNTS",
    "FILE_NAMES",
    "NUMERIC_FEATURES",
    "FaithfulData",
    "find_kdd99_file",
    "load_faithful_data",
    "stratified_subset",
]

log = logging.getLogger(__name__)

#: Accepted names of the 10 % file (plain or .gz).
FILE_NAMES = ("kddcup.data_10_percent", "kddcup.data_10_percent_corrected")
#: The 4 classes in the original's one-hot order; ``normal`` is benign.
CLASSES = ("dos", "normal", "probe", "r2l")
BENIGN = "normal"
#: Symbolic and 0/1 features the original dropped.
DROPPED_FEATURES = ("protocol_type", "service", "flag", "land", "logged_in", "is_host_login",
                    "is_guest_login")
#: Test-set class counts of the original split.
EXPECTED_TEST_COUNTS = {"dos": 10_889, "normal": 17_568, "probe": 441, "r2l": 209}


def _kdd_features() -> tuple[str, ...]:
    """The 41 KDD feature names in file order."""
    from advsec.datasets._kdd import KDD_FEATURES

    return KDD_FEATURES


#: The 34 numeric features the original kept, in file order.
NUMERIC_FEATURES: tuple[str, ...] = tuple(f for f in _kdd_features() if f not in DROPPED_FEATURES)


@dataclass
class FaithfulData:
    """The prepared data set.

    Attributes:
        raw: the 34 numeric features in raw units, rows in file order after de-duplication and
            u2r removal, ``(N, 34)`` DataFrame.
        labels: ``(N,)`` category names (``dos``, ``normal``, ``probe``, ``r2l``).
        y: ``(N,)`` int64 class indices into :data:`CLASSES`.
        x: ``(N, 34)`` float32 standardised features (statistics over all N rows).
        mean, scale: ``(34,)`` float64 standardisation statistics (raw = x * scale + mean).
        train_idx, test_idx: row indices of the 80/20 split, in the order
            ``train_test_split`` returns them.
        path: the file read.
        notes: what was done, with row counts.
    """

    raw: pd.DataFrame
    labels: np.ndarray
    y: np.ndarray
    x: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    train_idx: np.ndarray
    test_idx: np.ndarray
    path: Path
    notes: list[str] = field(default_factory=list)

    def test_counts(self) -> dict[str, int]:
        """Test-set rows per class."""
        counts = np.bincount(self.y[self.test_idx], minlength=len(CLASSES))
        return {c: int(n) for c, n in zip(CLASSES, counts, strict=True)}

    def train_counts(self) -> dict[str, int]:
        """Training-set rows per class."""
        counts = np.bincount(self.y[self.train_idx], minlength=len(CLASSES))
        return {c: int(n) for c, n in zip(CLASSES, counts, strict=True)}

    @property
    def split_matches(self) -> bool:
        """True when the test-set class counts equal the original's."""
        return self.test_counts() == EXPECTED_TEST_COUNTS


def default_roots() -> list[Path]:
    """Where the file is looked for without ``--root``: ``$ADVSEC_DATA`` (and its ``kdd99``
    folder), then ``../shared/datasets/kdd99`` relative to the working directory."""
    roots: list[Path] = []
    env = os.environ.get("ADVSEC_DATA")
    if env:
        roots += [Path(env).expanduser(), Path(env).expanduser() / "kdd99"]
    roots.append(Path.cwd().parent / "shared" / "datasets" / "kdd99")
    return roots


def find_kdd99_file(root: str | Path | None = None) -> Path:
    """The 10 % file (plain or .gz) in ``root`` (or ``root/kdd99``), else in the default roots.

    Raises a one-line :class:`DataError` naming the expected file and the folders searched.
    """
    if root is not None:
        base = Path(root).expanduser()
        if base.is_file():
            return base
        dirs = [base, base / "kdd99"]
    else:
        dirs = default_roots()
    for d in dirs:
        for name in FILE_NAMES:
            for cand in (d / f"{name}.gz", d / name):
                if cand.is_file():
                    return cand
    where = ", ".join(str(d) for d in dirs)
    tip = "" if root is not None else " (pass --root PATH or set $ADVSEC_DATA)"
    raise DataError(f"kdd99: expected the KDD Cup 99 10% file {FILE_NAMES[0]}.gz (or "
                    f"{FILE_NAMES[0]}) in {where}{tip}")


def load_faithful_data(root: str | Path | None = None, *, split_seed: int = 10) -> FaithfulData:
    """Read the 10 % file and prepare it as the original study did (see the module docstring).

    Args:
        root: folder holding the file (or the file itself); default: :func:`default_roots`.
        split_seed: the seed given to ``np.random.seed`` before the split (10 in the original).
            NumPy's global RNG is restored afterwards.
    """
    from advsec.datasets._kdd import ATTACK, KDD_FEATURES, attack_categories, read_kdd_file

    path = find_kdd99_file(root)
    df = read_kdd_file(path)
    notes = [f"read {path} ({len(df):,} rows)"]
    df = df.drop_duplicates(subset=[*KDD_FEATURES, ATTACK], keep="first").reset_index(drop=True)
    notes.append(f"after dropping exact duplicates (41 features + label, keep first): "
                 f"{len(df):,} rows")
    table = attack_categories()
    names = df[ATTACK].astype(str)
    cats = names.map(table)
    if cats.isna().any():
        unknown = sorted(set(names[cats.isna()]))
        raise DataError(f"{path}: attack name(s) outside the category table: {unknown}")
    keep = (cats != "u2r").to_numpy()
    notes.append(f"dropped {int((~keep).sum()):,} u2r rows: {len(df) - int((~keep).sum()):,} "
                 f"rows, classes {', '.join(CLASSES)}")
    df = df.loc[keep].reset_index(drop=True)
    labels = cats[keep].to_numpy(dtype=str)
    raw = df[list(NUMERIC_FEATURES)].astype(np.float64)
    values = raw.to_numpy()
    mean = values.mean(axis=0)
    scale = values.std(axis=0)
    constant = [f for f, s in zip(NUMERIC_FEATURES, scale, strict=True) if s == 0]
    scale = np.where(scale == 0, 1.0, scale)
    x = ((values - mean) / scale).astype(np.float32)
    notes.append(f"kept the {len(NUMERIC_FEATURES)} numeric features; standardised over all "
                 f"rows (population std; constant feature(s) {', '.join(constant) or 'none'} "
                 f"keep scale 1)")
    y = np.searchsorted(np.array(CLASSES), labels).astype(np.int64)
    state = np.random.get_state()
    try:
        np.random.seed(split_seed)
        train_idx, test_idx = train_test_split(np.arange(len(raw)), test_size=0.2)
    finally:
        np.random.set_state(state)
    data = FaithfulData(raw=raw, labels=labels, y=y, x=x, mean=mean, scale=scale,
                        train_idx=np.asarray(train_idx), test_idx=np.asarray(test_idx),
                        path=path, notes=notes)
    counts = data.test_counts()
    notes.append(f"np.random.seed({split_seed}); train_test_split(test_size=0.2): "
                 f"{len(train_idx):,} train / {len(test_idx):,} test rows; test "
                 + ", ".join(f"{k} {v:,}" for k, v in counts.items())
                 + (" (matches the original)" if data.split_matches else
                    f" (differs from the original {EXPECTED_TEST_COUNTS})"))
    if not data.split_matches:
        log.warning("kdd99: the test split differs from the original: %s", counts)
    return data


def stratified_subset(y: np.ndarray, n: int, *, seed: int) -> np.ndarray:
    """Positions of a seeded stratified sample of about ``n`` of ``y``'s rows (sorted).

    Every class keeps its share (at least one row when it has any); all rows when
    ``n >= len(y)``.
    """
    if n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = min(len(idx), max(1, round(n * len(idx) / len(y))))
        out.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(out))
