"""Model inputs back to raw feature values, differentiably: for detectors that take raw records.

advsec's attacks work on the encoded inputs of a :class:`~advsec.features.space.FeatureSpace`
(``(N, D)`` in ``[0, 1]``, categoricals one-hot). A detector the user trained elsewhere usually
takes the raw features instead: ``(N, F)`` numbers, one column per schema feature, in schema
order, in physical units. :class:`RawInputs` is the bridge, an ``nn.Module`` that turns encoded
inputs into exactly the raw values :meth:`FeatureSpace.decode` would give them:

- numeric features: un-scaled (``expm1`` after a ``log1p`` scaling), clipped to their bounds,
  integers rounded half up, continuous values rounded to their learned decimals, binary flags
  thresholded at 0.5;
- categorical features whose categories are numbers (a protocol number, a port class): the
  number of the block's argmax; the ``<other>`` slot (a category unseen when the space was
  fitted) gives NaN, as the value is not known.

The rounding is a straight-through estimate: the forward pass is exact, the gradient is that of
the un-rounded values (for one-hot blocks, the gradient of the block's values times the
categories' numbers), so gradient attacks work through it. A categorical feature with text
categories (``"tcp"``) cannot be one number: :class:`RawInputs` refuses the space with a
one-line :class:`~advsec.errors.SchemaError` naming the feature.

Shapes: ``N`` records, ``D`` encoded columns, ``F`` schema features.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from advsec.errors import SchemaError
from advsec.features.schema import FeatureKind

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["RawInputs", "raw_feature_names"]


def raw_feature_names(space: FeatureSpace) -> list[str]:
    """The ``F`` columns a raw-input model takes: the schema's feature names, in order."""
    return [f.name for f in space.schema.features]


class RawInputs(nn.Module):
    """Encoded inputs ``(N, D)`` -> raw feature values ``(N, F)`` (float32, schema order).

    Args:
        space: a fitted FeatureSpace.
        rounding: round as ``decode`` does (straight-through); False gives the un-rounded,
            smooth values.

    Example:
        >>> raw = RawInputs(space)(torch.as_tensor(space.encode(table)))  # ≈ table's values
    """

    def __init__(self, space: FeatureSpace, *, rounding: bool = True) -> None:
        super().__init__()
        self.space = space
        self.rounding = rounding
        self._has_numeric = bool(space.numeric_features_)
        names = raw_feature_names(space)
        pos = {n: i for i, n in enumerate(names)}
        self._num_pos = torch.tensor([pos[n] for n in space.numeric_features_],
                                     dtype=torch.long)
        blocks: list[tuple[int, int, int]] = []
        codes: list[torch.Tensor] = []
        for f, a, b in space.blocks_:
            if f.kind is not FeatureKind.CATEGORICAL:
                continue
            cats = space.categories_[f.name]
            try:
                values = [float(c) for c in cats]
            except ValueError:
                text = next(c for c in cats if not _is_number(c))
                raise SchemaError(
                    f"feature {f.name!r} is categorical with text values ({text!r}): a model "
                    f"over raw numbers cannot take it; give the model advsec's encoded inputs, "
                    f"or encode {f.name!r} as numbers before training") from None
            blocks.append((pos[f.name], a, b))
            codes.append(torch.tensor([*values, math.nan], dtype=torch.float64))
        self._blocks = blocks
        self._codes = codes
        self.n_features = len(names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw values ``(N, F)`` float32 of the encoded inputs ``x`` ``(N, D)``."""
        n = x.shape[0]
        out = torch.zeros((n, self.n_features), dtype=torch.float64, device=x.device)
        if self._has_numeric:
            out[:, self._num_pos.to(x.device)] = self.space.to_raw(x, rounded=self.rounding)
        for (col, a, b), codes in zip(self._blocks, self._codes, strict=True):
            block = x[:, a:b].to(torch.float64)
            c = codes.to(x.device)
            finite = torch.nan_to_num(c, nan=0.0)
            soft = block @ finite
            hard = c[block.argmax(dim=1)]
            out[:, col] = soft + (hard - soft).detach() if self.rounding else soft
        return out.to(torch.float32)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
