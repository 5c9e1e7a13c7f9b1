"""Run directories and the files in them, written atomically: one writer for every command.

A run directory appears complete or not at all. :func:`atomic_run_dir` stages it in a hidden
sibling folder and renames that into place when the block succeeds:

- *temporary* staging (``demo``, ``reproduce``, ``attack``): a fresh ``.NAME.tmp-XXXX`` folder,
  removed when the block fails;
- *persistent* staging (``run``, and each ``combos/<key>/`` of a run): the fixed
  ``.NAME.partial`` folder (:func:`staging_dir`), kept when the block fails so that a later
  call with ``resume=True`` continues it; without ``resume`` a leftover one is discarded first.
  It is locked (``flock``) while in use: a second process writing the same run gets a one-line
  error instead of discarding or mixing into the first one's work; ``kill -9`` releases it.

An existing ``NAME`` is an error unless ``force``; it is then replaced only once the new one is
complete (renamed aside, the new folder renamed in, the old one deleted). Inside an existing run
directory (``advsec report`` rebuilding a report), :func:`atomic_file` and :func:`write_text`
replace single files in one ``os.replace``. :func:`run_log` copies the ``advsec`` log records of
a block into a file (``run.log``); :func:`log_buffer` holds the records of the checks made before
the run directory exists, for :func:`run_log` to write first.

Failures carry their context to the CLI: :func:`run_log` writes the traceback of an unexpected
exception into its file and :func:`note_error` records that file (and, for a kept persistent
staging folder, a hint on how to continue) on the exception; :func:`error_notes` reads them
back (``advsec.cli.main`` prints one line naming them).

This module sits below every layer (it imports only :mod:`advsec.errors`), so reporting,
experiments and the CLI all write through it.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import shutil
import tempfile
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from advsec.errors import AdvsecError, ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "ErrorNotes",
    "atomic_file",
    "atomic_run_dir",
    "check_new_run_dir",
    "error_notes",
    "file_log",
    "log_buffer",
    "note_error",
    "run_log",
    "staging_dir",
    "write_text",
]


def staging_dir(out: str | Path) -> Path:
    """The persistent hidden staging folder of run directory ``out``: ``.NAME.partial``."""
    out = Path(out)
    return out.parent / f".{out.name}.partial"


def check_new_run_dir(out: str | Path, *, force: bool = False) -> None:
    """Raise a one-line :class:`ConfigError` when ``out`` may not be (re)created.

    ``out`` may not exist unless ``force``, and with ``force`` it must be a directory. The
    message names ``out`` as given (commands call this before any work, with the user's path).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory (expected a run directory "
                          "to create)")
    if out.exists() and not force:
        raise ConfigError(f"{out}: run directory already exists (use --force to replace it)")
    parent = Path(os.path.abspath(out)).parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{out}: cannot create it: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{out}: cannot create it: {parent} is not writable")
    try:  # access() trusts permission bits (root passes them): try, and leave nothing
        os.rmdir(tempfile.mkdtemp(prefix=".advsec-probe-", dir=parent))
    except OSError as exc:
        raise ConfigError(f"{out}: cannot create it in {parent}: "
                          f"{exc.strerror or type(exc).__name__}") from None


@contextlib.contextmanager
def atomic_run_dir(
    out: str | Path,
    *,
    force: bool = False,
    persistent: bool = False,
    resume: bool = False,
) -> Iterator[Path]:
    """Yield a hidden staging folder beside ``out``; on success it becomes ``out`` in one rename.

    Args:
        out: the run directory to create.
        force: replace an existing ``out`` (only after the block succeeded: a failed
            replacement leaves the old run directory as it was).
        persistent: stage in :func:`staging_dir` (``.NAME.partial``) and keep it when the block
            fails; otherwise stage in a fresh temporary folder that a failure removes.
        resume: continue the persistent staging folder left by an interrupted run (implies
            ``persistent``); without it a leftover staging folder is discarded first.

    Raises:
        ConfigError: ``out`` exists and ``force`` is False, or it is not a directory; another
            process is writing the persistent staging folder (it is locked while in use); at
            the end, when another run created ``out`` meanwhile and ``force`` is False (the
            staging folder is then discarded, or kept when persistent).
    """
    out = Path(out).resolve()
    check_new_run_dir(out, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    if persistent or resume:
        stage = staging_dir(out)
        if stage.exists() and not resume:
            os.close(_lock(stage, out))  # not while another process is writing it
            shutil.rmtree(stage)
        stage.mkdir(exist_ok=True)
        fd = _lock(stage, out)
        try:
            yield stage  # a failure leaves the staging folder for --resume
            _move_into_place(stage, out, force=force)
        except BaseException as exc:
            note_error(exc, staging=stage)
            raise
        finally:
            os.close(fd)
    else:
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            yield stage
            _move_into_place(stage, out, force=force)
        except BaseException as exc:
            shutil.rmtree(stage, ignore_errors=True)
            log_file = error_notes(exc).log
            if log_file is not None and stage in log_file.parents:
                _forget_log(exc)  # removed with the staging folder
            raise


def _lock(stage: Path, out: Path) -> int:
    """An exclusive advisory lock on the folder ``stage`` (released when the returned
    descriptor is closed, or the process dies); a ConfigError when another process holds it."""
    fd = os.open(stage, os.O_RDONLY)
    if fcntl is None:  # pragma: no cover - not POSIX: no lock
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"{out}: another process is writing this run now ({stage} is "
                          "locked); wait for it or choose another --out") from None
    return fd


def _move_into_place(stage: Path, out: Path, *, force: bool) -> None:
    """Rename ``stage`` to ``out``, replacing an existing ``out`` when ``force`` (restored if
    the rename fails). ``out`` is checked again: another run may have created it meanwhile."""
    if not out.exists():
        stage.rename(out)
        return
    if not force:
        raise ConfigError(f"{out}: created by another run while this one was being written "
                          "(use --force to replace it)")
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    out.rename(old)
    try:
        stage.rename(out)
    except BaseException:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``; on success it replaces ``path`` atomically.

    The block writes the temporary path (any writer: ``df.to_csv(tmp)``, ``fig.savefig(tmp,
    format="png")``); if it raises, the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def file_log(path: str | Path) -> logging.Handler:
    """Attach an INFO file handler for the ``advsec`` loggers writing ``path``.

    The caller removes it with ``logging.getLogger("advsec").removeHandler(h)`` and closes it
    (:func:`run_log` does both).
    """
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger("advsec")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return handler


@contextlib.contextmanager
def run_log(
    path: str | Path, *, replay: logging.handlers.BufferingHandler | None = None
) -> Iterator[logging.Handler]:
    """Copy the ``advsec`` log records of the block into ``path`` (:func:`file_log`); the
    handler is removed and closed when the block ends, however it ends.

    ``replay``: a :func:`log_buffer` whose records (the checks made before the run directory
    existed) are written first. When the block raises, the error goes into the file too: one
    line for an :class:`~advsec.errors.AdvsecError` or an interruption, the full traceback for
    anything else, and the file is recorded on the exception (:func:`note_error`).
    """
    handler = file_log(path)
    if replay is not None:
        for record in replay.buffer:
            if record.levelno >= handler.level:
                handler.handle(record)
    try:
        yield handler
    except BaseException as exc:
        _log_failure(handler, exc)
        raise
    finally:
        logging.getLogger("advsec").removeHandler(handler)
        handler.close()


class _Buffer(logging.handlers.BufferingHandler):
    """Keeps the first ``capacity`` records; never flushes on its own."""

    def shouldFlush(self, record: logging.LogRecord) -> bool:
        return False

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.buffer) < self.capacity:
            self.buffer.append(record)


@contextlib.contextmanager
def log_buffer(capacity: int = 10_000) -> Iterator[logging.handlers.BufferingHandler]:
    """Hold the ``advsec`` INFO records of the block in memory (``buffer``, the first
    ``capacity``), for :func:`run_log` to ``replay`` once the run directory exists."""
    handler = _Buffer(capacity)
    handler.setLevel(logging.INFO)
    root = logging.getLogger("advsec")
    before = root.level
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(before)


# ---------------------------------------------------------------------- error context
@dataclass
class ErrorNotes:
    """Where a failure left things: its traceback file, a kept staging folder, a hint."""

    log: Path | None = None
    staging: Path | None = None
    hint: str | None = None


_NOTE = "_advsec_notes"


def note_error(exc: BaseException, *, log: str | Path | None = None,
               staging: str | Path | None = None, hint: str | None = None) -> None:
    """Record where a failure left things on ``exc`` (read back by :func:`error_notes`).

    ``log``: the file holding its traceback (the innermost one is kept); ``staging``: a
    persistent staging folder kept for ``--resume`` and ``hint``: how to continue (the
    outermost ones are kept).
    """
    notes = error_notes(exc)
    if log is not None and notes.log is None:
        notes.log = Path(log)
    if staging is not None:
        notes.staging = Path(staging)
    if hint is not None:
        notes.hint = hint
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, _NOTE, notes)


def error_notes(exc: BaseException) -> ErrorNotes:
    """What :func:`note_error` recorded on ``exc`` (a copy; empty when nothing was)."""
    notes = getattr(exc, _NOTE, None)
    return replace(notes) if isinstance(notes, ErrorNotes) else ErrorNotes()


def _forget_log(exc: BaseException) -> None:
    notes = error_notes(exc)
    notes.log = None
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, _NOTE, notes)


def _log_failure(handler: logging.Handler, exc: BaseException) -> None:
    """Write how the block failed into ``handler``'s file (a traceback for a bug)."""
    if isinstance(exc, AdvsecError):
        msg, exc_info = f"error: {exc}", None
    elif isinstance(exc, (KeyboardInterrupt, SystemExit)):
        msg, exc_info = f"interrupted ({type(exc).__name__})", None
    else:
        msg = "internal error: " + "".join(traceback.format_exception_only(type(exc), exc)).strip()
        exc_info = (type(exc), exc, exc.__traceback__)
    record = logging.LogRecord("advsec", logging.ERROR, __file__, 0, msg, None, exc_info)
    try:
        handler.handle(record)
        handler.flush()
    except Exception:  # pragma: no cover - the log is best effort
        return
    if exc_info is not None and isinstance(handler, logging.FileHandler):
        note_error(exc, log=handler.baseFilename)
