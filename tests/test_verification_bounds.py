"""Certified bounds of advsec MLPs (IBP, CROWN): an independent reference, exact minima by
MILP, soundness on sampled points, tightness, and the verified region against the attacks."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from advsec.attacks import FGSM, PGD, Square
from advsec.errors import ConfigError
from advsec.features.space import FeatureSpace
from advsec.models import Detector
from advsec.models.mlp import MLP
from advsec.verification import (
    CROWN,
    IBP,
    ReluNetwork,
    alpha_crown_margin,
    crown_bounds,
    crown_margin,
    ibp_bounds,
    ibp_margin,
    linf_region,
    make_verifier,
    other_classes,
    relu_network,
)

pytestmark = pytest.mark.usefixtures("one_thread")

NETS = [(5, (8,), 3), (6, (7, 5), 3), (4, (6, 6, 4), 2), (6, (9, 7), 4)]


def random_net(seed: int, d: int, widths: tuple[int, ...], c: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Linear(d, w), nn.ReLU()]
        d = w
    return nn.Sequential(*layers, nn.Linear(d, c)).double()


def random_boxes(seed: int, n: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, d), generator=g, dtype=torch.float64)
    r = 0.3 * torch.rand((n, d), generator=g, dtype=torch.float64)
    return x - r, x + r


def margins_of(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(N, C-1)`` margins ``logit[y] - logit[j]``, j != y increasing (independent of the
    verifier's specification matrix)."""
    others = other_classes(y, logits.shape[1])
    return logits.gather(1, y[:, None]) - logits.gather(1, others)


# ------------------------------------------------------------------ (a) reference
@pytest.mark.parametrize(("d", "widths", "c"), NETS)
def test_bounds_equal_bound_propagation(d, widths, c):
    bp = pytest.importorskip("bound_propagation")
    model = random_net(1, d, widths, c)
    net = relu_network(model, dtype=torch.float64)
    lo, hi = random_boxes(2, 12, d)
    ref = bp.BoundModelFactory(adaptive_relu=True).build(model)
    region = bp.HyperRectangle(lo, hi)
    got, want = crown_bounds(net, lo, hi), ref.crown(region).concretize()
    torch.testing.assert_close(got.lower, want.lower, rtol=0, atol=1e-10)
    torch.testing.assert_close(got.upper, want.upper, rtol=0, atol=1e-10)
    got, want = ibp_bounds(net, lo, hi), ref.ibp(region)
    torch.testing.assert_close(got.lower, want.lower, rtol=0, atol=1e-10)
    torch.testing.assert_close(got.upper, want.upper, rtol=0, atol=1e-10)
    # the margins: the reference on a network whose last layer is every logit difference
    pairs = [(i, j) for i in range(c) for j in range(c) if i != j]
    diff = torch.zeros((len(pairs), c), dtype=torch.float64)
    for row, (i, j) in enumerate(pairs):
        diff[row, i], diff[row, j] = 1.0, -1.0
    last = nn.Linear(model[-1].in_features, len(pairs)).double()
    with torch.no_grad():
        last.weight.copy_(diff @ model[-1].weight)
        last.bias.copy_(diff @ model[-1].bias)
    folded = bp.BoundModelFactory(adaptive_relu=True).build(nn.Sequential(*model[:-1], last))
    want_all = folded.crown(region, bound_upper=False).concretize().lower  # (N, C(C-1))
    y = torch.arange(12) % c
    cols = torch.tensor([[pairs.index((int(t), int(j))) for j in other_classes(t[None], c)[0]]
                         for t in y])
    torch.testing.assert_close(crown_margin(net, lo, hi, y), want_all.gather(1, cols), rtol=0,
                               atol=1e-10)


def milp_min(net: ReluNetwork, obj: np.ndarray, lo: np.ndarray, hi: np.ndarray
             ) -> tuple[float, np.ndarray]:
    """Exact ``min obj . logits(x)`` over the box ``[lo, hi]`` by a big-M mixed-integer program
    (one binary per ReLU, bounds from interval arithmetic), and a minimiser ``x``."""
    from scipy.optimize import Bounds as Box
    from scipy.optimize import LinearConstraint, milp

    ws = [w.numpy() for w in net.weights]
    bs = [b.numpy() for b in net.biases]
    d = len(lo)
    sizes = [w.shape[0] for w in ws[:-1]]
    n_var = d + 3 * sum(sizes)  # x, then per layer z, a, s
    rows, low, up = [], [], []
    var_lo, var_hi = [*lo], [*hi]
    integrality = [0] * d
    start, prev, c_lo, c_hi = d, slice(0, d), lo, hi
    for w, b, n in zip(ws[:-1], bs[:-1], sizes, strict=True):
        z, a, s = (slice(start + i * n, start + (i + 1) * n) for i in range(3))
        cen, rad = (c_hi + c_lo) / 2, (c_hi - c_lo) / 2
        lz, uz = w @ cen + b - np.abs(w) @ rad, w @ cen + b + np.abs(w) @ rad
        for i in range(n):
            def row(entries: dict[int, float]) -> np.ndarray:
                r = np.zeros(n_var)
                for k, v in entries.items():
                    r[k] += v
                return r
            zi, ai, si = z.start + i, a.start + i, s.start + i
            eq = row({zi: -1.0} | {prev.start + k: w[i, k] for k in range(w.shape[1])})
            rows += [eq, row({ai: 1.0, zi: -1.0}), row({ai: 1.0, zi: -1.0, si: -lz[i]}),
                     row({ai: 1.0, si: -max(uz[i], 0.0)})]
            low += [-b[i], 0.0, -np.inf, -np.inf]
            up += [-b[i], np.inf, -lz[i], 0.0]
        var_lo += [*lz, *np.zeros(n), *np.zeros(n)]
        var_hi += [*uz, *np.maximum(uz, 0.0), *np.ones(n)]
        integrality += [0] * (2 * n) + [1] * n
        start, prev, c_lo, c_hi = s.stop, a, np.maximum(lz, 0), np.maximum(uz, 0)
    cost = np.zeros(n_var)
    cost[prev] = obj @ ws[-1]
    res = milp(cost, constraints=LinearConstraint(np.array(rows), low, up) if rows else (),
               integrality=integrality, bounds=Box(var_lo, var_hi),
               options={"mip_rel_gap": 0.0})
    assert res.success, res.message
    return float(res.fun + obj @ bs[-1]), res.x[:d]


@pytest.mark.parametrize(("d", "widths", "c"), [(3, (4,), 3), (3, (4, 4), 3), (2, (5, 3), 2)])
def test_bounds_never_exceed_the_exact_minimum(d, widths, c):
    net = relu_network(random_net(3, d, widths, c), dtype=torch.float64)
    lo, hi = random_boxes(4, 4, d)
    y = torch.arange(4) % c
    crown_m, ibp_m = crown_margin(net, lo, hi, y), ibp_margin(net, lo, hi, y)
    cb = crown_bounds(net, lo, hi)
    for n in range(4):
        for col, j in enumerate(other_classes(y[n:n + 1], c)[0]):
            obj = np.zeros(c)
            obj[int(y[n])], obj[int(j)] = 1.0, -1.0
            exact, xs = milp_min(net, obj, lo[n].numpy(), hi[n].numpy())
            # the minimiser is a real point of the box attaining the minimum
            assert np.all(xs >= lo[n].numpy() - 1e-9) and np.all(xs <= hi[n].numpy() + 1e-9)
            value = float(obj @ net(torch.as_tensor(xs)[None])[0].numpy())
            assert value == pytest.approx(exact, abs=1e-6)
            assert ibp_m[n, col] <= crown_m[n, col] + 1e-9 <= exact + 1e-6
        for k in range(c):
            obj = np.eye(c)[k]
            assert cb.lower[n, k] <= milp_min(net, obj, lo[n].numpy(), hi[n].numpy())[0] + 1e-6
            assert -cb.upper[n, k] <= milp_min(net, -obj, lo[n].numpy(), hi[n].numpy())[0] + 1e-6


def test_a_linear_model_is_bounded_exactly():
    model = nn.Sequential(nn.Linear(4, 3)).double()
    net = relu_network(model, dtype=torch.float64)
    lo, hi = random_boxes(5, 3, 4)
    corners = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=torch.float64)
    for n in range(3):
        pts = lo[n] + corners * (hi[n] - lo[n])
        out = model(pts).detach()
        for bounds in (ibp_bounds(net, lo[n:n + 1], hi[n:n + 1]),
                       crown_bounds(net, lo[n:n + 1], hi[n:n + 1])):
            torch.testing.assert_close(bounds.lower[0], out.amin(0), rtol=0, atol=1e-12)
            torch.testing.assert_close(bounds.upper[0], out.amax(0), rtol=0, atol=1e-12)


# ------------------------------------------------------------------ (b), (c) soundness, tightness
@pytest.mark.parametrize(("d", "widths", "c"), NETS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bounds_hold_on_sampled_points_and_crown_is_tighter(d, widths, c, dtype):
    model = random_net(7, d, widths, c).to(dtype)
    net = relu_network(model, dtype=dtype)
    lo, hi = (t.to(dtype) for t in random_boxes(8, 6, d))
    y = torch.arange(6) % c
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    g = torch.Generator().manual_seed(9)
    corners = torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=dtype)
    u = torch.cat([torch.rand((10_000, d), generator=g, dtype=dtype), corners])
    cb, ib = crown_bounds(net, lo, hi), ibp_bounds(net, lo, hi)
    cm, im = crown_margin(net, lo, hi, y), ibp_margin(net, lo, hi, y)
    with torch.no_grad():
        for n in range(6):
            out = model(lo[n] + u * (hi[n] - lo[n]))
            for b in (cb, ib):
                assert bool((out >= b.lower[n] - tol).all() and (out <= b.upper[n] + tol).all())
            m = margins_of(out, y[n].expand(len(out)))
            assert bool((m >= cm[n] - tol).all() and (m >= im[n] - tol).all())
    # (c) the margins CROWN certifies are at least IBP's, and strictly better on average
    assert bool((cm >= im - tol).all())
    assert float((cm - im).mean()) > 0
    assert bool((cb.upper - cb.lower <= ib.upper - ib.lower + tol).all())


# ------------------------------------------------------------------ the model forms
def test_model_forms_and_refused_layers(small_synthetic_detector):
    _, space, det = small_synthetic_detector
    x = torch.as_tensor(space.encode(small_synthetic_detector[0].test.iloc[:20]))
    net = relu_network(det)
    assert isinstance(det.as_module().net[2], nn.Dropout)  # the Detector's dropout is skipped
    with torch.no_grad():
        torch.testing.assert_close(net(x), det.as_module().eval()(x))
    # nested Sequentials and consecutive Linears (merged), a trailing ReLU, an MLP
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 6)), nn.ReLU(), nn.ReLU(),
                        nn.Identity(), nn.Linear(6, 3), nn.ReLU())
    mlp = MLP(4, 2, hidden=(5,), dropout=0.2).eval()
    z = torch.rand(7, 4)
    for m, depth in ((seq, 3), (mlp, 2)):
        r = relu_network(m)
        assert r.depth == depth
        with torch.no_grad():
            torch.testing.assert_close(r(z), m(z))
    for bad, word in ((MLP(4, 2, activation="tanh"), "Tanh"),
                      (nn.Sequential(nn.ReLU(), nn.Linear(4, 2)), "before any nn.Linear"),
                      (nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)), "BatchNorm1d")):
        with pytest.raises(ConfigError, match=word):
            relu_network(bad)


# ------------------------------------------------------------------ (d), (e) against the attacks
def _xy(ds, space, det, n):
    test = ds.test.iloc[:n]
    return (torch.as_tensor(space.encode(test)),
            det.encode_labels(test[ds.label].astype(str).to_numpy()))


EPS = [0.02, 0.05, 0.1, 0.2]


def test_certified_records_are_never_broken_by_pgd(small_synthetic_detector):
    ds, space, det = small_synthetic_detector
    x, y = _xy(ds, space, det, 300)
    advs = PGD(feature_space=space, steps=30, restarts=2, seed=0)(det, x, y, eps=EPS)
    clean = det.logits(x).argmax(1) == y
    for verifier in (IBP(feature_space=space), CROWN(feature_space=space)):
        res = verifier(det, x, y, eps=EPS)
        assert res.verified.shape == (len(EPS), len(x))
        assert int(res.verified[0].sum()) > 0.5 * len(x)  # not vacuous
        assert not bool((res.verified & ~clean).any())
        for e, adv in enumerate(advs):
            robust = det.logits(adv).argmax(1) == y
            assert not bool((res.verified[e] & ~robust).any()), (verifier.name, EPS[e])
        # a smaller budget certifies a superset
        assert not bool((res.verified[1:] & ~res.verified[:-1]).any())
    ibp, crown, pure = (v(det, x, y, eps=EPS) for v in (
        IBP(feature_space=space), CROWN(feature_space=space),
        CROWN(feature_space=space, with_ibp=False)))
    # (c) the verifier keeps the better bound, so it certifies every record IBP does; CROWN
    # alone is not tighter on every margin (the adaptive lower slope), but on most, on average
    assert bool((crown.margin >= ibp.margin).all())
    assert not bool((ibp.verified & ~crown.verified).any())
    assert bool((crown.margin == torch.maximum(pure.margin, ibp.margin)).all())
    assert float((pure.margin >= ibp.margin).float().mean()) > 0.95
    assert float((pure.margin - ibp.margin).mean()) > 0


def strict_space(ds):
    """The synthetic schema with directions, a value set and a mutable categorical."""
    direction = {"duration": "increase", "src_bytes": "increase", "failed_logins": "decrease"}
    feats = tuple(replace(f, direction=direction.get(f.name, "any"),
                          mutable=True if f.name == "protocol" else f.mutable,
                          values="observed" if f.name == "connections" else None)
                  for f in ds.schema)
    return FeatureSpace(replace(ds.schema, features=feats)).fit(ds.train)


def test_region_contains_every_attack_output(small_synthetic_detector):
    ds, base, _ = small_synthetic_detector
    for space in (base, strict_space(ds)):
        det = Detector(hidden=(16,), epochs=3, batch_size=128, seed=0, device="cpu").fit(
            space.encode(ds.train), ds.labels("train"))
        x, y = _xy(ds, space, det, 200)
        eps = [*EPS, 1.0]
        attacks = (PGD(feature_space=space, steps=20, seed=0),
                   FGSM(feature_space=space), Square(feature_space=space, queries=50, seed=0))
        v = space.torch_view()
        for attack in attacks:
            for e, adv in zip(eps, attack(det, x, y, eps=eps), strict=True):
                for cat, switch in itertools.product(("enumerate", "relax"), (False, True)):
                    region = linf_region(x, e, space=space, categorical=cat,
                                         switch_categories=switch)
                    assert bool(region.contains(adv).all()), (attack.name, e, cat, switch)
                region = linf_region(x, e, space=space)
                fixed = ~v.mutable
                assert bool((region.lower[:, fixed] == x[region.owner][:, fixed]).all())
                assert float((region.upper - region.lower).amax()) <= 2 * e + 3e-6
        res = CROWN(feature_space=space)(det, x, y, eps=eps)
        assert res.boxes[:-1] == [len(x)] * len(EPS)


def test_categories_enumerated_or_relaxed(small_synthetic_detector):
    ds = small_synthetic_detector[0]
    space = strict_space(ds)
    det = Detector(hidden=(16,), epochs=3, batch_size=128, seed=0, device="cpu").fit(
        space.encode(ds.train), ds.labels("train"))
    x, y = _xy(ds, space, det, 100)
    k = len(space.categories_["protocol"]) + 1
    enum = CROWN(feature_space=space, switch_categories=True)(det, x, y, eps=[0.0, 0.02])
    relax = CROWN(feature_space=space, switch_categories=True, categorical="relax")(
        det, x, y, eps=[0.0, 0.02])
    ball = CROWN(feature_space=space)(det, x, y, eps=[0.0, 0.02])
    assert enum.boxes == [k * len(x)] * 2 and relax.boxes == ball.boxes == [len(x)] * 2
    # relaxing is a superset of enumerating, which is a superset of the ball's categories
    assert not bool((relax.verified & ~enum.verified).any())
    assert not bool((enum.verified & ~ball.verified).any())
    # enumerated: certified exactly when every category, alone, keeps the class at eps 0
    with torch.no_grad():
        alone = torch.ones(len(x), dtype=torch.bool)
        a = next(b for b in space.torch_view().blocks if bool(space.torch_view().mutable[b[0]]))
        for cat in range(k):
            xc = x.clone()
            xc[:, a[0]:a[1]] = torch.eye(k)[cat]
            alone &= det.logits(xc).argmax(1) == y
    assert torch.equal(enum.verified[0], alone)
    with pytest.raises(ConfigError, match="max_boxes"):
        CROWN(feature_space=space, switch_categories=True, max_boxes=10)(det, x, y, eps=0.01)


# ------------------------------------------------------------------ the contract
def test_contract_options_and_registry(small_synthetic_detector):
    ds, space, det = small_synthetic_detector
    x, y = _xy(ds, space, det, 120)
    labels = ds.test[ds.label].astype(str).to_numpy()[:120]
    ref = make_verifier("CROWN", feature_space=space)(det, x, labels, eps=EPS)  # raw labels
    assert list(ref.table().columns)[:3] == ["verifier", "eps", "records"]
    assert ref.certified_accuracy == [float(v.float().mean()) for v in ref.verified]
    small = CROWN(feature_space=space, batch_size=7)(det, x, y, eps=EPS)
    torch.testing.assert_close(small.margin, ref.margin)
    f64 = CROWN(feature_space=space, dtype=torch.float64)(det, x, y, eps=EPS)
    assert f64.margin.dtype == torch.float64
    torch.testing.assert_close(f64.margin.float(), ref.margin, rtol=0, atol=1e-4)
    plain = IBP(bounds=(0.0, 1.0))(det.as_module(), x, y, eps=0.05)  # no space: every column
    assert plain.verified.shape == (1, len(x))
    assert not bool((plain.verified[0] & ~ref.verified[1]).any())
    for call in (lambda: make_verifier("lp"), lambda: make_verifier("ibp", steps=3),
                 lambda: CROWN(dtype=torch.float16), lambda: CROWN(categorical="sample")):
        with pytest.raises(ConfigError):
            call()
    if torch.cuda.is_available():
        gpu = CROWN(feature_space=space, device="cuda")(det, x, y, eps=EPS)
        torch.testing.assert_close(gpu.margin, ref.margin, rtol=0, atol=1e-4)


# ------------------------------------------------------------------ alpha-CROWN
@pytest.mark.parametrize(("d", "widths", "c"), [(3, (4,), 3), (3, (4, 4), 3), (2, (5, 3), 2)])
def test_alpha_crown_lies_between_crown_and_the_exact_minimum(d, widths, c):
    net = relu_network(random_net(3, d, widths, c), dtype=torch.float64)
    lo, hi = random_boxes(4, 4, d)
    y = torch.arange(4) % c
    crown_m = crown_margin(net, lo, hi, y)
    alpha_m = alpha_crown_margin(net, lo, hi, y, iterations=30)
    assert bool((alpha_m >= crown_m - 1e-12).all())
    for n in range(4):
        for col, j in enumerate(other_classes(y[n:n + 1], c)[0]):
            obj = np.zeros(c)
            obj[int(y[n])], obj[int(j)] = 1.0, -1.0
            exact, _ = milp_min(net, obj, lo[n].numpy(), hi[n].numpy())
            assert float(alpha_m[n, col]) <= exact + 1e-6
    # zero iterations is CROWN itself
    torch.testing.assert_close(alpha_crown_margin(net, lo, hi, y, iterations=0), crown_m,
                               rtol=0, atol=0)


@pytest.mark.parametrize(("d", "widths", "c"), NETS)
def test_alpha_crown_holds_on_sampled_points_and_tightens_crown(d, widths, c):
    model = random_net(7, d, widths, c)
    net = relu_network(model, dtype=torch.float64)
    lo, hi = random_boxes(8, 6, d)
    y = torch.arange(6) % c
    cm = crown_margin(net, lo, hi, y)
    am = alpha_crown_margin(net, lo, hi, y, iterations=25)
    g = torch.Generator().manual_seed(9)
    corners = torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=torch.float64)
    u = torch.cat([torch.rand((10_000, d), generator=g, dtype=torch.float64), corners])
    with torch.no_grad():
        for n in range(6):
            m = margins_of(model(lo[n] + u * (hi[n] - lo[n])), y[n].expand(len(u)))
            assert bool((m >= am[n] - 1e-10).all())
    assert bool((am >= cm - 1e-12).all())
    assert float((am - cm).mean()) > 0  # the optimised slopes raise the bounds


def test_alpha_crown_certifies_a_superset_of_crown(small_synthetic_detector):
    ds, space, det = small_synthetic_detector
    x, y = _xy(ds, space, det, 200)
    module = det.as_module()
    params = [p.detach().clone() for p in module.parameters()]
    grads = [None if p.grad is None else p.grad.clone() for p in module.parameters()]
    crown = CROWN(feature_space=space)(det, x, y, eps=EPS)
    alpha = make_verifier("alpha-crown", feature_space=space, iterations=15)(det, x, y, eps=EPS)
    # the model's weights and their gradients are untouched (the slopes' gradients only)
    for p, g, q in zip(params, grads, module.parameters(), strict=True):
        assert torch.equal(p, q.detach())
        assert (g is None and q.grad is None) or torch.equal(g, q.grad)
    assert bool((alpha.margin >= crown.margin - 1e-6).all())
    assert not bool((crown.verified & ~alpha.verified).any())
    assert int(alpha.verified.sum()) >= int(crown.verified.sum())
    # sound against a strong attack
    advs = PGD(feature_space=space, steps=30, restarts=2, seed=0)(det, x, y, eps=EPS)
    for e, adv in enumerate(advs):
        assert not bool((alpha.verified[e] & (det.logits(adv).argmax(1) != y)).any())
    for bad in ({"iterations": -1}, {"iterations": 2.5}, {"lr": 0}):
        with pytest.raises(ConfigError):
            make_verifier("alpha-crown", **bad)
