"""``advsec run``, ``advsec report`` and ``advsec export``: config-driven studies."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from advsec.cli.common import console
from advsec.errors import ConfigError
from advsec.runio import check_new_run_dir

__all__ = ["export_command", "report_command", "run_command"]


def run_command(
    config: Path = typer.Argument(..., help="Experiment TOML file (see examples/)."),
    out: Path | None = typer.Option(None, "--out", "-o",
                                    help="Run directory (default: runs/<config name>)."),
    resume: bool = typer.Option(False, "--resume",
                                help="Reuse finished combinations of an interrupted run."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    data_root: Path | None = typer.Option(
        None, "--data-root", help="Folder of the datasets (its <dataset>/ subfolder is used when "
        "present); overrides [data] root."),
) -> None:
    """Run every combination of an experiment file and write a run directory with a report.

    Validates the whole file first (unknown keys, wrong types, unknown attacks: one line naming
    the line of the file, exit 2). The run directory appears only when complete; an interrupted
    run can continue with --resume.
    """
    from advsec.experiments.config import load_config
    from advsec.experiments.runner import plan, run_experiment

    cfg = load_config(config)
    if data_root is not None:
        if not data_root.is_dir():
            raise ConfigError(f"--data-root: {data_root} is not a folder")
        sub = data_root / cfg.data.dataset
        cfg.data.root = str(sub if sub.is_dir() else data_root)
    target = out or Path("runs") / config.stem
    check_new_run_dir(target, force=force)
    n = len(plan(cfg))
    start = time.perf_counter()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("combination {task.completed}/{task.total}"), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("starting", total=n)

        def progress(stage: str, k: int, total: int) -> None:
            bar.update(task, description=stage, completed=min(k, total), total=total)

        result = run_experiment(cfg, out=target, config_text=config.read_text(), resume=resume,
                                force=force, progress=progress)
    reused = f", {result.reused} reused" if result.reused else ""
    console.print(f"{result.combinations} combination(s){reused} in "
                  f"{time.perf_counter() - start:.1f} s")
    console.print(f"report: {result.out / 'report.html'}")


def report_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by `advsec run`."),
) -> None:
    """Rebuild the figures, tables and report.html of a run directory from its results."""
    from advsec.reporting.run_report import build_run_report

    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory")
    console.print(f"report: {build_run_report(run_dir)}")


def export_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by `advsec run`."),
    fmt: str = typer.Option("csv", "--format", "-f", help="csv or parquet."),
    out: Path | None = typer.Option(None, "--out", "-o",
                                    help="Output file (default: RUN_DIR/adversarial.<format>)."),
) -> None:
    """Export adversarial records in the original columns and units, with ids and predictions."""
    from advsec.reporting.export import export_adversarial

    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory")
    console.print(f"wrote {export_adversarial(run_dir, fmt=fmt, out=out)}")
