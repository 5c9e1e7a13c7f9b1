"""The stages of a study run: progress callbacks, a log line per stage, seconds per stage."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

__all__ = ["ProgressFn", "StageTimer"]

#: ``fn(stage, k, n)``: called as a run advances (stage name, stages done, stages in all).
ProgressFn = Callable[[str, int, int], None]

log = logging.getLogger("advsec.experiments")


class StageTimer:
    """Announces the stages of a run in order and times each one.

    ``start(i)`` ends the stage in progress (its seconds go to :attr:`seconds` under its key),
    then reports stage ``i`` to the progress callback and logs ``stage i+1/n: name``. The last
    stage started is not timed until another one starts (runs write their timings during it).

    Args:
        names: the stages, in order.
        progress: ``fn(stage, k, n)`` (default: none).
        keys: the key of each stage in :attr:`seconds` (default: its name; ``None``: not timed).
        logger: where the stage lines go (default: ``advsec.experiments``).

    Attributes:
        seconds: ``{key: seconds}`` of the stages ended so far, in order; callers may add
            entries (``"total"``).
    """

    def __init__(
        self,
        names: Sequence[str],
        *,
        progress: ProgressFn | None = None,
        keys: Sequence[str | None] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.names = tuple(names)
        self.keys: tuple[str | None, ...] = tuple(self.names if keys is None else keys)
        if len(self.keys) != len(self.names):
            raise ValueError(f"{len(self.keys)} keys for {len(self.names)} stages")
        self.progress = progress
        self.log = logger or log
        self.seconds: dict[str, float] = {}
        self._current: int | None = None
        self._since = time.perf_counter()

    def start(self, i: int) -> None:
        """End the stage in progress and begin stage ``i``."""
        now = time.perf_counter()
        if self._current is not None:
            key = self.keys[self._current]
            if key is not None:
                self.seconds[key] = now - self._since
        self._current, self._since = i, now
        if self.progress is not None:
            self.progress(self.names[i], i, len(self.names))
        self.log.info("stage %d/%d: %s", i + 1, len(self.names), self.names[i])
