"""``[run]`` of an experiment file: how ``advsec run`` executes the combinations.

::

    [run]
    executor = "processes"   # "serial" (the default), "processes" or "ray"
    workers = 4              # tasks at a time (default: the usable cores, or Ray's CPUs)
    # address = "ray://head:10001"   # an existing Ray cluster (ray only)

The command line's ``--executor``, ``--workers`` and ``--address`` override these keys
(:meth:`RunConfig.overridden`). How a study is executed never changes its numbers, so this
section is left out of the configuration a run directory records (``config.json``): a run
started with one executor may be resumed with another.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from advsec.errors import ConfigError

__all__ = ["EXECUTORS", "Executor", "RunConfig"]

Executor = Literal["serial", "processes", "ray"]
#: the executors of ``advsec run``
EXECUTORS: tuple[Executor, ...] = ("serial", "processes", "ray")


class RunConfig(BaseModel):
    """``[run]``: the executor, how many tasks run at a time, and a Ray cluster's address."""

    model_config = ConfigDict(extra="forbid")

    executor: Executor = "serial"
    workers: int | None = Field(None, ge=1)
    address: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.address is not None and self.executor != "ray":
            raise ValueError(f"address is only for executor = \"ray\" (executor is "
                             f"{self.executor!r})")
        if self.executor == "serial" and (self.workers or 1) > 1:
            raise ValueError(f"workers = {self.workers} needs executor = \"processes\" or "
                             "\"ray\" (serial runs one combination at a time)")
        return self

    def overridden(self, *, executor: str | None = None, workers: int | None = None,
                   address: str | None = None) -> RunConfig:
        """These settings with the command line's options (those not ``None``) in their place;
        returns a new RunConfig, or raises a one-line ConfigError naming the option.

        ``--workers`` or ``--address`` without ``--executor`` keep the file's executor."""
        if executor is not None and executor not in EXECUTORS:
            raise ConfigError(f"--executor {executor}: expected one of {', '.join(EXECUTORS)}")
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers {workers}: expected a positive integer (tasks at "
                              "a time)")
        values = self.model_dump()
        given = {"executor": executor, "workers": workers, "address": address}
        values.update({k: v for k, v in given.items() if v is not None})
        try:
            return RunConfig.model_validate(values)
        except ValidationError as exc:
            msg = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            flags = " ".join(f"--{k} {v}" for k, v in given.items() if v is not None)
            raise ConfigError(f"{flags}: {msg}") from None
