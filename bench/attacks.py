"""Attack throughput at the hardware limit: advsec vs a bare torch loop, torchattacks and ART.

For FGSM, BIM(10), PGD(10) and MIM(10) at one batch size and eps, on an MLP with 122 inputs,
hidden 256-128-64 and 2 logits, measure samples/s of:

- ``limit``: a bare torch loop doing only the needed forward+backward passes (gradients w.r.t.
  the input only), nothing else;
- ``advsec``: ``advsec.attacks`` (unconstrained, [0, 1] box);
- ``torchattacks`` and ``art`` (PyTorchClassifier), when installed.

Every implementation runs on the same model and inputs, interleaved round by round (so drift in
machine load hits all of them alike), after warm-up; the median of the rounds is reported. Then:
the constraint-aware path (a FeatureSpace of NSL-KDD when the data is there, else the synthetic
flows) against the unconstrained path on the same model and records, and the batch-size scaling
of ``limit`` and ``advsec``. The same script runs on a GPU (``--device cuda``; ``auto`` picks it
when present).

Usage::

    .venv/bin/python bench/attacks.py           # JSON to stdout and bench/results/attacks.json
    .venv/bin/python bench/attacks.py --quick   # fewer rounds, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from advsec.attacks import make_attack
from advsec.models.mlp import MLP

log = logging.getLogger("bench.attacks")

ROOT = Path(__file__).resolve().parents[1]
ATTACKS = {"fgsm": 1, "bim": 10, "pgd": 10, "mim": 10}
HIDDEN = (256, 128, 64)


# ------------------------------------------------------------------------------ timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fns: dict[str, Callable[[], Any]], *, rounds: int, warmup: int,
            device: torch.device) -> dict[str, list[float]]:
    """Seconds per call of each function, one entry per round, interleaved round by round
    (in a seeded random order per round)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    rng = random.Random(0)
    for _ in range(rounds):
        # a fresh random order each round: no implementation always follows the same one
        order = list(fns)
        rng.shuffle(order)
        for name in order:
            _sync(device)
            t0 = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def median(ts: list[float]) -> float:
    return statistics.median(ts)


def ratio(times: dict[str, list[float]], name: str, ref: str) -> float:
    """Median over rounds of ``time(ref) / time(name)``: throughput of ``name`` relative to
    ``ref``, each round's pair timed back to back (robust to drifting machine load)."""
    return statistics.median(r / t for r, t in zip(times[ref], times[name], strict=True))


# ------------------------------------------------------------------------------ implementations
def limit_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> Callable[[], Any]:
    """Only the forward+backward passes an attack of ``steps`` gradient steps needs."""

    def run() -> torch.Tensor:
        g = x
        for _ in range(steps):
            xr = x.detach().requires_grad_(True)
            loss = F.cross_entropy(model(xr), y, reduction="sum")
            (g,) = torch.autograd.grad(loss, xr)
        return g

    return run


def graph_limit_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   steps: int) -> Callable[[], Any]:
    """:func:`limit_fn`'s loop captured once as a CUDA graph and replayed: what a GPU does
    without Python and kernel-launch overhead (CUDA only). Captured after a warm-up on a side
    stream, with static input tensors, as PyTorch's CUDA-graph notes prescribe."""
    body = limit_fn(model, x.clone(), y.clone(), steps)  # the graph reads these tensors
    side = torch.cuda.Stream(device=x.device)
    side.wait_stream(torch.cuda.current_stream(x.device))
    with torch.cuda.stream(side):
        for _ in range(3):
            body()
    torch.cuda.current_stream(x.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        body()
    return graph.replay


def advsec_fn(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
              steps: int, space: Any = None) -> Callable[[], Any]:
    opts: dict[str, Any] = {"eps": eps, "feature_space": space}
    if steps > 1:
        opts["steps"] = steps
    attack = make_attack(name, **opts)
    return lambda: attack(model, x, y)


class _Image(nn.Module):
    """torchattacks' MI-FGSM normalises over dims (1, 2, 3): feed it (N, 1, 1, D)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


def torchattacks_fn(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                    steps: int) -> Callable[[], Any] | None:
    try:
        import torchattacks
    except ImportError:
        return None
    wrapped = _Image(model).eval()
    alpha = eps / 4
    attack = {
        "fgsm": lambda: torchattacks.FGSM(wrapped, eps=eps),
        "bim": lambda: torchattacks.BIM(wrapped, eps=eps, alpha=alpha, steps=steps),
        "pgd": lambda: torchattacks.PGD(wrapped, eps=eps, alpha=alpha, steps=steps,
                                        random_start=True),
        "mim": lambda: torchattacks.MIFGSM(wrapped, eps=eps, alpha=alpha, steps=steps,
                                           decay=1.0),
    }[name]()
    x4 = x.view(len(x), 1, 1, -1)
    return lambda: attack(x4, y)


def art_fn(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
           steps: int, n_classes: int) -> Callable[[], Any] | None:
    try:
        from art.attacks.evasion import (
            BasicIterativeMethod,
            FastGradientMethod,
            MomentumIterativeMethod,
            ProjectedGradientDescent,
        )
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        return None
    logging.getLogger("art").setLevel(logging.ERROR)
    clf = PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), input_shape=(x.shape[1],),
                            nb_classes=n_classes, clip_values=(0.0, 1.0),
                            device_type="gpu" if x.device.type == "cuda" else "cpu")
    b, alpha = len(x), eps / 4
    attack = {
        "fgsm": lambda: FastGradientMethod(clf, eps=eps, batch_size=b),
        "bim": lambda: BasicIterativeMethod(clf, eps=eps, eps_step=alpha, max_iter=steps,
                                            batch_size=b, verbose=False),
        "pgd": lambda: ProjectedGradientDescent(clf, eps=eps, eps_step=alpha, max_iter=steps,
                                                num_random_init=1, batch_size=b, verbose=False),
        "mim": lambda: MomentumIterativeMethod(clf, eps=eps, eps_step=alpha, max_iter=steps,
                                               decay=1.0, batch_size=b, verbose=False),
    }[name]()
    x_np, y_np = x.cpu().numpy(), y.cpu().numpy()
    return lambda: attack.generate(x_np, y=y_np)


# ------------------------------------------------------------------------------ sections
def make_model(d: int, device: torch.device, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MLP(d, 2, hidden=HIDDEN).to(device).eval()


def head_to_head(device: torch.device, batch: int, eps: float, rounds: int,
                 warmup: int) -> dict[str, Any]:
    model = make_model(122, device)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 122, generator=gen).to(device)
    y = torch.randint(0, 2, (batch,), generator=gen).to(device)
    out: dict[str, Any] = {}
    for name, steps in ATTACKS.items():
        fns: dict[str, Callable[[], Any]] = {
            "limit": limit_fn(model, x, y, steps),
            "advsec": advsec_fn(name, model, x, y, eps, steps),
        }
        ta = torchattacks_fn(name, model, x, y, eps, steps)
        if ta is not None:
            fns["torchattacks"] = ta
        art = art_fn(name, model, x, y, eps, steps, 2)
        if art is not None:
            fns["art"] = art
        times = measure(fns, rounds=rounds, warmup=warmup, device=device)
        out[name] = {
            "steps": steps,
            "samples_per_s": {k: round(batch / median(v), 1) for k, v in times.items()},
            "ratio_to_limit": {k: round(ratio(times, k, "limit"), 3) for k in times
                               if k != "limit"},
        }
        log.info("%s: %s", name, out[name])
    return out


def load_space(seed: int = 0) -> tuple[Any, np.ndarray, np.ndarray, str]:
    """A fitted FeatureSpace with encoded test records and labels: NSL-KDD, else synthetic."""
    from advsec.datasets import load
    from advsec.features.space import FeatureSpace

    root = ROOT.parent / "shared" / "datasets" / "nsl-kdd"
    if os.environ.get("ADVSEC_DATA") and (Path(os.environ["ADVSEC_DATA"]) / "nsl-kdd").is_dir():
        root = Path(os.environ["ADVSEC_DATA"]) / "nsl-kdd"  # e.g. a copy carried to a GPU
    try:
        ds = load("nsl-kdd", root=str(root))
        name = "nsl-kdd"
    except Exception as exc:  # any loading problem: fall back to generated data
        log.warning("NSL-KDD not available (%s); using the synthetic flows", exc)
        ds = load("synthetic", rows=12000, seed=seed)
        name = "synthetic"
    space = FeatureSpace(ds.schema).fit(ds.train)
    x = space.encode(ds.test)
    y = (ds.labels("test") != ds.benign_label).astype(np.int64)
    return space, x, y, name


def constrained(device: torch.device, batch: int, eps: float, rounds: int,
                warmup: int) -> dict[str, Any]:
    space, x_all, y_all, dataset = load_space()
    d = x_all.shape[1]
    model = make_model(d, device)
    reps = -(-batch // len(x_all))
    x = torch.as_tensor(np.tile(x_all, (reps, 1))[:batch]).to(device)
    y = torch.as_tensor(np.tile(y_all, reps)[:batch]).to(device)
    out: dict[str, Any] = {"dataset": dataset, "n_inputs": d,
                           "n_mutable": int(space.mutable_mask.sum())}
    repair = repair_fn(model, x, y, eps, space)
    for name, steps in ATTACKS.items():
        fns = {
            "unconstrained": advsec_fn(name, model, x, y, eps, steps),
            "constrained": advsec_fn(name, model, x, y, eps, steps, space=space),
            "limit": limit_fn(model, x, y, steps),
            "final_repair": repair,
        }
        times = measure(fns, rounds=rounds, warmup=warmup, device=device)
        loop = [c - r for c, r in zip(times["constrained"], times["final_repair"], strict=True)]
        out[name] = {
            "samples_per_s": {k: round(batch / median(v), 1) for k, v in times.items()
                              if k != "final_repair"},
            "slowdown": round(1.0 / ratio(times, "constrained", "unconstrained") - 1.0, 3),
            "final_repair_ms": round(median(times["final_repair"]) * 1e3, 2),
            "slowdown_without_final_repair": round(statistics.median(
                c / u - 1.0 for c, u in zip(loop, times["unconstrained"], strict=True)), 3),
            "constrained_ratio_to_limit": round(ratio(times, "constrained", "limit"), 3),
        }
        log.info("constrained %s: %s", name, out[name])
    return out


def repair_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
              space: Any) -> Callable[[], Any]:
    """The constrained path's one-off final step: rounding onto the grid in the ball, then the
    FeatureSpace's repair (relations, one-hot blocks), on a typical last iterate."""
    from advsec.attacks.projection import Projector
    from advsec.attacks.repair import repair_in_ball

    view = space.torch_view(x.device)
    eps_t = torch.full((len(x), 1), eps, device=x.device)
    project = Projector(x, eps_t, norm="linf", lower=view.lower, upper=view.upper,
                        mutable=view.mutable, space=space)
    last = project(make_attack("pgd", eps=eps)(model, x, y).clone())
    return lambda: repair_in_ball(space, last, x, eps_t, norm="linf")


def scaling(device: torch.device, batches: list[int], eps: float, rounds: int,
            warmup: int) -> dict[str, Any]:
    """Per batch size: samples/s of the bare loop (``limit``), of advsec with default settings,
    and on a GPU of the bare loop replayed as a CUDA graph (``graph_limit``, with advsec's
    ratio to it; an ``graph_error`` when the capture fails)."""
    model = make_model(122, device)
    out: dict[str, Any] = {}
    for batch in batches:
        gen = torch.Generator().manual_seed(batch)
        x = torch.rand(batch, 122, generator=gen).to(device)
        y = torch.randint(0, 2, (batch,), generator=gen).to(device)
        row: dict[str, Any] = {}
        for name, steps in ATTACKS.items():
            fns = {"limit": limit_fn(model, x, y, steps),
                   "advsec": advsec_fn(name, model, x, y, eps, steps)}
            error = None
            if device.type == "cuda":
                try:
                    fns["graph_limit"] = graph_limit_fn(model, x, y, steps)
                except Exception as exc:  # a capture problem: record it, keep the eager numbers
                    error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            times = measure(fns, rounds=rounds, warmup=warmup, device=device)
            entry = {k: round(batch / median(v), 1) for k, v in times.items()}
            entry["ratio"] = round(ratio(times, "advsec", "limit"), 3)
            if "graph_limit" in times:
                entry["ratio_to_graph_limit"] = round(ratio(times, "advsec", "graph_limit"), 3)
            if error:
                entry["graph_error"] = error
            row[name] = entry
        out[str(batch)] = row
        log.info("batch %d: %s", batch, row)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--rounds", type=int, default=31)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--scaling", default="64,256,1024,4096")
    p.add_argument("--quick", action="store_true", help="3 rounds, 1 warm-up")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "attacks.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    warnings.filterwarnings("ignore")
    if args.quick:
        args.rounds, args.warmup = 3, 1
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    versions = {"torch": torch.__version__}
    for mod in ("torchattacks", "art"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    result: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "versions": versions,
        "model": {"n_inputs": 122, "hidden": list(HIDDEN), "n_outputs": 2},
        "batch": args.batch,
        "eps": args.eps,
        "rounds": args.rounds,
        "statistic": "samples/s from the median seconds per call; ratios: median over rounds "
                     "of the back-to-back time ratio",
        "attacks": head_to_head(device, args.batch, args.eps, args.rounds, args.warmup),
        "constrained": constrained(device, args.batch, args.eps, args.rounds, args.warmup),
        "scaling": scaling(device, [int(b) for b in args.scaling.split(",")], args.eps,
                           max(args.rounds // 2, 3), args.warmup),
    }
    result["seconds"] = round(time.perf_counter() - t0, 1)
    # other busy processes distort every number: record the 1-minute load around the run
    result["load_average_1min"] = {"before": round(load_before[0], 2),
                                   "after": round(os.getloadavg()[0], 2),
                                   "cpus": os.cpu_count()}
    text = json.dumps(result, indent=2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
