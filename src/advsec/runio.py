"""Run directories and the files in them, written atomically: one writer for every command.

A run directory appears complete or not at all. :func:`atomic_run_dir` stages it in a hidden
sibling folder and renames that into place when the block succeeds:

- *temporary* staging (``demo``, ``reproduce``, ``attack``): a fresh ``.NAME.tmp-XXXX`` folder,
  removed when the block fails;
- *persistent* staging (``run``, and each ``combos/<key>/`` of a run): the fixed
  ``.NAME.partial`` folder (:func:`staging_dir`), kept when the block fails so that a later
  call with ``resume=True`` continues it; without ``resume`` a leftover one is discarded first.

An existing ``NAME`` is an error unless ``force``; it is then replaced only once the new one is
complete (renamed aside, the new folder renamed in, the old one deleted). Inside an existing run
directory (``advsec report`` rebuilding a report), :func:`atomic_file` and :func:`write_text`
replace single files in one ``os.replace``. :func:`run_log` copies the ``advsec`` log records of
a block into a file (``run.log``).

This module sits below every layer (it imports only :mod:`advsec.errors`), so reporting,
experiments and the CLI all write through it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from advsec.errors import ConfigError

__all__ = [
    "atomic_file",
    "atomic_run_dir",
    "check_new_run_dir",
    "file_log",
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
    if out.exists() and not force:
        raise ConfigError(f"{out}: run directory already exists (use --force to replace it)")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")


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
        ConfigError: ``out`` exists and ``force`` is False, or it is not a directory; also at
            the end, when another run created ``out`` meanwhile and ``force`` is False (the
            staging folder is then discarded, or kept when persistent).
    """
    out = Path(out).resolve()
    check_new_run_dir(out, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    if persistent or resume:
        stage = staging_dir(out)
        if stage.exists() and not resume:
            shutil.rmtree(stage)
        stage.mkdir(exist_ok=True)
        yield stage  # a failure leaves the staging folder for --resume
        _move_into_place(stage, out, force=force)
    else:
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            yield stage
            _move_into_place(stage, out, force=force)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise


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
def run_log(path: str | Path) -> Iterator[logging.Handler]:
    """Copy the ``advsec`` log records of the block into ``path`` (:func:`file_log`); the
    handler is removed and closed when the block ends, however it ends."""
    handler = file_log(path)
    try:
        yield handler
    finally:
        logging.getLogger("advsec").removeHandler(handler)
        handler.close()
