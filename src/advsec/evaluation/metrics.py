"""Detection metrics (:mod:`advsec.models.metrics`) and the attack success rate of predictions.

"Positive" means malicious: for a multi-class detector any non-benign class counts as a detection,
so detection rate and false-positive rate mean the same thing for every label scheme. Success
follows the one definition of :mod:`advsec.attacks.success`.
"""

from __future__ import annotations

import numpy as np

from advsec.attacks.success import success_rate
from advsec.models.metrics import confusion, detection_metrics

__all__ = ["attack_success_rate", "confusion", "detection_metrics"]


def attack_success_rate(
    y_true: np.ndarray,
    pred_clean: np.ndarray,
    pred_adv: np.ndarray,
    *,
    evasion: bool = False,
    benign_class: int = 0,
) -> float:
    """Share of attackable records that the attack turned (:func:`advsec.attacks.success.
    success_rate` on NumPy arrays ``(N,)``).

    Untargeted: among records classified correctly before the attack, the share misclassified
    after it. Evasion: among malicious records the detector caught before the attack, the share
    classified benign after it. NaN when there is nothing to attack.
    """
    y_true, pred_clean, pred_adv = map(np.asarray, (y_true, pred_clean, pred_adv))
    return success_rate(pred_clean, pred_adv, y_true, evasion=evasion,
                        benign_class=benign_class)
