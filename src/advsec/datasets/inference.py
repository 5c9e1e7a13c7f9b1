"""Schema inference: a :class:`~advsec.features.schema.FeatureSchema` for a labelled table.

:func:`infer_schema` looks at the training rows only (a table's test rows, ``also``, only widen
the bounds and the id check, see below). Every column but the label becomes a feature or is left
out with a note (``column 'x' left out: <why>``), in this order:

- **nested values**: a Parquet list, struct, map or union column (the reader leaves it out and
  names it in ``df.attrs``), or a column of Python lists, dicts or arrays;
- **empty**: every value is empty;
- **a missing flag**: a boolean column with a missing value is an error naming the row (as
  loading it is: a binary feature needs 0 or 1);
- **numbers with a stray word** (a text column whose values are at least 90 % numbers): an error
  naming the row; a text column that holds numbers only is read as numbers;
- **integers beyond 2**53**: an integer column (``int64``, ``uint64``) with a value whose
  magnitude exceeds 2**53, which float64 (every feature is computed in it) does not hold exactly:
  ``uint64`` values near 2**64 collapse onto a few floats;
- **constant**: a single distinct value in the training rows (nothing to learn from);
- **a range float64 cannot hold**: ``max - min`` (training and test rows) overflows float64
  (values near +-1.7e308); the feature space's scaling would be infinite;
- **row id**: a whole-number column whose training values are all distinct and either strictly
  monotone (increasing or decreasing: a row id, a sequence number) or a permutation-like set:
  the distinct integers cover at least 90 % of ``min..max`` (a shuffled row id). The cover is
  measured on the training rows, and on training and test rows together when those are all
  distinct too (a split of a shuffled id holds 70 % of it);
- **high-cardinality text**: more than ``max_categories`` distinct values (addresses, timestamps,
  free text; a text column with all distinct values, an id, is one of them);
- **label-like**: a column that alone predicts the binary label (benign label vs anything else)
  with a balanced accuracy of at least ``label_like`` (default 0.99) is a second label or a leak
  (UNSW-NB15's ``attack_cat``), not a feature. Measured by 2-fold cross-fitting: the training rows
  are split in two halves stratified on the label (a generator seeded with 0); a predictor is fit
  on one half and scored on the other, both ways, and the two balanced accuracies averaged. For
  text, boolean and whole-number columns with at most ``max_categories`` distinct values the
  predictor is the per-value majority label (ties and values unseen in the fitting half: the
  fitting half's majority); for other numeric columns, the best single threshold, either
  direction (a sort-based search over the fitting half; the threshold lies midway between the
  two values it separates, on an asinh scale so that a heavy tail does not drag it). Tables
  with fewer than 10 rows of either class skip this rule (a chance separation is too likely);
- otherwise a feature. Numeric columns: ``binary`` if every value is 0 or 1, ``integer`` if every
  value is whole, ``continuous`` otherwise. Lower bound: the minimum for integer columns whose
  minimum is at least 1 (a count that is never 0, e.g. UNSW-NB15's ``ct_*`` counts), else 0 when
  no value is negative; upper bound 1 for continuous columns within [0, 1] (shares); ``log1p``
  for non-negative columns whose maximum exceeds 100 times (median + 1) (heavy tails); all
  mutable. Bounds (and ``binary``) are taken over the training and test rows, so that inference
  never rejects a test record. Text columns: ``categorical`` and immutable.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from advsec.datasets._checks import EMPTY_FLAG, SOURCE_COLUMNS, first_inexact, row_name
from advsec.datasets._text import shown
from advsec.errors import ConfigError, DataError
from advsec.features.schema import Feature, FeatureKind, FeatureSchema

__all__ = ["ID_COVER", "LABEL_LIKE", "MIN_CLASS_ROWS", "NESTED", "cross_fit_folds",
           "describe_features", "infer_schema", "label_score"]

#: default ``label_like``: a column predicting the label this well alone is left out
LABEL_LIKE = 0.99
#: distinct integers covering this share of ``min..max`` are a (shuffled) row id
ID_COVER = 0.9
#: the label-like rule needs this many training rows of each class
MIN_CLASS_ROWS = 10
#: ``df.attrs`` key: ``{column: kind}`` of the nested columns a reader left out
NESTED = "nested_columns"
_FOLD_SEED = 0


def infer_schema(
    df: pd.DataFrame,
    *,
    label_column: str,
    benign_label: str,
    max_categories: int = 100,
    notes: list[str] | None = None,
    also: pd.DataFrame | None = None,
    label_like: float | None = LABEL_LIKE,
) -> FeatureSchema:
    """A :class:`FeatureSchema` for every usable column of ``df`` (``(N, C)``, the training rows)
    but the label, by the module's rules; inferred bounds also hold for the rows of ``also`` (the
    test split), where given. Notes on left-out columns are appended to ``notes``.

    Args:
        label_like: the balanced accuracy (in (0.5, 1]) from which a column that alone predicts
            benign vs attack is left out; ``None`` turns the rule off.
    """
    if label_like is not None and (isinstance(label_like, bool) or not isinstance(
            label_like, (int, float)) or not 0.5 < label_like <= 1.0):
        raise ConfigError(f"label_like: expected a balanced accuracy in (0.5, 1] or None, got "
                          f"{label_like!r}")
    notes = notes if notes is not None else []
    first_note = len(notes)
    where = df.attrs.get("path", "table")
    is_attack = (df[label_column].astype("string") != str(benign_label)).fillna(True).to_numpy(
        dtype=bool)
    folds = cross_fit_folds(is_attack) if label_like is not None else None

    def leaks(name: str, values: np.ndarray, *, by_value: bool) -> bool:
        if folds is None or label_like is None:
            return False
        score = label_score(values, is_attack, folds, by_value=by_value)
        if score < label_like:
            return False
        notes.append(f"column {name!r} left out: label-like (alone it predicts benign vs attack "
                     f"with balanced accuracy {score:.4f}, 2-fold cross-fitted; "
                     f"label_like={label_like:g})")
        return True

    feats: list[Feature] = []
    for name, kind in dict(df.attrs.get(NESTED, {})).items():
        if name != label_column:
            notes.append(f"column {name!r} left out: nested values ({kind})")
    for name in df.columns:
        if name == label_column or name in SOURCE_COLUMNS:
            continue
        col = df[name]
        if col.isna().all():
            notes.append(f"column {name!r} left out: every value is empty")
            continue
        kind = _nested_values(col)
        if kind is not None:
            notes.append(f"column {name!r} left out: nested values ({kind})")
            continue
        if pd.api.types.is_bool_dtype(col):
            if col.isna().any():
                pos = int(np.flatnonzero(col.isna().to_numpy())[0])
                raise DataError(f"{row_name(df, pos, where)}, column {name!r}: {EMPTY_FLAG}")
            flags = col.to_numpy(dtype=bool)
            if not _constant(name, col, notes) and not leaks(name, flags, by_value=True):
                feats.append(Feature(name, FeatureKind.BINARY))
            continue
        if not pd.api.types.is_numeric_dtype(col):
            text = col.astype("string")
            numbers = pd.to_numeric(text, errors="coerce")
            non_null = int(text.notna().sum())
            bad = (numbers.isna() & text.notna()).to_numpy(dtype=bool)
            if non_null and not bad.any() and not text.isna().any():
                col = numbers  # numbers read as text (a word elsewhere, e.g. in the test split)
            elif non_null and int(numbers.notna().sum()) >= 0.9 * non_null:
                pos = int(np.flatnonzero(bad)[0]) if bad.any() else int(
                    np.flatnonzero(text.isna().to_numpy())[0])
                raise DataError(f"{row_name(df, pos, where)}, column {name!r}: expected a "
                                f"number, got {shown(df[name].iloc[pos])}")
        if pd.api.types.is_numeric_dtype(col):
            if col.isna().any():
                pos = int(np.flatnonzero(col.isna().to_numpy())[0])
                raise DataError(f"{row_name(df, pos, where)}, column {name!r}: empty value, "
                                f"expected a number (blank or NaN)")
            inexact = first_inexact(col)
            if inexact is not None:
                notes.append(f"column {name!r} left out: whole numbers beyond 2**53 "
                             f"({col.iloc[inexact]} at {row_name(df, inexact, where)}), which "
                             f"float64 does not hold exactly")
                continue
            values = col.to_numpy(dtype=np.float64)
            if not np.isfinite(values).all():
                pos = int(np.flatnonzero(~np.isfinite(values))[0])
                raise DataError(f"{row_name(df, pos, where)}, column {name!r}: got "
                                f"{values[pos]}; expected a finite number")
            if _constant(name, col, notes):
                continue
            extra = np.array([])
            if also is not None and name in also.columns:
                extra = pd.to_numeric(also[name], errors="coerce").to_numpy(
                    dtype=np.float64, na_value=np.nan)
                extra = extra[np.isfinite(extra)]
            lo = min(float(values.min()), float(extra.min()) if extra.size else math.inf)
            hi = max(float(values.max()), float(extra.max()) if extra.size else -math.inf)
            if not math.isfinite(hi - lo):
                notes.append(f"column {name!r} left out: its range {lo:.3g} .. {hi:.3g} "
                             f"overflows float64 (upper - lower is not a finite number)")
                continue
            whole = bool(np.array_equal(np.floor(values), values))
            why = _row_id(values, extra) if whole else None
            if why is not None:
                notes.append(f"column {name!r} left out: a row id ({why})")
                continue
            few = whole and int(np.unique(values).size) <= max_categories
            if leaks(name, values, by_value=few):
                continue
            feats.append(_numeric_feature(name, values, extra))
            continue
        if _constant(name, text, notes):
            continue
        n_values = int(text.nunique(dropna=True))
        if n_values > max_categories:
            notes.append(f"column {name!r} left out: text with {n_values:,} distinct values "
                         f"(more than max_categories={max_categories})")
            continue
        if leaks(name, text.to_numpy(dtype=object, na_value=None), by_value=True):
            continue
        feats.append(Feature(name, FeatureKind.CATEGORICAL, mutable=False))
    if not feats:
        why = "; ".join(notes[first_note:])
        raise DataError(f"{where}: no usable feature columns besides {label_column!r}"
                        + (f" ({why})" if why else ""))
    return FeatureSchema(features=tuple(feats), label=label_column, benign_label=benign_label)


def _nested_values(col: pd.Series) -> str | None:
    """The kind of container (``list``, ``dict``, ...) held by the object column ``col``, or
    ``None`` when its values are scalars (a table built in Python rather than read from a
    file; :func:`~advsec.datasets.tabular.read_table` leaves nested Parquet columns out)."""
    if col.dtype != object or pd.api.types.infer_dtype(col, skipna=True) not in (
            "mixed", "mixed-integer"):
        return None
    found = next((v for v in col if isinstance(v, (list, tuple, dict, set, np.ndarray))), None)
    if found is None:
        return None
    return "list" if isinstance(found, (list, tuple, np.ndarray)) else type(found).__name__


def _constant(name: str, col: pd.Series, notes: list[str]) -> bool:
    if len(col) == 0 or int(col.nunique(dropna=False)) != 1:
        return False
    notes.append(f"column {name!r} left out: constant (every training row holds "
                 f"{shown(col.iloc[0])})")
    return True


def _row_id(values: np.ndarray, extra: np.ndarray) -> str | None:
    """Why whole numbers ``values`` ``(N,)`` are a row id (``extra``: the test rows), or None."""
    if values.size < 2 or np.unique(values).size != values.size:
        return None
    step = np.diff(values)
    if bool(np.all(step > 0)):
        return "strictly increasing integers"
    if bool(np.all(step < 0)):
        return "strictly decreasing integers"
    for rows in (values, np.concatenate([values, extra]) if extra.size else values):
        distinct = np.unique(rows)
        if distinct.size != rows.size:
            continue
        cover = distinct.size / (float(distinct[-1]) - float(distinct[0]) + 1.0)
        if cover >= ID_COVER:
            return (f"distinct integers covering {cover:.0%} of {distinct[0]:.0f}.."
                    f"{distinct[-1]:.0f}: a shuffled row id")
    return None


def cross_fit_folds(is_attack: np.ndarray, *, seed: int = _FOLD_SEED) -> np.ndarray | None:
    """``(N,)`` fold (0 or 1) of each row, the halves stratified on ``is_attack`` ``(N,)``
    (bool); ``None`` when either class has fewer than :data:`MIN_CLASS_ROWS` rows."""
    n_attack = int(is_attack.sum())
    if min(n_attack, is_attack.size - n_attack) < MIN_CLASS_ROWS:
        return None
    rng = np.random.default_rng(seed)
    folds = np.zeros(is_attack.size, dtype=np.int8)
    for cls in (False, True):
        members = rng.permutation(np.flatnonzero(is_attack == cls))
        folds[members[1::2]] = 1
    return folds


def label_score(values: np.ndarray, is_attack: np.ndarray, folds: np.ndarray, *,
                by_value: bool) -> float:
    """Balanced accuracy in [0, 1] of predicting ``is_attack`` ``(N,)`` from ``values`` ``(N,)``
    alone, fit on one fold of ``folds`` ``(N,)`` and scored on the other, averaged both ways.

    ``by_value``: the per-value majority label (any hashable values); else the best single
    threshold, either direction (float values)."""
    codes = pd.factorize(pd.Series(values), use_na_sentinel=False)[0] if by_value else None
    # asinh: monotone (the same cuts), and a midpoint that heavy tails do not drag to one side
    x = values if by_value else np.arcsinh(np.asarray(values, dtype=np.float64))
    scores = []
    for k in (0, 1):
        fit, score = folds == k, folds != k
        y_fit = is_attack[fit]
        if codes is not None:
            pred = _by_value(codes, y_fit, fit, score)
        else:
            pred = _by_threshold(x[fit], y_fit, x[score])
        y = is_attack[score]
        scores.append(0.5 * (float(pred[y].mean()) + float((~pred[~y]).mean())))
    return float(np.mean(scores))


def _by_value(codes: np.ndarray, y_fit: np.ndarray, fit: np.ndarray,
              score: np.ndarray) -> np.ndarray:
    n_codes = int(codes.max()) + 1
    attacks = np.bincount(codes[fit], weights=y_fit, minlength=n_codes)
    benign = np.bincount(codes[fit], minlength=n_codes) - attacks
    overall = bool(2 * int(y_fit.sum()) > y_fit.size)
    majority = np.where(attacks > benign, True, np.where(attacks < benign, False, overall))
    return np.asarray(majority[codes[score]], dtype=bool)


def _by_threshold(x_fit: np.ndarray, y_fit: np.ndarray, x_score: np.ndarray) -> np.ndarray:
    order = np.argsort(x_fit, kind="stable")
    xs, ys = x_fit[order], y_fit[order]
    n_attack = int(ys.sum())
    n_benign = ys.size - n_attack
    cuts = np.flatnonzero(xs[:-1] < xs[1:])  # split between sorted positions i and i + 1
    if cuts.size == 0:
        return np.full(x_score.size, 2 * n_attack > ys.size)
    attacks_below = np.cumsum(ys)[cuts]
    benign_below = np.cumsum(~ys)[cuts]
    above = 0.5 * ((n_attack - attacks_below) / n_attack + benign_below / n_benign)
    best = int(np.argmax(np.maximum(above, 1.0 - above)))
    low, high = xs[cuts[best]], xs[cuts[best] + 1]
    threshold = low + (high - low) / 2.0  # the midpoint between the two sides
    return x_score > threshold if above[best] >= 0.5 else x_score <= threshold


def _numeric_feature(name: str, finite: np.ndarray, extra: np.ndarray) -> Feature:
    both = np.concatenate([finite, extra]) if extra.size else finite
    lo, hi = float(both.min()), float(both.max())
    whole = bool(np.array_equal(np.floor(finite), finite))
    if whole and lo >= 0 and hi <= 1:
        return Feature(name, FeatureKind.BINARY)
    kind = FeatureKind.INTEGER if whole else FeatureKind.CONTINUOUS
    lower = 0.0 if lo >= 0 else None
    if kind is FeatureKind.INTEGER and lo >= 1:
        lower = lo  # a count that is never 0 in the data
    upper = 1.0 if kind is FeatureKind.CONTINUOUS and lo >= 0 and hi <= 1 else None
    heavy = lo >= 0 and hi > 100.0 * (float(np.median(finite)) + 1.0)
    return Feature(name, kind, lower=lower, upper=upper, transform="log1p" if heavy else "none")


def describe_features(df: pd.DataFrame, schema: FeatureSchema,
                      *, shown_categories: int = 5) -> dict[str, str]:
    """A short description of each feature of ``schema`` present in ``df``: the observed range
    and number of distinct values (numeric), or the categories (categorical)."""
    out: dict[str, str] = {}
    for f in schema:
        if f.name not in df.columns:
            continue
        col = df[f.name]
        if f.is_numeric:
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64,
                                                                  na_value=np.nan)
            values = values[np.isfinite(values)]
            if not values.size:
                out[f.name] = "no finite values"
                continue
            n = int(np.unique(values).size)
            out[f.name] = (f"observed {_number(values.min())} .. {_number(values.max())}, "
                           f"{n:,} distinct value{'s' if n != 1 else ''}")
        else:
            counts = col.astype("string").value_counts(dropna=True)
            top = ", ".join(str(v) for v in counts.index[:shown_categories])
            more = ", ..." if len(counts) > shown_categories else ""
            out[f.name] = f"{len(counts):,} categories: {top}{more}"
    return out


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 2**53:
        return f"{int(value):,}"
    return f"{value:.10g}"

