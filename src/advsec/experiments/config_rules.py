"""The rules every section of an experiment file shares: strict models (unknown keys refused,
no coercion), names that can name files of a run directory, duplicates, where a validation error
points, and whether the data validated are what a user wrote."""

from __future__ import annotations

import re
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError

__all__ = ["Strict", "as_written", "check_name", "duplicates", "located"]


class Strict(BaseModel):
    """Unknown keys refused; no coercion: a string, a bool or a float where an integer is
    expected (``epochs = "2"``, ``epochs = true``, ``hidden = [16.0]``) is an error, like the
    attack options (an integer is a valid float)."""

    model_config = ConfigDict(extra="forbid", strict=True)


#: a detector, defence or attack name: it names files and folders of the run directory
#: (``models/<detector>-<defence>-s<seed>``, ``combos/s<seed>__<detector>__<defence>``)
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?")


def check_name(value: str | None) -> str | None:
    """``value`` when it can name files of a run directory (``None`` passes); a ValueError
    otherwise: letters, digits, ``_``, ``.`` and ``-``, starting and ending with a letter or a
    digit, without ``__`` (the separator of combination folders)."""
    if value is not None and (not _NAME.fullmatch(value) or "__" in value):
        raise ValueError(f"{value!r} is not a valid name: use letters, digits, '_', '.' and "
                         "'-', starting and ending with a letter or digit, without '__' (it "
                         "names files and folders of the run directory)")
    return value


def duplicates(values: list[Any]) -> list[Any]:
    """The values listed more than once in ``values``, in first-seen order."""
    seen: list[Any] = []
    dups: list[Any] = []
    for v in values:
        if v in seen and v not in dups:
            dups.append(v)
        seen.append(v)
    return dups


def as_written(info: ValidationInfo) -> bool:
    """Whether the data validated are what a user wrote, not a configuration dumped after it
    was validated and changed (``context={"dumped": True}``: a worker's copy, where every
    default is set and ``--data-root`` may have set ``root``)."""
    return not (info.context or {}).get("dumped")


def located(where: tuple[str, ...], msg: str) -> PydanticCustomError:
    """A validation error located at ``where`` below the model raising it (with its line)."""
    return PydanticCustomError("advsec_at", "{msg}", {"at": list(where), "msg": msg})
