"""Models trained elsewhere, over a FeatureSpace's encoded inputs: what attacks and the CLI take.

advsec's attacks work on the encoded inputs of a fitted
:class:`~advsec.features.space.FeatureSpace` (``(N, D)`` float32 in ``[0, 1]``). A model the user
already has is put behind that interface by a *scores* function ``x (N, D) tensor -> (N, C)``
(made by :func:`advsec.models.wrappers.wrap` from a network, a scikit-learn estimator or a plain
predict function):

- :class:`ForeignModel`: a black-box model, with the interface of
  :class:`~advsec.models.trees.TreeEnsemble` (``__call__``, ``predict_proba``, ``predict``,
  ``encode_labels``, ``classes_``, ``n_features_in_``, ``feature_space_``, ``data_``), so score-
  and decision-based attacks (square, hopskipjump) and :func:`~advsec.evaluation.evaluate_attack`
  take it. A model that only gives labels is *decision-only* (``decision_only = True``): its
  probabilities are one-hot.
- :class:`ForeignNetwork`: a white-box PyTorch network; :meth:`ForeignNetwork.as_module` gives
  logits, so gradient attacks (fgsm, pgd, apgd) work too.

:func:`class_names` maps a model's own classes (``[0, 1]``, ``["normal", "attack"]``) to
advsec's label names.

Shapes: ``N`` records, ``D`` encoded columns, ``C`` classes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from advsec.errors import ConfigError, DataError
from advsec.models.labels import class_indices

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["BATCH_SIZE", "ForeignModel", "ForeignNetwork", "class_names"]

#: rows per call of a foreign model's scores function
BATCH_SIZE = 8192
#: the floor of probabilities before their log (a network that outputs probabilities)
MIN_PROBA = 1e-12
_OUTPUTS = ("proba", "logits", "labels")
#: what the scores of each output are called in messages
_WHAT = {"proba": "probabilities", "logits": "logits", "labels": "class indices"}


class ForeignModel:
    """A black-box model over ``space``'s encoded inputs (see the module docstring).

    Args:
        scores: ``x (N, D) float32 tensor -> (N, C)`` probabilities (``output="proba"``),
            logits (``"logits"``, softmaxed) or ``(N,)`` class indices (``"labels"``, one-hot
            probabilities; the model is then decision-only). NumPy results are accepted.
        space: the fitted FeatureSpace the inputs are encoded with.
        classes: the ``C`` label names, in the order of the scores' columns (advsec's names,
            e.g. ``["benign", "attack"]``; see :func:`class_names`).
        kind: what the model is (shown in reports), e.g. ``"torch"``, ``"sklearn"``.
        output: what ``scores`` returns (above).

    Attributes:
        classes_: ``(C,)`` str array; n_features_in_: ``D``; feature_space_: ``space``;
        data_: ``None`` (how a training table was read: unknown); kind; output;
        decision_only: True for ``output="labels"``; batch_size: rows per ``scores`` call.
    """

    batch_size: int = BATCH_SIZE

    def __init__(self, scores: Callable[[torch.Tensor], torch.Tensor], *, space: FeatureSpace,
                 classes: Sequence[str], kind: str = "foreign", output: str = "proba") -> None:
        if output not in _OUTPUTS:
            raise ConfigError(f"output={output!r}: expected one of {', '.join(_OUTPUTS)}")
        names = [str(c) for c in classes]
        if len(names) < 2 or len(set(names)) != len(names):
            raise ConfigError(f"classes={names}: expected at least 2 distinct label names")
        if not callable(scores):
            raise ConfigError(f"scores: expected a callable (N, D) tensor -> (N, C), got "
                              f"{type(scores).__name__}")
        self.scores = scores
        self.classes_ = np.asarray(names, dtype=object).astype(str)
        self.feature_space_ = space
        self.n_features_in_ = int(space.n_features_out)
        self.data_: dict[str, Any] | None = None
        self.kind = kind
        self.output = output
        self.decision_only = output == "labels"

    # ------------------------------------------------------------------ prediction
    def __call__(self, x: Any) -> torch.Tensor:
        """``(N, C)`` class probabilities (float32 tensor on ``x``'s device) of ``x``
        ``(N, D)`` (tensor or NumPy), ``batch_size`` rows per call of ``scores``."""
        t = self._inputs(x)
        with torch.no_grad():
            parts = [self._proba(chunk) for chunk in t.split(self.batch_size)]
        if not parts:
            return torch.zeros((0, len(self.classes_)), dtype=torch.float32, device=t.device)
        return torch.cat(parts)

    def predict_proba(self, x: Any) -> np.ndarray:
        """``(N, C)`` class probabilities (NumPy float32) of ``x`` ``(N, D)``."""
        return self(x).cpu().numpy()

    def predict(self, x: Any) -> np.ndarray:
        """``(N,)`` the most probable class label (from ``classes_``) of each row of ``x``."""
        return np.asarray(self.classes_[self(x).argmax(dim=1).cpu().numpy()])

    def encode_labels(self, labels: Any) -> torch.Tensor:
        """``(N,)`` class indices (a long tensor) of the labels ``labels`` (one-line
        :class:`DataError` for a label that is not a class)."""
        return class_indices(self.classes_, labels)

    # ------------------------------------------------------------------ helpers
    def _inputs(self, x: Any) -> torch.Tensor:
        t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
        t = t.to(torch.float32)
        if t.ndim != 2 or t.shape[1] != self.n_features_in_:
            raise DataError(f"expected inputs of shape (N, {self.n_features_in_}) (the space's "
                            f"encoded columns), got {tuple(t.shape)}")
        return t

    def _proba(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities ``(n, C)`` float32 on ``x``'s device of one batch ``x`` ``(n, D)``."""
        out = self.scores(x)
        t = out.detach() if isinstance(out, torch.Tensor) else torch.as_tensor(np.asarray(out))
        t = t.to(device=x.device)
        n, c = x.shape[0], len(self.classes_)
        if self.output == "labels":
            if t.ndim == 2 and t.shape[1] == 1:
                t = t[:, 0]
            if t.shape != (n,) or (t.is_floating_point() and bool((t != t.round()).any())):
                raise DataError(f"the model returned {tuple(t.shape)} {t.dtype} for {n} records; "
                                f"expected ({n},) class indices (output='labels')")
            idx = t.to(torch.long)
            if n and (int(idx.min()) < 0 or int(idx.max()) >= c):
                raise DataError(f"the model returned class index {int(idx.max())} or "
                                f"{int(idx.min())}; expected indices in [0, {c}) of "
                                f"{list(self.classes_)}")
            return nn.functional.one_hot(idx, c).to(torch.float32)
        if t.shape != (n, c):
            raise DataError(f"the model returned scores of shape {tuple(t.shape)} for {n} "
                            f"records; expected ({n}, {c}), one column per class "
                            f"{list(self.classes_)} (output={self.output!r})")
        t = t.to(torch.float32)
        finite = torch.isfinite(t).all(dim=1)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise DataError(f"the model returned NaN or infinite scores for {bad} of {n} "
                            f"records (first: record {int(torch.nonzero(~finite)[0, 0]) + 1} of "
                            f"the batch); advsec needs finite {_WHAT[self.output]} to score "
                            f"records")
        return torch.softmax(t, dim=1) if self.output == "logits" else t

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(kind={self.kind!r}, output={self.output!r}, "
                f"classes={[str(c) for c in self.classes_]}, n_features_in_={self.n_features_in_})")


class ForeignNetwork(ForeignModel):
    """A white-box PyTorch network over ``space``'s encoded inputs.

    Args:
        module: ``x (N, D) float32 -> (N, C)`` logits (``output="logits"``) or probabilities
            (``"proba"``); put in eval mode for every prediction and kept on its own device
            (inputs are moved to it).
        space, classes, kind: as for :class:`ForeignModel`.

    :meth:`as_module` is the logits network attacks differentiate (for a network that outputs
    probabilities, ``log(max(p, 1e-12))``, whose softmax is ``p``).
    """

    def __init__(self, module: nn.Module, *, space: FeatureSpace, classes: Sequence[str],
                 kind: str = "foreign", output: str = "logits") -> None:
        if not isinstance(module, nn.Module):
            raise ConfigError(f"ForeignNetwork needs a torch.nn.Module, got "
                              f"{type(module).__name__}")
        if output not in ("logits", "proba"):
            raise ConfigError(f"output={output!r}: a network gives 'logits' or 'proba'")
        self.module = module
        self._logits: nn.Module = module if output == "logits" else nn.Sequential(
            module, LogProba())
        super().__init__(self._forward, space=space, classes=classes, kind=kind, output=output)

    def as_module(self) -> nn.Module:
        """The network ``(N, D) -> logits (N, C)`` (for gradient attacks)."""
        return self._logits

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        device = module_device(self.module)
        with eval_mode(self.module):
            return self.module(x if device is None else x.to(device))


class LogProba(nn.Module):
    """``(N, C)`` probabilities -> their log, clamped at ``MIN_PROBA`` (logits whose softmax
    is the probabilities, when they sum to one)."""

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        """``log(max(p, 1e-12))`` of ``p`` ``(N, C)``."""
        return torch.log(torch.clamp(p, min=MIN_PROBA))


def module_device(module: nn.Module) -> torch.device | None:
    """The device of ``module``'s first parameter or buffer (``None`` when it has neither)."""
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return None


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode for the block, its training flags restored after."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, flag in flags:
            m.train(flag)


def class_names(model_classes: Sequence[object], *, benign: object | None, benign_label: str,
                attack_label: str = "attack", ask: str = "pass benign=<the benign class>"
                ) -> list[str]:
    """advsec's label names (binary scheme) for a model's own classes, in the same order.

    The model's benign class becomes ``benign_label`` (the data's benign label); the others
    become ``attack_label`` (``"attack"``, the binary scheme's name; the synthetic flows say
    ``"malicious"``) when there are exactly two classes, else keep their names (``str``).
    Which class is benign: ``benign`` when given (matched as is, else by its ``str``); with
    ``benign=None``, class 0 of classes ``[0, 1]`` or ``[False, True]``, or the class already
    named ``benign_label``; otherwise a one-line :class:`ConfigError` asks for ``benign=``
    (``ask``: what the message tells the caller to pass, e.g. a command-line option).

    Example:
        >>> class_names([0, 1], benign=None, benign_label="benign")
        ['benign', 'attack']
        >>> class_names(["attack", "normal"], benign="normal", benign_label="benign")
        ['attack', 'benign']
    """
    classes = list(np.asarray(model_classes, dtype=object).ravel())
    shown = [_plain(c) for c in classes]
    if len(classes) < 2:
        raise ConfigError(f"the model has classes {shown}: expected at least 2")
    if benign is None:
        if _is_zero_one(classes):
            at = 0
        elif benign_label in [str(c) for c in classes]:
            at = [str(c) for c in classes].index(benign_label)
        else:
            raise ConfigError(f"cannot tell which of the model's classes {shown} is benign: "
                              f"{ask}")
    else:
        same = [i for i, c in enumerate(classes) if _equal(c, benign)]
        same = same or [i for i, c in enumerate(classes) if str(c) == str(benign)]
        if len(same) != 1:
            raise ConfigError(f"benign={_plain(benign)!r} is not one of the model's classes "
                              f"{shown}")
        at = same[0]
    if len(classes) == 2:
        return [benign_label if i == at else attack_label for i in range(2)]
    names = [benign_label if i == at else str(c) for i, c in enumerate(classes)]
    if len(set(names)) != len(names):
        raise ConfigError(f"the model's classes {shown} give duplicate label names {names} "
                          f"(benign label {benign_label!r}): pass classes= explicitly")
    return names


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def _equal(a: object, b: object) -> bool:
    if isinstance(a, str) != isinstance(b, str):
        return False
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _is_zero_one(classes: list[object]) -> bool:
    if len(classes) != 2 or any(isinstance(c, str | bytes) for c in classes):
        return False
    try:
        return float(classes[0]) == 0.0 and float(classes[1]) == 1.0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
