"""Adding an attack is one class: two attacks defined here alone (a gradient attack and a
score-based one) run through make_attack, a TOML experiment, ``advsec attack``, the worst-case
ensemble, the red-flag checks, the defences and the report, with no edit anywhere else."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from advsec.attacks import Attack, AttackBatch, make_attack
from advsec.attacks.losses import ce_objective
from advsec.attacks.spec import REGISTRY, attack_spec, unregister
from advsec.cli import main
from advsec.defenses import defend
from advsec.evaluation import evaluate_attack, worst_case
from advsec.evaluation.checks import check_black_box_vs_white_box, check_sweep
from advsec.experiments.config import parse_config

pytestmark = pytest.mark.usefixtures("one_thread")

GRAD, SCORE = "test-halving-pgd", "test-random-signs"


@pytest.fixture(scope="module")
def new_attacks():
    """The two attacks, registered by being defined; removed again after this module."""

    class HalvingPGD(Attack):
        """Sign-gradient steps of size eps, eps/2, eps/4, ... (a toy iterative attack).

        Paper: none (a test). Norm: L-inf. Shapes: ``(N, D)`` -> ``(N, D)``.
        """

        name = GRAD
        family = "gradient"
        budget = "steps"
        norms = ("linf",)

        def __init__(self, *, steps: int = 4, **options: object) -> None:
            super().__init__(**options)  # type: ignore[arg-type]
            if steps < 1:
                raise ValueError("steps must be >= 1")
            self.steps = steps

        def perturb(self, batch: AttackBatch) -> torch.Tensor:
            project = batch.projector()
            x = batch.x0.clone()
            for i in range(self.steps):
                grad, _, _ = batch.gradient(x, ce_objective)
                x = project(x + batch.eps * 0.5**i * grad.sign())
            return x

    class RandomSigns(Attack):
        """Random vertices of the eps-ball, keeping the first that fools the model.

        Paper: none (a test). Norm: L-inf. Shapes: ``(N, D)`` -> ``(N, D)``.
        """

        name = SCORE
        family = "score"
        budget = "queries"
        norms = ("linf",)
        needs_gradients = False

        def __init__(self, *, queries: int = 10, **options: object) -> None:
            super().__init__(**options)  # type: ignore[arg-type]
            self.queries = queries

        def perturb(self, batch: AttackBatch) -> torch.Tensor:
            project = batch.projector()
            best = batch.x0.clone()
            done = batch.succeeded(batch.scores(best))
            for _ in range(self.queries):
                signs = torch.randint(0, 2, best.shape, generator=batch.generator,
                                      device=best.device).to(best.dtype) * 2 - 1
                cand = project(batch.x0 + batch.eps * signs)
                hit = batch.succeeded(batch.scores(cand)) & ~done
                best = torch.where(hit[:, None], cand, best)
                done |= hit
            return best

    yield HalvingPGD, RandomSigns
    unregister(GRAD)
    unregister(SCORE)


@pytest.fixture(scope="module")
def flows(small_synthetic_detector):
    ds, space, det = small_synthetic_detector
    x = torch.as_tensor(space.encode(ds.test.iloc[:200]))
    y = det.encode_labels(ds.labels("test")[:200])
    return ds, space, det, x, y


def test_defining_the_class_registers_its_facts(new_attacks):
    grad_cls, score_cls = new_attacks
    assert REGISTRY[GRAD].cls is grad_cls and REGISTRY[SCORE].cls is score_cls
    g, s = attack_spec(GRAD.upper().replace("-", "_")), attack_spec(SCORE)
    assert (g.family, g.budget, g.norms, g.needs_gradients) == ("gradient", "steps", ("linf",),
                                                                True)
    assert s.black_box and not g.black_box and not g.single_step
    assert {"steps", "batch_size"} <= set(g.config_options()) and "eps" not in g.config_options()
    atk = make_attack(GRAD, eps=0.1, steps=3)
    assert isinstance(atk, grad_cls) and atk.steps == 3
    with pytest.raises(ValueError, match="queries"):
        make_attack(GRAD, queries=3)  # an option its constructor does not take
    with pytest.raises(ValueError, match="linf"):
        make_attack(SCORE, norm="l2")  # a norm it does not declare


def test_both_attacks_give_valid_records_in_the_ball_and_break_the_detector(new_attacks, flows):
    _, space, det, x, y = flows
    eps = [0.05, 0.2]
    for name in (GRAD, SCORE):
        res = make_attack(name, eps=eps, feature_space=space, seed=1).run(det, x, y)
        for i, e in enumerate(eps):
            assert float((res.x_adv[i] - x).abs().max()) <= e + 1e-6
            assert res.valid_share[i] == 1.0
            # success means what it says: an independent prediction of the returned records
            pred = det.predict(res.x_adv[i].numpy())
            assert (pred[res.success(i).numpy()] != det.classes_[y[res.success(i)]]).all()
        table = res.table()
        assert table["attack_success_rate"].iloc[-1] > 0.0
        assert table["accuracy"].iloc[-1] < table["accuracy"].iloc[0] + 1e-9
    res = make_attack(GRAD, eps=0.2).run(det, x, y)
    assert res.gradients == 4 and res.queries == 0  # the batch counts what perturb asked for
    res = make_attack(SCORE, eps=0.2, queries=5).run(det, x, y)
    assert res.gradients == 0 and res.queries == 6


def test_the_score_based_attack_needs_only_scores(new_attacks, flows):
    _, _, det, x, y = flows

    class OnlyProba:  # no torch module: a scikit-learn style model
        def predict_proba(self, a):
            return det.predict_proba(a)

    x_adv = make_attack(SCORE, eps=0.2, queries=5)(OnlyProba(), x, y)
    assert x_adv.shape == x.shape and float((x_adv - x).abs().max()) <= 0.2 + 1e-6
    with pytest.raises(TypeError):
        make_attack(GRAD, eps=0.2)(OnlyProba(), x, y)  # white box needs the network


def test_worst_case_checks_and_defences_take_them(new_attacks, flows):
    _, space, det, x, y = flows
    attacks = [make_attack("fgsm", eps=0.1), make_attack(GRAD, eps=0.1),
               make_attack(SCORE, eps=0.1, queries=5)]
    wc = worst_case(det, attacks, x, y, eps=[0.1])
    t = wc.table
    per = t[t.attack != "worst-case"]
    assert set(per.attack) == {"fgsm", GRAD, SCORE}
    assert wc.accuracy(0.1) <= per.accuracy.min() + 1e-12
    sweep = pd.concat([evaluate_attack(det, a, x, y, eps=[0, 0.1]).table for a in attacks])
    flags = {f.name: f for f in check_sweep(sweep)}
    assert flags["iterative attacks at least as strong as FGSM"].detail.endswith(
        "comparison(s)")  # the new gradient attack is read as iterative
    assert "black-box row(s) compared" in flags[
        "white-box attacks at least as strong as black-box"].detail
    # a score-based attack far stronger than every white-box one raises the flag
    fake = pd.DataFrame({"attack": ["fgsm", GRAD, f"{SCORE}-valid"], "eps": [0.1] * 3,
                         "accuracy": [0.8, 0.7, 0.1]})
    assert not check_black_box_vs_white_box(fake).ok
    hardened = defend(det, x=x.numpy(), y=det.classes_[y.numpy()], method="data_augmentation",
                      attack=GRAD, eps=0.1, steps=2, epochs=1, feature_space=space)
    assert hardened.info["attack"] == GRAD


TOML = f"""\
[experiment]
name = "extension"
seeds = [0]

[data]
dataset = "synthetic"
options = {{ rows = 800 }}
max_eval_rows = 150

[[detectors]]
name = "mlp"
hidden = [16]
epochs = 5

[[attacks]]
attack = "fgsm"

[[attacks]]
attack = "{GRAD}"
steps = 3

[[attacks]]
attack = "{SCORE}"
queries = 4

[threat]
eps = [0, 0.1]
constraints = ["valid"]
"""


def test_a_toml_experiment_runs_them_and_the_report_shows_them(new_attacks, tmp_path):
    cfg = parse_config(TOML, source="x.toml")
    assert [a.options() for a in cfg.attacks] == [{}, {"steps": 3}, {"queries": 4}]
    with pytest.raises(Exception, match=r"attacks\[1\]\.queries: unknown key \(allowed: .*steps"):
        parse_config(TOML.replace("steps = 3", "queries = 3"), source="x.toml")
    with pytest.raises(Exception, match=r"attacks\[1\]\.steps: Input should be a valid integer"):
        parse_config(TOML.replace("steps = 3", 'steps = "3"'), source="x.toml")
    f = tmp_path / "ext.toml"
    f.write_text(TOML)
    out = tmp_path / "run"
    assert main(["run", str(f), "--out", str(out)]) == 0
    sweep = pd.read_csv(out / "sweep.csv")
    adaptive = sweep[sweep.evaluation == "adaptive"]
    assert {GRAD, SCORE} <= set(adaptive.attack)
    assert (adaptive[adaptive.eps > 0].valid_share == 1.0).all()
    report = (out / "report.html").read_text()
    assert GRAD in report and SCORE in report


def test_advsec_attack_runs_them(new_attacks, flows, tmp_path):
    _, space, det, _, _ = flows
    model = tmp_path / "det"
    det.save(model, feature_space=space)
    out = tmp_path / "attack"
    code = main(["attack", "--model", str(model), "--dataset", "synthetic", "--attack", SCORE,
                 "--steps", "3", "--eps", "0.1", "--max-rows", "50", "--out", str(out)])
    assert code == 0
    settings = json.loads((out / "attack.json").read_text())
    assert settings["attack"] == SCORE and settings["steps"] == 3
    table = pd.read_csv(out / "results.csv")
    assert list(table.eps) == [0.0, 0.1] and table.valid_share.iloc[-1] == 1.0
    bad = main(["attack", "--model", str(model), "--dataset", "synthetic", "--attack", SCORE,
                "--norm", "l2", "--out", str(tmp_path / "no")])
    assert bad == 2 and not (tmp_path / "no").exists()
