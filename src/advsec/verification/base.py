"""The verification contract, mirroring the attack contract::

    verifier(model, x, y, *, eps=[...]) -> VerifyResult      # (E, N) verified mask, timings

:class:`Verifier` does what is the same for every bound: it reads the model into a
:class:`~advsec.verification.network.ReluNetwork`, checks the inputs as the attacks do
(:func:`~advsec.attacks.targets.check_inputs`: raw labels through a Detector's
``encode_labels``), builds the valid region of every record per eps
(:func:`~advsec.verification.region.linf_region`: the attack's own box), bounds the margins
``logit[y] - logit[j]`` box by box in chunks of ``batch_size`` and certifies a record when every
margin lower bound of every one of its boxes is positive. A subclass implements the bound:
:meth:`Verifier.margins` (and :meth:`Verifier.logit_bounds`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from advsec.attacks.base import as_module
from advsec.attacks.targets import Eps, check_inputs, eps_values
from advsec.errors import ConfigError
from advsec.models.types import Model
from advsec.verification.bounds import Bounds
from advsec.verification.network import ReluNetwork, relu_network
from advsec.verification.region import CATEGORICAL, Categorical, Region, linf_region
from advsec.verification.result import VerifyResult

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["Verifier"]

log = logging.getLogger(__name__)

_DTYPES = (torch.float32, torch.float64)


class Verifier:
    """The frame shared by the bound-propagation verifiers; a subclass implements
    :meth:`margins` and :meth:`logit_bounds`.

    Args:
        eps: default budget(s) (L-inf, model-input units: a fraction of each feature's range).
        feature_space: the fitted FeatureSpace of the valid region (immutables, directions,
            bounds, one-hot blocks); ``None``: the plain box ``bounds``.
        bounds: the input box without a FeatureSpace, ``(low, high)``, or ``None``.
        categorical: mutable one-hot blocks, ``"enumerate"`` (each reachable category its own
            box) or ``"relax"`` (an interval per column); see
            :mod:`advsec.verification.region`.
        switch_categories: let mutable categoricals take any category whatever ``eps``.
        max_boxes: the most boxes per eps enumeration may make.
        batch_size: boxes bounded at once (memory grows with it and with the number of
            unstable units; 256 is the fastest on a 2-core CPU for a 256-128-64 MLP).
        dtype: ``torch.float32`` (default) or ``torch.float64`` for the bounds.
        device: where to bound (default: the model's device).
    """

    #: registry name
    name: ClassVar[str] = "verifier"
    #: the norms of the regions it certifies
    norms: ClassVar[tuple[str, ...]] = ("linf",)

    def __init__(
        self,
        *,
        eps: Eps = 0.1,
        feature_space: FeatureSpace | None = None,
        bounds: tuple[float, float] | None = (0.0, 1.0),
        categorical: Categorical = "enumerate",
        switch_categories: bool = False,
        max_boxes: int = 1_000_000,
        batch_size: int = 256,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        eps_values(eps)
        if categorical not in CATEGORICAL:
            raise ConfigError(f"{self.name}: categorical must be one of "
                              f"{', '.join(CATEGORICAL)}, got {categorical!r}")
        if dtype not in _DTYPES:
            raise ConfigError(f"{self.name}: dtype must be torch.float32 or torch.float64, "
                              f"got {dtype}")
        if batch_size < 1 or max_boxes < 1:
            raise ConfigError(f"{self.name}: batch_size and max_boxes must be >= 1")
        self.eps = eps
        self.feature_space = feature_space
        self.bounds = bounds
        self.categorical: Categorical = categorical
        self.switch_categories = bool(switch_categories)
        self.max_boxes = int(max_boxes)
        self.batch_size = int(batch_size)
        self.dtype = dtype
        self.device = device

    # ------------------------------------------------------------------ the bound
    def margins(self, net: ReluNetwork, lower: torch.Tensor, upper: torch.Tensor,
                y: torch.Tensor) -> torch.Tensor:
        """``(B, C - 1)`` lower bounds of ``logit[y] - logit[j]``, ``j != y`` in increasing
        order, over the boxes ``lower``, ``upper`` ``(B, D)`` (``y``: ``(B,)``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement margins")

    def logit_bounds(self, net: ReluNetwork, lower: torch.Tensor, upper: torch.Tensor
                     ) -> Bounds:
        """``(B, C)`` bounds of the logits over the boxes ``lower``, ``upper`` ``(B, D)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement logit_bounds")

    # ------------------------------------------------------------------ public API
    def network(self, model: Model | ReluNetwork) -> ReluNetwork:
        """``model`` as the :class:`ReluNetwork` this verifier bounds (its dtype and device)."""
        return relu_network(model if isinstance(model, ReluNetwork) else as_module(model),
                            dtype=self.dtype, device=self.device)

    def unsupported(self, model: Any) -> str | None:
        """Why this verifier cannot bound ``model`` (one line), or None when it can (here: a
        ReLU MLP, an advsec Detector or an ``nn.Sequential`` of ``Linear`` / ``ReLU``)."""
        try:
            self.network(model)
        except (ConfigError, TypeError) as exc:
            return f"{exc}; {self.name} bounds ReLU MLPs"
        return None

    def region(self, x: torch.Tensor, eps: float) -> Region:
        """The boxes of the valid region around ``x`` ``(N, D)`` at ``eps``."""
        return linf_region(x, eps, space=self.feature_space, bounds=self.bounds,
                           categorical=self.categorical,
                           switch_categories=self.switch_categories, max_boxes=self.max_boxes)

    def __call__(self, model: Model | ReluNetwork, x: torch.Tensor, y: Any, *,
                 eps: Eps | Sequence[float] | None = None) -> VerifyResult:
        """Which records of ``x`` ``(N, D)`` are certified to keep class ``y`` ``(N,)`` (class
        indices, or raw labels with a Detector) at every eps (a float or a list; default the
        constructor's): a :class:`VerifyResult` with an ``(E, N)`` verified mask."""
        eps_list = eps_values(self.eps if eps is None else eps)
        net = self.network(model)
        dev = net.device
        in_dtype = torch.float64 if self.dtype == torch.float64 else torch.float32
        x, y = check_inputs(model, x, y, dev, in_dtype)
        if net.n_outputs < 2:
            raise ConfigError(f"{self.name}: the network has {net.n_outputs} logit; margins "
                              f"need at least 2")
        if x.shape[1] != net.n_inputs:
            raise ConfigError(f"{self.name}: x has {x.shape[1]} columns, the network "
                              f"{net.n_inputs} inputs")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= net.n_outputs):
            raise ConfigError(f"{self.name}: class indices must be in [0, {net.n_outputs})")
        verified, margins, boxes, seconds = [], [], [], []
        with torch.no_grad():
            for e in eps_list:
                t0 = time.perf_counter()
                worst, n_boxes = self._record_margins(net, x, y, e)
                margins.append(worst.cpu())
                verified.append(margins[-1] > 0)
                boxes.append(n_boxes)
                seconds.append(time.perf_counter() - t0)
                log.info("%s eps=%g: %d of %d records certified (%d boxes) in %.2f s",
                         self.name, e, int(verified[-1].sum()), len(x), n_boxes, seconds[-1])
        n = len(x)
        return VerifyResult(
            verifier=self.name, eps=eps_list,
            verified=torch.stack(verified) if verified else torch.zeros((0, n), dtype=torch.bool),
            margin=torch.stack(margins), y=y.cpu(), boxes=boxes, seconds=seconds,
            info=self.settings())

    def settings(self) -> dict[str, Any]:
        """The verifier's options as plain values (for ``VerifyResult.info``)."""
        return {"categorical": self.categorical, "switch_categories": self.switch_categories,
                "feature_space": self.feature_space is not None,
                "dtype": str(self.dtype).replace("torch.", ""), "batch_size": self.batch_size}

    # ------------------------------------------------------------------ internals
    def _record_margins(self, net: ReluNetwork, x: torch.Tensor, y: torch.Tensor, eps: float
                        ) -> tuple[torch.Tensor, int]:
        """``((N,) worst margin lower bound per record, number of boxes)`` at ``eps``."""
        region = self.region(x, eps)
        n_boxes = len(region.owner)
        worst = torch.empty(n_boxes, dtype=net.dtype, device=x.device)
        for s in range(0, n_boxes, self.batch_size):
            t = min(s + self.batch_size, n_boxes)
            m = self.margins(net, region.lower[s:t].to(net.dtype),
                             region.upper[s:t].to(net.dtype), y[region.owner[s:t]])
            worst[s:t] = m.amin(1)
        out = torch.full((len(x),), float("inf"), dtype=net.dtype, device=x.device)
        return out.scatter_reduce_(0, region.owner, worst, "amin"), n_boxes

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(eps={self.eps}, categorical={self.categorical!r}, "
                f"dtype={self.dtype})")
