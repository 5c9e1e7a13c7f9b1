"""Edge cases of attacking your own model and of loading saved models: a network that applies
its sigmoid / softmax inside ``forward``, NaN outputs on the white-box path, truncated native
booster files, edited model metadata, score-returning ``predict`` objects, callables returning
no rows, and the messages that point at the right option."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from advsec.attacks import make_attack
from advsec.datasets.synthetic import make_flows
from advsec.errors import ConfigError, DataError
from advsec.evaluation import evaluate_attack
from advsec.features.space import FeatureSpace
from advsec.models import Detector, wrap
from advsec.models.foreign import class_names
from advsec.models.inference import batched_logits
from advsec.models.io import load_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def flows():
    """The synthetic flows (text categoricals): the space, the table, the encoded records."""
    table, schema = make_flows(300, seed=4)
    space = FeatureSpace(schema).fit(table)
    return space, table, torch.as_tensor(space.encode(table))


@pytest.fixture(scope="module")
def numeric():
    """The flows' numeric features only (a model over raw numbers)."""
    table, schema = make_flows(300, seed=5)
    schema = schema.select([f.name for f in schema if f.is_numeric])
    space = FeatureSpace(schema).fit(table)
    return space, table, torch.as_tensor(space.encode(table))


def _one_line(call: object, match: str, kind: type[Exception] = ConfigError) -> str:
    with pytest.raises(kind, match=match) as err:
        call()  # type: ignore[operator]
    assert "\n" not in str(err.value)
    return str(err.value)


# ------------------------------------------------------------------ 1: sigmoid inside forward
class InsideForward(nn.Module):
    """A network that applies its output function in ``forward`` (no nn.Sigmoid module)."""

    def __init__(self, width: int, column: int, *, out: int, final: str | None) -> None:
        super().__init__()
        self.lin = nn.Linear(width, out)
        self.final = final
        with torch.no_grad():
            self.lin.weight.zero_()
            self.lin.weight[:, column] = torch.linspace(10.0, -10.0, out) if out > 1 else 10.0
            self.lin.bias.fill_(-5.0 if out == 1 else 0.0)
            if out > 1:
                self.lin.bias.copy_(torch.linspace(-5.0, 5.0, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.lin(x)
        if self.final == "sigmoid":
            return torch.sigmoid(z)
        if self.final == "softmax":
            return torch.softmax(z, dim=1)
        return z


@pytest.mark.parametrize(("out", "final", "want"), [
    (1, "sigmoid", "proba"), (2, "softmax", "proba"), (1, None, "logits"), (2, None, "logits")])
def test_a_network_is_read_by_its_outputs_not_only_its_last_module(flows, out, final, want):
    space, _, x = flows
    column = space.columns_.index("failed_logins")
    net = InsideForward(x.shape[1], column, out=out, final=final).eval()
    model = wrap(net, space=space, inputs="encoded", attack_label="malicious")
    assert model.output == want
    with torch.no_grad():
        s = net(x)
    own = (s[:, 0] > (0.5 if final else 0.0)).long() if out == 1 else s.argmax(dim=1)
    assert 0 < int(own.sum()) < len(own)  # both classes occur: a constant guess fails
    np.testing.assert_array_equal(model.predict(x), np.array(["benign", "malicious"])[own])
    if out == 1 and final:
        np.testing.assert_allclose(model.predict_proba(x)[:, 1], s[:, 0].numpy(), atol=1e-6)


# ------------------------------------------------------------------ 3: NaN on the white-box path
class NanAbove(nn.Module):
    """Logits, NaN for the records whose column ``column`` is above ``cut``."""

    def __init__(self, width: int, column: int, cut: float) -> None:
        super().__init__()
        self.lin = nn.Linear(width, 2)
        self.column, self.cut = column, cut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.lin(x)
        return torch.where((x[:, self.column] > self.cut)[:, None], z * float("nan"), z)


def test_nan_outputs_stop_the_white_box_evaluation_with_one_line(flows):
    space, table, x = flows
    column = space.columns_.index("failed_logins")
    cut = float(x[:, column].quantile(0.9))
    torch.manual_seed(0)
    net = NanAbove(x.shape[1], column, cut)
    calm = torch.nonzero(x[:, column] <= cut).flatten()[:2]
    model = wrap(net, space=space, inputs="encoded", attack_label="malicious",
                 sample=table.iloc[calm.numpy()])
    y = model.encode_labels(table["label"])
    attack = make_attack("fgsm", eps=0.05, feature_space=space)
    _one_line(lambda: evaluate_attack(model, attack, x, y, eps=[0, 0.05], space=space),
              r"NaN or infinite scores for \d+ of 300 records", DataError)
    _one_line(lambda: attack.run(model, x, y), "NaN or infinite scores", DataError)
    _one_line(lambda: batched_logits(model.as_module(), x), r"\(first: record \d+\)", DataError)
    # finite records are scored as before
    fine = x[x[:, column] <= cut]
    assert batched_logits(model.as_module(), fine).shape == (len(fine), 2)


# ------------------------------------------------------------------ 4: truncated native files
def _boosters(tmp_path: Path, space: FeatureSpace, x: torch.Tensor, labels: np.ndarray
              ) -> dict[str, tuple[Path, Path]]:
    from advsec.models.boosters import BoostedTrees

    out = {}
    for kind in ("xgboost", "lightgbm"):
        pytest.importorskip(kind)
        det = BoostedTrees.fit(x.numpy(), labels, kind=kind, n_estimators=5)
        det.feature_space_ = space
        out[kind] = det.save(tmp_path / kind)
    return out


_LOAD = """
import json, sys
from advsec.errors import AdvsecError
from advsec.models.boosters import BoostedTrees
try:
    BoostedTrees.load(sys.argv[1])
    print(json.dumps("loaded"))
except AdvsecError as exc:
    print(json.dumps(str(exc)))
"""


def _load_elsewhere(meta: Path) -> tuple[int, str]:
    """Load in a child process: a native parser's crash must not take the tests down."""
    run = subprocess.run([sys.executable, "-c", _LOAD, str(meta)], capture_output=True,
                         text=True, errors="replace", timeout=120)
    lines = run.stdout.strip().splitlines()
    return run.returncode, json.loads(lines[-1]) if lines else run.stderr[-300:]


def test_truncated_native_booster_files_are_one_line_errors(flows, tmp_path):
    space, table, x = flows
    files = _boosters(tmp_path, space, x, table["label"].to_numpy())
    meta, native = files["lightgbm"]
    whole = native.read_bytes()
    assert _load_elsewhere(meta) == (0, "loaded")
    params = whole.index(b"\nparameters:")
    for cut in (len(whole) // 3, whole.index(b"end of trees") - 5, params + 40):
        native.write_bytes(whole[:cut])
        rc, message = _load_elsewhere(meta)
        assert rc == 0, f"cut at {cut}: exit {rc} ({message})"
        assert message.startswith(f"{native}: not a readable lightgbm model")
        assert "\n" not in message
    native.write_bytes(whole)
    meta, native = files["xgboost"]
    native.write_bytes(native.read_bytes()[:3000])
    message = _one_line(lambda: load_model(meta), "not a readable xgboost model.*complete JSON",
                        DataError)
    assert "[bt]" not in message and "libxgboost" not in message


# ------------------------------------------------------------------ 5: edited metadata
@pytest.fixture(scope="module")
def saved(flows, tmp_path_factory):
    """An MLP, a random forest and the two boosters saved with their FeatureSpace."""
    from sklearn.ensemble import RandomForestClassifier

    from advsec.models.trees import TreeEnsemble

    space, table, x = flows
    root = tmp_path_factory.mktemp("saved")
    labels = table["label"].to_numpy()
    out = {kind: meta for kind, (meta, _) in _boosters(root, space, x, labels).items()}
    rf = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(x.numpy(),
                                                                               labels)
    forest = TreeEnsemble.from_sklearn(rf)
    forest.feature_space_ = space
    out["random_forest"] = forest.save(root / "random_forest")
    det = Detector(hidden=(8,), epochs=1, seed=0, device="cpu").fit(x, labels)
    det.save(root / "mlp", feature_space=space)
    out["mlp"] = root / "mlp.json"
    return out


def _edited(meta: Path, tmp_path: Path, edit: object) -> Path:
    """A copy of the model's files whose metadata JSON is changed by ``edit(meta dict)``."""
    for f in meta.parent.glob(meta.stem + ".*"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    data = json.loads(meta.read_text())
    edit(data)  # type: ignore[operator]
    out = tmp_path / meta.name
    out.write_text(json.dumps(data))
    return out


def _drop(key: str):
    return lambda m: m["feature_space"][key].pop("duration")


@pytest.mark.parametrize("kind", ["random_forest", "xgboost", "lightgbm", "mlp"])
@pytest.mark.parametrize(("edit", "match"), [
    (_drop("lo"), r"key 'feature_space\.lo\.duration': expected a finite number"),
    (_drop("span"), r"key 'feature_space\.span\.duration': expected a positive number"),
    (lambda m: m["feature_space"]["decimals"].update(duration=-3),
     r"key 'feature_space\.decimals\.duration': expected an integer 0\.\.9"),
    (lambda m: m["feature_space"]["decimals"].update(duration=1.5),
     r"key 'feature_space\.decimals\.duration': expected an integer 0\.\.9"),
    (lambda m: m.__setitem__("classes", [["attack"], "benign"]), r"key 'classes': expected"),
])
def test_edited_metadata_is_a_one_line_error_naming_the_key(saved, tmp_path, kind, edit, match):
    if kind not in saved:
        pytest.skip(f"{kind} is not installed")
    bad = _edited(saved[kind], tmp_path, edit)
    _one_line(lambda: load_model(bad.with_suffix("")), f"{bad.name}, {match}", DataError)


@pytest.mark.parametrize("kind", ["random_forest", "xgboost", "lightgbm"])
def test_a_kind_that_is_not_a_name_is_a_one_line_error(saved, tmp_path, kind):
    if kind not in saved:
        pytest.skip(f"{kind} is not installed")
    bad = _edited(saved[kind], tmp_path, lambda m: m.__setitem__("kind", ["x"]))
    _one_line(lambda: load_model(bad), r"key 'kind': expected one of", DataError)


def test_unedited_models_still_load_and_predict(saved, flows):
    _, table, x = flows
    for meta in saved.values():
        det = load_model(meta.with_suffix(""))
        pred = det.predict(x)
        assert pred.shape == (len(x),) and set(pred) <= set(table["label"])
        assert det.feature_space_ is not None


# ------------------------------------------------------------------ 6: predict returning scores
class ScoresFromPredict:
    """A LightGBM Booster's interface: ``predict`` returns the probability of class 1."""

    def __init__(self, column: int) -> None:
        self.column = column

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(np.log1p(rows[:, self.column]) - 1.0)))


def test_output_proba_is_honoured_for_an_object_with_only_predict(numeric):
    space, table, x = numeric
    column = space.schema.names.index("failed_logins")
    scorer = ScoresFromPredict(column)
    model = wrap(scorer, space=space, output="proba", attack_label="malicious")
    assert model.output == "proba" and not model.decision_only
    p = scorer.predict(table[space.schema.names].to_numpy(dtype=np.float64))
    np.testing.assert_allclose(model.predict_proba(x)[:, 1], p, rtol=1e-5)
    logits = wrap(scorer, space=space, output="logits", attack_label="malicious")
    assert logits.output == "logits" and not logits.decision_only
    _one_line(lambda: wrap(scorer, space=space), "as a label.*output='proba'")


def test_a_lightgbm_booster_with_output_proba(numeric):
    lgb = pytest.importorskip("lightgbm")
    space, table, x = numeric
    rows = table[space.schema.names].to_numpy(dtype=np.float64)
    y = (table["label"] != "benign").to_numpy().astype(int)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1},
                        lgb.Dataset(rows, y), 5)
    model = wrap(booster, space=space, output="proba", attack_label="malicious")
    np.testing.assert_allclose(model.predict_proba(x)[:, 1], booster.predict(rows), rtol=1e-5)


# ------------------------------------------------------------------ 7: no rows, no fitted space
def test_callables_returning_no_rows_and_unfitted_spaces_are_one_line(numeric):
    space, _, _ = numeric
    _one_line(lambda: wrap(lambda r: 0.5, space=space), r"returned one value \(0\.5\) for 2 "
                                                         r"records; expected \(2,\) labels")
    _one_line(lambda: wrap(lambda r: None, space=space), r"returned None for 2 records")
    _one_line(lambda: wrap(lambda r: np.zeros((len(r), 2, 2)), space=space),
              r"returned shape \(2, 2, 2\)")
    _one_line(lambda: wrap(lambda r: np.zeros(len(r)), space=FeatureSpace(space.schema)),
              r"space: the FeatureSpace is not fitted yet")
    _one_line(lambda: wrap(lambda r: np.zeros(len(r)), space=space.schema),  # type: ignore[arg-type]
              r"space: expected a fitted FeatureSpace, got FeatureSchema")


# ------------------------------------------------------------------ 8: messages
def test_nan_probabilities_are_not_called_logits(numeric):
    space, _, x = numeric
    message = _one_line(lambda: wrap(lambda r: np.full((len(r), 2), np.nan), space=space),
                        r"NaN or infinite scores for 2 of the 2 sample records")
    assert "logits" not in message.split(";")[0]

    def later(rows: np.ndarray) -> np.ndarray:
        p = np.tile([0.3, 0.7], (len(rows), 1))
        p[2:] = np.nan
        return p

    model = wrap(later, space=space)
    assert model.output == "proba"
    message = _one_line(lambda: model.predict(x), "NaN or infinite scores", DataError)
    assert message.endswith("advsec needs finite probabilities to score records")


def test_a_native_xgboost_json_is_not_called_a_missing_safetensors(tmp_path):
    native = tmp_path / "xgb.json"
    native.write_text(json.dumps({"learner": {"objective": {}}, "version": [2, 1, 0]}))
    message = _one_line(lambda: load_model(native), r"xgb\.json: not an advsec model file",
                        DataError)
    assert "XGBoost" in message and "wrap(" in message and "ONNX" in message
    assert "safetensors: model file not found" not in message
    other = tmp_path / "lgb.txt"
    other.write_text("tree\nversion=v4\n")
    _one_line(lambda: load_model(other), r"lgb\.txt: not an advsec model file", DataError)


def test_the_benign_question_names_the_option_of_the_caller():
    assert "benign=" in _one_line(
        lambda: class_names(["attack", "normal"], benign=None, benign_label="benign"),
        "is benign")
    message = _one_line(lambda: class_names(["attack", "normal"], benign=None,
                                            benign_label="benign", ask="pass --classes"),
                        "is benign: pass --classes")
    assert "benign=" not in message


def test_the_onnx_command_line_asks_for_classes_not_benign(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    from advsec.cli import main

    table, schema = make_flows(200, seed=6)
    names = [f.name for f in schema if f.is_numeric]
    rows = table[names].to_numpy(np.float32)
    forest = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(
        rows, np.where(table["label"] == "benign", "normal", "attack"))
    graph = tmp_path / "forest.onnx"
    graph.write_bytes(to_onnx(forest, rows[:2], options={"zipmap": False}).SerializeToString())
    csv = tmp_path / "flows.csv"
    table[[*names, "label"]].to_csv(csv, index=False)
    code = main(["attack", "--model", str(graph), "--data", str(csv), "--label-column", "label",
                 "--attack", "square", "--out", str(tmp_path / "out"), "--no-report"])
    assert code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("advsec:")]
    assert len(err) == 1 and "is benign: pass --classes" in err[0], err
