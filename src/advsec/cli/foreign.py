"""``advsec attack --model detector.onnx --data flows.csv``: a model trained elsewhere.

A foreign model file carries no FeatureSpace, so :func:`load_foreign` fits one on the ``--data``
table: with the ``--schema`` file (a complete ``features`` list, or changes to the inferred
schema, as the tabular loader reads it), else the schema inferred from the table as the tabular
loader infers it (a warning says so: the attack's bounds then come from these rows). The model
is then loaded over that space (:func:`advsec.models.onnx_model.load_onnx`) and
:func:`advsec.cli.attack.run_attack` attacks every row like an advsec model's.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from advsec.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from advsec.features.space import FeatureSpace
    from advsec.models.foreign import ForeignModel

__all__ = ["FOREIGN_SUFFIXES", "fit_space", "is_foreign", "load_foreign", "parse_classes"]

log = logging.getLogger(__name__)

#: model files read by :func:`load_foreign` (by suffix)
FOREIGN_SUFFIXES = (".onnx",)


def is_foreign(model: Path) -> bool:
    """Whether ``model`` names a foreign model file (an ``.onnx`` file)."""
    return model.suffix.lower() in FOREIGN_SUFFIXES


def parse_classes(text: str | None) -> list[str] | None:
    """``"a,b"`` -> ``["a", "b"]`` (``--classes``); None stays None."""
    if text is None:
        return None
    names = [c.strip() for c in text.split(",")]
    if len(names) < 2 or not all(names) or len(set(names)) != len(names):
        raise ConfigError(f"--classes: expected at least two distinct comma-separated names, "
                          f"got {text!r}")
    return names


def fit_space(table: pd.DataFrame, *, label_column: str, benign: str,
              schema: Path | None, where: str) -> FeatureSpace:
    """A FeatureSpace fitted on every row of ``table``: the ``schema`` file's features (a
    complete list), or the schema inferred as the tabular loader infers it (constraint
    discovery included), the file's changes on top."""
    from advsec.datasets.inference import infer_schema
    from advsec.datasets.tabular import apply_discovery
    from advsec.features.schema import FeatureSchema, read_schema_file
    from advsec.features.space import FeatureSpace as Space

    columns = list(table.columns)
    if schema is not None and "features" in read_schema_file(schema):
        fs = FeatureSchema.from_file(schema, columns=columns, replaces=True)
    else:
        notes: list[str] = []
        fs = infer_schema(table, label_column=label_column, benign_label=benign, notes=notes)
        fs = apply_discovery(table, fs, notes=notes)[0]
        for note in notes:
            log.info("%s: %s", where, note)
        if schema is not None:
            fs = FeatureSchema.from_file(schema, base=fs, columns=columns)
        else:
            log.warning("%s: no --schema: the features, their order and their bounds are "
                        "inferred from this table (%d features); pass --schema to declare "
                        "them", where, len(fs.features))
    fs = replace(fs, label=label_column, benign_label=benign)
    return Space(fs).fit(table)


def load_foreign(model: Path, *, data: Path | None, label_column: str | None,
                 benign_label: str | None, schema: Path | None, inputs: str,
                 delimiter: str | None = None,
                 classes: str | None, attack: str, needs_gradients: bool) -> ForeignModel:
    """The foreign model ``model`` over a FeatureSpace fitted on ``data`` (module docstring);
    its ``feature_space_`` encodes the table. A gradient attack (``needs_gradients``) on a
    graph that does not convert to torch is a one-line ConfigError naming the operator."""
    from advsec.datasets.tabular import benign_label_of, read_table

    try:
        from advsec.models.onnx_model import load_onnx
    except ImportError as exc:
        raise ConfigError(f"--model {model}: reading ONNX files needs the onnx extra (pip "
                          f"install 'advsec[onnx]'): {exc}") from None
    if data is None:
        raise ConfigError(f"--model {model} is an ONNX file, which holds no feature space: "
                          f"pass --data FILE, the table to attack (the space is fitted on it)")
    if label_column is None:
        raise ConfigError(f"--data {data}: pass --label-column (the column holding the labels; "
                          f"{model} does not say)")
    if inputs not in ("raw", "encoded"):
        raise ConfigError(f"--inputs: expected raw or encoded, got {inputs!r}")
    names = parse_classes(classes)
    table = read_table(data, label_column=label_column,
                       delimiter="," if delimiter is None else delimiter)
    benign = benign_label_of(table, label_column=label_column, benign_label=benign_label,
                             notes=[])
    space = fit_space(table, label_column=label_column, benign=benign, schema=schema,
                      where=str(data))
    sample = torch.as_tensor(space.encode(table.iloc[:1024]))
    det = load_onnx(model, space=space, inputs=inputs, benign_label=benign, classes=names,
                    check_on=sample)
    if needs_gradients and not hasattr(det, "as_module"):
        why = getattr(det, "unsupported", "") or "it does not convert to torch"
        raise ConfigError(f"--attack {attack} needs gradients, but {model} runs through "
                          f"onnxruntime: {why}; use a score- or decision-based attack (square, "
                          f"hopskipjump)")
    return det
