"""``advsec run``, ``advsec report`` and ``advsec export``: config-driven studies."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from advsec.cli.common import console, print_red_flags
from advsec.errors import ConfigError, DataError
from advsec.runio import check_new_run_dir, error_notes, note_error

if TYPE_CHECKING:
    from advsec.experiments.run_config import RunConfig

__all__ = ["export_command", "report_command", "run_command"]


def run_command(
    config: Path = typer.Argument(..., help="Experiment TOML file (see examples/)."),
    out: Path | None = typer.Option(None, "--out", "-o",
                                    help="Run directory (default: runs/<config name>)."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue an interrupted run (reuse its finished "
                                "combinations); on a finished run, do nothing."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    data_root: Path | None = typer.Option(
        None, "--data-root", help="Folder of the datasets (its <dataset>/ subfolder is used when "
        "present); overrides [data] root."),
    executor: str | None = typer.Option(
        None, "--executor",
        help="How combinations run: serial (one after another, the default), processes (tasks "
        "of worker processes) or ray (tasks of Ray: pip install 'advsec[ray]'); overrides [run] "
        "executor."),
    workers: int | None = typer.Option(
        None, "--workers", help="Tasks at a time (default: the usable cores, or "
        "the Ray cluster's CPUs); each gets cores // workers threads. Overrides [run] workers."),
    address: str | None = typer.Option(
        None, "--address", help="An existing Ray cluster (default: a local instance on the "
        "usable cores); overrides [run] address."),
    device: str | None = typer.Option(
        None, "--device", help="Where the detectors train, harden, attack and verify: cpu "
        "(the default), cuda (cuda:N) or auto (CUDA when present); overrides [run] device."),
    fail_on_red_flags: bool = typer.Option(
        False, "--fail-on-red-flags",
        help="Exit with code 1 (after writing everything) when a red-flag check of the report "
        "failed, e.g. in a CI pipeline; the failed checks are listed."),
) -> None:
    """Run every combination of an experiment file and write a run directory with a report.

    Validates everything before anything is created: the file (unknown keys, wrong types,
    missing sections, unknown attacks: one line naming the line of the file, exit 2), then the
    data (files exist and parse, labels present, at least two classes to train on) and the
    attacks. The run directory appears only when complete; an interrupted or failed run keeps
    a hidden OUT's .NAME.partial folder that --resume continues; --resume on a finished run
    prints "nothing to do". Whatever the executor, the numbers are the same, and --resume
    continues a run started with another one. A device that is not there (--device cuda
    without CUDA) is one line, exit 2, nothing created; on the CPU the numbers are the same
    with --device cpu or auto as without.
    """
    from advsec.experiments.artifacts import finished_run
    from advsec.experiments.config import load_config
    from advsec.experiments.runner import plan, run_experiment

    cfg = load_config(config)
    cfg.run = cfg.run.overridden(executor=executor, workers=workers, address=address,
                                 device=device)
    if device is None:  # the file's device: is it there? (--device was checked above)
        _check_file_device(config, cfg.run)
    if data_root is not None:
        if not data_root.is_dir():
            raise ConfigError(f"--data-root: {data_root} is not a folder")
        sub = data_root / cfg.data.dataset
        cfg.data.root = str(sub if sub.is_dir() else data_root)
    target = out or Path("runs") / config.stem
    if resume and not force and finished_run(target, cfg):
        console.print(f"nothing to do: {target.resolve()} is already complete", soft_wrap=True)
        return
    check_new_run_dir(target, force=force)
    n = len(plan(cfg))
    start = time.perf_counter()
    try:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                      TextColumn("combination {task.completed}/{task.total}"),
                      TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                      console=console) as bar:
            task = bar.add_task("starting", total=n)

            def progress(stage: str, k: int, total: int) -> None:
                bar.update(task, description=stage, completed=min(k, total), total=total)

            result = run_experiment(cfg, out=target, config_text=config.read_text(encoding="utf-8"),
                                    resume=resume, force=force, progress=progress)
    except BaseException as exc:
        stage = error_notes(exc).staging
        if stage is not None and stage.is_dir():
            note_error(exc, hint=f"the partial run is kept in {stage}; the same command with "
                       "--resume continues it")
        raise
    if result.nothing_to_do:
        console.print(f"nothing to do: {result.out} is already complete")
        return
    from advsec.reporting.run_report import run_headline

    reused = f", {result.reused} reused" if result.reused else ""
    console.print(f"{result.combinations} combination(s){reused} in "
                  f"{time.perf_counter() - start:.1f} s")
    raised = _print_flags(result.out)
    head = run_headline(result.out)
    if head:
        console.print(head, soft_wrap=True, markup=False, highlight=False)
    console.print(f"report: {result.out / 'report.html'}", soft_wrap=True)
    if raised and fail_on_red_flags:
        raise typer.Exit(1)


def report_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by `advsec run`."),
    fail_on_red_flags: bool = typer.Option(
        False, "--fail-on-red-flags",
        help="Exit with code 1 (after writing everything) when a red-flag check of the report "
        "failed, e.g. in a CI pipeline; the failed checks are listed."),
) -> None:
    """Rebuild the figures, tables and report.html of a run directory from its results."""
    from advsec.reporting.run_report import build_run_report

    if not run_dir.is_dir():
        raise ConfigError(_not_a_run_dir(run_dir))
    from advsec.reporting.run_report import run_headline

    with _damaged_run_dir(run_dir):
        path = build_run_report(run_dir)
    raised = _print_flags(run_dir)
    head = run_headline(run_dir)
    if head:
        console.print(head, soft_wrap=True, markup=False, highlight=False)
    console.print(f"report: {path}", soft_wrap=True)
    if raised and fail_on_red_flags:
        raise typer.Exit(1)


def _not_a_run_dir(path: Path) -> str:
    """Why ``path`` is no run directory, in one line."""
    if path.exists():
        return (f"{path}: is a file, not a run directory (the folder `advsec run` wrote, "
                f"e.g. runs/NAME)")
    return f"{path}: no such run directory"


def _print_flags(run_dir: Path, *, show: int = 10) -> int:
    """Print the red flags of the reported ``run_dir`` (at most ``show`` of them); returns
    how many there are."""
    from advsec.reporting.run_report import raised_flags

    flags = raised_flags(run_dir)
    return print_red_flags([
        (str(f.get("check")), "/".join(str(f.get(k)) for k in ("detector", "defense", "threat")
                                       if f.get(k) not in (None, "", "none")),
         str(f.get("detail"))) for f in flags], show=show)


def export_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by `advsec run`."),
    fmt: str = typer.Option("csv", "--format", "-f", help="csv or parquet."),
    out: Path | None = typer.Option(None, "--out", "-o",
                                    help="Output file (default: RUN_DIR/adversarial.<format>)."),
) -> None:
    """Export adversarial records in the original columns and units, with ids and predictions."""
    from advsec.reporting.export import export_adversarial

    if not run_dir.is_dir():
        raise ConfigError(_not_a_run_dir(run_dir))
    with _damaged_run_dir(run_dir):
        console.print(f"wrote {export_adversarial(run_dir, fmt=fmt, out=out)}", soft_wrap=True)


def _check_file_device(config: Path, run: RunConfig) -> None:
    """A one-line ConfigError naming the file, the line and ``run.device`` when the file's
    device is not on this machine (``cuda`` without CUDA)."""
    from advsec.experiments.toml_locations import line_of

    try:
        run.resolved_device()
    except ConfigError as exc:
        line = line_of(config.read_text(encoding="utf-8"), ("run", "device"))
        at = f", line {line}" if line else ""
        raise ConfigError(f"{config}{at}: {exc} (or pass --device)") from None


@contextlib.contextmanager
def _damaged_run_dir(run_dir: Path) -> Iterator[None]:
    """A file of ``run_dir`` that is missing or does not parse is bad input (a DataError
    naming it), not an internal error: the folder was damaged or is not a complete run."""
    import json

    import pandas as pd

    try:
        yield
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        raise DataError(f"{run_dir}: not a complete advsec run directory ({exc.strerror}: "
                        f"{exc.filename})") from None
    except (json.JSONDecodeError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        msg = " ".join(str(exc).split())
        raise DataError(f"{run_dir}: a file of the run directory does not parse ({msg})") from None
