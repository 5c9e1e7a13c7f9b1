"""Relations: violation is zero exactly when the relation holds, differentiable, repairs respect
mutability; configuration errors are one-line SchemaErrors."""

from __future__ import annotations

import pytest
import torch

from advsec.errors import SchemaError
from advsec.features.constraints import (
    VIOLATION_EPS,
    OrderRelation,
    RatioRelation,
    SumRelation,
    ZeroIfZeroRelation,
    parse_relation,
    relations_from_schema,
)
from advsec.features.schema import Feature, FeatureKind, FeatureSchema

INDEX = {"a": 0, "b": 1, "c": 2, "d": 3}
ALL = torch.ones(4, dtype=torch.bool)


def bound(cfg):
    return parse_relation(cfg).bind(INDEX)


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_sum_equality_violation_and_repair_of_the_target():
    rel = bound({"type": "sum", "features": ["a", "b"], "target": "c"})
    raw = t([[1, 2, 3, 0], [1, 2, 5, 0], [0.5, 0.25, 0.75, 0]])
    assert rel.violation(raw).tolist() == [0.0, 2.0, 0.0]
    fixed = rel.repair(raw, ALL)
    assert torch.all(rel.violation(fixed) <= VIOLATION_EPS)
    assert fixed[1, 2] == 3.0 and torch.equal(fixed[:, :2], raw[:, :2])  # only c moved


def test_sum_repair_scales_addends_when_the_target_is_immutable():
    rel = bound({"type": "sum", "features": ["a", "b"], "target": "c"})
    raw = t([[2, 6, 4, 0]])
    mutable = torch.tensor([True, True, False, True])
    fixed = rel.repair(raw, mutable)
    assert fixed[0, 2] == 4.0
    assert fixed[0, 0] + fixed[0, 1] == pytest.approx(4.0)
    assert fixed[0, 0] / fixed[0, 1] == pytest.approx(2 / 6)  # proportions kept


def test_sum_at_most_a_constant_with_tolerance():
    rel = bound({"type": "sum", "features": ["a", "b"], "target": 1.0, "op": "<=", "tol": 0.01})
    raw = t([[0.51, 0.50, 0, 0], [0.7, 0.6, 0, 0], [0.2, 0.3, 0, 0]])
    bad = rel.violation(raw) > VIOLATION_EPS
    assert bad.tolist() == [False, True, False]
    fixed = rel.repair(raw, ALL)
    assert not bool((rel.violation(fixed) > VIOLATION_EPS).any())
    assert torch.equal(fixed[[0, 2]], raw[[0, 2]])


def test_ratio_with_zero_denominator_and_repairs():
    rel = bound({"type": "ratio", "target": "c", "numerator": "a", "denominator": "b",
                 "tol": 1.0})
    raw = t([[100, 4, 25, 0], [100, 4, 30, 0], [0, 0, 0, 0], [7, 0, 3, 0]])
    assert (rel.violation(raw) > 0).tolist() == [False, True, False, True]
    fixed = rel.repair(raw, ALL)
    assert fixed[1, 2] == 25.0 and fixed[3, 2] == 0.0
    only_num = torch.tensor([True, False, False, False])
    fixed = rel.repair(raw, only_num)  # target immutable: the numerator follows
    assert fixed[1, 0] == 120.0 and fixed[1, 2] == 30.0


def test_order_violation_sums_the_inversions_and_repair_sorts_mutables():
    rel = bound({"type": "order", "features": ["a", "b", "c"]})
    raw = t([[1, 2, 3, 0], [3, 2, 1, 0], [1, 5, 4, 0]])
    assert rel.violation(raw).tolist() == [0.0, 2.0, 1.0]
    fixed = rel.repair(raw, ALL)
    assert torch.all(rel.violation(fixed) == 0)
    keep_max = torch.tensor([True, True, False, True])
    fixed = rel.repair(t([[1, 5, 4, 0]]), keep_max)  # the max is immutable: the mean comes down
    assert fixed.tolist() == [[1, 4, 4, 0]]


def test_zero_if_zero_gate_and_repair():
    rel = bound({"type": "zero_if_zero", "when": "a", "features": ["b", "c"]})
    raw = t([[0, 2, -3, 9], [1, 2, 3, 9], [0, 0, 0, 9]])
    assert rel.violation(raw).tolist() == [5.0, 0.0, 0.0]
    fixed = rel.repair(raw, ALL)
    assert fixed[0].tolist() == [0, 0, 0, 9] and torch.equal(fixed[1:], raw[1:])
    b_fixed = rel.repair(raw, torch.tensor([True, True, False, True]))
    assert b_fixed[0].tolist() == [0, 0, -3, 9]  # c immutable: left for the caller's fallback


@pytest.mark.parametrize("cfg", [
    {"type": "sum", "features": ["a", "b"], "target": "c"},
    {"type": "ratio", "target": "c", "numerator": "a", "denominator": "b"},
    {"type": "order", "features": ["a", "b", "c"]},
    {"type": "zero_if_zero", "when": "d", "features": ["a", "b"]},
])
def test_violation_is_differentiable_and_descends(cfg):
    rel = bound(cfg)
    raw = t([[3.0, 1.5, 0.7, 0.0]]).requires_grad_(True)
    v = rel.violation(raw)
    assert v.item() > 0
    v.sum().backward()
    assert raw.grad is not None and torch.isfinite(raw.grad).all() and raw.grad.abs().sum() > 0
    stepped = (raw - 0.01 * raw.grad).detach()
    assert rel.violation(stepped).item() < v.item()


def test_round_trip_through_to_dict():
    for cfg in ({"type": "sum", "features": ["a", "b"], "target": 1.0, "op": "<=", "tol": 0.01},
                {"type": "ratio", "target": "c", "numerator": "a", "denominator": "b",
                 "scale": 8.0},
                {"type": "order", "features": ["a", "b"], "name": "ab"},
                {"type": "zero_if_zero", "when": "a", "features": ["b"]}):
        rel = parse_relation(cfg)
        again = parse_relation(rel.to_dict())
        assert again.to_dict() == rel.to_dict()
        assert type(again) is type(rel)


@pytest.mark.parametrize("cfg, match", [
    ({"type": "product", "features": ["a"]}, "type must be one of"),
    ({"type": "sum", "features": ["a"], "target": "c", "colour": 1}, "unknown key"),
    ({"type": "sum", "features": "a", "target": "c"}, "must list at least 1"),
    ({"type": "sum", "features": ["a"]}, "'target' must be"),
    ({"type": "sum", "features": ["a"], "target": 1, "op": ">"}, "'op'"),
    ({"type": "order", "features": ["a"]}, "at least 2"),
    ({"type": "ratio", "target": "c", "numerator": "a"}, "'denominator'"),
    ({"type": "zero_if_zero", "when": "a", "features": ["b"], "tol": -1}, "'tol' must be >= 0"),
])
def test_bad_configuration_is_a_one_line_schema_error(cfg, match):
    with pytest.raises(SchemaError, match=match) as info:
        parse_relation(cfg)
    assert "\n" not in str(info.value)


def test_schema_checks_feature_names_kinds_and_unique_names():
    feats = (Feature("a", FeatureKind.INTEGER), Feature("b", FeatureKind.INTEGER),
             Feature("p", FeatureKind.CATEGORICAL))
    good = FeatureSchema(feats, relations=({"type": "order", "features": ["a", "b"]},))
    assert [type(r) for r in relations_from_schema(good)] == [OrderRelation]
    with pytest.raises(SchemaError, match=r"unknown feature\(s\) \['z'\]"):
        relations_from_schema(FeatureSchema(feats, relations=(
            {"type": "order", "features": ["a", "z"]},)))
    with pytest.raises(SchemaError, match="categorical"):
        relations_from_schema(FeatureSchema(feats, relations=(
            {"type": "zero_if_zero", "when": "a", "features": ["p"]},)))
    with pytest.raises(SchemaError, match="used twice"):
        relations_from_schema(FeatureSchema(feats, relations=(
            {"type": "order", "features": ["a", "b"], "name": "x"},
            {"type": "order", "features": ["b", "a"], "name": "x"})))


def test_unbound_relation_refuses_to_evaluate():
    rel = parse_relation({"type": "order", "features": ["a", "b"]})
    with pytest.raises(RuntimeError, match="bind"):
        rel.violation(t([[1, 2]]))
    assert isinstance(rel, OrderRelation)


def test_parse_builds_the_matching_class():
    kinds = {"sum": SumRelation, "ratio": RatioRelation, "order": OrderRelation,
             "zero_if_zero": ZeroIfZeroRelation}
    cfgs = {"sum": {"features": ["a"], "target": 0}, "ratio": {
        "target": "a", "numerator": "b", "denominator": "c"}, "order": {"features": ["a", "b"]},
        "zero_if_zero": {"when": "a", "features": ["b"]}}
    for name, cls in kinds.items():
        assert type(parse_relation({"type": name, **cfgs[name]})) is cls
