"""Run directories written atomically, as the experiments and commands import them.

The one writer is :mod:`advsec.runio` (below every layer, so that reporting can use it too);
this module keeps the names commands already import from here
(``advsec.experiments.rundir.atomic_run_dir``). New code imports :mod:`advsec.runio`.
"""

from __future__ import annotations

from advsec.runio import atomic_run_dir, file_log

__all__ = ["atomic_run_dir", "file_log"]
