"""Run directories written atomically: built in a temporary sibling folder, renamed when done."""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from advsec.errors import ConfigError

__all__ = ["atomic_run_dir", "file_log"]


@contextlib.contextmanager
def atomic_run_dir(out: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success it becomes ``out`` in one rename.

    If the block raises, the temporary folder is removed and ``out`` is untouched. An existing
    ``out`` is an error unless ``force`` is True, in which case it is replaced only after the new
    run completed.
    """
    out = Path(out).resolve()
    if out.exists() and not force:
        raise ConfigError(f"{out}: run directory already exists (use --force to replace it)")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{tmp.name.rsplit('-', 1)[-1]}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def file_log(path: Path) -> logging.Handler:
    """Attach an INFO file handler for the ``advsec`` loggers writing ``path``.

    The caller removes it with ``logging.getLogger("advsec").removeHandler(h)`` and closes it.
    """
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger("advsec")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return handler
