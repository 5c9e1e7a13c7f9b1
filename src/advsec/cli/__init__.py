"""The ``advsec`` command line (typer). Every failure is one line on stderr.

Exit codes:

- ``0``: success (also ``advsec run --resume`` on a run that is already complete);
- ``2``: bad input: ``advsec: error: <what, naming the file, row, field or option>``
  (an :class:`~advsec.errors.AdvsecError` or a usage error); nothing is written;
- ``1``: an internal error (a bug, or the system failing: disk full, permission denied):
  ``advsec: error: internal error: <ExcType>: <message> (traceback in <file>)``; the traceback
  goes to the run's ``run.log`` when the run's staging folder is kept, else to a temporary
  file. ``ADVSEC_DEBUG=1`` lets the exception propagate instead;
- ``130``: interrupted (Ctrl-C).

A failure that keeps the persistent staging folder of ``advsec run`` says so and that the same
command with ``--resume`` continues it.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import typer

from advsec import __version__
from advsec.cli import data
from advsec.cli.attack import attack_command
from advsec.cli.common import click_exceptions as ce
from advsec.cli.common import console, err_console
from advsec.cli.demo import demo
from advsec.cli.reproduce import reproduce_command
from advsec.cli.run import export_command, report_command, run_command
from advsec.cli.train import train_command
from advsec.errors import AdvsecError
from advsec.runio import error_notes
from advsec.runtime import apply_thread_policy, thread_policy

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERNAL", "app", "main"]

#: exit code of bad input (one ``advsec: error: ...`` line, nothing written)
EXIT_BAD_INPUT = 2
#: exit code of an internal error (a bug or a system failure; the traceback goes to a file)
EXIT_INTERNAL = 1

app = typer.Typer(
    name="advsec",
    help="Adversarial machine learning for security detectors: train, attack, defend, report. "
         "Exit codes: 0 success, 2 bad input (one error line), 1 internal error (traceback "
         "in a log file), 130 interrupted.",
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
    threads: int | None = typer.Option(
        None, "--threads", min=0, metavar="N",
        help="CPU threads for torch, BLAS and OpenMP (default: ADVSEC_THREADS, else "
             "OMP_NUM_THREADS, else the cores this process may use); OpenMP threads wait "
             "passively. 0: the libraries' own defaults, no passive waiting."),
) -> None:
    """advsec: adversarial robustness of intrusion and malware detectors."""
    from rich.logging import RichHandler

    handler = RichHandler(console=err_console, show_path=False)
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", force=True,
                        handlers=[handler])
    if verbose:
        logging.getLogger("advsec").setLevel(logging.INFO)
    apply_thread_policy(thread_policy(threads))


app.command("demo")(demo)
app.command("run")(run_command)
app.command("report")(report_command)
app.command("export")(export_command)
app.command("train")(train_command)
app.command("attack")(attack_command)
app.command("reproduce")(reproduce_command)
app.add_typer(data.app, name="data")


class _Interrupted(Exception):
    """A command's KeyboardInterrupt, carried past typer (which turns it into a silent exit
    130) to :func:`main`, which says so with the run's hint (how to resume)."""

    def __init__(self, original: KeyboardInterrupt) -> None:
        super().__init__("interrupted")
        self.original = original


def _catch_interrupt(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt as exc:
            raise _Interrupted(exc) from exc

    return run


def _interruptible(group: typer.Typer) -> None:
    """Wrap every command of ``group`` (and its sub-groups) in :func:`_catch_interrupt`."""
    for info in group.registered_commands:
        if info.callback is not None:
            info.callback = _catch_interrupt(info.callback)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _interruptible(sub.typer_instance)


_interruptible(app)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``advsec`` script; returns the process exit code (module docstring)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=args, prog_name="advsec", standalone_mode=False)
    except ce.NoArgsIsHelpError as exc:
        console.print(exc.ctx.get_help() if exc.ctx else "advsec --help")
        return 0
    except ce.UsageError as exc:
        cmd = exc.ctx.command_path if exc.ctx else "advsec"
        _say(f"{cmd}: error: {exc.format_message()}")
        return EXIT_BAD_INPUT
    except AdvsecError as exc:
        _say(f"advsec: error: {_one_line(exc)}{_hint(exc)}")
        return EXIT_BAD_INPUT
    except typer.Abort:
        _say("advsec: aborted")
        return 130
    except KeyboardInterrupt as exc:
        _say(f"advsec: interrupted{_hint(exc)}")
        return 130
    except _Interrupted as exc:
        _say(f"advsec: interrupted{_hint(exc.original)}")
        return 130
    except Exception as exc:
        if os.environ.get("ADVSEC_DEBUG"):
            raise
        where = _traceback_file(exc, args)
        if isinstance(exc, OSError) and exc.strerror:
            what = f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
            head = f"internal error: {type(exc).__name__}: {what}"
        else:
            head = f"internal error: {type(exc).__name__}: {_one_line(exc)}"
        _say(f"advsec: error: {head} ({where}){_hint(exc)}")
        return EXIT_INTERNAL
    return int(code or 0)


def _say(line: str) -> None:
    err_console.print(line, markup=False, highlight=False, soft_wrap=True)


def _one_line(exc: BaseException, limit: int = 600) -> str:
    """The exception's message on one line (whitespace collapsed), cut to ``limit``."""
    text = " ".join(str(exc).split()) or "(no message)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _hint(exc: BaseException) -> str:
    """``"; <hint>"`` when the failure recorded how to continue (a kept staging folder)."""
    hint = error_notes(exc).hint
    return f"; {hint}" if hint else ""


def _traceback_file(exc: BaseException, args: list[str]) -> str:
    """``"traceback in <file>"``: the run's log that holds it, else a new temporary file."""
    log = error_notes(exc).log
    if log is not None and log.is_file():
        return f"traceback in {log}"
    text = (f"advsec {' '.join(args)}\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    try:
        fd, name = tempfile.mkstemp(prefix="advsec-error-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as err:
        return f"no traceback file: {err}"
    return f"traceback in {Path(name)}"


def _script() -> None:  # pragma: no cover
    sys.exit(main())
