"""Reproductions of published studies: each one faithful first, then corrected, in one report.

``STUDIES`` maps a study name (the argument of ``advsec reproduce``) to a one-line description;
:func:`run_reproduction` runs one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from advsec.errors import ConfigError

__all__ = ["STUDIES", "run_reproduction"]

#: Study name -> description.
STUDIES: dict[str, str] = {
    "kdd99-adversarial-training": "a DNN on KDD Cup 99 attacked with FGSM, BIM and MIM and "
    "hardened by adversarial training (data enhancement), reproduced and corrected",
}


def run_reproduction(
    study: str,
    *,
    out: str | Path,
    root: str | Path | None = None,
    quick: bool = False,
    force: bool = False,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    device: str = "cpu",
) -> Any:
    """Run the study ``study`` into the run directory ``out`` on ``device`` (``cpu``,
    ``cuda``, ``cuda:N`` or ``auto``: CUDA when present; a one-line ConfigError when it is not
    there, before anything is created); returns its result object (with ``report``,
    ``seconds`` and ``headline``)."""
    key = study.strip().lower().replace("_", "-")
    if key not in STUDIES:
        raise ConfigError(f"unknown study {study!r}; known: {', '.join(sorted(STUDIES))}")
    from advsec.experiments.reproductions.kdd99_adversarial_training import (
        KDD99Config,
        run_kdd99_adversarial_training,
    )
    from advsec.models.detector import resolve_device

    dev = str(resolve_device(device))
    cfg = (KDD99Config.quick_config(seed=seed, device=dev) if quick
           else KDD99Config(seed=seed, device=dev))
    return run_kdd99_adversarial_training(cfg, out=out, root=root, force=force,
                                          progress=progress)
