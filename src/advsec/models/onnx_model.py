"""A detector exported to ONNX, over a FeatureSpace's encoded inputs: :func:`load_onnx`.

The file is read as bytes and parsed as an ONNX protobuf (never unpickled); onnxruntime (CPU,
as many intra-op threads as torch uses) runs it. Its input contract is declared:

- ``inputs="raw"``: the graph takes the raw features ``(N, F)``, the schema's features in
  order (:class:`~advsec.features.raw_inputs.RawInputs`: exact as ``space.decode``);
- ``inputs="encoded"``: it takes advsec's encoded inputs ``(N, D)``.

The graph must have one float tensor input whose last dimension is ``F`` (or ``D``), else a
one-line :class:`~advsec.errors.DataError` gives both widths. Its scores are a probabilities
output (``probabilities`` of skl2onnx / onnxmltools classifiers; a ``ZipMap`` is read through:
its input tensor is used) or its one float ``(N, C)`` / ``(N, 1)`` output: probabilities when
the last node is a Softmax / Sigmoid or the rows lie in [0, 1] and sum to 1, else logits;
``(N, 1)`` is class 1 of a binary model. Classes: the graph's ``classlabels_*`` attribute when a
classifier node has one, mapped by :func:`~advsec.models.foreign.class_names`; else
``classes=``; else, for two columns, ``[benign_label, "attack"]`` (column 0 is benign).

When every operator the scores depend on converts to torch (:mod:`advsec.models.onnx_torch`),
the result is a white-box :class:`OnnxNetwork`, checked against onnxruntime on ``check_on``
(max |delta| of probabilities <= :data:`TOLERANCE`, else a one-line DataError with the
difference); otherwise a black-box :class:`OnnxModel` that runs onnxruntime (score- and
decision-based attacks), whose ``unsupported`` names the first operator that does not convert.

Shapes: ``N`` records, ``D`` encoded columns, ``F`` schema features, ``C`` classes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import torch
from torch import nn

from advsec.errors import AdvsecError, ConfigError, DataError, SchemaError
from advsec.features.raw_inputs import RawInputs, raw_feature_names
from advsec.models.foreign import ForeignModel, ForeignNetwork, class_names
from advsec.models.onnx_torch import OnnxConversionError, convert, first_unsupported
from advsec.models.wrappers import TwoColumns

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["INPUTS", "TOLERANCE", "OnnxModel", "OnnxNetwork", "load_onnx"]

log = logging.getLogger(__name__)

INPUTS = ("raw", "encoded")
#: the largest |torch - onnxruntime| difference of a probability the white-box path accepts
TOLERANCE = 1e-5
#: rows of ``check_on`` the conversion is checked on
CHECK_ROWS = 1024
_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}
_PROBA_NAMES = ("probabilities", "output_probability", "probability", "proba")


class OnnxModel(ForeignModel):
    """A black-box ONNX detector (onnxruntime). ``unsupported``: why it is not white-box
    (the first operator the torch converter does not handle); ``path``, ``inputs``."""

    def __init__(self, scores: Callable[[torch.Tensor], torch.Tensor], *, space: FeatureSpace,
                 classes: Sequence[str], output: str, path: Path, inputs: str,
                 unsupported: str) -> None:
        super().__init__(scores, space=space, classes=classes, kind="onnx", output=output)
        self.path, self.inputs, self.unsupported = path, inputs, unsupported


class OnnxNetwork(ForeignNetwork):
    """A white-box ONNX detector: the graph converted to torch (``as_module()`` gives logits);
    ``max_difference``: its largest probability difference from onnxruntime on the check."""

    def __init__(self, module: nn.Module, *, space: FeatureSpace, classes: Sequence[str],
                 output: str, path: Path, inputs: str) -> None:
        super().__init__(module, space=space, classes=classes, kind="onnx", output=output)
        self.path, self.inputs = path, inputs
        self.max_difference = 0.0


def load_onnx(path: str | Path, *, space: FeatureSpace, inputs: str = "raw",
              benign: object | None = None, benign_label: str = "benign",
              classes: Sequence[str] | None = None, output: str = "auto",
              check_on: torch.Tensor | np.ndarray | None = None) -> OnnxModel | OnnxNetwork:
    """The ONNX detector at ``path`` over ``space``'s encoded inputs (module docstring).

    Args:
        space: the fitted FeatureSpace of the records to attack.
        inputs: ``"raw"`` or ``"encoded"``: what the graph takes.
        benign: the model's own benign class (e.g. ``0``, ``"normal"``); by default class 0 of
            ``[0, 1]`` or the class named ``benign_label``.
        benign_label: advsec's name of the benign class (the data's benign label).
        classes: advsec's names of the score columns, in order (instead of the mapping).
        output: ``"auto"``, ``"proba"`` or ``"logits"``: what the scores output holds.
        check_on: encoded records ``(N, D)`` the model is tried on and the torch conversion
            checked on (first :data:`CHECK_ROWS`); default 16 seeded uniform rows.
    """
    path = Path(path)
    if inputs not in INPUTS:
        raise ConfigError(f"--inputs: expected raw or encoded, got {inputs!r}")
    if output not in ("auto", "proba", "logits"):
        raise ConfigError(f"output={output!r}: expected auto, proba or logits")
    proto, graph_classes = _read(path)
    raw = _raw_inputs(space, path) if inputs == "raw" else None
    width = len(raw_feature_names(space)) if raw is not None else int(space.n_features_out)
    sess = _session(proto, path)
    in_name, in_dtype = _check_input(sess, path, width=width, inputs=inputs, space=space)
    out_name = _scores_output(sess, path)
    x0 = _check_rows(check_on, space)

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            feed = raw(x.detach().cpu()) if raw is not None else x.detach().cpu()
        arr = feed.numpy().astype(in_dtype)
        return np.asarray(sess.run([out_name], {in_name: arr})[0], dtype=np.float32)

    try:
        first = run(x0)
    except AdvsecError:
        raise
    except Exception as exc:  # onnxruntime's errors: a shape the graph cannot take
        raise DataError(f"{path}: onnxruntime fails on {width} input columns (--inputs "
                        f"{inputs}): {_line(exc)}") from None
    if first.ndim != 2 or first.shape[0] != len(x0):
        raise DataError(f"{path}: output {out_name!r} has shape {list(first.shape)} for "
                        f"{len(x0)} records; expected (N, C) scores")
    bad = int((~np.isfinite(first)).any(axis=1).sum())
    if bad:
        raise DataError(f"{path}: the model returns NaN or infinite scores for {bad} of the "
                        f"{len(x0)} records it was checked on")
    kind = output if output != "auto" else _kind(proto, out_name, first)
    one = first.shape[1] == 1
    names = _class_names(path, graph_classes, classes, max(2, first.shape[1]), benign,
                         benign_label)

    def scores(x: torch.Tensor) -> torch.Tensor:
        s = torch.as_tensor(run(x))
        return TwoColumns(proba=kind == "proba")(s) if one else s

    reason = first_unsupported(proto, outputs=[out_name])
    unsupported = "" if reason is None else f"operator {reason[0]} (node {reason[1]!r}) {reason[2]}"
    if reason is None:
        try:
            net = _network(proto, out_name, raw=raw, dtype=in_dtype, one=one, kind=kind)
            det = OnnxNetwork(net, space=space, classes=names, output=kind, path=path,
                              inputs=inputs)
            det.max_difference = _check(det, scores, x0, path=path, kind=kind)
            log.info("%s: converted to torch (white-box), max |delta| %.2g from onnxruntime",
                     path, det.max_difference)
            return det
        except OnnxConversionError as exc:
            unsupported = str(exc)
    log.info("%s: attacked through onnxruntime (black-box): %s", path, unsupported)
    return OnnxModel(scores, space=space, classes=names, output=kind, path=path, inputs=inputs,
                     unsupported=unsupported)


# ------------------------------------------------------------------ reading
def _read(path: Path) -> tuple[onnx.ModelProto, list[object] | None]:
    """``(model, the classifier's class labels or None)``; a ZipMap output is replaced by its
    input tensor."""
    if not path.is_file():
        raise DataError(f"{path}: model file not found")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception:  # protobuf's DecodeError and others: not an ONNX file
        proto = onnx.ModelProto()
    if not proto.ir_version or not proto.graph.node:
        raise DataError(f"{path}: not an ONNX model (expected a serialized ONNX ModelProto)")
    labels: list[object] | None = None
    for node in proto.graph.node:
        for a in node.attribute:
            if a.name == "classlabels_int64s" and a.ints and labels is None:
                labels = [int(v) for v in a.ints]
            elif a.name == "classlabels_strings" and a.strings and labels is None:
                labels = [v.decode("utf-8") for v in a.strings]
    for node in [n for n in proto.graph.node if n.op_type == "ZipMap"]:
        outs = [o for o in proto.graph.output if o.name == node.output[0]]
        if not outs:
            continue
        at = list(proto.graph.output).index(outs[0])
        n_classes = len(labels) if labels else None
        tensor = onnx.helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT,
                                                    [None, n_classes])
        proto.graph.output.remove(outs[0])
        proto.graph.output.insert(at, tensor)
        proto.graph.node.remove(node)
    return proto, labels


def _session(proto: onnx.ModelProto, path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(proto.SerializeToString(), sess_options=opts,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several types for a bad graph
        raise DataError(f"{path}: onnxruntime cannot load the model: {_line(exc)}") from None


def _raw_inputs(space: FeatureSpace, path: Path) -> RawInputs:
    try:
        return RawInputs(space)
    except SchemaError as exc:
        raise SchemaError(f"{path} with --inputs raw: {_line(exc)}") from None


def _check_input(sess: Any, path: Path, *, width: int, inputs: str,
                 space: FeatureSpace) -> tuple[str, Any]:
    ins = sess.get_inputs()
    if len(ins) != 1:
        raise DataError(f"{path} has {len(ins)} inputs ({', '.join(i.name for i in ins)}); "
                        f"advsec feeds one (N, {width}) float tensor")
    inp = ins[0]
    if inp.type not in _FLOAT_TYPES:
        raise DataError(f"{path}: input {inp.name!r} is {inp.type}; expected a float tensor "
                        f"(N, {width})")
    shape = list(inp.shape or [])
    if shape and len(shape) != 2:
        raise DataError(f"{path}: input {inp.name!r} has shape {shape}; expected (N, {width})")
    last = shape[-1] if shape else None
    if isinstance(last, int) and last > 0 and last != width:
        if inputs == "raw":
            names = raw_feature_names(space)
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            what = f"the schema gives {width} features ({shown})"
        else:
            what = f"the FeatureSpace encodes records to {width} columns"
        raise DataError(f"{path} takes {last} input columns; with --inputs {inputs} {what}")
    first = shape[0] if shape else None
    if isinstance(first, int) and first > 0:
        raise DataError(f"{path}: input {inp.name!r} has a fixed batch size of {first} (shape "
                        f"{shape}); advsec scores records in batches: export the model with a "
                        f"dynamic first axis (torch.onnx.export(..., dynamic_axes={{"
                        f"{inp.name!r}: {{0: 'batch'}}}}))")
    return inp.name, _FLOAT_TYPES[inp.type]


def _scores_output(sess: Any, path: Path) -> str:
    outs = sess.get_outputs()
    floats = [o for o in outs if o.type in _FLOAT_TYPES]
    if not floats:
        if any(o.type.startswith("seq(map") for o in outs):
            raise DataError(f"{path}: the probabilities are a ZipMap advsec cannot read; "
                            f"export the classifier with zipmap=False")
        raise DataError(f"{path}: no float output (outputs: "
                        f"{', '.join(f'{o.name} {o.type}' for o in outs)}); advsec needs "
                        f"scores or probabilities (N, C)")
    if len(floats) == 1:
        return str(floats[0].name)
    named = [o for o in floats if o.name in _PROBA_NAMES]
    if len(named) == 1:
        return str(named[0].name)
    raise DataError(f"{path}: {len(floats)} float outputs "
                    f"({', '.join(o.name for o in floats)}); expected one scores output")


def _check_rows(check_on: torch.Tensor | np.ndarray | None, space: FeatureSpace
                ) -> torch.Tensor:
    if check_on is None:
        gen = torch.Generator().manual_seed(0)
        return torch.rand((16, space.n_features_out), generator=gen)
    x = torch.as_tensor(np.asarray(check_on) if not isinstance(check_on, torch.Tensor)
                        else check_on.detach().cpu()).to(torch.float32)
    if x.ndim != 2 or x.shape[1] != space.n_features_out or len(x) == 0:
        raise DataError(f"check_on: expected encoded records (N, {space.n_features_out}), got "
                        f"{tuple(x.shape)}")
    return x[:CHECK_ROWS]


# ------------------------------------------------------------------ scores
def _kind(proto: onnx.ModelProto, out_name: str, first: np.ndarray) -> str:
    """``"proba"`` or ``"logits"``: by the node giving ``out_name``, else by the values."""
    producer = next((n for n in proto.graph.node if out_name in n.output), None)
    op = producer.op_type if producer is not None and producer.domain in ("", "ai.onnx") else ""
    if op in ("Softmax", "Sigmoid"):
        return "proba"
    if op == "LogSoftmax":
        return "logits"
    s = first.astype(np.float64)
    in_unit = bool(np.all((s >= -1e-6) & (s <= 1 + 1e-6)))  # float rounding of trees
    if s.shape[1] == 1:
        return "proba" if in_unit else "logits"
    return "proba" if in_unit and np.allclose(s.sum(axis=1), 1.0, atol=1e-4) else "logits"


def _class_names(path: Path, graph: list[object] | None, classes: Sequence[str] | None,
                 width: int, benign: object | None, benign_label: str) -> list[str]:
    if classes is not None:
        names = [str(c) for c in classes]
        if len(names) != width:
            raise ConfigError(f"--classes: {len(names)} names ({', '.join(names)}) for the "
                              f"{width} score columns of {path}")
        return names
    if graph is not None:
        if len(graph) != width:
            raise DataError(f"{path}: the graph names {len(graph)} classes but its scores "
                            f"have {width} columns")
        return class_names(graph, benign=benign, benign_label=benign_label,
                           ask=f"pass --classes NAME,NAME,...: advsec's label of each of the "
                               f"{width} score columns, in order (in Python: benign=<the benign "
                               f"class>)")
    if width != 2:
        raise ConfigError(f"{path} gives {width} score columns and names no classes: pass "
                          f"--classes (one name per column, in order)")
    return class_names([0, 1], benign=benign, benign_label=benign_label)


# ------------------------------------------------------------------ white-box
class _Cast(nn.Module):
    """Inputs cast to the graph's float type (float64 graphs)."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(N, K)`` as ``dtype``."""
        return x.to(self.dtype)


class _Float(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(N, C)`` as float32."""
        return x.to(torch.float32)


def _network(proto: onnx.ModelProto, out_name: str, *, raw: RawInputs | None, dtype: Any,
             one: bool, kind: str) -> nn.Module:
    """Encoded inputs ``(N, D)`` -> the graph's scores ``(N, C)`` as a torch module."""
    layers: list[nn.Module] = [raw] if raw is not None else []
    if dtype == np.float64:
        layers.append(_Cast(torch.float64))
    layers += [convert(proto, outputs=[out_name]), _Float()]
    if one:
        layers.append(TwoColumns(proba=kind == "proba"))
    return nn.Sequential(*layers)


def _check(det: OnnxNetwork, scores: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
           *, path: Path, kind: str) -> float:
    """The largest probability difference between the torch module and onnxruntime on ``x``
    (a one-line DataError above :data:`TOLERANCE`)."""
    mine = det.predict_proba(x).astype(np.float64)
    ref = scores(x).numpy().astype(np.float64)
    if kind == "logits":
        ref = torch.softmax(torch.as_tensor(ref), dim=1).numpy()
    diff = np.abs(mine - ref)
    both_nan = np.isnan(mine) & np.isnan(ref)
    diff = np.where(both_nan, 0.0, np.where(np.isnan(diff), np.inf, diff))
    worst = float(diff.max()) if diff.size else 0.0
    if worst > TOLERANCE:
        row = int(np.unravel_index(int(diff.argmax()), diff.shape)[0])
        raise DataError(f"{path}: the torch conversion differs from onnxruntime by {worst:.3g} "
                        f"in a probability (record {row} of {len(x)} checked; the limit is "
                        f"{TOLERANCE:g})")
    return worst


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
