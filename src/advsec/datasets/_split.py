"""Seeded, stratified train/test splits for datasets that ship as one partition."""

from __future__ import annotations

import numpy as np
import pandas as pd

from advsec.errors import ConfigError

__all__ = ["split_table", "stratified_indices"]


def stratified_indices(
    strata: np.ndarray, *, test_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, test)`` of a stratified split, both sorted.

    Each stratum (distinct value of ``strata``, shape ``(N,)``) sends ``round(test_size * n)`` of
    its ``n`` rows to the test side, chosen by a generator seeded with ``seed``; a stratum of one
    row stays in training. Strata are visited in sorted order, so the split depends only on
    ``strata``, ``test_size`` and ``seed``.
    """
    if not 0.0 < test_size < 1.0:
        raise ConfigError(f"test_size must be in (0, 1), got {test_size!r}")
    rng = np.random.default_rng(seed)
    codes, uniques = pd.factorize(pd.Series(strata).astype(str), sort=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    test_parts: list[np.ndarray] = []
    for k in range(len(uniques)):
        members = order[bounds[k]:bounds[k + 1]]
        n_test = round(test_size * len(members))
        n_test = min(max(n_test, 1), len(members) - 1) if len(members) > 1 else 0
        test_parts.append(rng.permutation(members)[:n_test])
    test = np.sort(np.concatenate(test_parts)) if test_parts else np.array([], dtype=np.int64)
    mask = np.zeros(len(strata), dtype=bool)
    mask[test] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def split_table(
    table: pd.DataFrame, strata: np.ndarray, *, test_size: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, test)`` rows of ``table`` by :func:`stratified_indices` (indexes reset)."""
    train_idx, test_idx = stratified_indices(strata, test_size=test_size, seed=seed)
    return (table.iloc[train_idx].reset_index(drop=True),
            table.iloc[test_idx].reset_index(drop=True))
