"""The faithful part of the KDD Cup 99 reproduction: every setting as the original had it.

The original model (Dense 200-500-200, Keras-style training), FGSM, BIM and MIM called as the
study called them (:class:`~.faithful.OwnPredictionAttack`), adversarial training by data
enhancement (1:1, examples crafted against the original model with its own predictions as
labels), and each hardened model scored on the adversarial test set crafted against the
*original* model, as the study did. The numbers go into ``faithful.csv`` beside the original's.

The three attacks' examples (of the test set, then of the training set) are crafted together by
:func:`~.faithful_craft.craft_faithful`: the same examples as the library attacks called one by
one, with one gradient memory for all three (a tenth of the forward+backward passes).
"""

from __future__ import annotations

import copy
import logging
import math
import time

import pandas as pd
import torch

from advsec.attacks import BIM, FGSM, MIM
from advsec.defenses import enhance_training_set
from advsec.experiments.reproductions.faithful import (
    OwnPredictionAttack,
    keras_fit,
    keras_mlp,
    predict,
    softmax_model,
)
from advsec.experiments.reproductions.faithful_craft import (
    CraftResult,
    craft_faithful,
    supports,
)
from advsec.experiments.reproductions.kdd99_config import REFERENCE, REFERENCE_R2L, KDD99Config
from advsec.experiments.reproductions.kdd99_data import CLASSES, NUMERIC_FEATURES
from advsec.experiments.reproductions.kdd99_state import StudyState

__all__ = [
    "FAITHFUL_SETTINGS",
    "faithful_adversarial_training",
    "faithful_attacks",
    "run_faithful_attacks",
    "train_original",
]

log = logging.getLogger(__name__)

#: The rows of ``faithful.csv``, in the original's order.
FAITHFUL_SETTINGS = ("clean", "fgsm", "fgsm after AT", "bim", "bim after AT", "mim",
                     "mim after AT")


def faithful_attacks(cfg: KDD99Config) -> dict[str, OwnPredictionAttack]:
    """FGSM, BIM and MIM as the original called them (keys ``fgsm``, ``bim``, ``mim``)."""
    return {
        "fgsm": OwnPredictionAttack(FGSM(eps=cfg.eps, bounds=None, seed=cfg.seed),
                                    name="fgsm (faithful)"),
        # step = eps pins most rows to a corner of the ball within a few steps: rows that
        # stopped moving reuse their gradient (the same examples, far fewer passes)
        "bim": OwnPredictionAttack(BIM(eps=cfg.eps, steps=cfg.bim_steps,
                                       step_size=cfg.bim_step, targeted=True, bounds=None,
                                       skip_stationary=True, seed=cfg.seed),
                                   name="bim (faithful)"),
        "mim": OwnPredictionAttack(MIM(eps=cfg.eps, steps=cfg.mim_steps,
                                       step_size=cfg.mim_step, decay=cfg.mim_decay,
                                       targeted=True, bounds=None, skip_stationary=True,
                                       seed=cfg.seed), name="mim (faithful)"),
    }


def train_original(s: StudyState) -> None:
    """Train the original model Keras-style; its clean metrics go to ``s.out["clean"]``."""
    cfg = s.cfg
    t0 = time.perf_counter()
    s.net = keras_mlp(len(NUMERIC_FEATURES), len(CLASSES), hidden=cfg.hidden,
                      seed=cfg.seed).to(cfg.device)
    s.history = keras_fit(s.net, s.x_train, s.y_train, epochs=cfg.epochs,
                          batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                          progress=lambda e, loss: log.info("epoch %d: loss %.5f", e, loss))
    s.out["train_seconds"] = time.perf_counter() - t0
    m, cm = s.metrics(s.net, s.x_test)
    s.out["clean"] = m
    s.confusions["clean"] = cm
    log.info("original model: clean accuracy %.4f", m["accuracy"])


def run_faithful_attacks(s: StudyState) -> None:
    """Craft the faithful adversarial test sets against the original model and score them."""
    cfg = s.cfg
    net = s.original
    s.faithful_adv_test = {}
    s.out["faithful"] = {}
    crafted = _craft(cfg, net, s.x_test, predict(net, s.x_test))
    for key in faithful_attacks(cfg):
        xa = crafted.x_adv[key]
        s.faithful_adv_test[key] = xa
        m, cm = s.metrics(net, xa)
        s.confusions[key] = cm
        s.out["faithful"][key] = {**m, "seconds_test": crafted.seconds[key]}
        log.info("faithful %s: accuracy %.4f", key, m["accuracy"])
    s.out["faithful_passes"] = {"test": _passes(crafted)}


def faithful_adversarial_training(s: StudyState) -> None:
    """Harden a copy of the original model per attack by data enhancement, score it on that
    attack's adversarial test set (crafted against the original), and fill
    ``s.tables["faithful"]``.

    The examples of the training set are crafted against the original model, as the original
    crafted them (own predictions, softmax loss, target = prediction for BIM/MIM), and added
    with the true labels. At the 1:1 ratio all three attacks' sets come from one
    :func:`~.faithful_craft.craft_faithful` call (one gradient memory); other ratios use
    :func:`advsec.defenses.enhance_training_set`.
    """
    cfg = s.cfg
    net = s.original
    s.hardened = {}
    shared = None
    if cfg.at_ratio == 1.0:
        # enhance_training_set labels the rows with the softmax model's predictions
        shared = _craft(cfg, net, s.x_train, predict(softmax_model(net), s.x_train))
        s.out.setdefault("faithful_passes", {})["train"] = _passes(shared)
    for key, atk in faithful_attacks(cfg).items():
        t0 = time.perf_counter()
        if shared is not None:
            x_aug = torch.cat([s.x_train, shared.x_adv[key]])
            y_aug = torch.cat([s.y_train, s.y_train])
            t_craft = shared.seconds[key]
            t0 -= t_craft  # this attack's share of the crafting counts in its seconds
        else:
            x_aug, y_aug, _ = enhance_training_set(
                softmax_model(net), s.x_train, s.y_train, attack=atk.attack,
                ratio=cfg.at_ratio, attack_labels="predicted",
                target="predicted" if atk.targeted else None, seed=cfg.seed)
            t_craft = time.perf_counter() - t0
        model = copy.deepcopy(net)
        keras_fit(model, x_aug, y_aug, epochs=cfg.at_epochs, batch_size=cfg.batch_size,
                  lr=cfg.lr, seed=cfg.seed + 1)
        s.hardened[key] = model
        m_adv, cm = s.metrics(model, s.faithful_adv_test[key])
        m_clean, _ = s.metrics(model, s.x_test)
        s.confusions[f"{key} after AT"] = cm
        s.out["faithful"][f"{key} after AT"] = {
            **m_adv, "clean_accuracy": m_clean["accuracy"],
            "clean_detection_rate": m_clean["detection_rate"], "clean_fpr": m_clean["fpr"],
            "seconds_craft_train": t_craft, "seconds": time.perf_counter() - t0}
        log.info("faithful %s after AT: accuracy %.4f on the adversarial test set crafted "
                 "against the original model", key, m_adv["accuracy"])
    s.tables["faithful"] = _faithful_table(s)


def _craft(cfg: KDD99Config, net: torch.nn.Module, x: torch.Tensor,
           labels: torch.Tensor) -> CraftResult:
    """The faithful FGSM, BIM and MIM examples of ``x`` against ``net`` with ``labels`` (its own
    predictions), crafted together (:func:`~.faithful_craft.craft_faithful`), or one attack at
    a time by the library when their settings are outside what that reproduces."""
    attacks = faithful_attacks(cfg)
    if not supports(attacks):
        out = CraftResult(x_adv={})
        for key, atk in attacks.items():
            target = labels if atk.targeted else None
            res = atk.attack.run(softmax_model(net), x, labels, eps=cfg.eps, target=target,
                                 evaluate=False)
            out.x_adv[key], out.seconds[key] = res.x_adv[0].detach(), res.seconds
        return out
    crafted = craft_faithful(attacks, net, x, labels, eps=cfg.eps)
    log.info("faithful attacks on %d rows: %d of %d row-gradients computed, the rest reused",
             len(x), crafted.passes, crafted.lookups)
    return crafted


def _passes(crafted: CraftResult) -> dict[str, int]:
    """Row-gradients computed and needed by a :func:`craft_faithful` call."""
    return {"computed": crafted.passes, "needed": crafted.lookups}


def _faithful_table(s: StudyState) -> pd.DataFrame:
    """One row per :data:`FAITHFUL_SETTINGS`: our number beside the original's."""
    rows = []
    for key in FAITHFUL_SETTINGS:
        m = s.out["clean"] if key == "clean" else s.out["faithful"][key]
        rows.append({
            "setting": key, "reference_accuracy": REFERENCE[key],
            "accuracy": m["accuracy"], "difference": m["accuracy"] - REFERENCE[key],
            "detection_rate": m["detection_rate"], "fpr": m["fpr"],
            "recall_r2l": m["recall_r2l"],
            "reference_recall_r2l": REFERENCE_R2L.get(key, math.nan),
        })
    return pd.DataFrame(rows)
