"""Figures drawn from result tables (matplotlib, Agg backend; nothing is shown on screen)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

from advsec.runio import atomic_file

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

__all__ = ["SAVE_DPI", "STYLE", "attack_style", "eps_positions", "plot_confusions",
           "plot_projection", "plot_robustness", "save_figure", "set_eps_axis"]

#: matplotlib settings of every report figure (``with plt.rc_context(STYLE): ...``).
STYLE: dict[RcKeyType, Any] = {
    "figure.dpi": 110,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 10,
}

#: the resolution figures are saved at: twice the screen's (sharp on high-resolution screens)
SAVE_DPI = 220


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG to ``path`` (atomically: a rebuilt report never leaves a truncated
    figure) and close it."""
    path = Path(path)
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format="png", bbox_inches="tight", dpi=SAVE_DPI)
    finally:
        plt.close(fig)
    return path


#: markers and dash patterns cycled per attack, so that lines lying on top of each other stay
#: apart (earlier lines are drawn with larger, hollow markers)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DASHES: tuple[Any, ...] = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1)))


def attack_style(i: int) -> dict[str, Any]:
    """The line style of the ``i``-th attack of a figure: colour, marker and dashes."""
    return {"color": f"C{i % 10}", "marker": MARKERS[i % len(MARKERS)],
            "linestyle": DASHES[i % len(DASHES)], "markersize": max(9 - 1.5 * i, 4),
            "markerfacecolor": "none", "markeredgewidth": 1.4, "linewidth": 1.6}


def eps_positions(values: Sequence[float]) -> dict[float, int]:
    """Evenly spaced x positions of the ε grid ``values`` (0, 0.01 and 0.02 stay apart)."""
    return {e: i for i, e in enumerate(sorted({float(v) for v in values}))}


def set_eps_axis(ax: Any, positions: dict[float, int], label: str) -> None:
    """Label the evenly spaced ε axis of ``ax`` with the grid values."""
    ax.set_xticks(list(positions.values()), [f"{e:g}" for e in positions])
    ax.set_xlabel(label)


def plot_robustness(table: pd.DataFrame, *, title: str = "Robustness vs perturbation budget",
                    eps_unit: str = "fraction of feature range") -> Figure:
    """Accuracy and detection rate vs eps, one line per attack (a sweep table as input); ε on
    evenly spaced ticks, a marker and dash pattern per attack."""
    pos = eps_positions(table["eps"])
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
        for i, (attack, group) in enumerate(table.groupby("attack", sort=False)):
            g = group.sort_values("eps")
            xs = [pos[float(e)] for e in g["eps"]]
            style = attack_style(i)
            axes[0].plot(xs, g["accuracy"], label=str(attack), **style)
            axes[1].plot(xs, g["detection_rate"], label=str(attack), **style)
        for ax, what in zip(axes, ("Accuracy", "Detection rate (malicious recall)"), strict=True):
            set_eps_axis(ax, pos, f"ε (L∞, {eps_unit}; evenly spaced)")
            ax.set_ylabel(what)
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(what)
        axes[0].legend(title="attack")
        fig.suptitle(title)
        fig.tight_layout()
        return fig


def plot_confusions(
    matrices: Sequence[np.ndarray], titles: Sequence[str], classes: Sequence[str]
) -> Figure:
    """Confusion matrices side by side (rows: true class, columns: predicted), counts and %."""
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, axes = plt.subplots(1, len(matrices), figsize=(4.2 * len(matrices), 3.8))
        axes = np.atleast_1d(axes)
        for ax, m, title in zip(axes, matrices, titles, strict=True):
            share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
            ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
            for i in range(m.shape[0]):
                for j in range(m.shape[1]):
                    ax.text(j, i, f"{m[i, j]}\n{share[i, j]:.1%}", ha="center", va="center",
                            color="white" if share[i, j] > 0.6 else "black", fontsize=9)
            ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
            ax.set_yticks(range(len(classes)), classes)
            ax.set_xlabel("predicted class")
            ax.set_ylabel("true class")
            ax.set_title(title)
        fig.tight_layout()
        return fig


def plot_projection(
    x_clean: np.ndarray,
    x_adv: np.ndarray,
    pred_clean: np.ndarray,
    pred_adv: np.ndarray,
    classes: Sequence[str],
    predict: Callable[[np.ndarray], np.ndarray],
    *,
    eps: float,
    columns: np.ndarray | None = None,
    base: np.ndarray | None = None,
    n_arrows: int = 40,
    seed: int = 0,
    background: str = "neighbours",
) -> Figure:
    """What the attack does to predictions, in a 2-D PCA plane fitted on the clean inputs.

    Clean and adversarial points are coloured by predicted class; the background shows the
    detector's decision regions on that plane (grid points lifted back to input space with the
    PCA's inverse transform and classified by ``predict``: ``(M, D) -> (M,)`` class indices);
    arrows show a sample of perturbations.

    Args:
        columns: boolean ``(D,)``: the columns the PCA is fitted on (default: all). Fit it on the
            numeric columns so that one-hot blocks do not dominate the plane.
        base: ``(D,)`` values of the other columns when grid points are lifted back (default:
            the column means of ``x_clean``).
        background: ``"neighbours"`` (default): each panel's background is the prediction held
            by most of the 15 nearest plotted records of that panel, so it never contradicts
            the points; ``"model"``: grid points lifted back and classified by ``predict``
            (a slice through input space that can disagree with the projected points).
    """
    d = x_clean.shape[1]
    cols = np.ones(d, dtype=bool) if columns is None else np.asarray(columns, dtype=bool)
    base_row = x_clean.mean(axis=0) if base is None else np.asarray(base, dtype=np.float64)
    pca = PCA(n_components=2, random_state=seed).fit(x_clean[:, cols])
    p_clean, p_adv = pca.transform(x_clean[:, cols]), pca.transform(x_adv[:, cols])
    both = np.vstack([p_clean, p_adv])
    lo, hi = both.min(axis=0), both.max(axis=0)
    pad = 0.08 * (hi - lo + 1e-9)
    gx, gy = np.meshgrid(np.linspace(lo[0] - pad[0], hi[0] + pad[0], 200),
                         np.linspace(lo[1] - pad[1], hi[1] + pad[1], 200))
    grid = np.tile(base_row, (gx.size, 1))
    grid[:, cols] = pca.inverse_transform(np.c_[gx.ravel(), gy.ravel()])
    grid = grid.astype(np.float32)
    if background == "model":
        lifted = predict(np.clip(grid, 0.0, 1.0)).reshape(gx.shape)
    plane = np.c_[gx.ravel(), gy.ravel()]

    def regions_of(pts: np.ndarray, pred: np.ndarray) -> np.ndarray:
        if background == "model":
            return lifted
        from sklearn.neighbors import KNeighborsClassifier

        knn = KNeighborsClassifier(n_neighbors=min(15, len(pts))).fit(pts, pred)
        return np.asarray(knn.predict(plane)).reshape(gx.shape)

    cmap = plt.get_cmap("coolwarm" if len(classes) == 2 else "tab10")
    colors = [cmap(i / max(len(classes) - 1, 1)) for i in range(len(classes))]
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharex=True, sharey=True)
        for ax, pts, pred, title in (
            (axes[0], p_clean, pred_clean, "clean test records"),
            (axes[1], p_adv, pred_adv, f"adversarial records (ε = {eps:g})"),
        ):
            ax.contourf(gx, gy, regions_of(pts, pred), levels=np.arange(len(classes) + 1) - 0.5,
                        colors=colors, alpha=0.18)
            for c, name in enumerate(classes):
                sel = pred == c
                ax.scatter(pts[sel, 0], pts[sel, 1], s=7, color=colors[c], alpha=0.7,
                           label=f"predicted {name}", edgecolors="none")
            ax.set_title(title)
            ax.set_xlabel("PC 1 (PCA of clean numeric features)")
        rng = np.random.default_rng(seed)
        changed = np.flatnonzero(pred_clean != pred_adv)
        pool = changed if len(changed) else np.arange(len(p_clean))
        pick = rng.choice(pool, size=min(n_arrows, len(pool)), replace=False)
        for i in pick:
            axes[1].annotate("", xy=p_adv[i], xytext=p_clean[i],
                             arrowprops={"arrowstyle": "->", "color": "black", "lw": 0.7,
                                         "alpha": 0.7})
        axes[0].set_ylabel("PC 2")
        axes[1].legend(loc="best", fontsize=8, markerscale=2)
        fig.suptitle("Predictions in the PCA plane (background: majority of the nearest "
                     "records); arrows: clean → adversarial (sample of flipped records)"
                     if background != "model" else "Decision regions of the detector in the "
                     "PCA plane; arrows: clean → adversarial (sample of flipped records)")
        fig.tight_layout()
        return fig
