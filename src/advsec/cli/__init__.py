"""The ``advsec`` command line (typer). Bad input: one line on stderr, exit code 2."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import typer

from advsec import __version__
from advsec.cli import data
from advsec.cli.attack import attack_command
from advsec.cli.common import click_exceptions as ce
from advsec.cli.common import console, err_console
from advsec.cli.demo import demo
from advsec.cli.reproduce import reproduce_command
from advsec.cli.run import export_command, report_command, run_command
from advsec.errors import AdvsecError

__all__ = ["app", "main"]

app = typer.Typer(
    name="advsec",
    help="Adversarial machine learning for security detectors: train, attack, defend, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        console.print(f"advsec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
) -> None:
    """advsec: adversarial robustness of intrusion and malware detectors."""
    from rich.logging import RichHandler

    handler = RichHandler(console=err_console, show_path=False)
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", force=True,
                        handlers=[handler])
    if verbose:
        logging.getLogger("advsec").setLevel(logging.INFO)


app.command("demo")(demo)
app.command("run")(run_command)
app.command("report")(report_command)
app.command("export")(export_command)
app.command("attack")(attack_command)
app.command("reproduce")(reproduce_command)
app.add_typer(data.app, name="data")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``advsec`` script; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=args, prog_name="advsec", standalone_mode=False)
    except ce.NoArgsIsHelpError as exc:
        console.print(exc.ctx.get_help() if exc.ctx else "advsec --help")
        return 0
    except ce.UsageError as exc:
        cmd = exc.ctx.command_path if exc.ctx else "advsec"
        err_console.print(f"{cmd}: error: {exc.format_message()}", markup=False,
                          highlight=False, soft_wrap=True)
        return 2
    except AdvsecError as exc:
        err_console.print(f"advsec: error: {exc}", markup=False, highlight=False,
                          soft_wrap=True)
        return 2
    except typer.Abort:
        err_console.print("advsec: aborted", markup=False)
        return 130
    except KeyboardInterrupt:
        err_console.print("advsec: interrupted", markup=False)
        return 130
    return int(code or 0)


def _script() -> None:  # pragma: no cover
    sys.exit(main())
