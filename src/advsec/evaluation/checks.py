"""Red flags of a robustness evaluation (Carlini et al., "On Evaluating Adversarial Robustness",
2019, https://arxiv.org/abs/1902.06705, section 5 checklist).

Each check returns a :class:`Flag` ``(name, ok, detail)``; ``ok`` is False when the flag is
raised. Table checks read a sweep table (pandas; columns ``attack``, ``eps``, ``accuracy`` and
``attack_success_rate``; several rows for one (attack, eps), e.g. seeds, are averaged):

- accuracy rises with eps (a stronger budget cannot help the model);
- an iterative attack is weaker than FGSM at the same eps (it starts where FGSM does);
- a black-box (score-based or transfer) attack is stronger than the white-box ones;
- an unbounded attack stays below 100 % success at a large eps;
- adversarial inputs farther from the clean ones than eps (column ``max_linf``; a repair or a
  projection that leaves the budget makes an attack look stronger than its eps).

Model checks probe the attacked network on a few inputs:

- zero or NaN input gradients (masked, saturated or broken gradients);
- outputs that are probabilities: a loss computed on them (instead of on logits) saturates.

:func:`red_flags` also runs the honesty checks of :mod:`advsec.evaluation.honesty` (a clean
accuracy that suggests a label leak, one feature that alone separates the classes, a detector
that predicts a single class) when given clean predictions or the training table.

Attacks are told apart by what they declare (:mod:`advsec.attacks.spec`): a table label is read
as the registered attack whose name is its longest prefix (``pgd-valid`` is ``pgd``), and that
attack's ``family`` and ``budget`` say whether it is single-step (a gradient attack without a
budget, like FGSM), iterative (a gradient attack with steps) or black-box (score-based,
decision-based or transfer). A label that names no registered attack is a white-box attack of
unknown kind. Names are compared within the same suffix (``fgsm-valid`` with ``pgd-valid``,
``fgsm (faithful)`` with ``bim (faithful)``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from advsec.attacks.base import as_module
from advsec.attacks.spec import spec_for_label
from advsec.features.schema import FeatureSchema
from advsec.models.inference import eval_mode
from advsec.models.types import Model

__all__ = [
    "Flag",
    "check_black_box_vs_white_box",
    "check_budget",
    "check_gradients",
    "check_iterative_vs_fgsm",
    "check_model",
    "check_monotone_eps",
    "check_outputs_are_logits",
    "check_sweep",
    "check_unbounded_success",
    "flags_html",
    "flags_table",
    "red_flags",
]

_WORST = ("worst-case", "worst_case", "worst")


@dataclass(frozen=True)
class Flag:
    """One check: ``ok`` is False when the red flag is raised; ``detail`` says why (one line)."""

    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"[{'ok' if self.ok else 'RED FLAG'}] {self.name}: {self.detail}"


# ---------------------------------------------------------------------------- table checks
def check_monotone_eps(table: pd.DataFrame, *, tol: float = 0.005) -> Flag:
    """Raised when an attack's accuracy rises by more than ``tol`` between two larger eps."""
    name = "accuracy non-increasing in eps"
    bad: list[str] = []
    means = _means(table)
    if means.empty:
        return Flag(name, True, "n/a: no rows")
    for attack, g in means.groupby("attack", sort=False):
        g = g.sort_values("eps")
        acc, eps = g["accuracy"].to_numpy(), g["eps"].to_numpy()
        for i in np.flatnonzero(np.diff(acc) > tol):
            bad.append(f"{attack}: {acc[i]:.4f} at eps={eps[i]:g} -> {acc[i + 1]:.4f} at "
                       f"eps={eps[i + 1]:g}")
    if bad:
        return Flag(name, False, "accuracy rises with eps (" + "; ".join(bad[:4]) +
                    (f"; +{len(bad) - 4} more" if len(bad) > 4 else "") + ")")
    return Flag(name, True, f"checked {means['attack'].nunique()} attack(s)")


def check_iterative_vs_fgsm(table: pd.DataFrame, *, tol: float = 0.005) -> Flag:
    """Raised when an iterative attack leaves accuracy more than ``tol`` above FGSM's."""
    name = "iterative attacks at least as strong as FGSM"
    means = _means(table)
    bad: list[str] = []
    compared = 0
    for (family, suffix), g in _by_family(means).items():
        if family != "iterative":
            continue
        fg = _by_family(means).get(("fgsm", suffix))
        if fg is None:
            continue
        ref = fg.groupby("eps")["accuracy"].mean()
        for row in g.itertuples():
            e = _match(ref.index, row.eps)
            if e is None or row.eps == 0:
                continue
            compared += 1
            if row.accuracy > ref[e] + tol:
                bad.append(f"{row.attack} {row.accuracy:.4f} > FGSM {ref[e]:.4f} at "
                           f"eps={row.eps:g}")
    if bad:
        return Flag(name, False, "iterative attack weaker than FGSM (" + "; ".join(bad[:4]) +
                    (f"; +{len(bad) - 4} more" if len(bad) > 4 else "") + ")")
    if compared == 0:
        return Flag(name, True, "n/a: no FGSM and iterative attack at the same eps")
    return Flag(name, True, f"{compared} comparison(s)")


def check_black_box_vs_white_box(table: pd.DataFrame, *, tol: float = 0.005) -> Flag:
    """Raised when a black-box attack beats every white-box attack by more than ``tol``."""
    name = "white-box attacks at least as strong as black-box"
    means = _means(table)
    if means.empty:
        return Flag(name, True, "n/a: no rows")
    fam = means["attack"].map(lambda a: _family(str(a))[0])
    black = means[fam == "black-box"]
    white = means[fam.isin(["fgsm", "iterative", "other"])]
    if black.empty or white.empty:
        return Flag(name, True, "n/a: needs both black-box and white-box attacks")
    best_white = white.groupby("eps")["accuracy"].min()
    bad = []
    for row in black.itertuples():
        e = _match(best_white.index, row.eps)
        if e is not None and row.eps > 0 and row.accuracy < best_white[e] - tol:
            bad.append(f"{row.attack} {row.accuracy:.4f} < best white-box {best_white[e]:.4f} "
                       f"at eps={row.eps:g}")
    if bad:
        return Flag(name, False, "black-box stronger than white-box: the gradients mislead "
                    "the white-box attacks (" + "; ".join(bad[:4]) + ")")
    return Flag(name, True, f"{len(black)} black-box row(s) compared")


def check_unbounded_success(
    table: pd.DataFrame,
    *,
    large_eps: float,
    attacks: Sequence[str] | None = None,
    tol: float = 0.0,
) -> Flag:
    """Raised when an unbounded attack at ``eps >= large_eps`` succeeds on less than
    ``1 - tol`` of the records it could attack.

    With no clipping and a large budget any input can be moved anywhere, so a sound
    white-box attack must reach 100 %; less means it is not optimising what it should.
    ``attacks`` limits the check to those names (default: the iterative attacks and
    unrecognised names; single-step FGSM, black-box and ``worst-case`` rows are skipped: one
    step, however large, need not cross the decision boundary).
    """
    name = f"unbounded attacks reach 100% success at eps >= {large_eps:g}"
    if "attack_success_rate" not in table.columns:
        return Flag(name, True, "n/a: no attack_success_rate column")
    rows = table[(table["eps"] >= large_eps - 1e-12)]
    if attacks is not None:
        rows = rows[rows["attack"].isin(list(attacks))]
    else:
        rows = rows[rows["attack"].map(lambda a: _family(str(a))[0] in ("iterative", "other"))]
    if rows.empty:
        return Flag(name, True, f"n/a: no attack at eps >= {large_eps:g}")
    g = rows.groupby(["attack", "eps"], sort=False)["attack_success_rate"].mean().reset_index()
    bad = [f"{r.attack} {r.attack_success_rate:.1%} at eps={r.eps:g}" for r in g.itertuples()
           if not (r.attack_success_rate >= 1.0 - tol - 1e-12)]
    if bad:
        return Flag(name, False, "unbounded attack below 100% success (" + "; ".join(bad[:4]) +
                    (f"; +{len(bad) - 4} more" if len(bad) > 4 else "") + ")")
    return Flag(name, True, f"{len(g)} row(s) at 100%")


def check_budget(table: pd.DataFrame, *, tol: float = 1e-5) -> Flag:
    """Raised when an attack's inputs are farther than ``eps`` (L-inf) from the clean ones.

    Reads the ``max_linf`` column (largest L-inf distance per row of the table). An L2 attack
    passes too when it keeps its budget, since ``||d||_inf <= ||d||_2``.
    """
    name = "perturbations within the eps budget"
    if "max_linf" not in table.columns:
        return Flag(name, True, "n/a: no max_linf column")
    t = table[table["max_linf"].notna() & (table["eps"] > 0)]
    bad = t[t["max_linf"] > t["eps"] * (1 + 1e-6) + tol]
    if len(bad):
        items = [f"{r.attack} max L-inf {r.max_linf:.3g} at eps={r.eps:g}"
                 for r in bad.itertuples()]
        return Flag(name, False, "adversarial inputs outside the eps-ball (" +
                    "; ".join(items[:4]) + (f"; +{len(items) - 4} more" if len(items) > 4
                                            else "") + ")")
    return Flag(name, True, f"{len(t)} row(s) within budget" if len(t) else "n/a: no rows")


def check_sweep(
    table: pd.DataFrame,
    *,
    tol: float = 0.005,
    large_eps: float | None = None,
    unbounded_attacks: Sequence[str] | None = None,
) -> list[Flag]:
    """Every table check on one sweep table (one model, one threat model); the budget check
    runs when the table has a ``max_linf`` column.

    Args:
        table: columns ``attack``, ``eps``, ``accuracy`` (and ``attack_success_rate``).
        tol: accuracy tolerance (absolute) of the comparisons.
        large_eps: run :func:`check_unbounded_success` for rows at ``eps >= large_eps`` (only
            meaningful for attacks without clipping); skipped when None.
        unbounded_attacks: names the unbounded check applies to (default: all).
    """
    flags = [check_monotone_eps(table, tol=tol), check_iterative_vs_fgsm(table, tol=tol),
             check_black_box_vs_white_box(table, tol=tol)]
    if "max_linf" in table.columns:
        flags.append(check_budget(table))
    if large_eps is not None:
        flags.append(check_unbounded_success(table, large_eps=large_eps,
                                             attacks=unbounded_attacks))
    return flags


# ---------------------------------------------------------------------------- model checks
def check_gradients(
    model: Model,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    *,
    loss: str = "margin",
    zero_tol: float = 1e-12,
    max_zero_share: float = 0.05,
) -> Flag:
    """Raised when input gradients of an attack loss are NaN, or zero for too many records.

    The loss is applied to ``model``'s outputs exactly as an attack applies it. The default,
    the logit margin, only has a zero gradient where the network is locally flat (dead units,
    a non-differentiable step, gradient masking); ``loss="ce"`` also shows where the
    cross-entropy saturates (confident records in float32 give exactly zero gradients, which
    an attack without a random start cannot leave). A record's gradient counts as zero when
    its largest absolute entry is ``<= zero_tol``.

    Args:
        model: the network the attack differentiates (module or Detector).
        x: a few inputs ``(N, D)``; y: their class indices ``(N,)``.
        loss: ``"margin"``, ``"ce"`` or another objective name of :mod:`advsec.attacks.losses`.
        zero_tol: largest absolute gradient entry that still counts as zero.
        max_zero_share: share of zero-gradient records above which the flag is raised.
    """
    from advsec.attacks.losses import get_objective

    objective = get_objective(loss)
    name = "input gradients finite and non-zero"
    module = as_module(model)
    xt, yt = _inputs(module, x, y)
    if len(xt) == 0 or yt is None:
        return Flag(name, True, "n/a: no inputs")
    with eval_mode(module), torch.enable_grad():
        xg = xt.clone().requires_grad_(True)
        value = objective(module(xg), yt, False).sum()
        (grad,) = torch.autograd.grad(value, xg)
    nan = ~torch.isfinite(grad).all(dim=1)
    zero = grad.abs().amax(dim=1) <= zero_tol
    n_nan, share = int(nan.sum()), float(zero.float().mean())
    median = float(grad.abs().amax(dim=1).median())
    if n_nan:
        return Flag(name, False, f"NaN/inf gradients for {n_nan} of {len(xt)} records")
    if share > max_zero_share:
        return Flag(name, False, f"zero {loss} gradients (max |g| <= {zero_tol:g}) for "
                    f"{share:.1%} of {len(xt)} records; median max |g| {median:.2e}")
    return Flag(name, True, f"{share:.1%} of {len(xt)} records with zero {loss} gradient; "
                f"median max |g| {median:.2e}")


def check_outputs_are_logits(
    model: Model, x: torch.Tensor | np.ndarray, *, atol: float = 1e-4, share: float = 0.99
) -> Flag:
    """Raised when ``model``'s outputs look like probabilities (rows in [0, 1] summing to 1).

    An attack's loss applies softmax/log-softmax itself; computed on probabilities the
    softmax is applied twice, the loss saturates and gradients vanish (the flaw of the KDD
    Cup 99 study, which passed its probability model where logits were expected).
    """
    name = "attack loss computed on logits"
    module = as_module(model)
    xt, _ = _inputs(module, x, None)
    if len(xt) == 0:
        return Flag(name, True, "n/a: no inputs")
    with eval_mode(module), torch.no_grad():
        out = module(xt).double()
    is_prob = ((out >= -atol).all(dim=1) & (out <= 1 + atol).all(dim=1)
               & ((out.sum(dim=1) - 1).abs() <= atol))
    frac = float(is_prob.double().mean())
    if frac >= share:
        return Flag(name, False, f"the attacked model outputs probabilities ({frac:.1%} of rows "
                    "are in [0, 1] and sum to 1): the loss is computed on softmax outputs, "
                    "not logits")
    return Flag(name, True, f"outputs are not probabilities ({frac:.1%} of rows look like them)")


def check_model(
    model: Model, x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, **options: Any
) -> list[Flag]:
    """:func:`check_outputs_are_logits` and :func:`check_gradients` on ``model`` (options go to
    the latter)."""
    return [check_outputs_are_logits(model, x), check_gradients(model, x, y, **options)]


def red_flags(
    table: pd.DataFrame | None = None,
    *,
    model: Model | None = None,
    x: torch.Tensor | np.ndarray | None = None,
    y: torch.Tensor | np.ndarray | None = None,
    tol: float = 0.005,
    large_eps: float | None = None,
    unbounded_attacks: Sequence[str] | None = None,
    y_pred: np.ndarray | None = None,
    proba: np.ndarray | None = None,
    benign_class: int = 0,
    classes: Sequence[str] | None = None,
    train: pd.DataFrame | None = None,
    schema: FeatureSchema | None = None,
) -> list[Flag]:
    """All checks that the arguments allow, in a fixed order: table checks on ``table``, model
    checks when ``model``, ``x`` and ``y`` are given, the honesty checks of
    :mod:`advsec.evaluation.honesty` on clean predictions when ``y`` ``(N,)`` and ``y_pred``
    ``(N,)`` are given (``proba`` ``(N, C)``, ``benign_class`` and ``classes`` as in
    :func:`~advsec.evaluation.honesty.check_clean`), and the single-feature check on the raw
    training table ``train`` (labels in its ``schema.label`` column) when ``schema`` is given."""
    from advsec.evaluation import honesty

    flags: list[Flag] = []
    if table is not None:
        flags += check_sweep(table, tol=tol, large_eps=large_eps,
                             unbounded_attacks=unbounded_attacks)
    if model is not None and x is not None and y is not None:
        flags += check_model(model, x, y)
    if y is not None and y_pred is not None:
        y_np = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        flags += honesty.check_clean(y_np, np.asarray(y_pred), proba=proba,
                                     benign_class=benign_class, classes=classes)
    if train is not None and schema is not None:
        flags.append(honesty.check_single_feature(train, train[schema.label], schema))
    return flags


# ---------------------------------------------------------------------------- presentation
def flags_table(flags: Sequence[Flag], **columns: Any) -> pd.DataFrame:
    """Flags as a table (``check``, ``status``, ``detail`` plus constant ``columns``)."""
    return pd.DataFrame([{**columns, "check": f.name, "status": "ok" if f.ok else "RED FLAG",
                          "detail": f.detail} for f in flags])


def flags_html(flags: Sequence[Flag]) -> str:
    """An HTML list of flags using the report's ``flag-ok`` / ``flag-bad`` classes."""
    items = "".join(
        f'<li class="{"flag-ok" if f.ok else "flag-bad"}">{"✓" if f.ok else "✗ RED FLAG"} '
        f"<b>{html.escape(f.name)}</b>: {html.escape(f.detail)}</li>" for f in flags)
    return f"<ul>{items}</ul>"


# ---------------------------------------------------------------------------- helpers
def _means(table: pd.DataFrame) -> pd.DataFrame:
    if table is None or table.empty:
        return pd.DataFrame(columns=["attack", "eps", "accuracy"])
    t = table[table["accuracy"].notna()] if "accuracy" in table.columns else table
    return t.groupby(["attack", "eps"], sort=False)["accuracy"].mean().reset_index()


def _family(name: str) -> tuple[str, str]:
    """``(family, suffix)``: family in fgsm (single-step) / iterative / black-box / worst /
    other, from the registered attack the label names."""
    low = name.lower()
    if low in _WORST:
        return "worst", ""
    spec, suffix = spec_for_label(low)
    if spec is None:
        return "other", low
    if spec.black_box:
        return "black-box", suffix
    if spec.single_step:
        return "fgsm", suffix
    if spec.family == "gradient":
        return "iterative", suffix
    return "other", low


def _by_family(means: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    if means.empty:
        return {}
    keys = means["attack"].map(lambda a: _family(str(a)))
    return {k: means[keys == k] for k in dict.fromkeys(keys)}


def _match(index: pd.Index, eps: float) -> float | None:
    for e in index:
        if math.isclose(float(e), float(eps), rel_tol=1e-9, abs_tol=1e-12):
            return e
    return None


def _inputs(
    module: torch.nn.Module, x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    dev = next(module.parameters()).device
    xt = (x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x)))
    xt = xt.to(dev, torch.float32)
    if y is None:
        return xt, None
    yt = (y.detach() if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y)))
    return xt, yt.to(dev).long()
