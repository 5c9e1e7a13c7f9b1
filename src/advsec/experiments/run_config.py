"""``[run]`` of an experiment file: how ``advsec run`` executes the combinations.

::

    [run]
    executor = "processes"   # "serial" (the default), "processes" or "ray"
    workers = 4              # tasks at a time (default: the usable cores, or Ray's CPUs)
    # address = "ray://head:10001"   # an existing Ray cluster (ray only)
    device = "auto"          # "cpu" (the default), "cuda", "cuda:N" or "auto" (CUDA when present)

The command line's ``--executor``, ``--workers``, ``--address`` and ``--device`` override these
keys (:meth:`RunConfig.overridden`). How a study is executed never changes its numbers (on the
CPU, bit for bit; CUDA's float arithmetic differs from the CPU's), so this section is left out
of the configuration a run directory records (``config.json``): a run started with one
executor or device may be resumed with another.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from advsec.errors import ConfigError
from advsec.models.detector import resolve_device

__all__ = ["EXECUTORS", "Executor", "RunConfig"]

Executor = Literal["serial", "processes", "ray"]
#: the executors of ``advsec run``
EXECUTORS: tuple[Executor, ...] = ("serial", "processes", "ray")


class RunConfig(BaseModel):
    """``[run]``: the executor, how many tasks run at a time, a Ray cluster's address and the
    device the combinations train, harden, attack and verify on."""

    model_config = ConfigDict(extra="forbid", strict=True)

    executor: Executor = "serial"
    workers: int | None = Field(None, ge=1)
    address: str | None = None
    device: str = "cpu"

    @field_validator("device")
    @classmethod
    def _device_name(cls, v: str) -> str:
        """A device torch knows, or ``auto`` (whether it is there is checked when the run
        starts: :meth:`resolved_device`, so that ``--device`` can replace it)."""
        if v != "auto":
            try:
                torch.device(v)
            except (RuntimeError, TypeError):
                raise ValueError(f"expected cpu, cuda, cuda:N or auto, got {v!r}") from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.address is not None and self.executor != "ray":
            raise ValueError(f"address is only for executor = \"ray\" (executor is "
                             f"{self.executor!r})")
        if self.executor == "serial" and (self.workers or 1) > 1:
            raise ValueError(f"workers = {self.workers} needs executor = \"processes\" or "
                             "\"ray\" (serial runs one combination at a time)")
        return self

    def resolved_device(self, *, where: str = "run.device") -> str:
        """The device the combinations run on (``auto``: CUDA when present, else the CPU), as
        a string; a one-line ConfigError prefixed ``where`` when it is not there (CUDA on a
        machine or torch build without it)."""
        try:
            return str(resolve_device(self.device))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def overridden(self, *, executor: str | None = None, workers: int | None = None,
                   address: str | None = None, device: str | None = None) -> RunConfig:
        """These settings with the command line's options (those not ``None``) in their place;
        returns a new RunConfig, or raises a one-line ConfigError naming the option.

        ``--workers`` or ``--address`` without ``--executor`` keep the file's executor;
        ``--device`` is checked here (a device this machine has, or ``auto``)."""
        if device is not None:
            try:
                resolve_device(device)
            except ConfigError as exc:
                raise ConfigError(f"--device: {exc}") from None
        if executor is not None and executor not in EXECUTORS:
            raise ConfigError(f"--executor {executor}: expected one of {', '.join(EXECUTORS)}")
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers {workers}: expected a positive integer (tasks at "
                              "a time)")
        values = self.model_dump()
        given = {"executor": executor, "workers": workers, "address": address,
                 "device": device}
        values.update({k: v for k, v in given.items() if v is not None})
        try:
            return RunConfig.model_validate(values)
        except ValidationError as exc:
            msg = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            flags = " ".join(f"--{k} {v}" for k, v in given.items() if v is not None)
            raise ConfigError(f"{flags}: {msg}") from None
