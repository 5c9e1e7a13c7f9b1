"""The ``formula`` relation: a feature derived from others by arithmetic (rates, loads).

``{type = "formula", target = "rate", expr = "(spkts + dpkts - 1) / dur", tol = 0, rtol = 0}``
holds when ``|target - expr| <= tol + rtol * |target|``. The expression takes numbers, feature
names, ``+ - * /``, unary minus and parentheses; a feature name that is not a Python identifier
is written in backticks (`` `Flow Bytes/s` * 8 ``). ``x / 0`` counts as 0, as in ``ratio``.

The repair gives a mutable target the expression's value (the target is derived: an attacker who
adds packets or time to a flow changes its rate with it); with an immutable target nothing can be
repaired and the caller falls back to the original record. Expressions are parsed with
:mod:`ast` against a whitelist of nodes, never evaluated as Python.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from advsec.errors import SchemaError
from advsec.features.constraints import VIOLATION_EPS, Relation

__all__ = ["Expression", "FormulaRelation", "parse_expression", "parse_formula"]

Getter = Callable[[str], torch.Tensor]
_BACKTICK = re.compile(r"`([^`]*)`")


@dataclass(frozen=True)
class Expression:
    """A parsed arithmetic expression over feature values.

    Attributes:
        text: the source; names: the features it reads, in order of first use.
    """

    text: str
    names: tuple[str, ...]
    _eval: Callable[[Getter], torch.Tensor] = field(repr=False, compare=False)

    def __call__(self, get: Getter) -> torch.Tensor:
        """The value ``(N,)`` (float64) given ``get(name)``, the ``(N,)`` values of a feature."""
        return self._eval(get)


def parse_expression(text: str, *, where: str = "formula") -> Expression:
    """Parse ``text`` into an :class:`Expression` (one-line :class:`SchemaError` otherwise)."""
    if not isinstance(text, str) or not text.strip():
        raise SchemaError(f"{where}: 'expr' must be a non-empty expression string")
    quoted: list[str] = []

    def hold(m: re.Match[str]) -> str:
        if not m.group(1):
            raise SchemaError(f"{where}: empty `` in expression {text!r}")
        quoted.append(m.group(1))
        return f"__q{len(quoted) - 1}__"

    source = _BACKTICK.sub(hold, text)
    if "`" in source:
        raise SchemaError(f"{where}: unbalanced backtick in expression {text!r}")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError:
        raise SchemaError(f"{where}: cannot parse expression {text!r} (numbers, feature names, "
                          "+ - * / and parentheses; quote other names in backticks)") from None
    names: list[str] = []

    def name_of(ident: str) -> str:
        m = re.fullmatch(r"__q(\d+)__", ident)
        return quoted[int(m.group(1))] if m else ident

    def build(node: ast.AST) -> Callable[[Getter], torch.Tensor]:
        if isinstance(node, ast.Expression):
            return build(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not (
                isinstance(node.value, bool)):
            value = float(node.value)
            if not math.isfinite(value):
                raise SchemaError(f"{where}: non-finite number in expression {text!r}")
            return lambda get: torch.tensor(value, dtype=torch.float64)
        if isinstance(node, ast.Name):
            name = name_of(node.id)
            if name not in names:
                names.append(name)
            return lambda get: get(name)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = build(node.operand)
            if isinstance(node.op, ast.USub):
                return lambda get: -inner(get)
            return inner
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult,
                                                                ast.Div)):
            a, b = build(node.left), build(node.right)
            if isinstance(node.op, ast.Add):
                return lambda get: a(get) + b(get)
            if isinstance(node.op, ast.Sub):
                return lambda get: a(get) - b(get)
            if isinstance(node.op, ast.Mult):
                return lambda get: a(get) * b(get)
            return lambda get: _divide(a(get), b(get))
        what = type(node).__name__
        if isinstance(node, (ast.BinOp, ast.UnaryOp)):
            what = f"the operator {type(node.op).__name__}"
        raise SchemaError(f"{where}: expression {text!r} uses {what}; allowed: numbers, feature "
                          "names, + - * / and parentheses")

    fn = build(tree)
    if not names:
        raise SchemaError(f"{where}: expression {text!r} names no feature")
    return Expression(text=text, names=tuple(names), _eval=fn)


def _divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    num, den = torch.broadcast_tensors(num, den)
    nonzero = den != 0
    return torch.where(nonzero, num / torch.where(nonzero, den, torch.ones_like(den)),
                       torch.zeros_like(num))


@dataclass
class FormulaRelation(Relation):
    """``target == expr`` within ``tol + rtol * |target|`` (see the module docstring)."""

    target: str = ""
    expr: str = ""
    tol: float = 0.0
    rtol: float = 0.0
    _expression: Expression | None = field(default=None, init=False, repr=False)

    type_name: ClassVar[str] = "formula"
    keys: ClassVar[tuple[str, ...]] = ("target", "expr", "tol", "rtol")

    def __post_init__(self) -> None:
        self._expression = parse_expression(self.expr, where=f"relation {self.name!r} (formula)")
        if self.target in self._expression.names:
            raise SchemaError(f"relation {self.name!r} (formula): the target {self.target!r} "
                              "also appears in its expression")

    @property
    def expression(self) -> Expression:
        """The parsed expression."""
        assert self._expression is not None
        return self._expression

    @property
    def features(self) -> tuple[str, ...]:
        return (self.target, *self.expression.names)

    def expected(self, get: Getter) -> torch.Tensor:
        """``(N,)`` the expression's value, given ``get(name)`` (see :class:`Expression`)."""
        return self.expression(get).to(torch.float64)

    def violation_of(self, target: torch.Tensor, get: Getter) -> torch.Tensor:
        """``(N,)`` violation of ``target`` values against the expression."""
        expected = self.expected(get)
        slack = self.tol + self.rtol * target.abs()
        return torch.relu((target - expected).abs() - slack)

    def violation(self, raw: torch.Tensor) -> torch.Tensor:
        self._check_bound()
        return self.violation_of(self._col(raw, self.target), lambda n: self._col(raw, n))

    def repair(self, raw: torch.Tensor, mutable: torch.Tensor) -> torch.Tensor:
        self._check_bound()
        if not self._mutable(self.target, mutable):
            return raw
        bad = self.violation(raw) > VIOLATION_EPS
        if not bool(bad.any()):
            return raw
        value = self.expected(lambda n: self._col(raw, n)).expand(raw.shape[0])
        return self._set(raw, self.target, value, bad, mutable)


def parse_formula(config: Mapping[str, Any], label: str, desc: str,
                  number: Callable[[str, float], float]) -> FormulaRelation:
    """The :class:`FormulaRelation` of a relation table (``number`` reads tol/rtol)."""
    target = config.get("target")
    if not isinstance(target, str) or not target:
        raise SchemaError(f"relation {label!r} (formula): 'target' must be a feature name")
    expr = config.get("expr")
    if not isinstance(expr, str):
        raise SchemaError(f"relation {label!r} (formula): 'expr' must be an expression string")
    name = str(config.get("name") or f"formula({target}={expr})")
    return FormulaRelation(name, desc, target=target, expr=expr, tol=number("tol", 0.0),
                           rtol=number("rtol", 0.0))
