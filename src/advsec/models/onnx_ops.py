"""The operators of :mod:`advsec.models.onnx_torch`: one torch function per ONNX operator.

Each takes ``(node, args, opset)``: the node (operator, name, attributes), its input tensors in
order (``None`` for an omitted optional input) and the model's standard-domain opset (some
operators moved attributes to inputs over the versions), and returns the node's first output.
Semantics follow the ONNX operator specification (broadcasting as NumPy's, which is torch's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import torch
from torch.nn import functional as F

__all__ = ["DTYPES", "OPS", "Node"]

#: ONNX tensor element types -> torch dtypes (what ``Cast`` supports)
DTYPES: dict[int, torch.dtype] = {
    onnx.TensorProto.FLOAT: torch.float32, onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.FLOAT16: torch.float16, onnx.TensorProto.BFLOAT16: torch.bfloat16,
    onnx.TensorProto.INT64: torch.int64, onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT16: torch.int16, onnx.TensorProto.INT8: torch.int8,
    onnx.TensorProto.UINT8: torch.uint8, onnx.TensorProto.BOOL: torch.bool,
}

@dataclass(frozen=True)
class Node:
    """One graph node: operator, name, input and output names, decoded attributes."""

    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any]


Tensor = torch.Tensor
_Args = list[Tensor | None]


def _attr(node: Node, key: str, default: Any) -> Any:
    return node.attrs.get(key, default)


def _axes(node: Node, args: _Args, opset: int, *, since: int) -> list[int] | None:
    """Axes from the attribute (before opset ``since``) or the second input (from it)."""
    if opset < since:
        axes = _attr(node, "axes", None)
        return None if axes is None else [int(a) for a in axes]
    if len(args) < 2 or args[1] is None:
        return None
    return [int(a) for a in args[1].reshape(-1).tolist()]


def _softmax(fn: Callable[..., Tensor]) -> Callable[[Node, _Args, int], Tensor]:
    def run(node: Node, args: _Args, opset: int) -> Tensor:
        x = _need(args, 0)
        axis = int(_attr(node, "axis", -1 if opset >= 13 else 1))
        axis = axis % max(x.ndim, 1)
        if opset >= 13 or axis == x.ndim - 1:
            return fn(x, dim=axis)
        flat = x.reshape(*x.shape[:axis], -1)  # opset < 13: over the flattened tail
        return fn(flat, dim=-1).reshape(x.shape)
    return run


def _need(args: _Args, i: int) -> Tensor:
    t = args[i] if i < len(args) else None
    if t is None:
        raise ValueError(f"input {i} is missing")
    return t


def _gemm(node: Node, args: _Args, opset: int) -> Tensor:
    a, b = _need(args, 0), _need(args, 1)
    a = a.transpose(0, 1) if _attr(node, "transA", 0) else a
    b = b.transpose(0, 1) if _attr(node, "transB", 0) else b
    out = float(_attr(node, "alpha", 1.0)) * (a @ b)
    c = args[2] if len(args) > 2 else None
    return out if c is None else out + float(_attr(node, "beta", 1.0)) * c


def _div(node: Node, args: _Args, opset: int) -> Tensor:
    a, b = _need(args, 0), _need(args, 1)
    if not a.is_floating_point() and not b.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")
    return a / b


def _clip(node: Node, args: _Args, opset: int) -> Tensor:
    x = _need(args, 0)
    if opset < 11:
        lo, hi = _attr(node, "min", None), _attr(node, "max", None)
        return x if lo is None and hi is None else torch.clamp(x, min=lo, max=hi)
    lo_t = args[1] if len(args) > 1 else None
    hi_t = args[2] if len(args) > 2 else None
    if lo_t is None and hi_t is None:
        return x
    return torch.clamp(x, min=None if lo_t is None else lo_t.to(x.dtype),
                       max=None if hi_t is None else hi_t.to(x.dtype))


def _batch_norm(node: Node, args: _Args, opset: int) -> Tensor:
    x, scale, bias, mean, var = (_need(args, i) for i in range(5))
    shape = (-1,) + (1,) * (x.ndim - 2)
    eps = float(_attr(node, "epsilon", 1e-5))
    inv = scale.reshape(shape) / torch.sqrt(var.reshape(shape) + eps)
    return (x - mean.reshape(shape)) * inv + bias.reshape(shape)


def _layer_norm(node: Node, args: _Args, opset: int) -> Tensor:
    x = _need(args, 0)
    axis = int(_attr(node, "axis", -1)) % x.ndim
    dims = list(range(axis, x.ndim))
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    y = (x - mean) / torch.sqrt(var + float(_attr(node, "epsilon", 1e-5))) * _need(args, 1)
    return y if len(args) < 3 or args[2] is None else y + args[2]


def _flatten(node: Node, args: _Args, opset: int) -> Tensor:
    x = _need(args, 0)
    axis = int(_attr(node, "axis", 1))
    axis = axis + x.ndim if axis < 0 else axis
    lead = int(np.prod(x.shape[:axis])) if axis else 1
    return x.reshape(lead, -1)


def _reshape(node: Node, args: _Args, opset: int) -> Tensor:
    x, shape = _need(args, 0), [int(s) for s in _need(args, 1).tolist()]
    if not _attr(node, "allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _squeeze(node: Node, args: _Args, opset: int) -> Tensor:
    x = _need(args, 0)
    axes = _axes(node, args, opset, since=13)
    if axes is None:
        return x.squeeze()
    return x.squeeze(tuple(a % x.ndim for a in axes)) if axes else x


def _unsqueeze(node: Node, args: _Args, opset: int) -> Tensor:
    x = _need(args, 0)
    axes = _axes(node, args, opset, since=13) or []
    rank = x.ndim + len(axes)
    for a in sorted(a % rank for a in axes):
        x = x.unsqueeze(a)
    return x


def _gather(node: Node, args: _Args, opset: int) -> Tensor:
    data, idx = _need(args, 0), _need(args, 1).to(torch.long)
    axis = int(_attr(node, "axis", 0)) % data.ndim
    idx = torch.where(idx < 0, idx + data.shape[axis], idx)
    out = torch.index_select(data, axis, idx.reshape(-1))
    return out.reshape((*data.shape[:axis], *idx.shape, *data.shape[axis + 1:]))


def _shape(node: Node, args: _Args, opset: int) -> Tensor:
    x = _need(args, 0)
    start, end = _attr(node, "start", 0), _attr(node, "end", None)
    return torch.tensor(list(x.shape)[start:end], dtype=torch.int64, device=x.device)


def _cast(node: Node, args: _Args, opset: int) -> Tensor:
    return _need(args, 0).to(DTYPES[int(node.attrs["to"])])


def _slice(node: Node, args: _Args, opset: int) -> Tensor:
    x = _need(args, 0)
    starts = [int(v) for v in _need(args, 1).tolist()]
    ends = [int(v) for v in _need(args, 2).tolist()]
    axes = (list(range(len(starts))) if len(args) < 4 or args[3] is None
            else [int(v) for v in args[3].tolist()])
    steps = [1] * len(starts) if len(args) < 5 or args[4] is None else [
        int(v) for v in args[4].tolist()]
    index: list[slice] = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        if st < 1:
            raise ValueError(f"step {st}: only positive steps are supported")
        n = x.shape[a % x.ndim]
        index[a % x.ndim] = slice(max(-n, min(s, n)), max(-n - 1, min(e, n)), st)
    return x[tuple(index)]


def _reduce(fn: Callable[..., Tensor], since: int) -> Callable[[Node, _Args, int], Tensor]:
    def run(node: Node, args: _Args, opset: int) -> Tensor:
        x = _need(args, 0)
        axes = _axes(node, args, opset, since=since)
        keep = bool(_attr(node, "keepdims", 1))
        if not axes:
            if _attr(node, "noop_with_empty_axes", 0):
                return x
            axes = list(range(x.ndim))
        return fn(x, dim=[a % x.ndim for a in axes], keepdim=keep)
    return run


def _unary(fn: Callable[[Tensor], Tensor]) -> Callable[[Node, _Args, int], Tensor]:
    return lambda node, args, opset: fn(_need(args, 0))


def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Node, _Args, int], Tensor]:
    return lambda node, args, opset: fn(_need(args, 0), _need(args, 1))


def _variadic(fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Node, _Args, int], Tensor]:
    def run(node: Node, args: _Args, opset: int) -> Tensor:
        out = _need(args, 0)
        for t in args[1:]:
            out = fn(out, t) if t is not None else out
        return out
    return run


def _selu(node: Node, args: _Args, opset: int) -> Tensor:
    x = _need(args, 0)
    alpha = float(_attr(node, "alpha", 1.67326319217681884765625))
    gamma = float(_attr(node, "gamma", 1.05070102214813232421875))
    # expm1 of the negative part only: on large x it would overflow to inf, and the where's
    # backward would turn 0 * inf into a NaN gradient
    return gamma * torch.where(x > 0, x, alpha * torch.expm1(torch.clamp(x, max=0.0)))


OPS: dict[str, Callable[[Node, _Args, int], Tensor]] = {
    "Identity": _unary(lambda x: x),
    "Dropout": _unary(lambda x: x),
    "Gemm": _gemm,
    "MatMul": _binary(torch.matmul),
    "Add": _binary(torch.add), "Sub": _binary(torch.sub), "Mul": _binary(torch.mul),
    "Div": _div, "Pow": _binary(torch.pow),
    "Sum": _variadic(torch.add), "Max": _variadic(torch.maximum),
    "Min": _variadic(torch.minimum),
    "Neg": _unary(torch.neg), "Abs": _unary(torch.abs), "Exp": _unary(torch.exp),
    "Log": _unary(torch.log), "Sqrt": _unary(torch.sqrt),
    "Reciprocal": _unary(torch.reciprocal), "Erf": _unary(torch.erf),
    "Relu": _unary(torch.relu), "Sigmoid": _unary(torch.sigmoid), "Tanh": _unary(torch.tanh),
    "Softplus": _unary(F.softplus),
    "LeakyRelu": lambda n, a, o: F.leaky_relu(_need(a, 0), float(_attr(n, "alpha", 0.01))),
    "Elu": lambda n, a, o: F.elu(_need(a, 0), float(_attr(n, "alpha", 1.0))),
    "Selu": _selu,
    "HardSigmoid": lambda n, a, o: torch.clamp(
        float(_attr(n, "alpha", 0.2)) * _need(a, 0) + float(_attr(n, "beta", 0.5)), 0.0, 1.0),
    "PRelu": lambda n, a, o: torch.where(_need(a, 0) < 0, _need(a, 1) * _need(a, 0),
                                         _need(a, 0)),
    "Gelu": lambda n, a, o: F.gelu(_need(a, 0), approximate=str(_attr(n, "approximate",
                                                                       "none"))),
    "Softmax": _softmax(torch.softmax), "LogSoftmax": _softmax(torch.log_softmax),
    "Clip": _clip,
    "BatchNormalization": _batch_norm, "LayerNormalization": _layer_norm,
    "Flatten": _flatten, "Reshape": _reshape, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze,
    "Concat": lambda n, a, o: torch.cat([t for t in a if t is not None],
                                        dim=int(n.attrs["axis"])),
    "Transpose": lambda n, a, o: _need(a, 0).permute(
        *(_attr(n, "perm", None) or range(_need(a, 0).ndim - 1, -1, -1))),
    "Cast": _cast,
    "CastLike": lambda n, a, o: _need(a, 0).to(_need(a, 1).dtype),
    "Gather": _gather, "Shape": _shape, "Slice": _slice,
    "ReduceMean": _reduce(torch.mean, 18), "ReduceSum": _reduce(torch.sum, 13),
}
#: the operators :func:`convert` implements (standard ONNX domain), besides ``Constant``
