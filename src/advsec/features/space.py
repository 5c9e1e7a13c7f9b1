"""FeatureSpace: raw records <-> model inputs in [0, 1], and the attacker's valid region.

Every detector consumes float32 arrays of shape ``(N, D)`` with values in ``[0, 1]``:

- numeric features (continuous, integer, binary): ``log1p`` first when the schema says so, then
  min-max scaled. The scale uses the feature's physical bounds where the schema gives them and
  the training minimum/maximum otherwise, so epsilon means "a fraction of the feature's range".
- categorical features: one-hot over the categories seen in training plus a final ``<other>`` slot
  that takes categories never seen in training.

The space is fitted on the training split only. Attacks use :meth:`FeatureSpace.torch_view` for the
mutable mask and bounds (no NumPy inside attack loops), :meth:`FeatureSpace.project` at every step
and :meth:`FeatureSpace.repair` once at the end; :meth:`FeatureSpace.validate` then says, per
record, which bound or relation (see :mod:`advsec.features.constraints`) a decoded record breaks.

Precision. Model inputs are float32, so a raw value that needs more than ~7 significant digits
(a byte count of 693,375,640, a TCP sequence number) does not survive ``decode(encode(raw))``
bit for bit. Two things make records exact where it matters:

- ``fit`` learns, per continuous feature, the number of decimals its training values carry
  (e.g. 2 for KDD'99 rates) and ``decode`` rounds to it; integer features are rounded.
- ``decode(x, reference=raw)`` returns the reference's raw value for every feature whose model
  columns equal ``encode(raw)`` exactly, so features an attack did not touch keep their original
  values; ``decode(encode(raw), reference=raw)`` equals ``raw``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from advsec.errors import DataError, SchemaError
from advsec.features.constraints import VIOLATION_EPS, Relation, relations_from_schema
from advsec.features.repair_plan import RepairPlan
from advsec.features.schema import Feature, FeatureKind, FeatureSchema

__all__ = ["OTHER", "FeatureSpace", "TorchView"]

OTHER = "<other>"
_MAX_DECIMALS = 9


@dataclass(frozen=True)
class TorchView:
    """Per-column tensors of a fitted space on one device; every tensor has shape ``(D,)``.

    Attributes:
        lower, upper: model-space bounds of the valid region (float32).
        mutable: True where the attacker may change the column.
        numeric: True for numeric columns (False inside one-hot blocks).
        integer: True for integer and binary columns (repaired by rounding in raw units).
        log1p: True for columns scaled after ``log1p``.
        lo, span: the scaling: ``encoded = (t(raw) - lo) / span`` (float64, for repair).
        raw_lower, raw_upper: physical bounds in raw units (float64, +-inf when unbounded).
        round_scale: ``10**decimals`` for continuous columns rounded on decode, 0 otherwise
            (float64).
        blocks: ``(start, stop)`` of every one-hot block.
    """

    lower: torch.Tensor
    upper: torch.Tensor
    mutable: torch.Tensor
    numeric: torch.Tensor
    integer: torch.Tensor
    log1p: torch.Tensor
    lo: torch.Tensor
    span: torch.Tensor
    raw_lower: torch.Tensor
    raw_upper: torch.Tensor
    round_scale: torch.Tensor
    blocks: tuple[tuple[int, int], ...]


class FeatureSpace:
    """Encoder/decoder between raw records and model inputs; knows the valid region.

    Args:
        schema: the raw feature schema (its ``relations`` are parsed and checked here).

    Learned attributes (after :meth:`fit`):
        columns_: model-space column names, length ``D``.
        blocks_: for each feature, ``(feature, start, stop)`` column slice in model space.
        lo_, span_: per numeric feature, the (transformed) minimum and range used for scaling.
        categories_: per categorical feature, the categories (``<other>`` excluded).
        decimals_: per continuous feature whose training values all have at most 9 decimals,
            that number of decimals (``decode`` rounds to it).
        numeric_features_: names of the numeric features, in model-space order; column ``k`` of
            :meth:`to_raw`'s output holds feature ``numeric_features_[k]``.
        relations_: the schema's relations, bound to the columns of :meth:`to_raw`'s output.

    Example:
        >>> space = FeatureSpace(schema).fit(train_df)
        >>> x = space.encode(test_df)           # float32 (N, D) in [0, 1]
        >>> raw = space.decode(x)               # DataFrame with the schema's columns
        >>> space.valid_mask(raw).all()         # every bound and relation holds
    """

    def __init__(self, schema: FeatureSchema) -> None:
        if not isinstance(schema, FeatureSchema):
            raise SchemaError(f"FeatureSpace needs a FeatureSchema, got {type(schema).__name__}")
        self.schema = schema
        self._relations: list[Relation] = relations_from_schema(schema)
        self._views: dict[str, TorchView] = {}

    # ------------------------------------------------------------------ fitting
    def fit(self, raw: pd.DataFrame) -> FeatureSpace:
        """Learn scalings, categories and decimals from the training table ``raw`` (N rows)."""
        self._check_columns(raw)
        if len(raw) == 0:
            raise DataError("cannot fit a FeatureSpace on an empty table")
        self.lo_: dict[str, float] = {}
        self.span_: dict[str, float] = {}
        self.categories_: dict[str, tuple[str, ...]] = {}
        self.decimals_: dict[str, int] = {}
        for f in self.schema:
            if f.kind is FeatureKind.CATEGORICAL:
                if f.categories is not None:
                    cats = tuple(f.categories)
                else:
                    seen = pd.unique(_labels(raw[f.name]).dropna())
                    cats = tuple(sorted(str(c) for c in seen if str(c) != OTHER))
                self.categories_[f.name] = cats
                continue
            values = self._numeric(raw, f)
            if f.lower is not None or f.upper is not None:  # as encode does
                values = np.clip(values, f.lower if f.lower is not None else -np.inf,
                                 f.upper if f.upper is not None else np.inf)
            t = _forward(values, f.transform)
            lo = _forward(np.array([f.lower]), f.transform)[0] if f.lower is not None else None
            hi = _forward(np.array([f.upper]), f.transform)[0] if f.upper is not None else None
            lo = float(np.min(t)) if lo is None else float(lo)
            hi = float(np.max(t)) if hi is None else float(hi)
            if not math.isfinite(lo) or not math.isfinite(hi):
                raise DataError(f"column {f.name!r}: no finite values to fit a scaling")
            self.lo_[f.name] = lo
            self.span_[f.name] = hi - lo if hi > lo else 1.0
            if f.kind is FeatureKind.CONTINUOUS:
                decimals = _decimals(values)
                if decimals is not None:
                    self.decimals_[f.name] = decimals
        self._build_layout()
        return self

    def _build_layout(self) -> None:
        columns: list[str] = []
        blocks: list[tuple[Feature, int, int]] = []
        for f in self.schema:
            start = len(columns)
            if f.kind is FeatureKind.CATEGORICAL:
                columns.extend(f"{f.name}={c}" for c in (*self.categories_[f.name], OTHER))
            else:
                columns.append(f.name)
            blocks.append((f, start, len(columns)))
        self.columns_ = columns
        self.blocks_ = blocks
        self.numeric_features_ = [f.name for f, _, _ in blocks if f.is_numeric]
        index = {name: k for k, name in enumerate(self.numeric_features_)}
        self.relations_ = [rel.bind(index) for rel in self._relations]
        self._views = {}
        self._num_views: dict[str, _NumericView] = {}
        self._repair_plans: dict[str, RepairPlan] = {}

    @property
    def n_features_out(self) -> int:
        """``D``, the number of model-space columns."""
        self._check_fitted()
        return len(self.columns_)

    @property
    def mutable_mask(self) -> np.ndarray:
        """Boolean ``(D,)``: True where the attacker may change the column."""
        self._check_fitted()
        mask = np.zeros(len(self.columns_), dtype=bool)
        for f, a, b in self.blocks_:
            mask[a:b] = f.mutable
        return mask

    # ------------------------------------------------------------------ encode / decode
    def encode(self, raw: pd.DataFrame) -> np.ndarray:
        """Raw table (N rows, the schema's columns) -> float32 ``(N, D)`` in ``[0, 1]``.

        Values outside the fitted range are clipped to it; unseen categories go to ``<other>``.
        A missing, non-numeric or infinite numeric value raises :class:`DataError` naming the
        column and row.
        """
        self._check_fitted()
        self._check_columns(raw)
        n = len(raw)
        out = np.zeros((len(self.columns_), n), dtype=np.float32)  # filled row by row, then .T
        rows = np.arange(n)
        for f, a, _ in self.blocks_:
            if f.kind is FeatureKind.CATEGORICAL:
                cats = self.categories_[f.name]
                codes, uniques = pd.factorize(_labels(raw[f.name]))
                slot = pd.Index(cats, dtype=object).get_indexer(np.asarray(uniques, dtype=object))
                slot = np.append(np.where(slot < 0, len(cats), slot), len(cats))  # -1: missing
                out[a + slot[codes], rows] = 1.0
            else:
                values = self._numeric(raw, f)
                if f.lower is not None or f.upper is not None:
                    lower = f.lower if f.lower is not None else -np.inf
                    upper = f.upper if f.upper is not None else np.inf
                    values = np.clip(values, lower, upper)
                scaled = (_forward(values, f.transform) - self.lo_[f.name]) / self.span_[f.name]
                out[a] = np.clip(scaled, 0.0, 1.0)
        return np.ascontiguousarray(out.T)

    def decode(
        self, x: np.ndarray | torch.Tensor, *, reference: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """Model inputs ``(N, D)`` -> raw records with the schema's columns and dtypes.

        Integers are rounded (half up), binary flags thresholded at 0.5, continuous values rounded
        to the decimals learned at fit time, categoricals taken as the argmax of their one-hot
        block (``<other>`` when that slot wins), and values clipped to the bounds. Dtypes: int64
        for integer and binary features, float64 for continuous ones, ``string`` for categorical.

        Args:
            x: model inputs, NumPy or torch, shape ``(N, D)``.
            reference: optional raw table with the same N rows (e.g. the records ``x`` was made
                from): every feature whose model columns equal ``encode(reference)`` exactly takes
                the reference's value, so untouched features keep their original raw values.
        """
        self._check_fitted()
        arr = x.detach().to("cpu").numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if arr.ndim != 2 or arr.shape[1] != len(self.columns_):
            raise DataError(
                f"decode expects an array of shape (N, {len(self.columns_)}), got {arr.shape}"
            )
        n = arr.shape[0]
        same: np.ndarray | None = None
        if reference is not None:
            if len(reference) != n:
                raise DataError(f"decode: reference has {len(reference)} rows, x has {n}")
            same = self.encode(reference) == arr.astype(np.float32, copy=False)
        data: dict[str, Any] = {}
        for f, a, b in self.blocks_:
            if f.kind is FeatureKind.CATEGORICAL:
                labels = pd.array([*self.categories_[f.name], OTHER], dtype="string")
                values = labels[np.argmax(arr[:, a:b], axis=1)]
                if same is not None and reference is not None:
                    keep = same[:, a:b].all(axis=1)
                    if keep.all():
                        values = pd.array(_labels(reference[f.name]), dtype="string")
                    elif keep.any():
                        values = pd.array(np.where(
                            keep, _labels(reference[f.name]).to_numpy(dtype=object),
                            values.to_numpy(dtype=object)), dtype="string")
                data[f.name] = values
                continue
            col = self._decode_numeric(arr[:, a], f)
            if same is not None and reference is not None:
                ref = reference[f.name].to_numpy(dtype=np.float64, na_value=np.nan) if (
                    pd.api.types.is_numeric_dtype(reference[f.name])) else pd.to_numeric(
                    reference[f.name], errors="coerce").to_numpy(dtype=np.float64,
                                                                 na_value=np.nan)
                col = np.where(same[:, a], ref, col)
            if f.kind is FeatureKind.CONTINUOUS or not np.all(np.isfinite(col)):
                data[f.name] = col.astype(np.float64, copy=False)
            else:
                data[f.name] = col.astype(np.int64)
        index = reference.index if reference is not None else None
        return pd.DataFrame(data, index=index)

    def _decode_numeric(self, column: np.ndarray, f: Feature) -> np.ndarray:
        """One numeric model column ``(N,)`` -> float64 raw values, rounded as ``_quantize``
        rounds (NumPy twin of the torch path used by :meth:`repair`)."""
        t = np.clip(column.astype(np.float64), 0.0, 1.0) * self.span_[f.name] + self.lo_[f.name]
        values = np.expm1(t) if f.transform == "log1p" else t
        if f.lower is not None or f.upper is not None:
            values = np.clip(values, f.lower if f.lower is not None else -np.inf,
                             f.upper if f.upper is not None else np.inf)
        if f.kind is not FeatureKind.CONTINUOUS:
            return np.floor(values + 0.5)
        if f.name in self.decimals_:
            scale = 10.0 ** self.decimals_[f.name]
            return np.round(values * scale) / scale
        return values

    # ------------------------------------------------------------------ valid region (torch)
    def torch_view(self, device: torch.device | str = "cpu") -> TorchView:
        """The per-column tensors on ``device`` (cached per device)."""
        self._check_fitted()
        key = str(torch.device(device))
        if key in self._views:
            return self._views[key]
        d = len(self.columns_)
        mutable = torch.zeros(d, dtype=torch.bool)
        numeric = torch.zeros(d, dtype=torch.bool)
        integer = torch.zeros(d, dtype=torch.bool)
        log1p = torch.zeros(d, dtype=torch.bool)
        lo = torch.zeros(d, dtype=torch.float64)
        span = torch.ones(d, dtype=torch.float64)
        raw_lower = torch.full((d,), -math.inf, dtype=torch.float64)
        raw_upper = torch.full((d,), math.inf, dtype=torch.float64)
        round_scale = torch.zeros(d, dtype=torch.float64)
        cat_blocks: list[tuple[int, int]] = []
        for f, a, b in self.blocks_:
            mutable[a:b] = f.mutable
            if f.kind is FeatureKind.CATEGORICAL:
                cat_blocks.append((a, b))
                continue
            numeric[a] = True
            integer[a] = f.kind in (FeatureKind.INTEGER, FeatureKind.BINARY)
            log1p[a] = f.transform == "log1p"
            lo[a] = self.lo_[f.name]
            span[a] = self.span_[f.name]
            if f.lower is not None:
                raw_lower[a] = f.lower
            if f.upper is not None:
                raw_upper[a] = f.upper
            if f.name in self.decimals_:
                round_scale[a] = 10.0 ** self.decimals_[f.name]
        dev = torch.device(device)
        view = TorchView(
            lower=torch.zeros(d, dtype=torch.float32, device=dev),
            upper=torch.ones(d, dtype=torch.float32, device=dev),
            mutable=mutable.to(dev),
            numeric=numeric.to(dev),
            integer=integer.to(dev),
            log1p=log1p.to(dev),
            lo=lo.to(dev),
            span=span.to(dev),
            raw_lower=raw_lower.to(dev),
            raw_upper=raw_upper.to(dev),
            round_scale=round_scale.to(dev),
            blocks=tuple(cat_blocks),
        )
        self._views[key] = view
        return view

    def project(self, x: torch.Tensor, x_orig: torch.Tensor) -> torch.Tensor:
        """Put ``x`` ``(N, D)`` back into the valid region, relaxed (cheap; used every step).

        Immutable columns (and immutable one-hot blocks) are restored from ``x_orig``; every column
        is clipped to its bounds. Mutable one-hot blocks stay relaxed until :meth:`repair`.
        """
        v = self.torch_view(x.device)
        x = torch.where(v.mutable, x, x_orig)
        return torch.clamp(x, v.lower, v.upper)

    def repair(self, x: torch.Tensor, x_orig: torch.Tensor) -> torch.Tensor:
        """Make ``x`` ``(N, D)`` encode a valid raw record (used once, after an attack).

        Steps: :meth:`project`; every mutable one-hot block becomes the one-hot of its argmax;
        numeric columns are taken to raw units, clipped to their bounds and rounded as
        :meth:`decode` rounds (integers; continuous values to their decimals); every relation is
        repaired by changing mutable features only; the result is encoded again. A record that
        still breaks a relation once decoded (a relation that needs an immutable change, float32
        round-off) gets that relation's columns back from ``x_orig``. Columns that neither the
        attack nor a relation repair changed stay bit-identical to ``x_orig``; immutable columns
        are ``x_orig``'s. Not differentiable.

        Runs the compiled :meth:`repair_plan` (batched relations; a host sync only when the
        plan cannot prove that its violation check reverts nothing); the result equals the
        per-relation reference :meth:`repair_reference`, bit for bit.
        """
        self._check_fitted()
        if not len(x):
            return self.project(x, x_orig)
        plan = self.repair_plan(x.device)
        out, pending = plan.repair(x, x_orig)
        if plan.check and bool(pending.any()):
            rows = torch.nonzero(pending).flatten()
            out[rows] = plan.finish(out[rows], x_orig[rows])
        return out

    def repair_plan(self, device: torch.device | str = "cpu") -> RepairPlan:
        """The compiled fast path of :meth:`repair` on ``device`` (cached per device)."""
        self._check_fitted()
        key = str(torch.device(device))
        plan = self._repair_plans.get(key)
        if plan is None:
            plan = self._repair_plans[key] = RepairPlan(self, device)
        return plan

    def repair_reference(self, x: torch.Tensor, x_orig: torch.Tensor) -> torch.Tensor:
        """:meth:`repair` step by step, one :meth:`Relation.repair` call per relation (twice,
        in schema order): slow, kept as the reference the compiled path is tested against."""
        v = self.torch_view(x.device)
        nv = self._numeric_view(x.device)
        x = self.project(x, x_orig)
        for a, b in v.blocks:
            block = x[:, a:b]
            onehot = torch.nn.functional.one_hot(block.argmax(dim=1), b - a).to(x.dtype)
            x = torch.cat([x[:, :a], onehot, x[:, b:]], dim=1)
        untouched = x == x_orig
        if not len(self.numeric_features_):
            return torch.where(untouched, x_orig, x)
        raw0 = _quantize(_raw_from_model(x[:, nv.idx], nv), nv)
        raw = raw0
        if self.relations_:
            for _ in range(2):
                for rel in self.relations_:
                    raw = rel.repair(raw, nv.mutable)
            raw = _quantize(raw, nv)
            untouched[:, nv.idx] &= raw == raw0
        x = x.clone()
        x[:, nv.idx] = _model_from_raw(raw, nv).to(x.dtype)
        x = torch.where(untouched, x_orig, x)
        if self.relations_:
            x = self._revert_violations(x, x_orig, nv)
        return x

    def _revert_violations(
        self, x: torch.Tensor, x_orig: torch.Tensor, nv: _NumericView
    ) -> torch.Tensor:
        masks = []
        for rel in self.relations_:
            mask = torch.zeros(x.shape[1], dtype=torch.bool, device=x.device)
            mask[nv.idx[rel.columns()]] = True
            masks.append(mask)
        for _ in range(len(self.relations_) + 1):
            raw = _quantize(_raw_from_model(x[:, nv.idx], nv), nv)
            changed = False
            for rel, mask in zip(self.relations_, masks, strict=True):
                bad = rel.violation(raw) > VIOLATION_EPS
                revert = bad[:, None] & mask[None, :] & (x != x_orig)
                if bool(revert.any()):
                    x = torch.where(revert, x_orig, x)
                    changed = True
            if not changed:
                break
        return x

    def to_raw(self, x: torch.Tensor) -> torch.Tensor:
        """Raw values (physical units, float64, un-rounded) of the numeric features of ``x``.

        ``x``: model inputs ``(N, D)``; returns ``(N, K)``, column ``k`` holding feature
        ``numeric_features_[k]``. Differentiable in ``x`` inside the unit box.
        """
        self._check_fitted()
        nv = self._numeric_view(x.device)
        return _raw_from_model(x[:, nv.idx], nv)

    def relation_violation(self, x: torch.Tensor) -> torch.Tensor:
        """``(N,)`` total relation violation of model inputs ``x`` ``(N, D)``, in raw units.

        Differentiable in ``x`` (computed on un-rounded raw values); zero when the space has no
        relations. An attack may add it, scaled, to its loss.
        """
        total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        if not self.relations_:
            return total
        raw = self.to_raw(x)
        for rel in self.relations_:
            total = total + rel.violation(raw)
        return total

    # ------------------------------------------------------------------ validation (raw records)
    def validate(self, raw: pd.DataFrame) -> pd.DataFrame:
        """Which checks each raw record fails: a boolean DataFrame, True = violated.

        Columns: ``bound:<feature>`` for every numeric feature (missing or non-numeric value,
        below ``lower``, above ``upper``, not a whole number for integer features, not 0/1 for
        binary ones), then ``relation:<name>`` for every relation of the schema. The index is
        ``raw.index``.
        """
        self._check_fitted()
        self._check_columns(raw)
        n = len(raw)
        checks: dict[str, np.ndarray] = {}
        mat = np.zeros((len(self.numeric_features_), n), dtype=np.float64)  # used as mat.T
        for k, name in enumerate(self.numeric_features_):
            f = self.schema[name]
            col = raw[name]
            if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
                values = col.to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64,
                                                                      na_value=np.nan)
            finite = np.isfinite(values)
            bad = ~finite
            with np.errstate(invalid="ignore"):
                if f.lower is not None:
                    bad |= values < f.lower
                if f.upper is not None:
                    bad |= values > f.upper
                if f.kind is not FeatureKind.CONTINUOUS:
                    bad |= np.floor(values) != values
            checks[f"bound:{name}"] = bad
            mat[k] = np.where(finite, values, 0.0)
        if self.relations_:
            tensor = torch.from_numpy(mat).T
            for rel in self.relations_:
                checks[f"relation:{rel.name}"] = (rel.violation(tensor) > VIOLATION_EPS).numpy()
        return pd.DataFrame(checks, index=raw.index)

    def valid_mask(self, raw: pd.DataFrame) -> np.ndarray:
        """Boolean ``(N,)``: True where the raw record passes every check of :meth:`validate`."""
        checks = self.validate(raw)
        return ~checks.to_numpy(dtype=bool).any(axis=1)

    def _numeric_view(self, device: torch.device | str) -> _NumericView:
        key = str(torch.device(device))
        if key not in self._num_views:
            v = self.torch_view(device)
            idx = torch.nonzero(v.numeric.cpu(), as_tuple=False).flatten()
            dev_idx = idx.to(v.numeric.device)
            self._num_views[key] = _NumericView(
                idx=dev_idx, idx_np=idx.numpy(), lo=v.lo[dev_idx], span=v.span[dev_idx],
                log1p=v.log1p[dev_idx], integer=v.integer[dev_idx],
                raw_lower=v.raw_lower[dev_idx], raw_upper=v.raw_upper[dev_idx],
                round_scale=v.round_scale[dev_idx], mutable=v.mutable[dev_idx],
            )
        return self._num_views[key]

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary with the schema and every learned parameter."""
        self._check_fitted()
        return {
            "schema": self.schema.to_dict(),
            "lo": self.lo_,
            "span": self.span_,
            "categories": {k: list(v) for k, v in self.categories_.items()},
            "decimals": dict(self.decimals_),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpace:
        """Inverse of :meth:`to_dict`."""
        space = cls(FeatureSchema.from_dict(data["schema"]))
        space.lo_ = {k: float(v) for k, v in data["lo"].items()}
        space.span_ = {k: float(v) for k, v in data["span"].items()}
        space.categories_ = {k: tuple(v) for k, v in data["categories"].items()}
        space.decimals_ = {k: int(v) for k, v in data.get("decimals", {}).items()}
        space._build_layout()
        return space

    # ------------------------------------------------------------------ helpers
    def _check_fitted(self) -> None:
        if not hasattr(self, "columns_"):
            raise RuntimeError("this FeatureSpace is not fitted yet: call fit(train) first")

    def _check_columns(self, raw: pd.DataFrame) -> None:
        if not isinstance(raw, pd.DataFrame):
            raise DataError(f"expected a pandas DataFrame of raw records, got {type(raw).__name__}")
        missing = [n for n in self.schema.names if n not in raw.columns]
        if missing:
            raise DataError(f"table is missing feature column(s) {missing}")

    @staticmethod
    def _numeric(raw: pd.DataFrame, f: Feature) -> np.ndarray:
        col = raw[f.name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64,
                                                                  na_value=np.nan)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"column {f.name!r}, row {row}: expected a finite number, got {col.iloc[row]!r}"
            )
        return values

    def __repr__(self) -> str:
        fitted = f", D={len(self.columns_)}" if hasattr(self, "columns_") else ", unfitted"
        return f"FeatureSpace({len(self.schema)} features{fitted})"


@dataclass(frozen=True)
class _NumericView:
    """The numeric columns of a :class:`TorchView`: indices and ``(K,)`` parameters."""

    idx: torch.Tensor
    idx_np: np.ndarray
    lo: torch.Tensor
    span: torch.Tensor
    log1p: torch.Tensor
    integer: torch.Tensor
    raw_lower: torch.Tensor
    raw_upper: torch.Tensor
    round_scale: torch.Tensor
    mutable: torch.Tensor


def _raw_from_model(xn: torch.Tensor, nv: _NumericView) -> torch.Tensor:
    """Numeric model columns ``(N, K)`` -> float64 raw values (clipped to the unit box first)."""
    t = torch.clamp(xn.to(torch.float64), 0.0, 1.0) * nv.span + nv.lo
    return torch.where(nv.log1p, torch.expm1(t), t)


def _model_from_raw(raw: torch.Tensor, nv: _NumericView) -> torch.Tensor:
    """float64 raw values ``(N, K)`` -> model values in [0, 1] (float64)."""
    t = torch.where(nv.log1p, torch.log1p(torch.clamp(raw, min=0.0)), raw)
    return torch.clamp((t - nv.lo) / nv.span, 0.0, 1.0)


def _quantize(raw: torch.Tensor, nv: _NumericView) -> torch.Tensor:
    """Clip raw values ``(N, K)`` to their bounds and round them as ``decode`` does: integers
    half up, continuous values to their learned decimals."""
    out = torch.clamp(raw, nv.raw_lower, nv.raw_upper)
    out = torch.where(nv.integer, torch.floor(out + 0.5), out)
    has = nv.round_scale > 0
    scale = torch.where(has, nv.round_scale, torch.ones_like(nv.round_scale))
    return torch.where(has, torch.round(out * scale) / scale, out)


def _labels(col: pd.Series) -> pd.Series:
    """A categorical column as strings (missing values stay missing)."""
    if pd.api.types.is_string_dtype(col.dtype) or isinstance(col.dtype, pd.CategoricalDtype):
        return col
    return col.astype("string")


def _forward(values: np.ndarray, transform: str) -> np.ndarray:
    return np.log1p(values) if transform == "log1p" else values


def _decimals(values: np.ndarray) -> int | None:
    """The fewest decimals (0..9) that represent every value exactly, or None."""
    uniq = pd.unique(values)
    top = float(np.max(np.abs(uniq))) if len(uniq) else 0.0
    for d in range(_MAX_DECIMALS + 1):
        scale = 10.0**d
        if top * scale >= 2.0**52:
            return None
        if np.array_equal(np.round(uniq * scale) / scale, uniq):
            return d
    return None
