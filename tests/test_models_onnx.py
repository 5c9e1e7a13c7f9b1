"""Foreign ONNX detectors: one `advsec attack --model detector.onnx --data flows.csv` command.

A PyTorch MLP (exported with both torch exporters) converts to torch and is attacked white-box,
agreeing with onnxruntime; tree ensembles exported with skl2onnx / onnxmltools run through
onnxruntime with the score-based attacks; bad inputs stop with one line; nothing is unpickled.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from advsec.cli import main  # noqa: E402
from advsec.cli.foreign import fit_space  # noqa: E402
from advsec.errors import DataError  # noqa: E402
from advsec.models import onnx_ops  # noqa: E402
from advsec.models.onnx_model import OnnxModel, OnnxNetwork, load_onnx  # noqa: E402
from advsec.models.onnx_torch import UnsupportedOperatorError, convert  # noqa: E402

FEATURES = ["dur", "pkts", "bytes", "proto", "flag"]

pytestmark = pytest.mark.usefixtures("one_thread")


def flows(rows: int = 240, seed: int = 0) -> pd.DataFrame:
    """Flows whose label depends on several features (none predicts it alone)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"dur": rng.exponential(2.0, rows).round(3),
                       "pkts": rng.integers(1, 50, rows), "bytes": rng.integers(0, 5000, rows),
                       "proto": rng.choice([6, 17], rows), "flag": rng.integers(0, 2, rows)})
    score = df.dur / 2 + df.pkts / 25 + df.flag - 1.5 + rng.normal(0, 0.3, rows)
    df["verdict"] = np.where(score > 0, "bad", "ok")
    return df


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    df = flows()
    csv = root / "flows.csv"
    df.to_csv(csv, index=False)
    space = fit_space(df, label_column="verdict", benign="ok", schema=None, where="flows")
    assert [f.name for f in space.schema.features] == FEATURES
    x_raw = df[FEATURES].to_numpy(np.float32)
    y = (df["verdict"] == "bad").to_numpy().astype(int)
    return root, csv, df, space, x_raw, y


class Net(nn.Module):
    """An MLP with its own input scaling, BatchNorm, Dropout and a Softmax at the end."""

    def __init__(self, mu: np.ndarray, sd: np.ndarray, width: int) -> None:
        super().__init__()
        self.register_buffer("mu", torch.as_tensor(mu, dtype=torch.float32))
        self.register_buffer("sd", torch.as_tensor(sd, dtype=torch.float32))
        self.body = nn.Sequential(nn.Linear(width, 24), nn.BatchNorm1d(24), nn.ReLU(),
                                  nn.Dropout(0.1), nn.Linear(24, 12), nn.Tanh(),
                                  nn.Linear(12, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.body((x - self.mu) / self.sd)
        return z if self.training else torch.softmax(z, dim=1)


def trained_net(x: np.ndarray, y: np.ndarray, *, steps: int = 150) -> Net:
    torch.manual_seed(0)
    net = Net(x.mean(0), x.std(0) + 1e-6, x.shape[1])
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    return net.eval()


def export_torch(net: nn.Module, width: int, path, *, dynamo: bool = False) -> None:
    x = torch.rand(4, width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            prog = torch.onnx.export(net, (x,), dynamo=True, verbose=False,
                                     dynamic_shapes=({0: torch.export.Dim("batch")},))
            path.write_bytes(prog.model_proto.SerializeToString())
        else:
            torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["x"],
                              dynamic_axes={"x": {0: "n"}})


@pytest.fixture(scope="module")
def mlp(data):
    root, _, _, _, x_raw, y = data
    net = trained_net(x_raw, y)
    path = root / "mlp.onnx"
    export_torch(net, x_raw.shape[1], path)
    return path, net


def attack(model, csv, out, *extra: str, report: bool = False) -> int:
    return main(["attack", "--model", str(model), "--data", str(csv), "--label-column",
                 "verdict", "--benign-label", "ok", "--out", str(out),
                 "--report" if report else "--no-report", *extra])


def ort_proba(path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


# ------------------------------------------------------------------ white-box: a torch MLP
@pytest.mark.parametrize("dynamo", [False, True])
def test_the_converted_network_agrees_with_onnxruntime(data, mlp, tmp_path, dynamo):
    _, _, _, _, x_raw, _ = data
    net = mlp[1]
    path = tmp_path / "net.onnx"
    export_torch(net, x_raw.shape[1], path, dynamo=dynamo)
    module = convert(onnx.load(str(path)))
    with torch.no_grad():
        mine = module(torch.as_tensor(x_raw)).numpy()
    assert np.abs(mine - ort_proba(path, x_raw)).max() <= 1e-5
    with torch.no_grad():
        assert np.abs(mine - net(torch.as_tensor(x_raw)).numpy()).max() <= 1e-5
    # gradients flow to the inputs
    xt = torch.as_tensor(x_raw[:8]).requires_grad_(True)
    module(xt)[:, 1].sum().backward()
    assert xt.grad is not None and bool(xt.grad.abs().sum() > 0)


def test_mlp_raw_inputs_is_white_box_and_pgd_lowers_accuracy(data, mlp, tmp_path):
    _, csv, df, space, x_raw, _ = data
    path = mlp[0]
    x = torch.as_tensor(space.encode(df))
    det = load_onnx(path, space=space, inputs="raw", benign_label="ok", check_on=x)
    assert isinstance(det, OnnxNetwork) and det.max_difference <= 1e-5
    assert list(det.classes_) == ["ok", "attack"] and det.output == "proba"
    assert np.abs(det.predict_proba(x) - ort_proba(path, x_raw)).max() <= 1e-5
    out = tmp_path / "pgd"
    assert attack(path, csv, out, "--attack", "pgd", "--eps", "0.2", "--steps", "10",
                  report=True) == 0
    assert (out / "report.html").is_file()
    table = pd.read_csv(out / "results.csv")
    assert table["eps"].tolist() == [0.0, 0.2]
    assert table["accuracy"].iloc[1] < table["accuracy"].iloc[0]
    adv = pd.read_csv(out / "adversarial.csv")
    assert len(adv) == len(df) and set(FEATURES) <= set(adv.columns)


def test_mlp_on_encoded_inputs(data, tmp_path):
    _, csv, df, space, _, y = data
    x = space.encode(df)
    net = trained_net(x, y, steps=30)
    path = tmp_path / "encoded.onnx"
    export_torch(net, x.shape[1], path)
    det = load_onnx(path, space=space, inputs="encoded", benign_label="ok", check_on=x)
    assert isinstance(det, OnnxNetwork)
    assert np.abs(det.predict_proba(x) - ort_proba(path, x)).max() <= 1e-5
    assert attack(path, csv, tmp_path / "fgsm", "--inputs", "encoded", "--attack", "fgsm",
                  "--eps", "0.1") == 0


def test_one_sigmoid_column_is_class_one_of_a_binary_model(data, tmp_path):
    _, _, df, space, _, _ = data
    x = space.encode(df)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(x.shape[1], 8), nn.ReLU(), nn.Linear(8, 1), nn.Sigmoid())
    path = tmp_path / "sigmoid.onnx"
    export_torch(net.eval(), x.shape[1], path)
    det = load_onnx(path, space=space, inputs="encoded", benign_label="ok", check_on=x)
    assert isinstance(det, OnnxNetwork) and det.output == "proba"
    p = ort_proba(path, x)[:, 0]
    assert np.abs(det.predict_proba(x) - np.stack([1 - p, p], axis=1)).max() <= 1e-5
    named = load_onnx(path, space=space, inputs="encoded", classes=["ok", "bad"], check_on=x)
    assert list(named.classes_) == ["ok", "bad"]


def test_a_conversion_that_differs_from_onnxruntime_is_refused(data, mlp, monkeypatch):
    _, _, df, space, _, _ = data
    monkeypatch.setitem(onnx_ops.OPS, "Relu", lambda n, a, o: torch.relu(a[0]) * 1.01)
    with pytest.raises(DataError, match=r"mlp.onnx: the torch conversion differs from "
                                        r"onnxruntime by [0-9.e-]+ in a probability"):
        load_onnx(mlp[0], space=space, benign_label="ok", check_on=space.encode(df))


# ------------------------------------------------------------------ black-box: tree ensembles
def _skl2onnx(model, width: int, *, zipmap: bool = False) -> bytes:
    pytest.importorskip("skl2onnx")
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    options = None if zipmap else {id(model): {"zipmap": False}}
    proto = convert_sklearn(model, initial_types=[("x", FloatTensorType([None, width]))],
                            options=options)
    return proto.SerializeToString()


def _export(name: str, x: np.ndarray, y: np.ndarray) -> tuple[object, bytes]:
    """``(fitted model, ONNX bytes)``, or pytest.skip when the exporter fails here."""
    width = x.shape[1]
    if name in ("random_forest", "random_forest_zipmap"):
        from sklearn.ensemble import RandomForestClassifier

        rf = RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0).fit(x, y)
        return rf, _skl2onnx(rf, width, zipmap=name.endswith("zipmap"))
    if name == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier

        hgb = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(x, y)
        try:
            return hgb, _skl2onnx(hgb, width)
        except (TypeError, ValueError) as exc:
            pytest.skip(f"skl2onnx cannot export HistGradientBoosting here: "
                        f"{exc.__cause__ or exc}"[:200])
    pytest.importorskip("onnxmltools")
    pytest.importorskip(name)
    from onnxmltools import convert_lightgbm, convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    types = [("x", FloatTensorType([None, width]))]
    if name == "xgboost":
        import xgboost

        model: object = xgboost.XGBClassifier(n_estimators=10, max_depth=3).fit(x, y)
        convert = convert_xgboost
    else:
        import lightgbm

        model = lightgbm.LGBMClassifier(n_estimators=10, num_leaves=8, verbose=-1).fit(x, y)
        convert = convert_lightgbm
    try:
        proto = convert(model, initial_types=types, **({"zipmap": False}
                                                        if name == "lightgbm" else {}))
    except Exception as exc:  # an exporter that fails with these versions
        pytest.skip(f"onnxmltools cannot export {name} here: {type(exc).__name__}: {exc}"[:200])
    return model, proto.SerializeToString()


TREES = ["random_forest", "random_forest_zipmap", "hist_gradient_boosting", "xgboost",
         "lightgbm"]


@pytest.mark.parametrize("name", TREES)
def test_tree_ensembles_run_through_onnxruntime(data, tmp_path, name):
    _, csv, df, space, x_raw, y = data
    model, blob = _export(name, x_raw, y)
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(blob)
    x = space.encode(df)
    det = load_onnx(path, space=space, benign_label="ok", check_on=x)
    assert isinstance(det, OnnxModel) and "TreeEnsembleClassifier" in det.unsupported
    assert list(det.classes_) == ["ok", "attack"] and det.output == "proba"
    expected = model.predict_proba(x_raw)  # type: ignore[attr-defined]
    assert np.abs(det.predict_proba(x) - expected).max() <= 1e-5
    out = tmp_path / "square"
    assert attack(path, csv, out, "--attack", "square", "--eps", "0.2", "--steps", "20",
                  "--max-rows", "40", report=True) == 0
    assert (out / "report.html").is_file()
    table = pd.read_csv(out / "results.csv")
    assert table["eps"].tolist() == [0.0, 0.2] and (table["n"] == 40).all()


def test_decision_based_attack_on_a_forest(data, tmp_path):
    _, csv, _, _, x_raw, y = data
    _, blob = _export("random_forest", x_raw, y)
    path = tmp_path / "rf.onnx"
    path.write_bytes(blob)
    assert attack(path, csv, tmp_path / "hsj", "--attack", "hopskipjump", "--eps", "0.2",
                  "--steps", "30", "--max-rows", "20") == 0


# ------------------------------------------------------------------ errors: one line each
def _err(capsys) -> str:
    """The error line of stderr (a log warning may come before it)."""
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("advsec:")]
    assert len(lines) == 1, lines
    return lines[0]


def test_gradient_attack_on_a_tree_graph_names_the_operator(data, tmp_path, capsys):
    _, csv, _, _, x_raw, y = data
    _, blob = _export("random_forest", x_raw, y)
    path = tmp_path / "rf.onnx"
    path.write_bytes(blob)
    assert attack(path, csv, tmp_path / "a", "--attack", "pgd") == 2
    err = _err(capsys)
    assert "--attack pgd needs gradients" in err and "ai.onnx.ml.TreeEnsembleClassifier" in err
    assert "square, hopskipjump" in err and not (tmp_path / "a").exists()
    # the tree search needs the splits, which an onnxruntime graph does not hand over
    assert attack(path, csv, tmp_path / "b", "--attack", "tree-search") == 2
    err = _err(capsys)
    assert "--attack tree-search cannot attack" in err and "tree ensembles only" in err
    assert not (tmp_path / "b").exists()
    with pytest.raises(UnsupportedOperatorError, match=r"operator ai\.onnx\.ml\."
                                                      r"TreeEnsembleClassifier \(node "):
        convert(blob)


def test_a_wrong_input_width_is_one_line(data, tmp_path, capsys):
    _, csv, _, _, x_raw, y = data
    net = trained_net(x_raw[:, :4], y, steps=0)
    path = tmp_path / "narrow.onnx"
    export_torch(net, 4, path)
    assert attack(path, csv, tmp_path / "a", "--attack", "fgsm") == 2
    assert ("narrow.onnx takes 4 input columns; with --inputs raw the schema gives 5 features "
            "(dur, pkts, bytes, proto, flag)") in _err(capsys)
    assert attack(path, csv, tmp_path / "b", "--inputs", "encoded") == 2
    assert "with --inputs encoded the FeatureSpace encodes records to" in _err(capsys)


def test_a_fixed_batch_size_is_one_line(data, tmp_path, capsys):
    _, csv, _, _, x_raw, y = data
    net = trained_net(x_raw, y, steps=0)
    path = tmp_path / "single.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(1, 5),), str(path), dynamo=False, input_names=["x"])
    assert attack(path, csv, tmp_path / "a", "--attack", "fgsm") == 2
    err = _err(capsys)
    assert "single.onnx: input 'x' has a fixed batch size of 1 (shape [1, 5])" in err
    assert "dynamic_axes" in err and not (tmp_path / "a").exists()


def test_not_an_onnx_file_and_missing_data(data, mlp, tmp_path, capsys):
    _, csv, _, _, _, _ = data
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(csv.read_bytes())
    assert attack(fake, csv, tmp_path / "a") == 2
    assert "fake.onnx: not an ONNX model" in _err(capsys)
    assert main(["attack", "--model", str(mlp[0]), "--out", str(tmp_path / "b")]) == 2
    assert "is an ONNX file, which holds no feature space: pass --data FILE" in _err(capsys)
    assert main(["attack", "--model", str(mlp[0]), "--data", str(csv), "--out",
                 str(tmp_path / "c")]) == 2
    assert "pass --label-column" in _err(capsys)
    assert attack(tmp_path / "missing.onnx", csv, tmp_path / "d") == 2
    assert "missing.onnx: model file not found" in _err(capsys)
    assert attack(mlp[0], csv, tmp_path / "e", "--classes", "ok,dos,probe") == 2
    assert "--classes: 3 names (ok, dos, probe) for the 2 score columns of" in _err(capsys)
    assert attack(mlp[0], csv, tmp_path / "f", "--inputs", "pixels") == 2
    assert "--inputs: expected raw or encoded, got 'pixels'" in _err(capsys)
    assert not any((tmp_path / n).exists() for n in "abcdef")  # nothing written


def test_text_categoricals_cannot_be_raw_inputs(data, mlp, tmp_path, capsys):
    df = data[2].assign(proto=np.where(data[2]["proto"] == 6, "tcp", "udp"))
    csv = tmp_path / "text.csv"
    df.to_csv(csv, index=False)
    assert attack(mlp[0], csv, tmp_path / "a") == 2
    err = _err(capsys)
    assert "mlp.onnx with --inputs raw: feature 'proto' is categorical with text values" in err


# ------------------------------------------------------------------ no pickle anywhere
def test_nothing_is_unpickled(data, mlp, tmp_path, monkeypatch):
    _, csv, _, space, x_raw, y = data
    _, blob = _export("random_forest", x_raw, y)
    forest = tmp_path / "rf.onnx"
    forest.write_bytes(blob)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("something was unpickled")

    for target, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(target, name, refuse)
    assert isinstance(load_onnx(mlp[0], space=space, benign_label="ok"), OnnxNetwork)
    assert isinstance(load_onnx(forest, space=space, benign_label="ok"), OnnxModel)
    assert attack(mlp[0], csv, tmp_path / "a", "--attack", "fgsm", "--eps", "0.1") == 0
    assert attack(forest, csv, tmp_path / "b", "--attack", "square", "--steps", "5",
                  "--max-rows", "10", "--eps", "0.1") == 0


RUN_WITH_ONNX = """\
[data]
dataset = "csv"
path = "flows.csv"
label_column = "verdict"
benign_label = "ok"

[[detectors]]
name = "mlp"
hidden = [16]
epochs = 5

[[detectors]]
name = "their-forest"
kind = "onnx"
path = "forest.onnx"

[[attacks]]
attack = "fgsm"

[threat]
eps = [0, 0.2]
constraints = ["valid"]
"""


def test_a_run_lists_an_onnx_detector_scored_by_transfer(data, tmp_path):
    """`kind = "onnx"` in an experiment file: the graph is scored on the records crafted
    against the file's MLP, and its ε = 0 row is its own accuracy on those records."""
    from sklearn.ensemble import RandomForestClassifier

    _, csv, _, _, x_raw, y = data
    (tmp_path / "flows.csv").write_bytes(csv.read_bytes())
    rf = RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0).fit(x_raw, y)
    (tmp_path / "forest.onnx").write_bytes(_skl2onnx(rf, x_raw.shape[1]))
    toml = tmp_path / "study.toml"
    toml.write_text(RUN_WITH_ONNX)
    assert main(["run", str(toml), "--out", str(tmp_path / "run")]) == 0
    sweep = pd.read_csv(tmp_path / "run" / "sweep.csv")
    theirs = sweep[sweep["detector"] == "their-forest"]
    assert set(theirs["evaluation"]) == {"transfer-from-mlp"}
    assert sorted(theirs["eps"]) == [0.0, 0.2]
    # the ε = 0 row: the forest's own accuracy on the evaluation rows (all of the test split)
    from advsec.datasets import load

    split = load("tabular", path=tmp_path / "flows.csv", label_column="verdict",
                 benign_label="ok", seed=0)
    test = split.test
    own = rf.predict(test[FEATURES].to_numpy(np.float32))
    truth = (test["verdict"] == "bad").to_numpy().astype(int)
    row = theirs[theirs["eps"] == 0].iloc[0]
    assert row["n"] == len(test)
    assert row["accuracy"] == pytest.approx(float((own == truth).mean()))


def test_a_run_with_a_missing_onnx_file_stops_before_anything_is_written(tmp_path, capsys):
    toml = tmp_path / "study.toml"
    toml.write_text(RUN_WITH_ONNX)
    (tmp_path / "flows.csv").write_text("a,verdict\n1,ok\n")
    assert main(["run", str(toml), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "detectors[1].path" in err and "forest.onnx: file not found" in err
    assert "\n" not in err and not (tmp_path / "run").exists()
    toml.write_text(RUN_WITH_ONNX.replace('path = "forest.onnx"\n', ""))
    assert main(["run", str(toml), "--out", str(tmp_path / "run")]) == 2
    assert "an ONNX detector needs path" in capsys.readouterr().err
