"""``advsec reproduce kdd99-adversarial-training``: the KDD Cup 99 adversarial-training study,
reproduced faithfully, then corrected, in one run directory with one report.

The original study trains a DNN (Dense 200-500-200, ReLU, softmax) on KDD Cup 99, attacks it with
FGSM, BIM and MIM at eps 0.1 (standardised units), hardens it by adversarial training (training
data enhanced 1:1 with adversarial examples) and reports that the hardened model classifies
correctly again.

The run, stage by stage, and its files. The parts live in their own modules:

- :mod:`.kdd99_data`: the data and split exactly as the original prepared them;
- :mod:`.kdd99_config`: the settings (:class:`KDD99Config`), the original's numbers;
- :mod:`.faithful`: the original's model, training loop and attack calls;
- :mod:`.kdd99_faithful`: the **faithful** protocol (every setting as the original had it,
  flaws included; hardened models scored on the adversarial test set crafted against the
  *original* model, as the study did);
- :mod:`.kdd99_corrected`: the **corrected** protocol on the same data and model;
- :mod:`.kdd99_state`: what the stages share; :mod:`.kdd99_report`: figures and report.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from advsec.experiments.reproductions import kdd99_corrected as corrected
from advsec.experiments.reproductions import kdd99_faithful as faithful
from advsec.experiments.reproductions.kdd99_config import (
    ORIGINAL_PROTOCOL,
    REFERENCE,
    STAGES,
    STUDY,
    KDD99Config,
    KDD99Result,
)
from advsec.experiments.reproductions.kdd99_data import CLASSES, load_faithful_data
from advsec.experiments.reproductions.kdd99_report import render_report_files
from advsec.experiments.reproductions.kdd99_state import StudyState
from advsec.experiments.stages import ProgressFn, StageTimer
from advsec.experiments.tomlio import dumps_toml
from advsec.reporting.html import json_records, versions
from advsec.runio import atomic_run_dir, run_log

__all__ = ["REFERENCE", "STUDY", "KDD99Config", "KDD99Result", "headline", "headline_sentence",
           "run_kdd99_adversarial_training", "write_run_files"]

log = logging.getLogger(__name__)


def run_kdd99_adversarial_training(
    config: KDD99Config | None = None,
    *,
    out: str | Path,
    root: str | Path | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> KDD99Result:
    """Run the whole study and write the run directory ``out`` atomically.

    Writes ``report.html``, ``metrics.json``, ``faithful.csv``, ``corrected.csv``,
    ``hardened.csv``, ``defences.csv``, ``minmax.csv``, ``flags.csv``, PNG figures, the original
    model (``model.safetensors`` + ``model.json``), ``config.toml`` and ``run.log``.

    Args:
        config: the settings (default: the full run).
        out: run directory to create.
        root: folder with ``kddcup.data_10_percent.gz`` (default: ``$ADVSEC_DATA``, then
            ``../shared/datasets/kdd99``).
        force: replace ``out`` if it exists.
        progress: ``fn(stage, k, n)`` called at each stage.
    """
    cfg = config or KDD99Config()
    t_start = time.perf_counter()
    clock = StageTimer(STAGES, progress=progress, logger=log)
    with atomic_run_dir(out, force=force) as tmp, run_log(tmp / "run.log"):
        torch.manual_seed(cfg.seed)
        # denormal floats flushed to zero (x86 FTZ/DAZ) for the run, restored after: the
        # 50-epoch trainings run 10-30% faster on CPU
        torch.set_flush_denormal(True)
        try:
            clock.start(0)
            s = StudyState(cfg, load_faithful_data(root, split_seed=cfg.split_seed))
            for i, step in enumerate((
                    faithful.train_original, faithful.run_faithful_attacks,
                    faithful.faithful_adversarial_training, corrected.run_corrected_attacks,
                    corrected.reattack_hardened, corrected.compare_defences,
                    corrected.minmax_study, corrected.red_flags), start=1):
                clock.start(i)
                step(s)
            clock.start(9)
            timings = clock.seconds
            timings["total"] = time.perf_counter() - t_start
            result = write_run_files(s, tmp, timings)
        finally:
            torch.set_flush_denormal(False)
    result.out = Path(out).resolve()
    result.seconds = time.perf_counter() - t_start
    return result


def write_run_files(s: StudyState, tmp: Path, timings: dict[str, float]) -> KDD99Result:
    """Write the tables, the original model, ``config.toml``, the figures, ``report.html`` and
    ``metrics.json`` of a finished study into ``tmp``."""
    cfg = s.cfg
    flags = pd.concat([pd.DataFrame([{"protocol": p, "check": f.name, "ok": f.ok,
                                      "detail": f.detail} for f in fl])
                       for p, fl in s.flags.items()], ignore_index=True)
    s.tables["flags"] = flags
    corrected_table = pd.concat([s.tables["sweep_faithful"], s.tables["sweep_base"]],
                                ignore_index=True)
    for table, name in ((corrected_table, "corrected"), (s.tables["faithful"], "faithful"),
                        (s.tables["hardened"], "hardened"), (s.tables["defences"], "defences"),
                        (s.tables["sweep_defences"], "defences_sweep"),
                        (s.tables["minmax"], "minmax"), (flags, "flags")):
        table.to_csv(tmp / f"{name}.csv", index=False)
    s.detector(s.original).save(tmp / "model")
    (tmp / "config.toml").write_text(
        f"# advsec reproduce {STUDY}\n" + dumps_toml(cfg.model_dump(exclude_none=True)))
    head = headline(s)
    metrics = {
        "study": STUDY,
        "seed": cfg.seed,
        "quick": cfg.quick,
        "classes": list(CLASSES),
        "split": {"test_counts": s.data.test_counts(),
                  "train_counts": s.data.train_counts(),
                  "matches_original": s.data.split_matches,
                  "train_rows_used": len(s.train_idx), "test_rows_used": len(s.test_idx),
                  "sweep_rows": len(s.sweep_pos),
                  "defence_train_rows": len(s.defence_pos)},
        "reference": REFERENCE,
        "headline": head,
        "faithful": json_records(s.tables["faithful"]),
        "faithful_details": s.out["faithful"],
        "faithful_passes": s.out.get("faithful_passes"),
        "clean": s.out["clean"],
        "corrected_at_eps": s.out["corrected_at_eps"],
        "invalid_share": s.out["invalid_share"],
        "hardened": json_records(s.tables["hardened"]),
        "defences": json_records(s.tables["defences"]),
        "minmax": json_records(s.tables["minmax"]),
        "flags": json_records(flags),
        "history": s.history,
        "seconds": timings,
        "config": cfg.model_dump(),
        "notes": s.notes,
        "versions": versions(),
    }
    render_report_files(s, tmp, timings, head)
    (tmp / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2))
    return KDD99Result(out=tmp, faithful=s.tables["faithful"], headline=head,
                       seconds=timings.get("total", math.nan), flags=flags)


def headline(s: StudyState) -> dict[str, Any]:
    """The numbers the summary states."""
    cfg = s.cfg
    f = s.tables["faithful"].set_index("setting")
    c = pd.DataFrame(s.out["corrected_at_eps"]).set_index("attack")
    h = s.tables["hardened"].set_index("model")
    d = s.tables["defences"].set_index("defence")
    key = f"worst case eps={cfg.defence_reference_eps():g}"
    out = {
        "eps": cfg.eps,
        "faithful_clean": float(f.loc["clean", "accuracy"]),
        "faithful_fgsm": float(f.loc["fgsm", "accuracy"]),
        "faithful_bim": float(f.loc["bim", "accuracy"]),
        "faithful_mim": float(f.loc["mim", "accuracy"]),
        "max_abs_difference_to_reference": float(f["difference"].abs().max()),
        "corrected": {a: float(c.loc[a, "accuracy"]) for a in c.index},
        "hardened_original_protocol": {m: float(h.loc[m, ORIGINAL_PROTOCOL]) for m in h.index},
        "hardened_adaptive_worst_case": {m: float(h.loc[m, "worst case adaptive"])
                                         for m in h.index},
        "defences_worst_case": {m: float(d.loc[m, key]) for m in d.index},
        "defences_clean_accuracy": {m: float(d.loc[m, "clean_accuracy"]) for m in d.index},
        "split_matches_original": s.data.split_matches,
    }
    out["sentence"] = headline_sentence(out)
    return out


def headline_sentence(h: dict[str, Any]) -> str:
    """The study's headline in one sentence (the report's and the terminal's): what the
    original protocol claims at its ε beside the corrected worst case, and the first hardened
    model's claimed against attacked-afresh accuracy. Every record is attacked, as in the
    study (accuracy, not evasion only)."""
    text = (f"KDD Cup 99 at ε {h['eps']:g}, every record attacked as in the study: its "
            f"protocol claims accuracy {h['faithful_fgsm']:.3f} under FGSM, "
            f"{h['faithful_bim']:.3f} under BIM and {h['faithful_mim']:.3f} under MIM (clean "
            f"{h['faithful_clean']:.3f})")
    wc = h["corrected"].get("worst-case")
    if wc is not None:
        text += f"; attacked correctly, the worst case over FGSM, BIM, MIM and PGD is {wc:.3f}"
    claimed, fresh = h["hardened_original_protocol"], h["hardened_adaptive_worst_case"]
    if claimed:
        model = next(iter(claimed))
        text += (f"; {model} scores {claimed[model]:.3f} by the study's protocol, "
                 f"{fresh[model]:.3f} attacked afresh")
    return text + "."


def _jsonable(obj: Any) -> Any:
    """``obj`` with NumPy scalars as Python numbers, NaN and infinities as ``None``, paths as
    strings (what ``json.dumps`` can write)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj
