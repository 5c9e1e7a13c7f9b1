"""An ONNX graph of a feed-forward network as a PyTorch module: our own converter, no pickle.

:func:`convert` turns the standard-domain operators that feed-forward networks are exported
with (checked: ``torch.onnx.export`` with ``dynamo=False`` and ``dynamo=True``) into an
:class:`OnnxModule` whose forward pass runs the same computation with torch operators, so
gradient attacks can differentiate it. Initializers and ``Constant`` nodes become float32
frozen parameters (``requires_grad=False``) or int64 buffers (shapes, axes, indices). Only
the nodes the requested outputs depend on are converted; model-local functions are inlined
first.

An operator outside :data:`SUPPORTED` (a tree ensemble of the ``ai.onnx.ml`` domain, a
``Loop``, a vendor operator) raises :class:`UnsupportedOperatorError` naming the operator and
the node, before anything runs; a node that fails at run time raises
:class:`OnnxConversionError` naming it.

Shapes: whatever the graph says; for a detector ``(N, F)`` or ``(N, D)`` in, ``(N, C)`` out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, inliner, numpy_helper
from torch import Tensor, nn

from advsec.errors import ConfigError
from advsec.models.onnx_ops import DTYPES, OPS, Node

__all__ = ["SUPPORTED", "OnnxConversionError", "OnnxModule", "UnsupportedOperatorError",
           "convert", "first_unsupported"]

_STANDARD = ("", "ai.onnx")


class OnnxConversionError(ConfigError):
    """The graph cannot be run as a torch module (one line naming the operator and node).

    Attributes: op_type (``"domain.Op"`` outside the standard domain), node (its name).
    """

    def __init__(self, message: str, *, op_type: str, node: str) -> None:
        super().__init__(message)
        self.op_type = op_type
        self.node = node


class UnsupportedOperatorError(OnnxConversionError):
    """An operator the converter does not implement."""


SUPPORTED: tuple[str, ...] = tuple(sorted([*OPS, "Constant"]))


def _op_name(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in _STANDARD else f"{node.domain}.{node.op_type}"


def _needed(graph: onnx.GraphProto, outputs: Sequence[str]) -> list[onnx.NodeProto]:
    """The nodes ``outputs`` depend on, in graph (topological) order."""
    want = set(outputs)
    keep: list[onnx.NodeProto] = []
    for node in reversed(graph.node):
        if want & set(node.output):
            keep.append(node)
            want |= {i for i in node.input if i}
    return keep[::-1]


def _problem(node: onnx.NodeProto, opset: int) -> str | None:
    """Why ``node`` cannot be converted, or None."""
    if node.domain not in _STANDARD or (node.op_type not in OPS
                                        and node.op_type != "Constant"):
        return "is not supported by advsec's ONNX-to-torch converter"
    attrs = {a.name: a for a in node.attribute}
    if node.op_type == "BatchNormalization" and "training_mode" in attrs and \
            helper.get_attribute_value(attrs["training_mode"]):
        return "in training mode is not supported (export the model in eval mode)"
    if node.op_type == "Cast" and attrs["to"].i not in DTYPES:
        return f"to type {attrs['to'].i} is not supported"
    if node.op_type == "Constant" and not ({"value", "value_float", "value_floats",
                                            "value_int", "value_ints"} & set(attrs)):
        return f"with attribute {next(iter(attrs), '?')!r} is not supported"
    return None


def first_unsupported(model: onnx.ModelProto, *, outputs: Sequence[str] | None = None
                      ) -> tuple[str, str, str] | None:
    """``(operator, node name, why)`` of the first node :func:`convert` cannot handle among
    those ``outputs`` (default: all graph outputs) depend on, or None."""
    graph = model.graph
    opset = _opset(model)
    for node in _needed(graph, list(outputs or [o.name for o in graph.output])):
        why = _problem(node, opset)
        if why is not None:
            return _op_name(node), node.name or "(unnamed)", why
    return None


def _opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in _STANDARD), default=1)


def _to_tensor(array: np.ndarray) -> Tensor:
    arr = np.asarray(array)
    if arr.dtype.kind == "f":
        return torch.as_tensor(arr.astype(np.float32, copy=True))
    if arr.dtype.kind in "iu":
        return torch.as_tensor(arr.astype(np.int64, copy=True))
    if arr.dtype.kind == "b":
        return torch.as_tensor(arr.copy())
    raise ValueError(f"tensor of dtype {arr.dtype} is not supported")


def _constant(node: onnx.NodeProto) -> Tensor:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if "value" in attrs:
        return _to_tensor(numpy_helper.to_array(attrs["value"]))
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return _to_tensor(np.asarray(attrs[key], dtype=dtype))
    raise ValueError("no value")


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        out[a.name] = value.decode() if isinstance(value, bytes) else value
    return out


class OnnxModule(nn.Module):
    """The converted graph (build it with :func:`convert`).

    ``forward(*inputs)`` takes the graph's inputs in order (for a detector one float tensor
    ``(N, F)`` or ``(N, D)``) and returns the selected output (``(N, C)`` for a detector), a
    tuple when several were selected.

    Attributes: input_names, output_names, opset, op_types (the operators used).
    """

    def __init__(self, model: onnx.ModelProto, *, outputs: Sequence[str] | None = None) -> None:
        super().__init__()
        if model.functions:
            model = inliner.inline_local_functions(model)
        graph = model.graph
        self.opset = _opset(model)
        inits = {t.name: t for t in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in inits]
        self.output_names = list(outputs or [o.name for o in graph.output])
        known = {o.name for o in graph.output} | {o for n in graph.node for o in n.output}
        for name in self.output_names:
            if name not in known:
                raise ConfigError(f"the graph has no output {name!r}")
        self._consts: dict[str, str] = {}
        self._nodes: list[Node] = []
        needed = _needed(graph, self.output_names)
        used = {i for n in needed for i in n.input} | set(self.output_names)
        for name, init in inits.items():
            if name in used:
                self._buffer(name, _to_tensor(numpy_helper.to_array(init)))
        for node in needed:
            why = _problem(node, self.opset)
            if why is not None:
                raise UnsupportedOperatorError(
                    f"operator {_op_name(node)} (node {node.name or '(unnamed)'!r}) {why}",
                    op_type=_op_name(node), node=node.name)
            if node.op_type == "Constant":
                self._buffer(node.output[0], _constant(node))
                continue
            self._nodes.append(Node(node.op_type, node.name or f"{node.op_type}_{len(self._nodes)}",
                                     tuple(node.input), tuple(node.output), _attrs(node)))
        self.op_types = sorted({n.op for n in self._nodes})

    def _buffer(self, name: str, tensor: Tensor) -> None:
        """Hold ``tensor`` (value ``name``): floating point as a frozen parameter (the graph's
        weights; ``requires_grad=False``, so ``module.parameters()`` finds the device), integer
        and boolean tensors as buffers."""
        key = f"c{len(self._consts)}"
        if tensor.is_floating_point():
            self.register_parameter(key, nn.Parameter(tensor, requires_grad=False))
        else:
            self.register_buffer(key, tensor)
        self._consts[name] = key

    def forward(self, *inputs: Tensor) -> Any:
        """The selected output(s) of the graph for ``inputs`` (see the class docstring)."""
        if len(inputs) != len(self.input_names):
            raise ValueError(f"the graph takes {len(self.input_names)} input(s), got "
                             f"{len(inputs)}")
        env: dict[str, Tensor | None] = {"": None}
        env.update(zip(self.input_names, inputs, strict=True))
        for name, key in self._consts.items():
            env[name] = getattr(self, key)
        for node in self._nodes:
            args = [env[i] for i in node.inputs]
            try:
                out = OPS[node.op](node, args, self.opset)
            except (RuntimeError, ValueError, IndexError, TypeError, KeyError) as exc:
                line = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
                raise OnnxConversionError(
                    f"operator {node.op} (node {node.name!r}) failed in torch: {line}",
                    op_type=node.op, node=node.name) from None
            env[node.outputs[0]] = out
            for extra in node.outputs[1:]:  # Dropout's mask
                if extra:
                    env[extra] = torch.ones_like(out, dtype=torch.bool)
        result = [env[o] for o in self.output_names]
        return result[0] if len(result) == 1 else tuple(result)


def convert(model: onnx.ModelProto | bytes, *, outputs: Sequence[str] | None = None
            ) -> OnnxModule:
    """``model`` (a ModelProto or its serialized bytes) as an :class:`OnnxModule` computing
    ``outputs`` (default: every graph output). Raises :class:`UnsupportedOperatorError` for an
    operator outside :data:`SUPPORTED` that the outputs depend on."""
    if isinstance(model, bytes | bytearray):
        model = onnx.load_model_from_string(bytes(model))
    return OnnxModule(model, outputs=outputs)
