"""The KDD Cup 99 adversarial-training reproduction: the exact split, the original's model and
attack calls, and a quick end-to-end run of the command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import typer
from torch import nn
from typer.testing import CliRunner

from advsec.attacks import BIM, FGSM, MIM
from advsec.cli.reproduce import reproduce_command
from advsec.errors import ConfigError, DataError
from advsec.experiments.reproductions import STUDIES, run_reproduction
from advsec.experiments.reproductions.faithful import OwnPredictionAttack, keras_mlp, predict
from advsec.experiments.reproductions.faithful_craft import craft_faithful, supports
from advsec.experiments.reproductions.kdd99_data import (
    EXPECTED_TEST_COUNTS,
    NUMERIC_FEATURES,
    find_kdd99_file,
    load_faithful_data,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def kdd_root(shared_datasets):
    root = shared_datasets / "kdd99"
    if not (root / "kddcup.data_10_percent.gz").is_file():
        pytest.skip("kddcup.data_10_percent.gz not found")
    return root


def test_faithful_split_has_the_original_test_counts(kdd_root):
    state = np.random.get_state()
    data = load_faithful_data(kdd_root)
    assert len(data.raw) == 145_534  # 145,586 de-duplicated rows minus 52 u2r
    assert data.test_counts() == EXPECTED_TEST_COUNTS == {
        "dos": 10_889, "normal": 17_568, "probe": 441, "r2l": 209}
    assert len(data.test_idx) == 29_107 and len(data.train_idx) == 116_427
    assert data.split_matches
    assert list(data.raw.columns) == list(NUMERIC_FEATURES) and len(NUMERIC_FEATURES) == 34
    assert data.x.shape == (145_534, 34) and data.x.dtype == np.float32
    # standardised over all rows; the constant num_outbound_cmds stays 0
    assert np.allclose(data.x.mean(axis=0), 0, atol=1e-4)
    std = data.x.std(axis=0)
    const = list(NUMERIC_FEATURES).index("num_outbound_cmds")
    assert std[const] == 0 and np.allclose(np.delete(std, const), 1, atol=1e-3)
    # the global NumPy RNG is left as it was
    assert np.array_equal(np.random.get_state()[1], state[1])


def test_missing_file_is_a_one_line_error_naming_it(tmp_path):
    with pytest.raises(DataError) as err:
        find_kdd99_file(tmp_path)
    msg = str(err.value)
    assert "kddcup.data_10_percent.gz" in msg and str(tmp_path) in msg and "\n" not in msg


def test_keras_initialisation_is_glorot_uniform_with_zero_biases():
    net = keras_mlp(34, 4, hidden=(200, 500, 200), seed=0)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [lin.out_features for lin in linears] == [200, 500, 200, 4]
    for lin in linears:
        limit = math.sqrt(6.0 / (lin.in_features + lin.out_features))
        w = lin.weight.detach().abs().max().item()
        assert 0.9 * limit < w <= limit
        assert torch.count_nonzero(lin.bias) == 0
    again = keras_mlp(34, 4, hidden=(200, 500, 200), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), again.parameters(),
                                                 strict=True))


def test_targeting_the_own_prediction_never_changes_a_prediction():
    """The original's BIM/MIM call: it can only make the model more confident."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(1))
    pred = predict(net, x)
    for attack in (BIM(eps=0.1, steps=10, step_size=0.1, targeted=True, bounds=None),
                   MIM(eps=0.1, steps=20, step_size=0.1, targeted=True, bounds=None)):
        x_adv = OwnPredictionAttack(attack, name="faithful").run(net, x, eps=0.1).x_adv[0]
        assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6
        assert torch.equal(predict(net, x_adv), pred)
        with torch.no_grad():
            conf = torch.softmax(net(x), 1).max(1).values
            conf_adv = torch.softmax(net(x_adv), 1).max(1).values
        assert float((conf_adv - conf).mean()) > 0


def test_crafting_together_equals_the_library_attacks_one_by_one():
    """The three faithful attacks crafted with one gradient memory (a gradient reused at a
    point seen before, FGSM's step from the shared first gradient) give the library's
    examples, bit for bit, from far fewer forward+backward passes."""
    net = keras_mlp(34, 4, hidden=(32, 64, 32), seed=3)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():  # a model that is not near-uniform, as after training
        for p in net.parameters():
            p.mul_(3.0)
    x = torch.randn(700, 34, generator=gen)
    attacks = {
        "fgsm": OwnPredictionAttack(FGSM(eps=0.1, bounds=None), name="fgsm (faithful)"),
        "bim": OwnPredictionAttack(BIM(eps=0.1, steps=10, step_size=0.1, targeted=True,
                                       bounds=None, skip_stationary=True), name="bim"),
        "mim": OwnPredictionAttack(MIM(eps=0.1, steps=40, step_size=0.1, decay=1.0,
                                       targeted=True, bounds=None, skip_stationary=True),
                                   name="mim"),
    }
    assert supports(attacks)
    shared = craft_faithful(attacks, net, x, predict(net, x), eps=0.1, chunk=256)
    for key, atk in attacks.items():
        alone = atk.run(net, x, eps=0.1).x_adv[0]
        assert torch.equal(shared.x_adv[key], alone), key
    assert shared.passes < shared.lookups / 2
    # what it does not reproduce is refused, not approximated
    assert not supports({"bim": OwnPredictionAttack(BIM(eps=0.1, step_size=0.1, targeted=True),
                                                    name="bim in [0, 1]")})
    assert not supports({"pgd": OwnPredictionAttack(BIM(eps=0.1, step_size=0.1, targeted=True,
                                                        bounds=None, random_start=True),
                                                    name="random start")})


def test_unknown_study_is_rejected():
    assert "kdd99-adversarial-training" in STUDIES
    with pytest.raises(ConfigError):
        run_reproduction("mnist", out="unused")


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("reproduce")(reproduce_command)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps "reproduce" a subcommand
        pass

    return app


def test_quick_run_of_the_command_writes_a_complete_report(tmp_path, kdd_root):
    out = tmp_path / "run"
    result = CliRunner().invoke(_app(), ["reproduce", "kdd99-adversarial-training", "--quick",
                                         "--out", str(out), "--root", str(kdd_root),
                                         "--seed", "1"])
    assert result.exit_code == 0, result.output
    for name in ("report.html", "metrics.json", "faithful.csv", "corrected.csv",
                 "hardened.csv", "defences.csv", "minmax.csv", "flags.csv", "config.toml",
                 "model.safetensors", "model.json", "run.log", "faithful_confusion.png",
                 "sweep.png", "hardened.png", "minmax.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["quick"] and metrics["seed"] == 1
    assert metrics["split"]["test_counts"] == EXPECTED_TEST_COUNTS
    settings = [r["setting"] for r in metrics["faithful"]]
    assert settings == ["clean", "fgsm", "fgsm after AT", "bim", "bim after AT", "mim",
                        "mim after AT"]
    assert metrics["faithful"][0]["reference_accuracy"] == 0.9957
    flags = {(f["protocol"], f["check"]): f["ok"] for f in metrics["flags"]}
    assert flags[("faithful protocol", "attack loss computed on logits")] is False
    assert flags[("corrected protocol", "attack loss computed on logits")] is True
    for row in metrics["defences"]:
        assert 0.0 <= row["clean_accuracy"] <= 1.0 and 0.0 <= row["clean_fpr"] <= 1.0
    report = (out / "report.html").read_text()
    for heading in ("Faithful reproduction", "Corrected attacks on the same model",
                    "Hardened models attacked afresh", "Defences compared",
                    "Min-max [0, 1] space with valid records", "Red-flag checks",
                    "Where the original protocol overstates robustness"):
        assert heading in report
    assert "QUICK RUN" in report
    # the terminal ends with the headline sentence (also the report's) and the report path
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines[-1] == f"report: {out.resolve() / 'report.html'}"
    assert lines[-2] == metrics["headline"]["sentence"]
    assert lines[-2].startswith("KDD Cup 99 at ε") and "worst case" in lines[-2]
    assert 'id="headline"' in report
    # an existing run directory is refused without --force
    again = CliRunner().invoke(_app(), ["reproduce", "kdd99-adversarial-training", "--quick",
                                        "--out", str(out), "--root", str(kdd_root)])
    assert again.exit_code != 0 and isinstance(again.exception, ConfigError)


def test_the_report_names_the_gpu_the_networks_ran_on(monkeypatch):
    from advsec.experiments.reproductions import kdd99_report

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev=None: "NVIDIA H200")
    line = kdd99_report._machine("cuda:0")
    assert "NVIDIA H200" in line and "cuda:0" in line and "logical CPUs" in line
    assert "NVIDIA" not in kdd99_report._machine("cpu")
