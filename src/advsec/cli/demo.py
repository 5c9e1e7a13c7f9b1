"""``advsec demo``: the synthetic FGSM study end to end."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from advsec.cli.common import console, parse_floats, parse_ints
from advsec.errors import ConfigError
from advsec.runio import check_new_run_dir

__all__ = ["demo"]


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o",
                             help="Run directory to create (written atomically)."),
    rows: int = typer.Option(6000, "--rows", help="Number of synthetic flow records."),
    seed: int = typer.Option(0, "--seed", help="Seed for data, training and attacks."),
    eps: str = typer.Option("0,0.01,0.02,0.05,0.1,0.15,0.2,0.3", "--eps",
                            help="Comma-separated L-inf budgets (fraction of feature range)."),
    epochs: int = typer.Option(30, "--epochs", help="Maximum training epochs."),
    hidden: str = typer.Option("64,32", "--hidden", help="Hidden layer sizes, comma-separated."),
    malicious_share: float = typer.Option(0.3, "--malicious-share",
                                          help="Share of malicious records."),
    separation: float = typer.Option(1.0, "--separation",
                                     help="How far malicious behaviour departs from benign."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    device: str = typer.Option("cpu", "--device", help="Training and attack device: cpu, cuda "
                               "(cuda:N) or auto (CUDA when present)."),
) -> None:
    """Train a detector on synthetic flows, attack it with FGSM over an eps grid, write a report.

    Writes metrics.json, sweep.csv, PNG figures, report.html, model.safetensors, model.json and
    config.toml into OUT.
    """
    from advsec.experiments.demo import DemoConfig, run_demo
    from advsec.models.detector import resolve_device

    try:
        dev = str(resolve_device(device))
    except ConfigError as exc:
        raise ConfigError(f"--device: {exc}") from None
    try:
        cfg = DemoConfig(rows=rows, seed=seed, eps=parse_floats(eps, option="--eps"),
                         epochs=epochs, hidden=parse_ints(hidden, option="--hidden"),
                         malicious_share=malicious_share, separation=separation, device=dev)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "option"
        raise ConfigError(f"{field}: {err['msg']}") from None

    check_new_run_dir(out, force=force)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn(
            "{task.completed}/{task.total}"), TimeElapsedColumn(), console=console,
            transient=False) as bar:
        task = bar.add_task("starting", total=7)

        def progress(stage: str, k: int, n: int) -> None:
            bar.update(task, description=stage, completed=k, total=n)

        result = run_demo(cfg, out=out, force=force, progress=progress)
        bar.update(task, description="done", completed=7)
    from advsec.reporting.demo_report import demo_headline

    table = result.sweep
    fe = cfg.figure_eps()
    plain = table[(table.attack == "fgsm") & (table.eps == fe)].iloc[0]
    console.print(
        f"clean accuracy {result.clean['accuracy']:.3f} · FGSM ε={fe:g}: accuracy "
        f"{plain.accuracy:.3f}, detection rate {plain.detection_rate:.3f} "
        f"({result.seconds:.1f} s)")
    head = demo_headline(table, fe)
    if head is not None:
        console.print(head.text(), soft_wrap=True, markup=False, highlight=False)
    console.print(f"report: {result.report}")
