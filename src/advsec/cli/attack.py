"""``advsec attack``: attack a saved detector on a dataset over an eps list; write the results.

Errors (a missing model file, an unknown attack or dataset, a bad option) are raised as
:class:`~advsec.errors.AdvsecError` with a one-line message; the main app prints it and exits 2.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import typer

from advsec.attacks.registry import ATTACKS
from advsec.attacks.spec import attack_spec
from advsec.attacks.success import eligible, succeeded
from advsec.cli.attack_records import (
    check_new_bounds,
    decode_records,
    exported_block,
    load_split,
    read_like_training,
    record_columns,
    with_schema_file,
)
from advsec.cli.common import cli_delimiter, console, parse_floats, print_red_flags, rate
from advsec.errors import ConfigError, DataError

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["attack_command", "resolve_evasion", "run_attack"]

log = logging.getLogger(__name__)

FORMATS = ("csv", "parquet")


def attack_command(
    model: Path = typer.Option(..., "--model", "-m", help="Saved detector: the PATH prefix of "
                               "PATH.safetensors + PATH.json (the JSON holds the FeatureSpace), "
                               "or a model trained elsewhere, FILE.onnx (needs --data)."),
    dataset: str | None = typer.Option(None, "--dataset", "-d",
                                       help="Registered dataset name (see `advsec data "
                                       "list`; default: the model's, else synthetic)."),
    root: Path | None = typer.Option(None, "--root", help="Folder with the dataset's files."),
    data: Path | None = typer.Option(None, "--data", help="A CSV or Parquet table to attack "
                                     "(every row), read as the model's training table was: "
                                     "its stored label column, benign label and options."),
    label_column: str | None = typer.Option(None, "--label-column", help="With --data: the "
                                            "label column (default: the model's)."),
    benign_label: str | None = typer.Option(None, "--benign-label", help="With --data: the "
                                            "benign label (default: the model's)."),
    delimiter: str | None = typer.Option(None, "--delimiter", help="With --data: the CSV field "
                                         "separator (default: the model's, else ',')."),
    schema: Path | None = typer.Option(None, "--schema", help="A TOML/YAML schema file of "
                                       "changes (override, relations) to the model's stored "
                                       "schema: the threat model; the encoding must not change."),
    inputs: str = typer.Option("raw", "--inputs", help="With FILE.onnx (its space is fitted "
                               "on --data, --schema): it takes raw features or encoded inputs."),
    classes: str | None = typer.Option(None, "--classes", help="With FILE.onnx: its score "
                                       "columns' names, a,b (default: its own; benign,attack)."),
    split: str = typer.Option("test", "--split", help="Which split to attack: test or train."),
    scheme: str | None = typer.Option(None, "--scheme", help="Label scheme of the dataset "
                                      "(default: the loader's; must match the model's classes)."),
    attack: str = typer.Option("pgd", "--attack", "-a",
                               help=f"Attack: {', '.join(ATTACKS)}."),
    eps: str = typer.Option("0.01,0.05,0.1", "--eps",
                            help="Comma-separated budgets (fraction of each feature's range); "
                            "results.csv always starts with eps 0, the clean baseline."),
    steps: int | None = typer.Option(None, "--steps", help="The attack's budget: iterations of "
                                     "iterative attacks, queries of query-based ones (default: "
                                     "the attack's own)."),
    norm: str = typer.Option("linf", "--norm", help="linf or l2 (the norms the attack "
                             "supports)."),
    valid: bool = typer.Option(True, "--valid/--unconstrained", help="Keep records valid "
                               "(mutable features, bounds, repair) or attack the plain [0, 1] "
                               "box (the unconstrained baseline)."),
    evasion: bool | None = typer.Option(None, "--evasion/--all-records", help="Attack "
                                        "malicious records only, towards benign, or every "
                                        "record (benign ones towards false alarms too); "
                                        "default: evasion when the model has a benign class."),
    out: Path = typer.Option(Path("runs/attack"), "--out", "-o",
                             help="Output folder (written atomically)."),
    fmt: str = typer.Option("csv", "--format", "-f", help="Adversarial records: csv or parquet."),
    max_rows: int | None = typer.Option(None, "--max-rows", help="Attack only the first N "
                                        "records of the split."),
    seed: int = typer.Option(0, "--seed", help="Seed of the dataset split and the attack."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    fail_on_red_flags: bool = typer.Option(
        False, "--fail-on-red-flags", help="Exit with code 1 (after writing everything) when a "
        "red-flag check of the report failed; the failed checks are listed."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write OUT/report.html "
                                "(one self-contained page: table, plot, red flags, sample)."),
    verify: list[str] | None = typer.Option(None, "--verify", help="Also verify the detector "
                                            "on the attacked records at every ε: crown, "
                                            "alpha-crown or ibp (ReLU MLPs), tree-milp "
                                            "(tree ensembles, exact; needs advsec[verify]); "
                                            "repeatable or a comma list; writes "
                                            "verify.csv (certified accuracy, a lower bound, "
                                            "beside the attack's, an upper bound)."),
) -> None:
    """Attack a saved detector over an eps list; write the result table and the records.

    Evasion first: with a benign class only the malicious records are attacked, towards
    benign, unless --all-records. OUT gets results.csv (one row per eps: accuracy, detection
    rate, evasion and induced false-alarm rates, attack success rate, perturbation, valid share,
    seconds), adversarial.csv or .parquet (record_id, eps, true_label, pred_clean, pred_adv,
    attacked, success, valid, then every record in all its original columns: the features as
    attacked, the others (the label, columns the model leaves out) as read; a front column
    a record also has is named advsec_NAME), attack.json (the settings), unless --no-report
    report.html and,
    with --verify, verify.csv (per verifier and eps: verified accuracy, the attack's accuracy
    on the same records, their gap and the records both verified and broken, which must be 0).

    The first row of results.csv is always eps 0, the clean baseline: the unmodified records
    scored, never attacked, whether or not --eps lists 0 (listed, it is not attacked either).
    The records hold one block per --eps value: an eps 0 block only when --eps lists 0.
    """
    summary = run_attack(
        model=model, dataset=dataset, root=root, data=data, label_column=label_column,
        benign_label=benign_label, delimiter=cli_delimiter(delimiter), schema=schema,
        split=split, scheme=scheme, attack=attack,
        eps=parse_floats(eps, option="--eps"), steps=steps, norm=norm, valid=valid,
        evasion=evasion, out=out, fmt=fmt, max_rows=max_rows, seed=seed, device=device,
        force=force, report=report, inputs=inputs, onnx_classes=classes, verify=verify,
    )
    table = summary["table"]
    for note in summary["notes"]:
        console.print(f"note: {note}", soft_wrap=True, markup=False, highlight=False)
    for row in table.itertuples():
        console.print(
            f"{row.attack} eps={row.eps:g}: accuracy {rate(row.accuracy)}, detection rate "
            f"{rate(row.detection_rate)}, attack success {rate(row.attack_success_rate)}, "
            f"valid {rate(row.valid_share)}", soft_wrap=True)
    from advsec.reporting.attack_report import attack_headline

    for row in summary["verify"].itertuples():
        broken = row.verified_broken
        console.print(f"{row.verifier} eps={row.eps:g}: verified accuracy "
                      f"{rate(row.verified_accuracy)} (certified) vs attacked "
                      f"{rate(row.attacked_accuracy)}, "
                      f"{int(broken) if broken == broken else 'n/a'} verified yet broken",
                      soft_wrap=True)
    raised = print_red_flags(_raised_flags(Path(summary["out"])))
    console.print(f"wrote {summary['out']}")
    console.print(attack_headline({"attack": attack, "valid": valid,
                                   "evasion": summary["evasion"]}, table),
                  soft_wrap=True, markup=False, highlight=False)
    page = Path(summary["out"]) / "report.html"
    if page.is_file():
        console.print(f"report: {page}", soft_wrap=True)
    if raised and fail_on_red_flags:
        raise typer.Exit(1)


def _raised_flags(out: Path) -> list[tuple[str, str, str]]:
    """``(check, scope, detail)`` of every failed check in ``out/checks.csv`` (written with the
    report; none without it)."""
    from advsec.reporting.run_report import raised_checks

    try:
        checks = pd.read_csv(out / "checks.csv")
    except (OSError, ValueError):
        return []
    return [(str(r.check), str(r.scope), str(r.detail))
            for r in raised_checks(checks).itertuples()]


def run_attack(
    *,
    model: Path,
    dataset: str | None,
    root: Path | None,
    split: str,
    data: Path | None = None,
    label_column: str | None = None,
    benign_label: str | None = None,
    delimiter: str | None = None,
    schema: Path | None = None,
    scheme: str | None,
    attack: str,
    eps: list[float],
    steps: int | None,
    norm: str,
    valid: bool,
    evasion: bool | None,
    out: Path,
    fmt: str,
    max_rows: int | None,
    seed: int,
    device: str,
    force: bool,
    report: bool = True,
    inputs: str = "raw",
    onnx_classes: str | None = None,
    verify: list[str] | None = None,
) -> dict[str, Any]:
    """The work behind ``advsec attack``; returns ``{"table": DataFrame, "out": Path,
    "verify": DataFrame, "evasion": bool}`` (``verify``: one row per verifier and ε, empty
    without ``verify``, :mod:`advsec.experiments.verify_stage`; ``evasion``: the mode in
    effect, ``evasion=None`` resolved to evasion when the model has the benign class).

    The records are read as the model's training table was: the model JSON's ``data`` options
    (:func:`advsec.models.io.load_data_options`) under the CLI's ``label_column``,
    ``benign_label`` and ``scheme``; the model's stored FeatureSpace (``schema`` changes on
    top) encodes them, nothing is re-inferred. Every check runs before OUT is written.
    """
    from advsec.attacks import make_attack
    from advsec.attacks.validity import valid_records
    from advsec.cli.foreign import is_foreign, load_foreign
    from advsec.experiments.rundir import atomic_run_dir
    from advsec.experiments.verify_stage import cli_verifiers, verify_attack
    from advsec.models.detector import resolve_device
    from advsec.models.io import load_model

    try:
        spec = attack_spec(attack)
    except ValueError as exc:
        raise ConfigError(f"--attack: {exc}") from None
    name = spec.name
    if fmt not in FORMATS:
        raise ConfigError(f"--format: expected csv or parquet, got {fmt!r}")
    if split not in ("test", "train"):
        raise ConfigError(f"--split: expected test or train, got {split!r}")
    if norm not in spec.norms:
        raise ConfigError(f"--norm: {name} supports {' or '.join(spec.norms)}, got {norm!r}")
    verifiers = cli_verifiers(verify)
    if any(e < 0 for e in eps):
        raise ConfigError("--eps: budgets must be >= 0")
    if norm == "linf" and any(e > 1 for e in eps):
        raise ConfigError(f"--eps: {max(eps):g} is over 1, but an L-inf eps is a fraction of "
                          "each feature's range (0.05 = 5 %)")
    if steps is not None and steps < 1:
        raise ConfigError(f"--steps: must be >= 1, got {steps}")
    if max_rows is not None and max_rows < 1:
        raise ConfigError(f"--max-rows: must be >= 1, got {max_rows}")
    if out.exists() and not force:
        raise ConfigError(f"{out}: output folder already exists (use --force to replace it)")
    try:
        dev = str(resolve_device(device))
    except ConfigError as exc:
        raise ConfigError(f"--device: {exc}") from None

    det = (load_foreign(model, data=data, label_column=label_column, benign_label=benign_label,
                        delimiter=delimiter, schema=schema, inputs=inputs,
                        classes=onnx_classes, attack=name,
                        needs_gradients=spec.needs_gradients)  # its space fitted on --data
           if is_foreign(model) else load_model(model, device=dev))
    if spec.needs_gradients and not hasattr(det, "as_module"):
        raise ConfigError(f"--attack {name} needs gradients; {model} is a tree ensemble: use "
                          f"tree-search (white box, its splits) or a score- or decision-based "
                          f"attack (square, hopskipjump)")
    if spec.family == "tree" and hasattr(det, "as_module"):
        raise ConfigError(f"--attack {name} searches the splits of a tree ensemble; {model} is "
                          f"a neural network: use a gradient attack (fgsm, bim, mim, pgd, apgd) "
                          f"or a score- or decision-based one (square, hopskipjump)")
    space = getattr(det, "feature_space_", None)
    if space is None:
        raise DataError(f"{model}: the model JSON holds no FeatureSpace; save the detector with "
                        f"its feature space to attack raw records")
    trained = space.schema
    if schema is not None and not is_foreign(model):
        space = with_schema_file(space, schema, model)
    cli_verifiers(verifiers, det)
    stored = getattr(det, "data_", None)
    label_notes: list[str] = []
    if data is not None:
        table, labels, benign_value = read_like_training(
            space, stored, model, data, label_column=label_column, benign_label=benign_label,
            delimiter=delimiter, scheme=scheme, notes=label_notes)
        dataset, split = str(data), "all"
    else:
        dataset, table, labels, benign_value = load_split(
            stored, model, dataset, root=root, split=split, seed=seed, scheme=scheme,
            label_column=label_column, benign_label=benign_label)
    missing = [n for n in space.schema.names if n not in table.columns]
    if missing:
        raise DataError(f"{dataset} ({split}): no column {missing[0]!r} (the model {model} "
                        f"was trained with it)")
    if space.schema is not trained:
        table = check_new_bounds(table, trained, space.schema, where=f"{dataset} ({split})",
                                 notes=label_notes)
    if max_rows is not None:
        table, labels = table.iloc[:max_rows], labels[:max_rows]
    if len(table) == 0:
        raise DataError(f"{dataset}: the {split} split has no records")
    classes = [str(c) for c in det.classes_]
    unknown = sorted({str(v) for v in labels} - set(classes))
    if unknown:
        raise DataError(f"{dataset} ({split}): label(s) {', '.join(map(repr, unknown[:5]))} "
                        f"are not classes of the model ({', '.join(map(repr, classes))}); "
                        f"pass the --scheme the model was trained with, or --benign-label")
    from advsec.features.coverage import encoding_notes

    notes = [*label_notes, *encoding_notes(space, table)]
    if valid and not bool(np.asarray(space.mutable_mask).any()):
        notes.append("the model's feature space lets the attacker change no feature (every "
                     "feature is immutable): a valid-record attack leaves every record as it is; "
                     "make features mutable with --schema ([override.NAME] mutable = true) or "
                     "attack --unconstrained")
    x = torch.as_tensor(space.encode(table))
    if x.shape[1] != det.n_features_in_:
        raise DataError(f"{dataset}: records encode to {x.shape[1]} columns, the model expects "
                        f"{det.n_features_in_}")
    y = det.encode_labels(labels)
    benign = benign_value if benign_value in classes else None
    benign_class = classes.index(str(benign)) if benign is not None else 0
    evasion, mode = resolve_evasion(evasion, has_benign=benign is not None)

    opts: dict[str, Any] = {"eps": eps, "seed": seed, "evasion": evasion,
                            "benign_class": benign_class, "norm": norm,
                            "feature_space": space if valid else None}
    if steps is not None:
        if spec.budget is not None:
            opts[spec.budget] = steps
        else:
            log.warning("--steps does not apply to %s (one step); ignored", name)
    try:
        atk = make_attack(name, **opts)
    except ValueError as exc:
        raise ConfigError(f"--attack {name}: {exc}") from None
    try:  # the attack takes this kind of model (before anything is computed or written)
        atk.resolve_model(det)
    except TypeError as exc:
        raise ConfigError(f"--attack {name} cannot attack {model}: {exc}") from None

    t0 = time.perf_counter()
    sweep_table, x_adv, pred_clean, pred_adv = _sweep(det, atk, x, y, eps, space, benign_class)
    if benign is not None:  # evasion and induced false alarms, apart
        from advsec.evaluation.evasion import add_evasion_columns

        sweep_table = add_evasion_columns(sweep_table, y.numpy(), pred_clean, pred_adv,
                                          benign_class)
    seconds = time.perf_counter() - t0
    verify_table, verify_flags = verify_attack(
        verifiers, det, x, y, pred_adv, space=space if valid else None, benign=benign_class,
        evasion=evasion, detector=Path(model).name)

    ids = table.index.to_numpy()
    frames, exported = [], []
    columns = record_columns(table)
    for e in eps:
        xa = x_adv[e]
        raw = decode_records(space, xa, table)
        front = pd.DataFrame({
            "record_id": ids,
            "eps": e,
            "label": labels,
            "pred_clean": np.asarray(det.classes_)[pred_clean].astype(str),
            "pred_adv": np.asarray(det.classes_)[pred_adv[e]].astype(str),
            "attacked": (labels != str(benign)) if evasion else np.ones(len(labels), bool),
            "success": _success(y.numpy(), pred_clean, pred_adv[e], evasion, benign_class),
            "valid": valid_records(space, xa, x),
        })
        raw = raw.reset_index(drop=True)
        # the report's frame: its front columns win over a feature of the same name
        frames.append(pd.concat([front, raw.drop(columns=[c for c in raw.columns
                                                          if c in front.columns])], axis=1))
        exported.append(exported_block(front, raw, table, columns))
    records = pd.concat(frames, ignore_index=True)
    out_records = pd.concat(exported, ignore_index=True)

    settings = {"model": str(model), "dataset": dataset, "split": split, "root": str(root)
                if root else None, "scheme": scheme, "schema": str(schema) if schema else None,
                "data_options": stored["options"] if stored else None, "attack": name,
                "eps": eps, "steps": steps, "norm": norm, "valid": valid, "evasion": evasion,
                "mode": mode, "rows": len(table),
                "seed": seed, "device": dev, "seconds": round(seconds, 3),
                "classes": classes, "benign_class": benign_class, "verify": verifiers,
                "encoding_notes": notes}
    with atomic_run_dir(out, force=force) as tmp:
        sweep_table.to_csv(tmp / "results.csv", index=False)
        if fmt == "csv":
            out_records.to_csv(tmp / "adversarial.csv", index=False)
        else:
            out_records.to_parquet(tmp / "adversarial.parquet", index=False)
        (tmp / "attack.json").write_text(json.dumps(settings, indent=2) + "\n")
        if verifiers:
            verify_table.to_csv(tmp / "verify.csv", index=False)
        if report:
            from advsec.reporting.attack_report import write_attack_report

            write_attack_report(tmp, settings=settings, table=sweep_table, records=records,
                                clean=table, model=det, x=x, y=y, verify=verify_table,
                                verify_flags=verify_flags)
    return {"table": sweep_table, "out": out, "verify": verify_table, "evasion": evasion,
            "notes": notes}


def resolve_evasion(evasion: bool | None, *, has_benign: bool) -> tuple[bool, str]:
    """``(evasion, mode)``: the mode in effect and how attack.json states it. Evasion first:
    ``evasion=None`` (neither --evasion nor --all-records) is evasion when the model has the
    benign class, else every record."""
    if evasion is None:
        return has_benign, "auto: " + ("evasion" if has_benign else
                                       "all (the model has no benign class)")
    return evasion, "evasion" if evasion else "all"


def _sweep(det: Any, atk: Any, x: torch.Tensor, y: torch.Tensor, eps: list[float],
           space: FeatureSpace,
           benign_class: int
           ) -> tuple[pd.DataFrame, dict[float, torch.Tensor], np.ndarray, dict[float, np.ndarray]]:
    """The result table and the adversarial inputs (:func:`advsec.evaluation.evaluate_attack`);
    first the eps 0 row: ``x`` itself scored (:class:`~advsec.attacks.FixedInputs`), never
    attacked, the other eps after it."""
    from advsec.attacks import FixedInputs
    from advsec.evaluation import evaluate_attack

    clean = FixedInputs(x, name=atk.name, evasion=atk.evasion, benign_class=benign_class)
    sweep = evaluate_attack(det, clean, x, y, eps=[0.0], space=space, benign_class=benign_class)
    assert sweep.pred_clean is not None
    table, x_adv, pred_adv = sweep.table, dict(sweep.x_adv), dict(sweep.pred_adv)
    if [e for e in eps if e != 0]:
        attacked = evaluate_attack(det, atk, x, y, eps=[e for e in eps if e != 0], space=space,
                                   benign_class=benign_class)
        table = pd.concat([table, attacked.table], ignore_index=True)
        x_adv.update(attacked.x_adv)
        pred_adv.update(attacked.pred_adv)
    return table, x_adv, np.asarray(sweep.pred_clean), pred_adv


def _success(y: np.ndarray, clean: np.ndarray, adv: np.ndarray, evasion: bool,
             benign: int) -> np.ndarray:
    """Records the attack was measured on and broke (:mod:`advsec.attacks.success`)."""
    return (eligible(clean, y, evasion=evasion, benign_class=benign)
            & succeeded(adv, y, evasion=evasion, benign_class=benign))
