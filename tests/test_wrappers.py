"""wrap(): the user's own model (network, scikit-learn, XGBoost, LightGBM, a predict function)
over a FeatureSpace's encoded inputs. Every prediction is checked against the model's own
prediction on the raw records; attacks run on the wrapped models and give valid records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.compose import make_column_transformer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from torch import nn

from advsec.attacks import make_attack
from advsec.datasets.synthetic import make_flows
from advsec.errors import AdvsecError, ConfigError, DataError
from advsec.evaluation import evaluate_attack
from advsec.features.raw_inputs import raw_feature_names
from advsec.features.schema import FeatureSchema
from advsec.features.space import FeatureSpace
from advsec.models import ForeignModel, ForeignNetwork, wrap
from advsec.models.foreign import class_names
from record_audit import audit

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = np.array(["benign", "malicious"])
TEXT = ["protocol", "service"]


@pytest.fixture(scope="module")
def flows():
    """The synthetic flows (text protocol and service): models fitted on 500 records, 160 to
    attack. The space is fitted on all of them: a value beyond the space's range is clipped by
    ``encode``, and the wrapped model would see the clipped value, not the record's."""
    table, schema = make_flows(660, seed=2)
    train, test = table.iloc[:500].reset_index(drop=True), table.iloc[500:].reset_index(drop=True)
    return FeatureSpace(schema).fit(table), train, test


@pytest.fixture(scope="module")
def numeric():
    """The flows with the protocol as a number (6, 17, 1) and no service: all raw numbers."""
    table, schema = make_flows(660, seed=3)
    table = table.copy()
    table["protocol"] = table["protocol"].map({"tcp": "6", "udp": "17", "icmp": "1"})
    feats = [f for f in schema.features if f.name != "service"]
    train, test = table.iloc[:500].reset_index(drop=True), table.iloc[500:].reset_index(drop=True)
    return FeatureSpace(FeatureSchema(feats)).fit(table), train, test


def _raw(space: FeatureSpace, table: pd.DataFrame) -> np.ndarray:
    return table[raw_feature_names(space)].astype(float).to_numpy(dtype=np.float32)


def _y(table: pd.DataFrame) -> np.ndarray:
    return (table["label"] != "benign").to_numpy().astype(int)


def _valid(space: FeatureSpace, adv: torch.Tensor, x: torch.Tensor) -> None:
    """The adversarial records pass the validator and the independent audit."""
    orig = space.decode(x)
    recs = space.decode(adv, reference=orig)
    assert not space.validate(recs, reference=orig).to_numpy().any()
    values = {k: list(v) for k, v in space.values_.items()}
    assert audit(space.schema.to_dict(), values, recs, orig) == {}


class LogScale(nn.Module):
    """What a user's network over raw features starts with: ``log1p`` of the values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(x.clamp(min=0))


def _train(net: nn.Module, x: np.ndarray, y: np.ndarray, steps: int = 150) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    for _ in range(steps):
        opt.zero_grad()
        out = net(xt)
        loss = (nn.functional.binary_cross_entropy(out[:, 0], yt.float()) if out.shape[1] == 1
                else nn.functional.nll_loss(torch.log(out.clamp(min=1e-9)), yt)
                if isinstance(list(net.modules())[-1], nn.Softmax)
                else nn.functional.cross_entropy(out, yt))
        loss.backward()
        opt.step()
    return net.eval()


def _pgd_lowers_accuracy(model: ForeignNetwork, space: FeatureSpace, test: pd.DataFrame) -> None:
    x = torch.as_tensor(space.encode(test))
    y = model.encode_labels(test["label"])
    attack = make_attack("pgd", eps=0.2, steps=10, feature_space=space, seed=0)
    sweep = evaluate_attack(model, attack, x, y, eps=[0, 0.2], space=space)
    acc = sweep.table.set_index("eps")["accuracy"]
    assert acc[0.2] < acc[0.0]
    assert sweep.table["valid_share"].iloc[-1] == 1.0
    _valid(space, sweep.x_adv[0.2], x)


# ------------------------------------------------------------------ networks (white-box)
def test_a_network_over_raw_features(numeric):
    space, train, test = numeric
    net = _train(nn.Sequential(LogScale(), nn.Linear(11, 16), nn.ReLU(), nn.Linear(16, 2)),
                 _raw(space, train), _y(train))
    model = wrap(net, space=space, inputs="raw", attack_label="malicious")
    assert isinstance(model, ForeignNetwork) and model.output == "logits"
    assert list(model.classes_) == list(NAMES) and model.n_features_in_ == space.n_features_out
    with torch.no_grad():
        own = NAMES[net(torch.as_tensor(_raw(space, test))).argmax(dim=1).numpy()]
    np.testing.assert_array_equal(model.predict(space.encode(test)), own)
    _pgd_lowers_accuracy(model, space, test)


def test_a_softmax_network_over_encoded_inputs(flows):
    space, train, test = flows
    d = space.n_features_out
    net = _train(nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, 2), nn.Softmax(dim=1)),
                 space.encode(train), _y(train))
    model = wrap(net, space=space, inputs="encoded", attack_label="malicious")
    assert model.output == "proba"
    x = torch.as_tensor(space.encode(test))
    with torch.no_grad():
        p = net(x)
        np.testing.assert_allclose(torch.softmax(model.as_module()(x), 1), p, atol=1e-5)
    np.testing.assert_array_equal(model.predict(x), NAMES[p.argmax(dim=1).numpy()])
    _pgd_lowers_accuracy(model, space, test)


def test_a_one_column_sigmoid_network_is_binary(numeric):
    space, _, test = numeric
    torch.manual_seed(1)
    net = nn.Sequential(LogScale(), nn.Linear(11, 1), nn.Sigmoid())
    model = wrap(net, space=space, attack_label="malicious")
    assert list(wrap(net, space=space, model_classes=["bad", "ok"], benign="ok").classes_) == [
        "attack", "benign"]
    proba = model.predict_proba(space.encode(test))
    with torch.no_grad():
        p = net(torch.as_tensor(_raw(space, test)))[:, 0].numpy()
    assert proba.shape == (len(test), 2)
    np.testing.assert_allclose(proba[:, 1], p, atol=1e-6)
    np.testing.assert_array_equal(model.predict(space.encode(test)), NAMES[(p > 0.5).astype(int)])


# ------------------------------------------------------------------ black-box models
def _black_box(model: ForeignModel, space: FeatureSpace, test: pd.DataFrame,
               own: object) -> None:
    """Square and HopSkipJump run on ``model`` and give valid records the model's own
    predictor (``own``: encoded inputs -> labels) agrees on."""
    x = torch.as_tensor(space.encode(test[:24]))
    y = model.encode_labels(test["label"][:24])
    for name, options in (("square", {"queries": 40}),
                          ("hopskipjump", {"queries": 60, "max_evals": 40, "init_evals": 10})):
        res = make_attack(name, eps=0.2, feature_space=space, seed=0, **options).run(model, x, y)
        adv = res.x_adv[0]
        assert (adv - x).abs().max() <= 0.2 + 1e-6 and res.valid_share == [1.0]
        _valid(space, adv, x)
        np.testing.assert_array_equal(model.predict(adv), own(adv))  # type: ignore[operator]


def test_a_scikit_learn_pipeline_over_the_raw_table(flows):
    space, train, test = flows
    pipe = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown="ignore"), TEXT),
                                remainder="passthrough"),
        RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0),
    ).fit(train[space.schema.names], _y(train))
    model = wrap(pipe, space=space, inputs="table", attack_label="malicious")
    assert type(model) is ForeignModel and model.kind == "sklearn" and not model.decision_only
    got = model.predict(space.encode(test))
    np.testing.assert_array_equal(got, NAMES[pipe.predict(test[space.schema.names])])
    _black_box(model, space, test, lambda a: NAMES[pipe.predict(space.decode(a))])


def test_gradient_boosting_over_raw_numbers_in_its_own_column_order(numeric):
    space, train, test = numeric
    names = raw_feature_names(space)[::-1]  # fitted on a DataFrame, columns reversed
    gb = GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=0)
    gb.fit(train[names].astype(float), _y(train))
    model = wrap(gb, space=space, inputs="raw", attack_label="malicious")
    np.testing.assert_array_equal(model.predict(space.encode(test)),
                                  NAMES[gb.predict(test[names].astype(float))])
    bare = GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=0)
    bare.fit(_raw(space, train), _y(train))  # NumPy, schema order
    model = wrap(bare, space=space, attack_label="malicious")
    np.testing.assert_array_equal(model.predict(space.encode(test)),
                                  NAMES[bare.predict(_raw(space, test))])
    _black_box(model, space, test, lambda a: NAMES[bare.predict(space.decode(a)[
        raw_feature_names(space)].astype(float).to_numpy())])


@pytest.mark.parametrize("package", ["xgboost", "lightgbm"])
def test_xgboost_and_lightgbm(numeric, package):
    pytest.importorskip(package)
    space, train, test = numeric
    if package == "xgboost":
        from xgboost import XGBClassifier

        clf = XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1)
    else:
        from lightgbm import LGBMClassifier

        clf = LGBMClassifier(n_estimators=20, num_leaves=8, verbose=-1, n_jobs=1)
    clf.fit(_raw(space, train), _y(train))
    model = wrap(clf, space=space, inputs="raw", attack_label="malicious")
    assert model.kind == package
    np.testing.assert_array_equal(model.predict(space.encode(test)),
                                  NAMES[clf.predict(_raw(space, test))])
    _black_box(model, space, test, lambda a: NAMES[clf.predict(
        space.decode(a)[raw_feature_names(space)].astype(float).to_numpy(np.float32))])


def test_a_predict_function_is_decision_only(numeric):
    space, _, test = numeric
    names = raw_feature_names(space)
    j = names.index("connections")

    def rule(a: np.ndarray) -> np.ndarray:
        return (a[:, j] > 20).astype(int)

    model = wrap(rule, space=space, attack_label="malicious")
    assert model.decision_only and model.output == "labels" and model.kind == "callable"
    proba = model.predict_proba(space.encode(test))
    assert set(np.unique(proba)) <= {0.0, 1.0} and (proba.sum(axis=1) == 1).all()
    np.testing.assert_array_equal(model.predict(space.encode(test)),
                                  NAMES[rule(_raw(space, test))])
    _black_box(model, space, test, lambda a: NAMES[rule(
        space.decode(a)[names].astype(float).to_numpy())])


def test_an_object_with_only_predict_and_its_own_labels(flows):
    space, _, test = flows

    class Rules:
        classes_ = np.array(["attack", "normal"])

        def predict(self, table: pd.DataFrame) -> np.ndarray:
            return np.where(table["failed_logins"] > 2, "attack", "normal")

    model = wrap(Rules(), space=space, inputs="table", benign="normal")
    assert model.decision_only and list(model.classes_) == ["attack", "benign"]
    want = np.where(test["failed_logins"] > 2, "attack", "benign")
    np.testing.assert_array_equal(model.predict(space.encode(test)), want)


def test_a_scoring_callable(numeric):
    space, _, test = numeric

    def scores(a: np.ndarray) -> np.ndarray:
        z = np.log1p(a[:, 1:2]) - 5.0  # src_bytes
        return np.hstack([-z, z])      # logits

    model = wrap(scores, space=space, attack_label="malicious")
    assert model.output == "logits" and not model.decision_only
    want = NAMES[scores(_raw(space, test)).argmax(axis=1)]
    np.testing.assert_array_equal(model.predict(space.encode(test)), want)

    def p_attack(a: np.ndarray) -> np.ndarray:  # (N,): the probability of class 1
        return 1.0 / (1.0 + np.exp(5.0 - np.log1p(a[:, 1])))

    model = wrap(p_attack, space=space, output="proba", attack_label="malicious")
    proba = model.predict_proba(space.encode(test))
    np.testing.assert_allclose(proba[:, 1], p_attack(_raw(space, test)), rtol=1e-5)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    _one_line(lambda: wrap(p_attack, space=space), "as a label.*output='proba'")


# ------------------------------------------------------------------ labels
def test_class_names():
    assert class_names([0, 1], benign=None, benign_label="benign") == ["benign", "attack"]
    assert class_names(np.array([False, True]), benign=None, benign_label="BENIGN") == [
        "BENIGN", "attack"]
    assert class_names([0, 1], benign=1, benign_label="benign") == ["attack", "benign"]
    assert class_names(["normal", "attack"], benign="normal", benign_label="benign") == [
        "benign", "attack"]
    assert class_names(["attack", "normal"], benign="normal", benign_label="ok",
                       attack_label="malicious") == ["malicious", "ok"]
    assert class_names(["benign", "evil"], benign=None, benign_label="benign") == [
        "benign", "attack"]
    assert class_names(np.array([0, 1]), benign="0", benign_label="b") == ["b", "attack"]
    assert class_names(["normal", "dos", "scan"], benign="normal", benign_label="benign") == [
        "benign", "dos", "scan"]
    for classes, benign in ((["normal", "attack"], None), ([0, 1], "normal"), ([3], None)):
        with pytest.raises(ConfigError) as err:
            class_names(classes, benign=benign, benign_label="benign")
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="benign="):
        class_names(["normal", "attack"], benign=None, benign_label="benign")


def test_wrap_maps_string_classes_with_benign(flows):
    space, train, test = flows
    labels = np.where(_y(train) == 1, "attack", "normal")
    pipe = make_pipeline(make_column_transformer((OneHotEncoder(handle_unknown="ignore"), TEXT),
                                                 remainder="passthrough"),
                         RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0))
    pipe.fit(train[space.schema.names], labels)
    model = wrap(pipe, space=space, inputs="table", benign="normal")
    assert list(model.classes_) == ["attack", "benign"]  # pipe.classes_ = [attack, normal]
    own = pd.Series(pipe.predict(test[space.schema.names])).replace({"normal": "benign"})
    np.testing.assert_array_equal(model.predict(space.encode(test)), own.to_numpy())
    y = model.encode_labels(np.where(test["label"] == "benign", "benign", "attack"))
    assert y.dtype == torch.long
    with pytest.raises(ConfigError, match="benign="):
        wrap(pipe, space=space, inputs="table")
    custom = wrap(pipe, space=space, inputs="table", classes=["bad", "good"])
    assert list(custom.classes_) == ["bad", "good"]


# ------------------------------------------------------------------ mismatches: one line
def _one_line(call: object, match: str, kind: type[Exception] = ConfigError) -> None:
    with pytest.raises(kind, match=match) as err:
        call()  # type: ignore[operator]
    assert "\n" not in str(err.value)


def test_mismatches_are_one_line_errors(flows, numeric):
    fspace, ftrain, _ = flows
    space, train, _ = numeric
    _one_line(lambda: wrap(nn.Sequential(nn.Linear(10, 2)), space=space),
              r"model expects 10 input columns, the space gives 11 raw features "
              r"\(inputs='raw', schema order\)")
    d = fspace.n_features_out
    _one_line(lambda: wrap(nn.Sequential(nn.Linear(d + 1, 2)), space=fspace, inputs="encoded"),
              f"model expects {d + 1} input columns, the space gives {d} encoded columns")
    gb = GradientBoostingClassifier(n_estimators=5).fit(_raw(space, train), _y(train))
    _one_line(lambda: wrap(gb, space=space, inputs="encoded"),
              f"model expects 11 input columns, the space gives {space.n_features_out} encoded")
    _one_line(lambda: wrap(gb, space=fspace, inputs="raw"), "'protocol'.*inputs='table'")
    _one_line(lambda: wrap(nn.Linear(11, 2), space=space, inputs="table"), "inputs='raw'")
    _one_line(lambda: wrap(gb, space=space, inputs="rows"), "inputs='rows'")
    _one_line(lambda: wrap(gb, space=space, output="logits"), "predict_proba")
    _one_line(lambda: wrap(gb, space=space, classes=["a", "b", "c"]), "2 classes")
    _one_line(lambda: wrap(object(), space=space), "cannot wrap object")
    _one_line(lambda: wrap(lambda a: np.full(len(a), "maybe"), space=space),
              "predicted 'maybe'.*model_classes=")
    pipe = make_pipeline(make_column_transformer((OneHotEncoder(), TEXT), remainder="passthrough"),
                         RandomForestClassifier(n_estimators=5)).fit(
        ftrain[fspace.schema.names], _y(ftrain))
    _one_line(lambda: wrap(pipe, space=space, inputs="table"), "fitted on column 'service'")
    _one_line(lambda: wrap(lambda a: a[:, :3], space=space), "classes .0, 1, 2. is benign")
    _one_line(lambda: wrap(lambda a: a[:, :3], space=space, classes=["b", "a"]),
              "the model has 3 classes")


def test_foreign_model_contract(numeric):
    space, _, test = numeric
    calls: list[int] = []

    def scores(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return torch.stack([1 - x[:, 0], x[:, 0]], dim=1).double()

    model = ForeignModel(scores, space=space, classes=["benign", "attack"])
    model.batch_size = 64
    x = torch.as_tensor(space.encode(test))
    out = model(x)
    assert out.dtype == torch.float32 and out.shape == (len(test), 2)
    assert calls == [64, 64, 32] and model.data_ is None and model.feature_space_ is space
    assert isinstance(model.predict_proba(x.numpy()), np.ndarray)
    _one_line(lambda: model.encode_labels(["benign", "evil"]), "'evil'", DataError)
    _one_line(lambda: model(x[:, :3]), rf"shape \(N, {space.n_features_out}\)", DataError)
    hard = ForeignModel(lambda x: (x[:, 0] > 0.5).long(), space=space,
                        classes=["benign", "attack"], output="labels")
    assert hard.decision_only and set(hard(x).sum(dim=1).tolist()) == {1.0}
    bad = ForeignModel(lambda x: torch.full((len(x),), 5), space=space, classes=["a", "b"],
                       output="labels")
    _one_line(lambda: bad(x), r"indices in \[0, 2\)", DataError)
    wide = ForeignModel(lambda x: torch.zeros(len(x), 3), space=space, classes=["a", "b"])
    _one_line(lambda: wide(x), r"shape \(160, 3\) for 160 records; expected \(160, 2\)",
              DataError)
    for kwargs in ({"output": "scores"}, {"classes": ["a"]}, {"classes": ["a", "a"]}):
        with pytest.raises(AdvsecError):
            ForeignModel(scores, **{"space": space, "classes": ["a", "b"], **kwargs})


def test_non_finite_scores_are_refused_not_argmaxed(flows):
    space, _, test = flows
    x = space.encode(test[:20])

    def scores(t: torch.Tensor) -> torch.Tensor:
        s = torch.stack([t[:, 0], 1 - t[:, 0]], dim=1)
        s[3, 1] = float("nan")  # e.g. a log of a negative number inside the model
        return s

    for output in ("proba", "logits"):
        model = ForeignModel(scores, space=space, classes=NAMES, output=output)
        with pytest.raises(DataError, match=r"NaN or infinite scores for 1 of 20 records "
                                            r"\(first: record 4 of the batch\)"):
            model.predict(x)
    # finite scores are fine
    ok = ForeignModel(lambda t: torch.stack([t[:, 0], 1 - t[:, 0]], dim=1), space=space,
                      classes=NAMES, output="proba")
    assert ok.predict(x).shape == (20,)
