"""``advsec reproduce STUDY``: reproduce a published study faithfully, then corrected."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from advsec.cli.common import console
from advsec.errors import ConfigError
from advsec.runio import check_new_run_dir

__all__ = ["reproduce_command"]


def reproduce_command(
    study: str = typer.Argument(..., help="The study: kdd99-adversarial-training."),
    out: Path | None = typer.Option(None, "--out", "-o",
                                    help="Run directory to create (default runs/STUDY; "
                                    "runs/STUDY-quick with --quick)."),
    root: Path | None = typer.Option(None, "--root",
                                     help="Folder with kddcup.data_10_percent.gz (default: "
                                     "$ADVSEC_DATA, then ../shared/datasets/kdd99)."),
    quick: bool = typer.Option(False, "--quick",
                               help="A much smaller run (sub-sampled, few epochs) for smoke "
                               "tests; its numbers are not the study's."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    seed: int = typer.Option(0, "--seed", help="Seed for initialisation, training, attacks "
                             "and subsets (the split keeps the original's seed 10)."),
    device: str = typer.Option("cpu", "--device", help="Training and attack device: cpu, cuda "
                               "(cuda:N) or auto (CUDA when present)."),
) -> None:
    """Reproduce a study faithfully, then correct it; write one run directory with a report.

    Writes report.html, metrics.json, CSV tables, PNG figures, the original model and
    config.toml into OUT. On the CPU (--device cpu or auto there) the numbers are the same
    with or without --device; a device that is not there is one line, nothing written.
    """
    from advsec.experiments.reproductions import STUDIES, run_reproduction

    key = study.strip().lower().replace("_", "-")
    if key not in STUDIES:
        raise ConfigError(f"unknown study {study!r}; known: {', '.join(sorted(STUDIES))}")
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {seed}")
    from advsec.models.detector import resolve_device

    try:
        dev = str(resolve_device(device))
    except ConfigError as exc:
        raise ConfigError(f"--device: {exc}") from None
    if out is None:
        out = Path("runs") / (f"{key}-quick" if quick else key)
    check_new_run_dir(out, force=force)
    if root is not None and not root.exists():
        raise ConfigError(f"--root: {root} does not exist")
    # the data file must be there before anything is created (its parse errors, later, leave
    # nothing behind either: the run directory is staged in a temporary folder)
    from advsec.experiments.reproductions.kdd99_data import find_kdd99_file

    find_kdd99_file(root)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, transient=False) as bar:
        task = bar.add_task("starting", total=10)

        def progress(stage: str, k: int, n: int) -> None:
            bar.update(task, description=stage, completed=k, total=n)

        result = run_reproduction(key, out=out, root=root, quick=quick, force=force,
                                  seed=seed, progress=progress, device=dev)
        bar.update(task, description="done", completed=10)
    h = result.headline
    console.print(
        f"faithful: clean {h['faithful_clean']:.4f}, FGSM {h['faithful_fgsm']:.4f}, "
        f"BIM {h['faithful_bim']:.4f}, MIM {h['faithful_mim']:.4f} "
        f"(largest gap to the original {100 * h['max_abs_difference_to_reference']:.2f} pt)")
    wc = h["corrected"].get("worst-case")
    if wc is not None:
        console.print(f"corrected worst case at eps {h['eps']:g}: {wc:.4f}")
    for model, claimed in h["hardened_original_protocol"].items():
        console.print(f"{model}: {claimed:.4f} by the original protocol, "
                      f"{h['hardened_adaptive_worst_case'][model]:.4f} attacked afresh")
    console.print(f"{result.seconds / 60:.1f} min")
    if h.get("sentence"):
        console.print(h["sentence"], soft_wrap=True, markup=False, highlight=False)
    console.print(f"report: {result.report}", soft_wrap=True)
