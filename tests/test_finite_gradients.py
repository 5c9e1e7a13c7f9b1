"""Gradients through raw feature values and converted ONNX activations stay finite where a
branch ``torch.where`` does not select would overflow (0 * inf is NaN in its backward)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from advsec.attacks import make_attack
from advsec.features import FeatureSpace
from advsec.features.raw_inputs import RawInputs
from advsec.features.schema import FeatureSchema


def _space() -> tuple[FeatureSpace, pd.DataFrame]:
    schema = FeatureSchema.from_dict({"features": [
        {"name": "bytes", "kind": "continuous", "lower": 0},
        {"name": "pkts", "kind": "continuous", "lower": 0, "transform": "log1p"}],
        "label": "label"})
    df = pd.DataFrame({"bytes": [0.0, 500.0, 1000.0, 5000.0], "pkts": [0.0, 5.0, 1e5, 1e9],
                       "label": ["benign", "attack", "benign", "attack"]})
    return FeatureSpace(schema).fit(df), df


def test_raw_values_have_finite_exact_gradients_beyond_exp_overflow() -> None:
    space, df = _space()
    x = torch.as_tensor(space.encode(df)).requires_grad_(True)
    raw = RawInputs(space)(x)
    assert torch.allclose(raw.detach().double(), torch.tensor(
        df[["bytes", "pkts"]].to_numpy()), rtol=1e-5)
    (g,) = torch.autograd.grad(raw[:, 0].sum() + raw[:, 1].sum(), x)
    assert torch.isfinite(g).all()
    # no log1p: d raw / d x = the span (5000) on every row, 1000 and 5000 (> 709) included
    assert torch.allclose(g[:, 0].double(), torch.full((4,), 5000.0, dtype=torch.float64))
    # log1p: d expm1(t) / d x = exp(t) * span(t) = (1 + raw) * log1p(1e9)
    span = torch.log1p(torch.tensor(1e9, dtype=torch.float64))
    expect = (1.0 + torch.tensor(df["pkts"].to_numpy())) * span
    assert torch.allclose(g[:, 1].double(), expect, rtol=1e-4)


def test_an_attack_through_raw_values_moves_large_untransformed_columns() -> None:
    space, df = _space()
    x = torch.as_tensor(space.encode(df))
    w = torch.tensor([[1e-3, 0.0], [-1e-3, 0.0]], dtype=torch.float64)

    class Net(torch.nn.Module):  # logits linear in the raw byte count
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return (RawInputs(space)(z).double() @ w.T).float()

    y = torch.tensor([0, 0, 0, 0])
    adv = make_attack("fgsm", eps=0.1)(Net(), x, y)
    assert torch.isfinite(adv).all()
    # the gradient is finite and non-zero on every row: each moves its bytes column by eps
    assert torch.allclose((adv - x)[:, 0].abs()[1:], torch.full((3,), 0.1), atol=1e-6)


def test_converted_selu_has_finite_gradients_for_large_inputs() -> None:
    pytest.importorskip("onnx")
    from advsec.models.onnx_ops import OPS, Node

    node = Node(op="Selu", name="s", inputs=("x",), outputs=("y",), attrs={})
    x = torch.tensor([-2.0, 0.5, 100.0, 1000.0], dtype=torch.float32, requires_grad=True)
    y = OPS["Selu"](node, [x], 13)
    assert torch.allclose(y.detach(), torch.nn.functional.selu(x.detach()))
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(g).all()
    assert torch.allclose(g[1:], torch.full((3,), 1.05070102214813232421875))


def test_non_finite_adversarial_inputs_are_the_attacks_fault_not_the_data() -> None:
    from advsec.attacks.validity import valid_records

    space, df = _space()
    x = torch.as_tensor(space.encode(df))
    xa = x.clone()
    xa[2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"row 2 \(0-based\) and 0 more hold NaN"):
        valid_records(space, xa, x)
    assert valid_records(space, x, x).all()
