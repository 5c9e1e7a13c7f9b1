"""Attack the model you already have: :func:`wrap` puts it over a FeatureSpace's encoded inputs.

Attacks work on a fitted :class:`~advsec.features.space.FeatureSpace`'s encoded inputs
``x (N, D)``; :func:`wrap` feeds the user's model what it was trained on (``inputs``):

- ``"raw"``: the raw feature values ``(N, F)``, one column per schema feature in schema order,
  exactly as ``space.decode`` gives them (:class:`~advsec.features.raw_inputs.RawInputs`; a
  categorical feature must have numeric categories);
- ``"table"``: the decoded records, a DataFrame with the schema's columns and dtypes (text
  categoricals too: the usual scikit-learn ``Pipeline`` with a ``ColumnTransformer``);
- ``"encoded"``: ``x`` itself (a model trained on ``space.encode(...)``).

What comes back: an ``nn.Module`` gives a white-box
:class:`~advsec.models.foreign.ForeignNetwork` (every attack); an object with ``predict_proba``
(scikit-learn estimator or Pipeline, XGBoost, LightGBM) a score-based
:class:`~advsec.models.foreign.ForeignModel`; an object with only ``predict`` (unless
``output`` says it returns scores), or a callable returning labels, a decision-only one. The
model is called on a few records at once, so a wrong ``inputs``, column count or class list is
a one-line :class:`ConfigError` here, not deep inside an attack.

Shapes: ``N`` records, ``D`` encoded columns, ``F`` schema features, ``C`` classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from advsec.errors import AdvsecError, ConfigError, SchemaError
from advsec.features.raw_inputs import RawInputs, raw_feature_names
from advsec.features.schema import FeatureKind
from advsec.models.foreign import ForeignModel, ForeignNetwork, class_names

if TYPE_CHECKING:
    import pandas as pd

    from advsec.features.space import FeatureSpace

__all__ = ["INPUTS", "wrap"]

INPUTS = ("raw", "encoded", "table")
_OUTPUTS = ("auto", "logits", "proba", "labels")
_SAMPLE_ROWS = 4
#: made-up valid records a network's outputs are also read on, to tell probabilities from logits
_PROBE_ROWS = 16


def wrap(model: Any, *, space: FeatureSpace, inputs: str = "raw", benign: object | None = None,
         benign_label: str = "benign", attack_label: str = "attack",
         classes: Sequence[str] | None = None, model_classes: Sequence[object] | None = None,
         output: str = "auto", sample: pd.DataFrame | None = None
         ) -> ForeignModel | ForeignNetwork:
    """``model`` over ``space``'s encoded inputs ``(N, D)``, for attacks and evaluations.

    Args:
        model: an ``nn.Module`` ``(N, in) -> (N, C)`` (or ``(N, 1)``: one sigmoid/logit column
            of a binary model); an object with ``predict_proba`` (any fitted scikit-learn
            estimator or Pipeline, XGBClassifier, LGBMClassifier) or only ``predict``; or a
            callable taking what ``predict`` would (NumPy, or the DataFrame for
            ``inputs="table"``) and returning ``(N,)`` labels or ``(N, C)`` scores.
        space: the fitted FeatureSpace of the records to attack.
        inputs: what the model takes: ``"raw"``, ``"table"`` or ``"encoded"`` (module
            docstring); a network takes ``"raw"`` or ``"encoded"`` tensors.
        benign: the model's own benign class (e.g. ``"normal"``); by default class 0 of
            classes ``[0, 1]`` / ``[False, True]``, or a class named ``benign_label``.
        benign_label, attack_label: advsec's names of the benign class and, for a binary
            model, the other one (the data's labels; :func:`~advsec.models.foreign.class_names`).
        classes: advsec's names of the model's classes, in its output order (instead of the
            mapping above).
        model_classes: the model's own classes, in its output order, when it has no
            ``classes_`` (default ``[0, 1]``): what a label model's predictions are.
        output: ``"auto"``, or what the model returns: ``"logits"``, ``"proba"``, or
            ``"labels"`` (use ``predict``: a decision-only model). ``"auto"`` reads the
            outputs: probabilities when they are all in [0, 1] and, for 2+ columns, each row
            sums to 1 (one column in [0, 1]: the probability of class 1), else logits; a
            network ending in ``nn.Softmax`` / ``nn.Sigmoid`` gives probabilities, and a
            network's outputs are read on the sample records and 16 seeded random valid
            ones. An object with only ``predict`` gives labels unless ``output`` is
            ``"proba"`` or ``"logits"`` (e.g. a LightGBM ``Booster``, whose ``predict``
            returns probabilities).
        sample: a few raw records (the schema's columns) to check the model on; by default
            two made-up valid records (every feature at its lowest value, at its highest).

    Returns:
        a :class:`ForeignNetwork` for an ``nn.Module``, else a :class:`ForeignModel`.
    """
    if inputs not in INPUTS:
        raise ConfigError(f"inputs={inputs!r}: expected one of {', '.join(INPUTS)}")
    if output not in _OUTPUTS:
        raise ConfigError(f"output={output!r}: expected one of {', '.join(_OUTPUTS)}")
    _check_space(space)
    x0 = _sample(space, sample)
    names = dict(benign=benign, benign_label=benign_label, attack_label=attack_label)
    if isinstance(model, nn.Module):
        return _network(model, space=space, inputs=inputs, classes=classes, names=names,
                        own=model_classes, output=output, x0=x0)
    feed = _feeder(space, inputs, model)
    kind = _kind(model)
    # an object with only predict gives labels, unless output says it returns scores
    labels_only = output == "labels" or (output == "auto" and hasattr(model, "predict")
                                         and not hasattr(model, "predict_proba"))
    if hasattr(model, "predict_proba") and not labels_only:
        if output not in ("auto", "proba"):
            raise ConfigError(f"output={output!r}: predict_proba gives probabilities; use "
                              f"output='proba' or 'labels'")
        call: Callable[[Any], Any] = model.predict_proba
    elif hasattr(model, "predict"):
        call = model.predict
    elif callable(model):
        call = model
    else:
        raise ConfigError(f"cannot wrap {type(model).__name__}: expected an nn.Module, an "
                          f"object with predict_proba or predict, or a callable")
    _check_width(model, space, inputs)
    first = _call(call, feed(x0), inputs=inputs, space=space)
    _check_first(first, len(x0), scores=not labels_only and (first.ndim == 2
                                                             or output != "auto"))
    own = getattr(model, "classes_", None)
    own = list(own) if own is not None else (list(model_classes) if model_classes is not None
                                            else None)
    if labels_only or (first.ndim == 1 and output == "auto"):
        own = own if own is not None else [0, 1]
        labels = _names(own, classes, names)
        index = _indexer(own)
        model_out = "labels"

        def scores(x: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor(index(np.asarray(call(feed(x)))))
    else:
        two = first.ndim == 1 or (first.ndim == 2 and first.shape[1] == 1)  # class 1's score
        width = 2 if two or first.ndim != 2 else first.shape[1]
        own = own if own is not None else (list(range(width)) if width > 2 else [0, 1])
        labels = _names(own, classes, names)
        model_out = output if output != "auto" else _guess(first)

        def scores(x: torch.Tensor) -> torch.Tensor:
            s = torch.as_tensor(np.asarray(call(feed(x)), dtype=np.float32))
            return _two_columns(s.reshape(-1, 1), proba=model_out == "proba") if two else s

    wrapped = ForeignModel(scores, space=space, classes=labels, kind=kind, output=model_out)
    _check_call(wrapped, x0, inputs)
    return wrapped


# ------------------------------------------------------------------ networks
def _network(module: nn.Module, *, space: FeatureSpace, inputs: str,
             classes: Sequence[str] | None, names: dict[str, Any],
             own: Sequence[object] | None, output: str, x0: torch.Tensor) -> ForeignNetwork:
    if inputs == "table":
        raise ConfigError("inputs='table': a network takes tensors; use inputs='raw' (the raw "
                          "feature values) or 'encoded'")
    if output == "labels":
        raise ConfigError("output='labels': a network gives 'logits' or 'proba'")
    net: nn.Module = nn.Sequential(RawInputs(space), module) if inputs == "raw" else module
    first = _try_module(net, module, x0, space=space, inputs=inputs)
    if first.ndim != 2:
        raise ConfigError(f"the network returned shape {tuple(first.shape)} for "
                          f"{len(x0)} records; expected (N, C) scores")
    out = output if output != "auto" else _network_output(net, module, first, space=space,
                                                          inputs=inputs)
    if first.shape[1] == 1:
        net = nn.Sequential(net, TwoColumns(proba=out == "proba"))
    width = max(2, first.shape[1])
    labels = _names(list(own) if own is not None else list(range(width)) if width > 2
                    else [0, 1], classes, names)
    wrapped = ForeignNetwork(net, space=space, classes=labels, kind="torch", output=out)
    _check_call(wrapped, x0, inputs)
    return wrapped


def _network_output(net: nn.Module, module: nn.Module, first: torch.Tensor, *,
                    space: FeatureSpace, inputs: str) -> str:
    """``"proba"`` or ``"logits"``: what the network gives (``output="auto"``).

    Probabilities when its last module is ``nn.Softmax`` / ``nn.Sigmoid``; otherwise (e.g.
    ``torch.sigmoid`` called in ``forward``) by its outputs, as :func:`_guess` reads them, on
    the sample records ``first`` and :data:`_PROBE_ROWS` seeded random valid records (the
    rows that fail or give NaN are left out)."""
    leaves = [m for m in module.modules() if not list(m.children())]
    last = leaves[-1] if leaves else module
    if isinstance(last, nn.Softmax | nn.Sigmoid):
        return "proba"
    try:
        more = _try_module(net, module, _probe_rows(space), space=space, inputs=inputs)
    except AdvsecError:  # the network fails on made-up records: judge by the samples alone
        more = first[:0]
    seen = torch.cat([first, more]) if more.shape[1:] == first.shape[1:] else first
    seen = seen[torch.isfinite(seen).all(dim=1)]
    return _guess(seen.double().numpy()) if len(seen) else "logits"


def _probe_rows(space: FeatureSpace) -> torch.Tensor:
    """:data:`_PROBE_ROWS` valid encoded records ``(n, D)``, the same for every call: numeric
    columns uniform in [0, 1], each categorical block one-hot on a seen category."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((_PROBE_ROWS, space.n_features_out), generator=gen)
    for f, a, b in space.blocks_:
        if f.kind is FeatureKind.CATEGORICAL:
            seen = max(1, b - a - 1)  # the last slot is <other>
            pick = torch.randint(0, seen, (_PROBE_ROWS,), generator=gen)
            x[:, a:b] = nn.functional.one_hot(pick, b - a).to(x.dtype)
    return x


class TwoColumns(nn.Module):
    """A binary model's one column ``(N, 1)`` -> two ``(N, 2)``: a probability ``p`` of
    class 1 -> ``[1 - p, p]``; a logit ``z`` -> ``[0, z]`` (whose softmax is
    ``[1 - sigmoid(z), sigmoid(z)]``)."""

    def __init__(self, *, proba: bool) -> None:
        super().__init__()
        self.proba = proba

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """``(N, 2)`` scores of ``s`` ``(N, 1)``."""
        return _two_columns(s, proba=self.proba)


def _two_columns(s: torch.Tensor, *, proba: bool) -> torch.Tensor:
    return torch.cat([1.0 - s, s] if proba else [torch.zeros_like(s), s], dim=1)


def _try_module(net: nn.Module, module: nn.Module, x0: torch.Tensor, *, space: FeatureSpace,
                inputs: str) -> torch.Tensor:
    device = next((t.device for t in (*module.parameters(), *module.buffers())), None)
    was = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        with torch.no_grad():
            return net(x0 if device is None else x0.to(device)).detach().cpu()
    except AdvsecError:
        raise
    except Exception as exc:  # any failure on valid inputs is a mismatch with the space
        linear = next((m for m in module.modules() if isinstance(m, nn.Linear)), None)
        if linear is not None and linear.in_features != _width(space, inputs):
            raise ConfigError(_width_message(linear.in_features, space, inputs)) from None
        raise ConfigError(f"the network fails on the space's {_what(space, inputs)}: "
                          f"{type(exc).__name__}: {_line(exc)}") from None
    finally:
        for m, flag in was:
            m.train(flag)


# ------------------------------------------------------------------ estimators and callables
def _feeder(space: FeatureSpace, inputs: str, model: Any) -> Callable[[torch.Tensor], Any]:
    """``x (N, D) tensor -> what the model takes``."""
    names_in = getattr(model, "feature_names_in_", None)
    cols = [str(c) for c in names_in] if names_in is not None else None
    if cols is not None:
        missing = [c for c in cols if c not in space.schema.names]
        if missing:
            raise ConfigError(f"the model was fitted on column {missing[0]!r}, which the "
                              f"schema lacks (it has {space.schema.names[:6]}...)")
    if inputs == "encoded":
        return lambda x: x.detach().cpu().numpy()
    if inputs == "table":
        return lambda x: space.decode(x)[cols] if cols is not None else space.decode(x)
    try:
        raw = RawInputs(space)
    except SchemaError as exc:
        raise ConfigError(f"{_line(exc)} (a scikit-learn Pipeline may take inputs='table', the "
                          f"decoded records)") from None
    names = raw_feature_names(space)

    def feed(x: torch.Tensor) -> Any:
        with torch.no_grad():
            arr = raw(x.detach()).cpu().numpy()
        if cols is None:
            return arr
        import pandas as pd

        return pd.DataFrame(arr, columns=names)[cols]

    return feed


def _check_width(model: Any, space: FeatureSpace, inputs: str) -> None:
    n_in = getattr(model, "n_features_in_", None)
    if (isinstance(n_in, int | np.integer) and getattr(model, "feature_names_in_", None) is None
            and int(n_in) != _width(space, inputs)):
        raise ConfigError(_width_message(int(n_in), space, inputs))


def _call(call: Callable[[Any], Any], data: Any, *, inputs: str,
          space: FeatureSpace) -> np.ndarray:
    try:
        return np.asarray(call(data))
    except AdvsecError:
        raise
    except Exception as exc:  # the model's own error on valid records: a mismatch
        raise ConfigError(f"the model fails on the space's {_what(space, inputs)}: "
                          f"{type(exc).__name__}: {_line(exc)}") from None


def _check_space(space: object) -> None:
    """A one-line ConfigError unless ``space`` is a fitted FeatureSpace."""
    from advsec.features.space import FeatureSpace

    if not isinstance(space, FeatureSpace):
        raise ConfigError(f"space: expected a fitted FeatureSpace, got {type(space).__name__}")
    if not hasattr(space, "columns_"):
        raise ConfigError("space: the FeatureSpace is not fitted yet; call "
                          "space.fit(records) first")


def _check_first(first: np.ndarray, n: int, *, scores: bool) -> None:
    """A one-line ConfigError unless the model's output ``first`` on ``n`` records is ``(n,)``
    labels or ``(n, C)`` scores (numbers, when ``scores``)."""
    if first.ndim == 0:
        got = "None" if first.dtype == object and first.item() is None else (
            f"one value ({_plain(first.item())!r})")
        raise ConfigError(f"the model returned {got} for {n} records; expected ({n},) labels "
                          f"or ({n}, C) scores, one row per record")
    if first.ndim > 2 or first.shape[0] != n or (first.ndim == 2 and first.shape[1] == 0):
        raise ConfigError(f"the model returned shape {first.shape} for {n} records; expected "
                          f"({n},) labels or ({n}, C) scores, one row per record")
    if scores and first.dtype.kind not in "biuf":
        raise ConfigError(f"the model returned {first.dtype} values of shape {first.shape}: "
                          f"expected numeric scores (or output='labels' for class labels)")
    if scores and not np.isfinite(first).all():
        bad = int((~np.isfinite(first.reshape(n, -1))).any(axis=1).sum())
        raise ConfigError(f"the model returned NaN or infinite scores for {bad} of the {n} "
                          f"sample records; advsec needs finite scores (probabilities or "
                          f"logits)")


def _check_call(wrapped: ForeignModel, x0: torch.Tensor, inputs: str) -> None:
    try:
        wrapped(x0)
    except AdvsecError as exc:
        raise ConfigError(f"{_line(exc)} (inputs={inputs!r})") from None


def _indexer(own: list[object]) -> Callable[[np.ndarray], np.ndarray]:
    """``labels (N,) -> class indices (N,)`` in the order of ``own``."""
    numeric = all(isinstance(c, int | float | np.number) for c in own)
    keys: dict[object, int] = {(float(c) if numeric else str(c)): i  # type: ignore[arg-type]
                               for i, c in enumerate(own)}

    def index(pred: np.ndarray) -> np.ndarray:
        flat = pred.reshape(len(pred), -1)[:, 0] if pred.ndim == 2 else pred
        as_num = numeric and flat.dtype.kind in "biuf"
        out = np.empty(len(flat), dtype=np.int64)
        for j, v in enumerate(flat.tolist()):
            if isinstance(v, float) and not v.is_integer():
                raise ConfigError(f"the model returned {v!r} as a label: for scores, return "
                                  f"(N, C) or give output='proba' / 'logits'")
            k = keys.get(float(v) if as_num else str(v))
            if k is None:
                raise ConfigError(f"the model predicted {v!r}, not one of its classes "
                                  f"{[_plain(c) for c in own]}; pass model_classes=")
            out[j] = k
        return out

    return index


def _names(own: Sequence[object], classes: Sequence[str] | None,
           names: dict[str, Any]) -> list[str]:
    if classes is None:
        return class_names(own, **names)
    if len(classes) != len(own):
        raise ConfigError(f"classes={list(classes)}: the model has {len(own)} classes "
                          f"{[_plain(c) for c in own]}")
    return [str(c) for c in classes]


def _guess(first: np.ndarray) -> str:
    """``"proba"`` for scores in [0, 1] whose rows sum to 1 (or one column in [0, 1])."""
    s = first.astype(np.float64)
    in_unit = bool(np.all((s >= 0) & (s <= 1)))
    if s.shape[1] == 1:
        return "proba" if in_unit else "logits"
    return "proba" if in_unit and np.allclose(s.sum(axis=1), 1.0, atol=1e-4) else "logits"


# ------------------------------------------------------------------ helpers
def _sample(space: FeatureSpace, sample: pd.DataFrame | None) -> torch.Tensor:
    """A few encoded records: ``sample``'s first rows, or two made-up valid ones (every
    feature at its lowest value and first category; at its highest and last category)."""
    if sample is not None:
        return torch.as_tensor(space.encode(sample.iloc[:_SAMPLE_ROWS]))
    x = torch.zeros((2, space.n_features_out), dtype=torch.float32)
    x[1] = 1.0
    for f, a, b in space.blocks_:
        if f.kind is FeatureKind.CATEGORICAL:
            x[:, a:b] = 0.0
            x[0, a] = 1.0
            x[1, max(a, b - 2)] = 1.0  # the last category seen in training, not <other>
    return x


def _width(space: FeatureSpace, inputs: str) -> int:
    return space.n_features_out if inputs == "encoded" else len(space.schema.names)


def _what(space: FeatureSpace, inputs: str) -> str:
    """What the space gives the model, e.g. ``"42 raw features (inputs='raw', schema order)"``."""
    if inputs == "encoded":
        return f"{space.n_features_out} encoded columns (inputs='encoded')"
    if inputs == "raw":
        return f"{len(space.schema.names)} raw features (inputs='raw', schema order)"
    return f"{len(space.schema.names)} columns of decoded records (inputs='table')"


def _width_message(n_in: int, space: FeatureSpace, inputs: str) -> str:
    return f"model expects {n_in} input columns, the space gives {_what(space, inputs)}"


def _kind(model: Any) -> str:
    if not hasattr(model, "predict_proba") and not hasattr(model, "predict"):
        return "callable"
    root = type(model).__module__.split(".")[0]
    return root if root and root not in ("__main__", "builtins") else "foreign"


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value
