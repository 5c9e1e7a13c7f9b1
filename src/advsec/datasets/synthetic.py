"""Synthetic benign-vs-malicious network flows (the default demo data).

Records look like flow summaries, not image blobs: heavy-tailed byte counts and durations, integer
packet/connection/failed-login counts, error rates in [0, 1], binary flags and categorical protocol
and service fields. Malicious records come from four behaviours (scan, denial of service, brute
force, exfiltration) whose distance from benign traffic is set by ``separation``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from advsec.datasets.base import Dataset, register
from advsec.errors import DataError
from advsec.features.schema import Feature, FeatureKind, FeatureSchema

__all__ = ["ATTACK_TYPES", "flow_schema", "load_synthetic", "make_flows"]

ATTACK_TYPES = ("scan", "dos", "bruteforce", "exfiltration")
_ATTACK_SHARES = np.array([0.35, 0.30, 0.20, 0.15])
_SERVICES = ("http", "https", "dns", "smtp", "ssh", "ftp", "ntp", "echo")
_BENIGN_SERVICE_P = np.array([0.28, 0.30, 0.18, 0.08, 0.06, 0.03, 0.04, 0.03])
_PROTOCOL = {"dns": "udp", "ntp": "udp", "echo": "icmp"}

C, N, B, K = (FeatureKind.CONTINUOUS, FeatureKind.INTEGER, FeatureKind.BINARY,
              FeatureKind.CATEGORICAL)


def flow_schema() -> FeatureSchema:
    """The schema of :func:`make_flows` tables (label column ``label``, benign ``"benign"``)."""
    feats = (
        Feature("protocol", K, mutable=False, description="transport protocol"),
        Feature("service", K, mutable=False, description="destination service"),
        Feature("duration", C, lower=0, transform="log1p", description="flow duration (s)"),
        Feature("src_bytes", C, lower=0, transform="log1p", description="bytes sent (B)"),
        Feature("dst_bytes", C, lower=0, transform="log1p", description="bytes received (B)"),
        Feature("packets", N, lower=1, transform="log1p", description="packets in the flow"),
        Feature("connections", N, lower=0, transform="log1p",
                description="connections to the same host in the last 2 s"),
        Feature("failed_logins", N, lower=0, transform="log1p", description="failed logins"),
        Feature("syn_error_rate", C, lower=0, upper=1, description="share of SYN errors"),
        Feature("same_service_rate", C, lower=0, upper=1,
                description="share of recent connections to the same service"),
        Feature("urgent", B, description="URG flag seen"),
        Feature("encrypted", B, description="payload looks encrypted"),
    )
    return FeatureSchema(features=feats, label="label", benign_label="benign")


def make_flows(
    rows: int = 6000,
    *,
    malicious_share: float = 0.3,
    separation: float = 1.0,
    noise: float = 1.0,
    seed: int = 0,
) -> tuple[pd.DataFrame, FeatureSchema]:
    """Generate ``rows`` synthetic flow records.

    Args:
        rows: number of records (>= 10).
        malicious_share: fraction of malicious records, in (0, 1).
        separation: how far malicious behaviour departs from benign (0: identical
            distributions; 1: default, a well-trained MLP reaches ~0.97-0.99 accuracy).
        noise: scale of the within-class spread (> 0); larger means more overlap.
        seed: random seed; the same seed gives the same table.

    Returns:
        ``(table, schema)``: a DataFrame with the schema's feature columns plus ``label``
        (``"benign"``/``"malicious"``) and ``attack_type`` (``"benign"`` or one of
        :data:`ATTACK_TYPES`), and the :class:`FeatureSchema`.
    """
    if not isinstance(rows, (int, np.integer)) or rows < 10:
        raise DataError(f"rows must be an integer >= 10, got {rows!r}")
    if not 0.0 < malicious_share < 1.0:
        raise DataError(f"malicious_share must be in (0, 1), got {malicious_share!r}")
    if separation < 0:
        raise DataError(f"separation must be >= 0, got {separation!r}")
    if noise <= 0:
        raise DataError(f"noise must be > 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    n_mal = round(rows * malicious_share)
    kind = np.zeros(rows, dtype=np.int64)  # 0 benign, 1..4 attack types
    kind[:n_mal] = 1 + rng.choice(len(ATTACK_TYPES), size=n_mal, p=_ATTACK_SHARES)
    kind = rng.permutation(kind)
    s, z = float(separation), float(noise)

    def shift(by_kind: dict[int, float]) -> np.ndarray:
        out = np.zeros(rows)
        for k, v in by_kind.items():
            out[kind == k] = v * s
        return out

    service_idx = rng.choice(len(_SERVICES), size=rows, p=_BENIGN_SERVICE_P)
    brute = kind == 3
    service_idx[brute] = np.where(rng.random(brute.sum()) < 0.6, 4, 5)  # ssh / ftp
    keep_benign_like = rng.random(rows) > min(1.0, 0.9 * s)
    service_idx[brute & keep_benign_like] = rng.choice(
        len(_SERVICES), size=int((brute & keep_benign_like).sum()), p=_BENIGN_SERVICE_P
    )
    services = np.array(_SERVICES, dtype=object)[service_idx]
    protocols = np.array([_PROTOCOL.get(sv, "tcp") for sv in services], dtype=object)

    # log-scale means: benign baseline plus behaviour-specific shifts scaled by `separation`
    log_duration = 0.2 + shift({1: -2.0, 2: -1.0, 3: 0.5, 4: 2.0}) + z * rng.normal(0, 1.2, rows)
    log_src = 6.0 + shift({1: -2.5, 2: -1.0, 3: -0.5, 4: 3.0}) + z * rng.normal(0, 1.3, rows)
    log_dst = 7.5 + shift({1: -4.5, 2: -4.0, 3: -2.0, 4: -1.5}) + z * rng.normal(0, 1.5, rows)
    duration = np.expm1(np.clip(log_duration, 0, None))
    src_bytes = np.round(np.expm1(np.clip(log_src, 0, None)))
    dst_bytes = np.round(np.expm1(np.clip(log_dst, 0, None)))
    mean_pkt = np.exp(6.2 + shift({2: -1.5}) + 0.3 * z * rng.normal(0, 1, rows))
    packets = 1 + rng.poisson((src_bytes + dst_bytes) / mean_pkt)
    lam_conn = np.exp(1.0 + shift({1: 2.5, 2: 3.0, 3: 1.2}) + 0.5 * z * rng.normal(0, 1, rows))
    connections = rng.poisson(lam_conn)
    failed_logins = rng.poisson(np.exp(-3.0 + shift({3: 4.0}) + 0.5 * z * rng.normal(0, 1, rows)))
    syn_logit = -3.0 + shift({1: 4.0, 2: 2.5}) + z * rng.normal(0, 1.0, rows)
    syn_error_rate = np.round(1 / (1 + np.exp(-syn_logit)), 4)
    same_logit = 0.5 + shift({1: -2.5, 2: 2.5, 3: 1.5}) + z * rng.normal(0, 1.0, rows)
    same_service_rate = np.round(1 / (1 + np.exp(-same_logit)), 4)
    urgent = (rng.random(rows) < 0.01 + 0.05 * s * np.isin(kind, (1, 2))).astype(np.int64)
    p_enc = np.where(np.isin(services, ("https", "ssh")), 0.95, 0.05)
    p_enc = np.where(kind == 4, np.clip(p_enc + 0.6 * s, 0, 0.95), p_enc)
    encrypted = (rng.random(rows) < p_enc).astype(np.int64)

    labels = np.array(["benign", *ATTACK_TYPES], dtype=object)[kind]
    table = pd.DataFrame(
        {
            "protocol": pd.array(protocols, dtype="string"),
            "service": pd.array(services, dtype="string"),
            "duration": np.round(duration, 6),
            "src_bytes": src_bytes,
            "dst_bytes": dst_bytes,
            "packets": packets.astype(np.int64),
            "connections": connections.astype(np.int64),
            "failed_logins": failed_logins.astype(np.int64),
            "syn_error_rate": syn_error_rate,
            "same_service_rate": same_service_rate,
            "urgent": urgent,
            "encrypted": encrypted,
            "label": pd.array(np.where(kind > 0, "malicious", "benign"), dtype="string"),
            "attack_type": pd.array(labels, dtype="string"),
        }
    )
    return table, flow_schema()


@register(
    "synthetic",
    description="Synthetic benign/malicious network flows (generated; no files needed)",
)
def load_synthetic(
    *,
    rows: int = 6000,
    malicious_share: float = 0.3,
    separation: float = 1.0,
    noise: float = 1.0,
    seed: int = 0,
    test_size: float = 0.3,
    **_: object,
) -> Dataset:
    """Generate :func:`make_flows` data and split it (stratified, ``test_size`` held out)."""
    table, schema = make_flows(
        rows, malicious_share=malicious_share, separation=separation, noise=noise, seed=seed
    )
    train, test = train_test_split(
        table, test_size=test_size, random_state=seed, stratify=table["label"]
    )
    return Dataset(
        name="synthetic",
        train=train.reset_index(drop=True),
        test=test.reset_index(drop=True),
        schema=schema,
        scheme="binary",
        classes=["benign", "malicious"],
        notes=[f"{rows} generated flows, malicious share {malicious_share}, "
               f"separation {separation}, noise {noise}, seed {seed}"],
    )
