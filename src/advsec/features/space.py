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

The class is a thin front: :mod:`~advsec.features.codec` encodes and decodes,
:mod:`~advsec.features.validation` checks raw records, :mod:`~advsec.features.torch_view` holds
the per-column tensors and :mod:`~advsec.features.repair` the compiled repair.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch

from advsec.errors import DataError, SchemaError
from advsec.features.codec import (
    OTHER,
    decimals,
    decode_array,
    encode_table,
    forward,
    labels,
    numeric_values,
)
from advsec.features.constraints import Relation, relations_from_schema
from advsec.features.repair.plan import RepairPlan
from advsec.features.repair.reference import repair_reference
from advsec.features.schema import Feature, FeatureKind, FeatureSchema
from advsec.features.threat import ThreatView, build_threat_view
from advsec.features.torch_view import (
    NumericView,
    TorchView,
    build_torch_view,
    numeric_view,
    quantize,
    raw_from_model,
)
from advsec.features.validation import validate_table

__all__ = ["OTHER", "FeatureSpace", "TorchView"]


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
        values_: per numeric feature with a value set (``values`` in the schema), the allowed
            values, sorted (``"observed"``: the training table's values).
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
    def fit(self, raw: pd.DataFrame, *, check: bool = True) -> FeatureSpace:
        """Learn scalings, categories, decimals and value sets from the training table ``raw``
        (N rows); with ``check`` (the default), then :meth:`check_training`: every training
        record must be valid under the schema."""
        self._check_columns(raw)
        if len(raw) == 0:
            raise DataError("cannot fit a FeatureSpace on an empty table")
        self.lo_: dict[str, float] = {}
        self.span_: dict[str, float] = {}
        self.categories_: dict[str, tuple[str, ...]] = {}
        self.decimals_: dict[str, int] = {}
        self.values_: dict[str, tuple[float, ...]] = {}
        for f in self.schema:
            if f.kind is FeatureKind.CATEGORICAL:
                if f.categories is not None:
                    cats = tuple(f.categories)
                else:
                    seen = pd.unique(labels(raw[f.name]).dropna())
                    cats = tuple(sorted(str(c) for c in seen if str(c) != OTHER))
                self.categories_[f.name] = cats
                continue
            values = numeric_values(raw, f)
            if f.values is not None:
                self.values_[f.name] = (tuple(sorted({float(v) for v in values}))
                                        if isinstance(f.values, str) else tuple(f.values))
            if f.lower is not None or f.upper is not None:  # as encode does
                values = np.clip(values, f.lower if f.lower is not None else -np.inf,
                                 f.upper if f.upper is not None else np.inf)
            t = forward(values, f.transform)
            lo = forward(np.array([f.lower]), f.transform)[0] if f.lower is not None else None
            hi = forward(np.array([f.upper]), f.transform)[0] if f.upper is not None else None
            lo = float(np.min(t)) if lo is None else float(lo)
            hi = float(np.max(t)) if hi is None else float(hi)
            if not math.isfinite(lo) or not math.isfinite(hi):
                raise DataError(f"column {f.name!r}: no finite values to fit a scaling")
            self.lo_[f.name] = lo
            self.span_[f.name] = hi - lo if hi > lo else 1.0
            if f.kind is FeatureKind.CONTINUOUS:
                places = decimals(values)
                if places is not None:
                    self.decimals_[f.name] = places
        self._build_layout()
        if check:
            self.check_training(raw)
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
        self._threat_views: dict[str, ThreatView] = {}
        self._num_views: dict[str, NumericView] = {}
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
        return encode_table(self, raw)

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
        return decode_array(self, x, reference)

    # ------------------------------------------------------------------ valid region (torch)
    def torch_view(self, device: torch.device | str = "cpu") -> TorchView:
        """The per-column tensors on ``device`` (cached per device)."""
        self._check_fitted()
        key = str(torch.device(device))
        if key not in self._views:
            self._views[key] = build_torch_view(self, device)
        return self._views[key]

    def threat_view(self, device: torch.device | str = "cpu") -> ThreatView:
        """The attacker action model (directions, value sets) on ``device`` (cached per
        device; :mod:`advsec.features.threat`)."""
        self._check_fitted()
        key = str(torch.device(device))
        if key not in self._threat_views:
            self._threat_views[key] = build_threat_view(self, device)
        return self._threat_views[key]

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
        return repair_reference(self, x, x_orig, self._numeric_view(x.device))

    def to_raw(self, x: torch.Tensor, *, rounded: bool = False) -> torch.Tensor:
        """Raw values (physical units, float64) of the numeric features of ``x``.

        ``x``: model inputs ``(N, D)``; returns ``(N, K)``, column ``k`` holding feature
        ``numeric_features_[k]``. Differentiable in ``x`` inside the unit box. ``rounded``:
        clipped to the bounds and rounded as :meth:`decode` rounds (integers half up,
        continuous values to their decimals), with a straight-through gradient (that of the
        un-rounded values); by default un-rounded.
        """
        self._check_fitted()
        nv = self._numeric_view(x.device)
        raw = raw_from_model(x[:, nv.idx], nv)
        if rounded:
            raw = raw + (quantize(raw, nv) - raw).detach()
        return raw

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
    def validate(self, raw: pd.DataFrame, *,
                 reference: pd.DataFrame | None = None) -> pd.DataFrame:
        """Which checks each raw record fails: a boolean DataFrame, True = violated.

        The one validator of records: the ``valid`` column, ``valid_share``, exports and
        reports all derive from it. Columns: ``bound:<feature>`` for every numeric feature
        (missing or non-numeric value, below ``lower``, above ``upper``, not a whole number for
        integer features, not 0/1 for binary ones), ``values:<feature>`` for every feature with
        a value set (a value outside it), ``relation:<name>`` for every relation of the schema
        (within the tolerances it states). With ``reference``, the original records of the
        same N rows, also the action model: ``direction:<feature>`` (an ``increase`` feature
        below its original, a ``decrease`` one above) and ``immutable:<feature>`` (an
        immutable feature that differs from its original). The index is ``raw.index``.
        """
        self._check_fitted()
        self._check_columns(raw)
        if reference is not None:
            self._check_columns(reference)
            if len(reference) != len(raw):
                raise DataError(f"validate: reference has {len(reference)} rows, the records "
                                f"{len(raw)}")
        return validate_table(self, raw, reference)

    def valid_mask(self, raw: pd.DataFrame, *,
                   reference: pd.DataFrame | None = None) -> np.ndarray:
        """Boolean ``(N,)``: True where the raw record passes every check of :meth:`validate`."""
        checks = self.validate(raw, reference=reference)
        return ~checks.to_numpy(dtype=bool).any(axis=1)

    def check_training(self, raw: pd.DataFrame) -> None:
        """Raise :class:`SchemaError` when the training table ``raw`` contradicts the schema:
        a schema that real records break is wrong, and every attack result under it would be.

        Every bound and value set must hold on every record, and so must every relation that
        states no ``holds_on``; a relation that states ``holds_on`` (a share found by
        discovery) must hold on at least that share of the records, up to a sampling margin of
        ``0.005 + 3 sqrt(share (1 - share) / N)`` (it is then enforced where the original
        record satisfies it). The message names the first violating record (its
        index label) and check, with the values of the features involved."""
        checks = self.validate(raw)
        mat = checks.to_numpy(dtype=bool).copy()
        if not mat.any():
            return
        partial = {f"relation:{r.name}": r.holds_on for r in self.relations_
                   if r.holds_on is not None}
        for j, name in enumerate(checks.columns):
            share = partial.get(str(name))
            if share is None:
                continue
            held = 1.0 - float(mat[:, j].mean())
            # a share found on other rows (the whole file, another split) varies by sampling
            margin = 0.005 + 3.0 * math.sqrt(share * (1.0 - share) / len(raw))
            if held + margin < share:
                raise SchemaError(
                    f"{name.partition(':')[2]!r} holds on {100 * held:.2f} % of the "
                    f"{len(raw):,} training records, but the schema says holds_on = {share} "
                    f"({100 * share:.2f} %): fix the relation or its holds_on")
            mat[:, j] = False
        if not mat.any():
            return
        row, col = (int(v[0]) for v in np.nonzero(mat))
        name = str(checks.columns[col])
        count = int(mat[:, col].sum())
        kind, _, what = name.partition(":")
        feats = [what]
        if kind == "relation":
            rel = next(r for r in self.relations_ if r.name == what)
            feats = list(rel.features)
        shown = ", ".join(f"{f}={_plain(raw[f].iloc[row])!r}" for f in feats)
        raise SchemaError(
            f"training record {raw.index[row]!r} breaks {kind} {what!r} ({shown}; {count:,} of "
            f"{len(raw):,} training records do): the schema does not describe this data; fix "
            f"or drop that {kind} in the schema"
            + (", or state the share it holds on (holds_on)" if kind == "relation" else ""))

    def _numeric_view(self, device: torch.device | str) -> NumericView:
        """The numeric columns of :meth:`torch_view` on ``device`` (cached per device)."""
        key = str(torch.device(device))
        if key not in self._num_views:
            self._num_views[key] = numeric_view(self.torch_view(device))
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
            "values": {k: list(v) for k, v in self.values_.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpace:
        """Inverse of :meth:`to_dict`."""
        space = cls(FeatureSchema.from_dict(data["schema"]))
        space.lo_ = {k: float(v) for k, v in data["lo"].items()}
        space.span_ = {k: float(v) for k, v in data["span"].items()}
        space.categories_ = {k: tuple(v) for k, v in data["categories"].items()}
        space.decimals_ = {k: int(v) for k, v in data.get("decimals", {}).items()}
        space.values_ = {k: tuple(float(x) for x in v) for k, v in data.get("values", {}).items()}
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

    def __repr__(self) -> str:
        fitted = f", D={len(self.columns_)}" if hasattr(self, "columns_") else ", unfitted"
        return f"FeatureSpace({len(self.schema)} features{fitted})"


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python number it holds (for messages)."""
    return value.item() if isinstance(value, np.generic) else value
