"""Experiment configuration: one TOML file describes a whole study (``advsec run FILE``).

Validated with pydantic before anything runs. Errors name the offending key and its line::

    advsec: error: nsl.toml, line 14: attacks[1].stepz: unknown key (allowed: name, attack, ...)

A file needs ``[data]`` (with ``dataset``), ``[[detectors]]`` and ``[[attacks]]``; ``[experiment]``,
``[threat]``, ``[[defenses]]``, ``[[verifiers]]`` (:mod:`advsec.experiments.verifier_config`),
``[tracking]`` and ``[run]`` (the executor, :mod:`advsec.experiments.run_config`) have defaults.
Beyond types, what cannot work is refused here too: an unknown dataset or loader option, ``path``
without a CSV/Parquet dataset (or ``root`` with one), an L∞ eps over 1 (eps is a fraction of each
feature's range), a surrogate that is not an MLP of the file.

Example::

    [experiment]
    name = "NSL-KDD binary"
    seeds = [0, 1]

    [data]
    dataset = "nsl-kdd"
    root = "../shared/datasets/nsl-kdd"

    [[detectors]]
    name = "mlp"
    hidden = [128, 64]

    [[attacks]]
    attack = "pgd"
    steps = 20

    [threat]
    eps = [0, 0.01, 0.05, 0.1]
    constraints = ["box", "valid"]
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    PydanticSchemaGenerationError,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from advsec.errors import ConfigError
from advsec.experiments.config_rules import Strict, as_written, check_name, duplicates, located
from advsec.experiments.data_config import FILE_DATASETS, DataConfig
from advsec.experiments.model_config import DefenseConfig, DetectorConfig
from advsec.experiments.run_config import RunConfig
from advsec.experiments.toml_locations import dotted, line_of
from advsec.experiments.tomlio import tomllib
from advsec.experiments.verifier_config import VerifierConfig, VerifierList

__all__ = [
    "FILE_DATASETS",
    "REQUIRED_SECTIONS",
    "AttackConfig",
    "DataConfig",
    "DefenseConfig",
    "DetectorConfig",
    "ExperimentConfig",
    "load_config",
    "parse_config",
]


class ExperimentMeta(Strict):
    """``[experiment]``: name, description and seeds (one run per seed; mean and spread)."""

    name: str = "experiment"
    description: str = ""
    seeds: list[Annotated[int, Field(ge=0, le=2**32 - 1)]] = Field(default_factory=lambda: [0],
                                                                  min_length=1)

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        dups = duplicates(v)
        if dups:
            raise ValueError(f"seed(s) {', '.join(map(str, dups))} listed more than once "
                             "(each seed is one run)")
        return v

class AttackConfig(BaseModel):
    """``[[attacks]]``: a registered attack and its constructor options.

    ``attack`` names the attack (any registered name: ``advsec.attacks.ATTACKS``); every other
    key except ``name`` is a keyword option of that attack's constructor, checked against its
    signature (the allowed keys are listed on a mistake) and its types, then by the constructor
    itself. The threat model's options (eps, feature space, evasion, seed, ...) come from
    ``[threat]`` and ``[experiment]``, not from here.
    """

    model_config = ConfigDict(extra="allow", strict=True)

    attack: str
    name: str | None = None

    _name = field_validator("name")(check_name)

    @field_validator("attack")
    @classmethod
    def _known(cls, v: str) -> str:
        from advsec.attacks.registry import attack_spec

        spec = attack_spec(v)
        if spec.family == "tree":
            raise ValueError(f"{spec.name} searches the splits of a tree ensemble, but a run "
                             "attacks its MLP detectors (tree baselines are scored with the "
                             "MLP's transferred examples and bounded by [[verifiers]] tree-milp); "
                             f"attack a saved tree model with advsec attack --attack {spec.name}")
        return spec.name

    @model_validator(mode="after")
    def _options(self) -> AttackConfig:
        from advsec.attacks.registry import attack_spec, make_attack

        spec = attack_spec(self.attack)
        allowed = spec.config_options()
        extra = dict(self.model_extra or {})
        for key, value in extra.items():
            if key not in allowed:
                raise PydanticCustomError(
                    "unknown_option", "{key}: unknown key",
                    {"key": key, "allowed": ["attack", "name", *sorted(allowed)]})
            try:
                extra[key] = TypeAdapter(allowed[key]).validate_python(value, strict=True)
            except ValidationError as exc:
                raise PydanticCustomError(
                    "bad_option", "{key}: {msg}",
                    {"key": key, "msg": exc.errors()[0]["msg"]}) from None
            except PydanticSchemaGenerationError:  # an annotation pydantic cannot check
                pass
        if self.model_extra is not None:
            self.model_extra.update(extra)
        try:
            make_attack(spec.name, **extra)
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def label(self) -> str:
        """The name used in tables (``name`` or the attack's registry name)."""
        return self.name or self.attack

    def options(self) -> dict[str, Any]:
        """Constructor options for :func:`advsec.attacks.make_attack` (unset ones left out)."""
        return {k: v for k, v in (self.model_extra or {}).items() if v is not None}


#: options an attack accepts (its class inherits them) that do not apply to it
_ONE_STEP_KEYS: dict[str, frozenset[str]] = {
    "fgsm": frozenset({"steps", "step_size", "rel_step_size", "decay"}),
}


class ThreatConfig(Strict):
    """``[threat]``: the eps grid and what the attacker may do.

    ``mode``: ``"evasion"`` attacks the malicious records only, pushed towards benign;
    ``"all"`` perturbs every record (benign ones towards false alarms too); ``"auto"`` (the
    default) is evasion when the data have a benign class, else all (:meth:`resolved_mode`).
    """

    eps: list[float] = Field(default_factory=lambda: [0.0, 0.01, 0.02, 0.05, 0.1, 0.2])
    constraints: list[Literal["box", "valid"]] = Field(
        default_factory=lambda: ["valid"], min_length=1)  # type: ignore[arg-type]
    mode: Literal["auto", "all", "evasion"] = "auto"
    figure_eps: float | None = None

    def resolved_mode(self, has_benign: bool = True) -> Literal["all", "evasion"]:
        """The mode in effect on data that have (``has_benign``) or lack a benign class:
        ``"auto"`` resolves to ``"evasion"`` with one, to ``"all"`` without."""
        if self.mode == "auto":
            return "evasion" if has_benign else "all"
        return self.mode

    def evasion(self, has_benign: bool = True) -> bool:
        """Whether the attacks run in evasion mode (:meth:`resolved_mode`)."""
        return self.resolved_mode(has_benign) == "evasion"

    @field_validator("eps")
    @classmethod
    def _eps(cls, v: list[float]) -> list[float]:
        if not v or any(not math.isfinite(e) or e < 0 for e in v):
            raise ValueError(f"eps must be a non-empty list of numbers >= 0, got {v}")
        dups = duplicates([float(e) for e in v])
        if dups:
            raise ValueError(f"{', '.join(f'{e:g}' for e in dups)} listed more than once")
        out = sorted(set(float(e) for e in v))
        return out if out[0] == 0.0 else [0.0, *out]

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, v: list[str]) -> list[str]:
        dups = duplicates(v)
        if dups:
            raise ValueError(f"{', '.join(map(repr, dups))} listed more than once")
        return v

    @model_validator(mode="after")
    def _figure_eps(self) -> ThreatConfig:
        fe = self.figure_eps
        if fe is not None and not (math.isfinite(fe) and fe > 0 and fe in self.eps):
            swept = ", ".join(f"{e:g}" for e in self.eps if e > 0) or "none"
            raise located(("figure_eps",), f"expected one of the swept eps over 0 ({swept}), "
                      f"got {fe:g}")
        return self

    def chosen_eps(self) -> float:
        """The eps of confusion matrices, feature changes and exports: ``figure_eps`` (one of
        the swept eps over 0), else the swept eps over 0 nearest 0.1 (0 when none is); the
        report picks the same one (``metrics.json``'s ``figure_eps``)."""
        target = 0.1 if self.figure_eps is None else self.figure_eps
        return min(self.eps[1:] or self.eps, key=lambda e: abs(e - target))


class TrackingConfig(Strict):
    """``[tracking]``: optional experiment trackers."""

    mlflow: bool = False
    mlflow_uri: str | None = None


class ExperimentConfig(Strict):
    """The whole study."""

    experiment: ExperimentMeta = Field(default_factory=ExperimentMeta)
    data: DataConfig = Field(default_factory=DataConfig)
    detectors: list[DetectorConfig] = Field(
        default_factory=lambda: [DetectorConfig(name="mlp")], min_length=1)
    attacks: list[AttackConfig] = Field(
        default_factory=lambda: [AttackConfig(attack="fgsm"), AttackConfig(attack="pgd")],
        min_length=1)
    threat: ThreatConfig = Field(default_factory=ThreatConfig)
    defenses: list[DefenseConfig] = Field(default_factory=list)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    verifiers: VerifierList = Field(default_factory=list)
    #: how the combinations are executed (:mod:`advsec.experiments.run_config`); not part of
    #: what a run records (``exclude``): it never changes a number
    run: RunConfig = Field(default_factory=RunConfig, exclude=True)
    #: the file it was read from and its text (:meth:`where`); not part of what is recorded
    _source: str | None = PrivateAttr(default=None)
    _text: str = PrivateAttr(default="")

    def where(self, *loc: str | int) -> str:
        """``"FILE, line N: data.options.rows"`` for the key at ``loc`` of the file this
        configuration was parsed from (the line of the nearest enclosing key or table);
        empty when it was not parsed from text."""
        if self._source is None:
            return ""
        line = line_of(self._text, loc)
        return f"{self._source}{f', line {line}' if line else ''}: {dotted(loc)}"

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> ExperimentConfig:
        names = [d.name for d in self.detectors]
        if len({n.casefold() for n in names}) != len(names):
            raise ValueError(f"detector names must be unique, got {names}")
        labels = [a.label for a in self.attacks]
        if len(set(labels)) != len(labels):
            raise ValueError(f"attack names must be unique, got {labels} (set 'name')")
        for i, a in enumerate(self.attacks):  # after the names: a copied entry says so first
            for key in _ONE_STEP_KEYS.get(a.attack, frozenset()) & set(a.model_extra or {}):
                raise located(("attacks", str(i), key), f"{a.attack} is one step of size eps: "
                          f"{key} does not apply (use bim or pgd for an iterative attack)")
        self._check_defenses()
        if not any(d.kind == "mlp" for d in self.detectors):
            raise ValueError("at least one detector must be an advsec MLP (kind = 'mlp')")
        for i, d in enumerate(self.detectors):
            unused = d.unused_keys()
            if unused and as_written(info):  # a dumped copy sets every key
                uses = d.used_keys()
                raise located(("detectors", str(i), unused[0]), f"not used by a {d.kind!r} "
                          f"detector (its keys: {', '.join(uses)})")
        for i, f in enumerate(self.defenses):
            unused = f.unused_keys()
            if unused and as_written(info):
                raise located(("defenses", str(i), unused[0]), f"not used by the {f.method!r} "
                              f"defence (its keys: {', '.join(f.used_keys())})")
        mlps = [d.name for d in self.detectors if d.kind == "mlp"]
        for i, d in enumerate(self.detectors):
            if d.surrogate is not None and d.surrogate not in names:
                raise ValueError(f"detector {d.name!r}: surrogate {d.surrogate!r} is not a "
                                 "detector of this file")
            if d.surrogate is not None and d.surrogate not in mlps:
                raise located(("detectors", str(i), "surrogate"),
                          f"{d.surrogate!r} is not an MLP detector (the surrogate is attacked "
                          f"white-box; MLPs here: {', '.join(mlps)})")
        linf = [a.label for a in self.attacks if a.options().get("norm", "linf") == "linf"]
        if linf and self.threat.eps[-1] > 1:
            raise located(("threat", "eps"),
                      f"{self.threat.eps[-1]:g} is over 1, but an L-inf eps is a fraction of "
                      f"each feature's range (0.05 = 5 %); attacks {', '.join(linf)} are L-inf")
        return self

    def _check_defenses(self) -> None:
        """Defence names unique (each names a combination and its models), ``none`` reserved
        for the undefended combination, and no two models of a run sharing a file name."""
        defenses = [f.label for f in self.defenses]
        for i, f in enumerate(defenses):
            if f.casefold() == "none":
                raise located(("defenses", str(i), "name"), "'none' names the undefended "
                          "combination; set another name")
            if f.casefold() in (g.casefold() for g in defenses[:i]):
                raise located(("defenses", str(i), "name"), f"defence names must be unique, got "
                          f"{defenses} (set 'name')")
        files: dict[str, str] = {}
        for d in (d.name for d in self.detectors if d.kind == "mlp"):
            for hardened in (None, *defenses):
                model = f"{d}-s" if hardened is None else f"{d}-{hardened}-s"
                what = f"detector {d!r}" + ("" if hardened is None else
                                            f" hardened by {hardened!r}")
                for seed in self.experiment.seeds:
                    key = f"{model}{seed}".casefold()
                    if key in files and files[key] != what:
                        raise ValueError(f"{what} and {files[key]} would both save the model "
                                         f"models/{model}{seed}; rename one")
                    files[key] = what


def parse_config(text: str, *, source: str = "<config>") -> ExperimentConfig:
    """Parse and validate TOML ``text``; errors are one-line ConfigErrors naming the line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    _check_sections(data, text, source)
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        if err["type"] == "advsec_at":
            loc = (*loc, *(int(p) if str(p).isdigit() else p
                           for p in (err.get("ctx") or {}).get("at", [])))
        where = dotted(loc)
        line = line_of(text, loc)
        at = f", line {line}" if line else ""
        if err["type"] == "advsec_at":
            msg = f"{where}: {(err.get('ctx') or {}).get('msg')}"
        elif err["type"] in ("unknown_option", "bad_option"):
            ctx = err.get("ctx") or {}
            key_loc = (*loc, str(ctx.get("key")))
            where, line = dotted(key_loc), line_of(text, key_loc)
            at = f", line {line}" if line else ""
            msg = f"{where}: unknown key" if err["type"] == "unknown_option" else (
                f"{where}: {ctx.get('msg')}")
            if err["type"] == "unknown_option":
                msg += f" (allowed: {', '.join(ctx.get('allowed') or [])})"
        elif err["type"] == "extra_forbidden":
            msg = f"{where}: unknown key"
            allowed = _allowed_keys(loc[:-1])
            if allowed:
                msg += f" (allowed: {', '.join(allowed)})"
        else:
            text_msg = str(err["msg"]).removeprefix("Value error, ")
            msg = f"{where}: {text_msg}" if where else text_msg
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        text_out = f"{source}{at}: {msg}{more}"
        raise ConfigError(text_out.replace("\r", "\\r").replace("\n", "\\n")) from None
    cfg._source, cfg._text = source, text
    return cfg


#: the sections every experiment file must have, and what each one says
REQUIRED_SECTIONS = {"data": ("[data]", "the dataset"),
                     "detectors": ("[[detectors]]", "the models to attack"),
                     "attacks": ("[[attacks]]", "the attacks to run")}


def _check_sections(data: dict[str, Any], text: str, source: str) -> None:
    """A one-line ConfigError for an empty file, a missing section or ``[data]`` without
    ``dataset`` (nothing falls back to a default study)."""
    need = " and ".join(", ".join(h for h, _ in REQUIRED_SECTIONS.values()).rsplit(", ", 1))
    if not data:
        raise ConfigError(f"{source}: empty experiment file (it needs {need}; see examples/)")
    missing = [k for k in REQUIRED_SECTIONS if k not in data]
    if missing:
        what = "; ".join(f"{REQUIRED_SECTIONS[k][0]} ({REQUIRED_SECTIONS[k][1]})"
                         for k in missing)
        raise ConfigError(f"{source}: missing {what}; an experiment file needs {need}")
    d = data["data"]
    if isinstance(d, dict) and "dataset" not in d:
        line = line_of(text, ("data",))
        raise ConfigError(f"{source}{f', line {line}' if line else ''}: data.dataset: missing "
                          "(a registered dataset such as \"synthetic\" or \"nsl-kdd\", or "
                          "\"csv\" / \"parquet\" with path and label_column)")


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment TOML file; relative data paths resolve against it."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder, expected an experiment TOML file")
    if not p.is_file():
        raise ConfigError(f"{p}: experiment file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a UTF-8 text file") from None
    cfg = parse_config(text, source=str(p))
    base = p.resolve().parent
    d = cfg.data
    for key in ("root", "path", "test_path", "schema_file"):
        value = getattr(d, key)
        if value and not Path(value).is_absolute() and not value.startswith("$"):
            candidate = base / value
            setattr(d, key, str(candidate))
    schema = d.schema_file
    if schema and not schema.startswith("$") and not Path(schema).is_file():
        line = line_of(text, ("data", "schema_file"))
        raise ConfigError(f"{p}{f', line {line}' if line else ''}: data.schema_file: {schema}: "
                          "file not found (expected a TOML or YAML schema file)")
    for i, det in enumerate(cfg.detectors):
        if det.path and not Path(det.path).is_absolute():
            det.path = str(base / det.path)
        if det.path and not Path(det.path).is_file():
            raise ConfigError(f"{p}: detectors[{i}].path: {det.path}: file not found (the "
                              f"ONNX file of detector {det.name!r})")
    return cfg


# ---------------------------------------------------------------------- error locations
_MODELS: dict[str, type[BaseModel]] = {
    "experiment": ExperimentMeta, "data": DataConfig, "detectors": DetectorConfig,
    "attacks": AttackConfig, "threat": ThreatConfig, "defenses": DefenseConfig,
    "tracking": TrackingConfig, "verifiers": VerifierConfig, "run": RunConfig,
}


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    if not loc:
        return sorted(ExperimentConfig.model_fields)
    model = _MODELS.get(str(loc[0]))
    return sorted(model.model_fields) if model and len([p for p in loc if isinstance(
        p, str)]) == 1 else []
