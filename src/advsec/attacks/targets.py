"""The frame's input handling: checked tensors, the eps list, the benign class and the targets."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = [
    "Eps",
    "benign_index",
    "check_classes_and_box",
    "check_inputs",
    "class_indices",
    "device_dtype",
    "eps_values",
    "is_eps_list",
    "n_scores",
    "resolve_targets",
    "whole",
]

#: one budget or a list of budgets (model-input units)
Eps = float | Sequence[float]


def eps_values(eps: Any) -> list[float]:
    """``eps`` (a float or a list) as a non-empty list of finite floats >= 0.

    Raises:
        ValueError: for an empty list, a negative or a non-finite value.
    """
    items = list(eps) if is_eps_list(eps) else [eps]
    for e in items:  # a string or a bool is no budget, whatever float() makes of it
        if isinstance(e, str | bytes | bool | np.bool_) or (
                isinstance(e, torch.Tensor) and e.dtype == torch.bool):
            raise ValueError(f"eps must be a number or a list of numbers, got {e!r}")
    values = [float(e) for e in items]
    if not values or any(e < 0 or not math.isfinite(e) for e in values):
        raise ValueError(f"eps must be finite and >= 0 (a float or a non-empty list), got {eps}")
    return values


def whole(value: Any, name: str) -> int:
    """``value`` as an int when it is a whole number (not a bool, a string or a fraction):
    an attack's count option (steps, queries, ...). ValueError otherwise."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number) or (
            float(value) != int(value)):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def is_eps_list(eps: Any) -> bool:
    """Whether ``eps`` is a list of budgets (list, tuple, 1-D array or tensor)."""
    return (isinstance(eps, (list, tuple, np.ndarray))
            or (isinstance(eps, torch.Tensor) and eps.ndim == 1))


def device_dtype(module: nn.Module | None, x: Any) -> tuple[torch.device, torch.dtype]:
    """Where and in which float type to attack: the module's first parameter, else ``x``'s."""
    if module is not None:
        for p in module.parameters():
            return p.device, (p.dtype if p.dtype.is_floating_point else torch.float32)
    if isinstance(x, torch.Tensor):
        return x.device, (x.dtype if x.dtype.is_floating_point else torch.float32)
    return torch.device("cpu"), torch.float32


def class_indices(model: Any, y: Any) -> torch.Tensor:
    """``y`` ``(N,)`` as int64 class indices (on ``y``'s device when it is a tensor, else the
    CPU): raw labels (text, or integers that are not the model's class indices) encoded by
    the model's ``encode_labels`` (an advsec Detector). ValueError for fractional values, or
    raw text labels of a model without ``encode_labels``."""
    if not isinstance(y, torch.Tensor):
        arr = np.asarray(y)
        if (arr.dtype.kind not in "iu" or _integer_labels(model)) and hasattr(
                model, "encode_labels"):
            y = torch.as_tensor(np.asarray(model.encode_labels(arr)))
        elif arr.dtype.kind not in "iufb":
            raise ValueError(f"y holds raw labels ({arr.dtype}) but the model has no "
                             f"encode_labels: pass class indices")
        else:
            y = torch.as_tensor(arr)
    y = y.detach()
    if y.is_floating_point() and bool((y != torch.floor(y)).any()):
        row = int(torch.nonzero(y != torch.floor(y))[0, 0])
        raise ValueError(f"y must hold class indices (whole numbers), got {float(y[row]):g} "
                         f"at row {row}")
    return y.long()


def _integer_labels(model: Any) -> bool:
    """Whether ``model`` (a Detector) has integer classes that are not its class indices
    (e.g. labels 1 and 2): integer ``y`` is then its raw labels, to encode."""
    classes = getattr(model, "classes_", None)
    if classes is None or not hasattr(model, "encode_labels"):
        return False
    arr = np.asarray(classes)
    return arr.dtype.kind in "iu" and not np.array_equal(arr, np.arange(len(arr)))


def check_inputs(
    model: Any, x: Any, y: Any, dev: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` as a detached ``(N, D)`` tensor and ``y`` as ``(N,)`` int64 on ``dev``; raw labels
    are encoded by the model's ``encode_labels`` (an advsec Detector).

    Raises:
        ValueError: when ``x`` is not 2-D or ``y`` does not have one label per row.
    """
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.ndim != 2:
        raise ValueError(f"x must be a (N, D) tensor, got shape {tuple(x.shape)}")
    if x.is_inference():
        x = x.clone()
    x = x.detach().to(dev, dtype)
    y = class_indices(model, y).to(dev)
    if y.shape != (len(x),):
        raise ValueError(f"y must have shape ({len(x)},), got {tuple(y.shape)}")
    return x, y


def benign_index(model: Any, label: int | str | None, feature_space: FeatureSpace | None) -> int:
    """Index of the benign class: ``label`` as an index or one of the model's ``classes_``;
    ``None``: the schema's benign label when the model or space knows it, else ``"benign"`` or
    ``"normal"`` if the model has that class, else 0.

    Raises:
        ValueError: when ``label`` names no class of the model.
    """
    if isinstance(label, (int, np.integer)):
        return int(label)
    if label is None and feature_space is None and isinstance(model, nn.Module):
        return 0  # a bare network knows no class names
    classes = getattr(model, "classes_", None)
    names = None if classes is None else [str(c) for c in classes]
    if label is None:
        candidates = [space.schema.benign_label
                      for space in (feature_space, getattr(model, "feature_space_", None))
                      if space is not None and hasattr(space, "schema")]
        for cand in [*candidates, "benign", "normal"]:
            if names is not None and str(cand) in names:
                return names.index(str(cand))
        return 0
    if names is None:
        raise ValueError(f"benign_class={label!r} is a label but the model has no classes_; "
                         f"pass the class index")
    if str(label) not in names:
        raise ValueError(f"benign class {label!r} is not one of the model's classes {names}")
    return names.index(str(label))


def n_scores(forward: Any, model: Any, x: torch.Tensor) -> int:
    """How many scores (classes) the model gives: its ``classes_``, else its output on one
    row of ``x`` (a ValueError when that is not ``(1, C)``)."""
    classes = getattr(model, "classes_", None)
    if classes is not None:
        return len(classes)
    with torch.no_grad():
        out = forward(x[:1])
    shape = tuple(out.shape) if hasattr(out, "shape") else ()
    if len(shape) != 2 or shape[0] != 1:
        raise ValueError(f"the model returned shape {shape} for 1 record; expected (1, C) "
                         f"scores, one per class")
    return int(shape[1])


def check_classes_and_box(x: torch.Tensor, y: torch.Tensor, tgt: torch.Tensor | None, *,
                          n_classes: int, benign: int, bounds: tuple[float, float] | None,
                          name: str) -> None:
    """A ValueError, before anything is attacked, when the model gives fewer than 2 scores
    (``n_classes``, :func:`n_scores`), a label ``y`` ``(N,)``, a target ``tgt`` ``(N,)`` or the
    benign class is not one of its classes, or ``x`` ``(N, D)`` lies outside scalar
    ``bounds`` (the attack would clip it into them, so even eps 0 would move it). A few
    reductions and one host read for all of them; rows are located only on failure."""
    c = n_classes
    if c < 2:
        raise ValueError(f"{name}: the model gives {c} score column; attacks need one per "
                         f"class (2 or more): give a one-logit detector's two logits [-z, z] "
                         f"(advsec.models.wrap does)")
    if not 0 <= benign < c:
        raise ValueError(f"{name}: benign class {benign} is not one of the model's {c} classes")
    if not len(x):
        return
    named = {"label": y} if tgt is None else {"label": y, "target": tgt}
    if bounds is not None:
        named["box"] = x
    ends = torch.cat([torch.stack(torch.aminmax(t)).double() for t in named.values()]
                     ).tolist()  # the one read
    for i, (what, t) in enumerate(named.items()):
        low, high = ends[2 * i], ends[2 * i + 1]
        if what != "box":
            if low < 0 or high >= c:
                row = int(torch.nonzero((t < 0) | (t >= c))[0, 0])
                raise ValueError(f"{name}: {what} {int(t[row])} at row {row} is not a class "
                                 f"index of the model (0 .. {c - 1})")
            continue
        assert bounds is not None
        lo, hi = float(bounds[0]), float(bounds[1])
        if low < lo - 1e-6 or high > hi + 1e-6:
            row = int(torch.nonzero(((x < lo - 1e-6) | (x > hi + 1e-6)).any(1))[0, 0])
            raise ValueError(
                f"{name}: x holds values outside bounds=({lo:g}, {hi:g}) (from {low:g} to "
                f"{high:g}; first at row {row}), which the attack would clip its records into; "
                f"pass bounds=None for unbounded inputs (e.g. standardised features) or the "
                f"inputs' own bounds=(low, high)")


def resolve_targets(
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor | int | str | None,
    *,
    evasion: bool,
    benign: int,
    targeted: bool,
) -> tuple[bool, torch.Tensor, torch.Tensor | None]:
    """``(targeted, labels to aim at (N,), attacked rows (N,) or None for all rows)``.

    Evasion attacks only the rows whose label is not ``benign``, towards ``benign``.

    Raises:
        ValueError: a targeted attack without targets, or targets of the wrong shape/class.
    """
    n = len(x)
    if evasion:
        attacked = y != benign
        return True, torch.full((n,), benign, device=x.device, dtype=torch.long), attacked
    if target is None:
        if targeted:
            raise ValueError("a targeted attack needs target labels (or use evasion=True)")
        return False, y, None
    if isinstance(target, str):
        classes = getattr(model, "classes_", None)
        names = [str(c) for c in classes] if classes is not None else []
        if target not in names:
            raise ValueError(f"target {target!r} is not one of the model's classes {names}")
        target = names.index(target)
    if isinstance(target, (int, np.integer)):
        tgt = torch.full((n,), int(target), device=x.device, dtype=torch.long)
    else:
        tgt = torch.as_tensor(target, device=x.device).long()
    if tgt.shape != (n,):
        raise ValueError(f"target must have shape ({n},), got {tuple(tgt.shape)}")
    return True, tgt, None
