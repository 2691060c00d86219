"""The parameter schema: one frozen dataclass per section, checked where it is built.

A field is a parameter: its type hint is the accepted type, its default equals
``params/quick.yaml`` (tests/test_params_validation.py checks both ways), and ``param(...)`` adds
the allowed values or range, and ``trains=True`` where a trained model depends on the key (the
resume checks read these marks). Adding a parameter is one line here (plus its value in
``params/quick.yaml``). A section checked by :func:`check_section` is an object of its (frozen)
dataclass, passed on as it is; :func:`validate_params` checks a whole profile and returns plain
dicts, which is what papermill hands the notebooks.
"""
from __future__ import annotations

import copy

# =========================================================================== the schema
# One dataclass per section. A field is a parameter: its type hint is the accepted type, its
# default equals params/quick.yaml (tests/test_params_validation.py checks both ways), and
# ``param(...)`` adds the allowed values or range, and ``trains=True`` where a trained model
# depends on the key (the resume checks read these marks). Adding a parameter is one line here
# (plus its value in params/quick.yaml). A section checked by :func:`check_section` is an object
# of its (frozen) dataclass, passed on as it is; :func:`validate_params` checks a whole profile
# and returns plain dicts, which is what papermill hands the notebooks.
import dataclasses as _dc
import difflib as _difflib
import functools as _functools
import types as _types
import typing as _typing
from dataclasses import dataclass as _dataclass
from typing import Any, Mapping
from typing import Callable as _Callable


class ParameterError(ValueError):
    """A parameter file or override is malformed."""


#: The study's notebooks by number (``umcam_lib.pipeline.NOTEBOOKS`` names their files).
NOTEBOOK_NUMBERS: tuple[str, ...] = ("01", "02", "03", "04", "05", "06", "07", "08")


def param(default: Any, *, choices: tuple[Any, ...] | None = None, ge: float | None = None,
          gt: float | None = None, le: float | None = None, lt: float | None = None,
          length: int | None = None, nonempty: bool = False,
          check: _Callable[[Any], str | None] | None = None, trains: bool = False) -> Any:
    """A schema field: a default and the allowed values.

    Parameters
    ----------
    default : any
        The value of ``params/quick.yaml`` (copied for every use).
    choices : tuple, optional
        The only allowed values.
    ge, gt, le, lt : float, optional
        Bounds of a number, or of every number of a list of numbers.
    length : int, optional
        Exact length of a list.
    nonempty : bool
        A list must have at least one element.
    check : callable, optional
        ``check(value) -> message or None`` for anything else (the message says what is wrong).
    trains : bool
        The key changes what a training run computes: a trained model depends on it, so its
        value is part of the resume check (:func:`trained_keys`). Keys that only change how a
        trained model is evaluated or reported (e.g. ``seg.tta``) are not marked.
    """
    meta = dict(choices=choices, ge=ge, gt=gt, le=le, lt=lt, length=length, nonempty=nonempty, check=check,
                trains=trains)
    return _dc.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)


def _check_split_ratio(v: Any) -> str | None:
    return None if sum(v) > 0 else "the three numbers must not all be 0"


def _check_threshold_grid(v: Any) -> str | None:
    start, stop, step = v
    if not (0 <= start <= stop <= 1):
        return f"need 0 <= start <= stop <= 1, got start {start}, stop {stop}"
    return None if step > 0 else f"step must be > 0, got {step}"


#: ``classifier.augment: true`` means these settings; a mapping overrides some of them
#: (see :mod:`umcam_lib.train.augment`, which applies them).
AUGMENT_DEFAULTS: dict[str, Any] = {
    "gamma": [0.7, 1.5],
    "rotation": 30.0,
    "rotation_p": 0.5,
    "flip": True,
    "crop_padding": 0.125,
    "scale": None,
}


def _check_augment(v: Any) -> str | None:
    if isinstance(v, Mapping):
        unknown = sorted(set(v) - set(AUGMENT_DEFAULTS))
        if unknown:
            return f"unknown key(s) {unknown}; allowed: {', '.join(sorted(AUGMENT_DEFAULTS))}"
    return None


class Section(Mapping):
    """Base of the parameter sections: a validated, typed, frozen record.

    A section object is made by :func:`check_section` (or by calling its class with keyword
    arguments); either way every value is checked against the schema when it is made, values
    of ``float`` fields are stored as floats (``lr: 1`` in YAML reads as ``1.0``), and the
    object cannot be changed afterwards (:meth:`replace` makes a checked copy). Library code
    reads attributes (``seg.lr``); the read-only mapping interface (``seg["lr"]``,
    ``{**seg}``, ``dict(seg)``) is there for notebooks and callers that hold sections as
    dicts, and :meth:`to_dict` gives a plain, JSON-ready copy.
    """

    def __post_init__(self) -> None:
        cls = type(self)
        name = section_name(cls)
        problems: list[str] = []
        checked = _validate_section({f.name: getattr(self, f.name) for f in _dc.fields(cls)}, cls,
                                    f"{name}.", problems)
        if not problems:
            problems.extend(_cross_problems(name, checked))
        if problems:
            raise ParameterError(f"{name} section: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
        for key, tp in _hints(cls).items():
            object.__setattr__(self, key, _coerce(checked[key], tp))

    # read-only mapping interface -------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key not in _hints(type(self)):
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(_hints(type(self)))

    def __len__(self) -> int:
        return len(_hints(type(self)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in self)})"

    def to_dict(self) -> dict[str, Any]:
        """A plain, deep-copied dict of the section (JSON- and YAML-ready)."""
        return {k: copy.deepcopy(getattr(self, k)) for k in self}

    def replace(self, **changes: Any) -> "Section":
        """A checked copy with some values changed (unknown keys and bad values raise)."""
        return check_section(section_name(type(self)), {**self.to_dict(), **changes})

    def trained(self) -> dict[str, Any]:
        """The values of the keys a trained model depends on (:func:`trained_keys`)."""
        return {k: copy.deepcopy(getattr(self, k)) for k in trained_keys(section_name(type(self)))}


#: A section's dataclass: frozen (no attribute may be reassigned), compared as a mapping.
_section = _dc.dataclass(frozen=True, eq=False)


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` (already checked against ``tp``) with integers of ``float`` fields as floats."""
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    origin = _typing.get_origin(tp)
    if origin is list:
        (arg,) = _typing.get_args(tp)
        return [_coerce(v, arg) for v in value]
    if origin in (_typing.Union, _types.UnionType) and float in _typing.get_args(tp) \
            and int not in _typing.get_args(tp):
        return _coerce(value, float) if value is not None else value
    return value


@_section
class DataParams(Section):
    """``data``: the cohort, its preparation and its split (see ``umcam_lib.data.prepare``)."""

    source: str = param("synthetic", choices=("synthetic", "nifti"))
    root: str | None = param(None)
    image_glob: str = param("**/*_T2w.nii*", check=lambda v: None if v.strip() else "must not be empty")
    mask_suffix: str = param("_desc-brain_mask", check=lambda v: None if v else "must not be empty")
    n_volumes: int = param(46, ge=3)
    phantom_matrix: int = param(256, ge=32)
    spacing_mm: float = param(2.0, gt=0)
    image_size: int = param(128, ge=32)
    split_ratio: list[float] = param([28, 6, 12], ge=0, length=3, check=_check_split_ratio)
    test_subjects: list[str] = param([])
    val_subjects: list[str] = param([])


@_section
class ClassifierParams(Section):
    """``classifier``: the VGG-16 slice classifier of notebook 02."""

    width: float = param(0.125, gt=0, trains=True)
    dilated: bool = param(False, trains=True)
    pretrained: bool | str = param(False, trains=True)
    batch_norm: bool = param(True, trains=True)
    epochs: int = param(6, ge=1)
    batch_size: int = param(32, ge=1, trains=True)
    optimizer: str = param("adamw", choices=("adamw", "sgd"), trains=True)
    lr: float = param(0.001, gt=0, trains=True)
    momentum: float = param(0.9, ge=0, lt=1, trains=True)
    weight_decay: float = param(0.0005, ge=0, trains=True)
    augment: bool | dict = param(True, check=_check_augment, trains=True)
    balance: bool = param(False, trains=True)
    num_workers: int = param(0, ge=0, trains=True)
    pooling: str = param("lse", choices=("avg", "max", "lse"), trains=True)
    lse_r: float = param(5.0, gt=0, trains=True)
    input_norm: str = param("zero_background", choices=("imagenet", "zero_background"), trains=True)
    padding: str = param("reflect", choices=("zeros", "reflect", "replicate"), trains=True)
    equivariance: float = param(1.0, ge=0, trains=True)
    label_unit: str = param("slice", choices=("slice", "crop"), trains=True)
    crop_mm: float = param(128.0, gt=0, trains=True)
    crops_per_slice: int = param(8, ge=1, trains=True)
    crop_brain_fraction: float = param(0.5, gt=0, le=1, trains=True)
    cpu_bf16: bool = param(False, trains=True)  # bfloat16 autocast of training steps on a CPU with native bf16 (runtime.autocast)


@_section
class CamParams(Section):
    """``cam``: class activation maps (notebooks 03, 04)."""

    layers: list[str] = param(["block1", "block2", "block3", "block4", "block5"], nonempty=True)
    threshold_grid: list[float] = param([0.05, 0.95, 0.05], length=3, check=_check_threshold_grid)
    batch_size: int = param(64, ge=1)
    scorecam_batch_size: int = param(128, ge=1)
    scorecam_max_channels: int | None = param(16, ge=1)
    target: str = param("logit", choices=("logit", "margin"))
    # Readings of Eq. 3-4 (umcam_lib.cam.fusion.fuse_reading); the defaults are the paper's reading
    umcam_norm: str = param("max", choices=("max", "minmax", "batch_max", "volume_max", "percentile"))
    umcam_percentile: float = param(99.0, gt=0, le=100)
    entropy_base: str = param("e", choices=("e", "2"))
    entropy_temperature: float = param(1.0, gt=0)
    umcam_final_norm: str = param("minmax", choices=("minmax", "none"))
    layercam_fusion: str = param("max", choices=("max", "sum"))
    layercam_gamma: float = param(2.0, ge=0)
    readings: bool = param(True)  # notebook 04: score every reading of Eq. 3-4 and LayerCAM over seeds


@_section
class GseParams(Section):
    """``gse``: seeds and geodesic seed expansion (notebook 05)."""

    threshold_rule: str = param("grid", choices=("grid", "variance"))
    beta: float = param(4.0, gt=0)
    lamb: float = param(1.0, ge=0, le=1)
    iterations: int = param(2, ge=1)
    margin_mm: float = param(5.0, ge=0)
    spl_rule: str = param("ratio", choices=("ratio", "authors"))
    sweep_margin_mm: list[float] = param([5.0, 10.0], ge=0)
    sweep_lamb: list[float] = param([1.0, 0.5], ge=0, le=1)
    sweep_rules: list[str] = param(["ratio", "authors"],
                                   check=lambda v: None if set(v) <= {"ratio", "authors"}
                                   else f"allowed values: ratio, authors; got {v}")
    sweep_beta: list[float] = param([1.0, 4.0], gt=0)


@_section
class SegParams(Section):
    """``seg``: the UNets of notebooks 06 and 07 and the Eq. 8 sweep."""

    width: int = param(16, ge=1, trains=True)
    optimizer: str = param("adamw", choices=("adamw", "sgd"), trains=True)
    epochs: int = param(30, ge=1, trains=True)
    patience: int | None = param(5, ge=1, trains=True)
    plateau_decay: float | None = param(None, gt=0, lt=1, trains=True)
    lr_schedule: str = param("constant", choices=("constant", "cosine"), trains=True)
    ema: float | None = param(None, gt=0, lt=1, trains=True)  # decay per step of an exponential moving average of the weights
    min_epochs: int = param(6, ge=0, trains=True)
    epoch_slices: int | None = param(192, ge=1, trains=True)
    positive_fraction: float | None = param(0.5, gt=0, lt=1, trains=True)  # 0 or 1 would leave one class out of every epoch
    val_every: int = param(1, ge=1, trains=True)
    eval_batch_size: int = param(8, ge=1)  # slices per prediction pass; results equal up to rounding across sizes
    batch_size: int = param(12, ge=1, trains=True)
    lr: float = param(0.001, gt=0, trains=True)
    momentum: float = param(0.9, ge=0, lt=1, trains=True)
    weight_decay: float = param(0.0005, ge=0, trains=True)
    channels_last: bool = param(False)  # UNet memory format on the CPU (contiguous is faster on 2 cores: issue 19)
    cpu_bf16: bool = param(False, trains=True)  # bfloat16 autocast of training steps on a CPU with native bf16 (runtime.autocast)
    augment: bool = param(False, trains=True)
    augment_scale: list[float] = param([1.0, 1.0], gt=0, nonempty=True,
                                       check=lambda v: None if len(v) == 2 and v[0] <= v[1]
                                       else f"expected [low, high] with low <= high, got {v}", trains=True)
    augment_gamma: list[float] = param([0.7, 1.5], gt=0, nonempty=True,
                                       check=lambda v: None if len(v) == 2 and v[0] <= v[1]
                                       else f"expected [low, high] with low <= high, got {v}", trains=True)
    augment_resolution: list[float] = param([1.0, 1.0], ge=1, nonempty=True,
                                            check=lambda v: None if len(v) == 2 and v[0] <= v[1]
                                            else f"expected [low, high] with 1 <= low <= high, got {v}", trains=True)
    augment_bias: float = param(0.0, ge=0, trains=True)   # largest log-amplitude of a smooth bias field
    augment_noise: float = param(0.0, ge=0, trains=True)  # largest SD of added Gaussian noise (image units)
    patch: int | None = param(None, ge=32,  # instance norm needs a 2 x 2 bottleneck
                              check=lambda v: None if v is None or v % 16 == 0
                              else f"must be a multiple of 16 (four poolings), got {v}", trains=True)
    loss_main: str = param("umcam", choices=("umcam", "spl"), trains=True)
    lambda_spl: float = param(0.1, ge=0)
    soft_labels: bool = param(True, trains=True)
    postprocess: str = param("none", choices=("none", "lcc"))
    seeds: int = param(3, ge=1)  # UNet seeds of every row (seed, seed+1, ...): Tables 1-2 report their spread
    tta: bool = param(True)  # average each prediction over the 8 right-angle rotations / flips of the slice
    sweep_main: list[str] = param(["umcam", "spl"], nonempty=True,
                                  check=lambda v: None if set(v) <= {"umcam", "spl"}
                                  else f"allowed values: umcam, spl; got {v}")
    sweep_lambda: list[float] = param([0.1, 1.0, 10.0], ge=0, nonempty=True)
    sweep_epochs: int = param(30, ge=1)


@_section
class BaselinesParams(Section):
    """``baselines``: DRS and AMR (notebook 07)."""

    drs_delta: float = param(0.55, gt=0, le=1)
    drs_learnable: bool = param(False)
    drs_extra_layers: int = param(3, ge=0)
    drs_readout: str = param("auto", choices=("auto", "suppressed", "unsuppressed"))
    amr_consistency: float = param(1.0, ge=0)
    amr_reduction: int = param(4, ge=1)
    epochs: int = param(2, ge=1)


@_section
class ExecutorParams(Section):
    """``executor``: where the independent trainings of notebooks 06-07 run (``umcam_lib.train.executors``).

    Results do not depend on it for a given number of threads per task.
    """

    kind: str = param("serial", choices=("serial", "processes", "dask"))
    jobs: int = param(1, ge=1)                       # worker processes (processes) or workers (dask)
    threads_per_task: int | None = param(None, ge=1)  # None: threads (serial), threads // jobs (else)
    scheduler: str | None = param(None)              # dask: address of a running scheduler
    cluster: dict | None = param(None)               # dask: a dask-jobqueue cluster spec ({kind: slurm, ...})


@_dataclass
class StudyParams:
    """Every parameter of a profile: the top-level keys and one section per stage."""

    profile: str = param("quick", check=lambda v: None if v.strip() else "must not be empty")
    seed: int = param(0, ge=0)
    seeds: int = param(3, ge=1)
    cross_seeds: bool = param(True)  # UNet seed k trains on the labels of classifier seed k (else all on the first's)
    device: str = param("auto", choices=("auto", "cpu", "cuda"))
    amp: bool = param(True)
    threads: int | None = param(2, ge=1)
    companions: list[str] = param([], check=lambda v: None if all(str(x).strip() for x in v)
                                  else "profile names must not be empty")
    last_notebook: str | None = param(None, check=lambda v: None if v is None or str(v).zfill(2) in NOTEBOOK_NUMBERS
                                      else f"must be one of {', '.join(NOTEBOOK_NUMBERS)}")
    data: DataParams = _dc.field(default_factory=DataParams)
    classifier: ClassifierParams = _dc.field(default_factory=ClassifierParams)
    cam: CamParams = _dc.field(default_factory=CamParams)
    gse: GseParams = _dc.field(default_factory=GseParams)
    seg: SegParams = _dc.field(default_factory=SegParams)
    baselines: BaselinesParams = _dc.field(default_factory=BaselinesParams)
    executor: ExecutorParams = _dc.field(default_factory=ExecutorParams)


@_functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return _typing.get_type_hints(cls)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and _dc.is_dataclass(tp)


def schema_defaults(cls: type = StudyParams) -> dict[str, Any]:
    """The schema's defaults as a nested dict (equal to ``params/quick.yaml``)."""
    return _dc.asdict(cls())


def schema_keys(cls: type = StudyParams, prefix: str = "") -> list[str]:
    """Every dotted key the schema knows (sections expanded)."""
    out = []
    for name, tp in _hints(cls).items():
        out.extend(schema_keys(tp, f"{prefix}{name}.") if _is_section(tp) else [f"{prefix}{name}"])
    return out


def _type_name(tp: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             type(None): "null", dict: "a mapping"}
    if tp in names:
        return names[tp]
    origin = _typing.get_origin(tp)
    if origin in (_typing.Union, _types.UnionType):
        return " or ".join(_type_name(a) for a in _typing.get_args(tp))
    if origin is list:
        (arg,) = _typing.get_args(tp)
        return f"a list of {_type_name(arg).replace('an integer', 'integers').replace('a number', 'numbers').replace('a string', 'strings')}"
    if _is_section(tp):
        return f"a section (mapping) with keys {', '.join(_hints(tp))}"
    return getattr(tp, "__name__", str(tp))


def _matches(value: Any, tp: Any) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is type(None):
        return value is None
    if tp is dict:
        return isinstance(value, Mapping)
    origin = _typing.get_origin(tp)
    if origin in (_typing.Union, _types.UnionType):
        return any(_matches(value, a) for a in _typing.get_args(tp))
    if origin is list:
        (arg,) = _typing.get_args(tp)
        return isinstance(value, (list, tuple)) and all(_matches(v, arg) for v in value)
    raise TypeError(f"schema type {tp!r} is not supported")


def _describe(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping", type(None): "null"}.get(type(value), type(value).__name__)
    return f"{value!r} ({kind})"


def _bounds_problem(value: Any, meta: Mapping[str, Any]) -> str | None:
    nums = value if isinstance(value, (list, tuple)) else [value]
    for v in nums:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        for op, bound, text in (("ge", meta["ge"], ">="), ("gt", meta["gt"], ">"),
                                ("le", meta["le"], "<="), ("lt", meta["lt"], "<")):
            if bound is None:
                continue
            ok = {"ge": v >= bound, "gt": v > bound, "le": v <= bound, "lt": v < bound}[op]
            if not ok:
                what = "every element must be" if nums is value else "must be"
                return f"{what} {text} {bound:g}, got {value!r}"
    return None


def _unknown_message(where: str, key: str, known: list[str]) -> str:
    near = _difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return (f"{where}{key}: unknown parameter{hint} (known{' in ' + where.rstrip('.') if where else ''}: "
            f"{', '.join(known)}; a new parameter is declared in umcam_lib/config.py)")


def unknown_keys(params: Mapping[str, Any], cls: type = StudyParams, prefix: str = "") -> list[str]:
    """Messages for every key of ``params`` (at any depth) that the schema does not know."""
    hints = _hints(cls)
    out = []
    for key, value in params.items():
        if key not in hints:
            if not (prefix == "" and key == "base"):
                out.append(_unknown_message(prefix, str(key), list(hints)))
        elif _is_section(hints[key]) and isinstance(value, Mapping):
            out.extend(unknown_keys(value, hints[key], f"{prefix}{key}."))
    return out


def _validate_section(values: Mapping[str, Any], cls: type, prefix: str, problems: list[str]) -> dict[str, Any]:
    hints = _hints(cls)
    fields = {f.name: f for f in _dc.fields(cls)}
    out: dict[str, Any] = {}
    problems.extend(unknown_keys({k: v for k, v in values.items() if k not in hints}, cls, prefix))
    for name, tp in hints.items():
        key = f"{prefix}{name}"
        value = values[name] if name in values else _field_default(fields[name])
        if _is_section(tp):
            if _dc.is_dataclass(value) and not isinstance(value, type):
                value = _dc.asdict(value)
            if not isinstance(value, Mapping):
                problems.append(f"{key}: expected {_type_name(tp)}, got {_describe(value)}")
                continue
            out[name] = _validate_section(value, tp, key + ".", problems)
            continue
        meta = fields[name].metadata
        if not _matches(value, tp):
            extra = ""
            if isinstance(value, str) and _typing.get_origin(tp) is list:
                extra = f" (a single entry is written as a list: {key}=[{value}])"
            problems.append(f"{key}: expected {_type_name(tp)}, got {_describe(value)}{extra}")
            continue
        if isinstance(value, tuple):
            value = list(value)
        if meta.get("choices") and value not in meta["choices"]:
            problems.append(f"{key}: must be one of {', '.join(map(repr, meta['choices']))}, got {value!r}")
            continue
        if isinstance(value, list):
            if meta.get("length") is not None and len(value) != meta["length"]:
                problems.append(f"{key}: expected {meta['length']} elements, got {len(value)}: {value!r}")
                continue
            if meta.get("nonempty") and not value:
                problems.append(f"{key}: must list at least one value")
                continue
        bad = _bounds_problem(value, meta)
        if bad:
            problems.append(f"{key}: {bad}")
            continue
        if meta.get("check") is not None:
            msg = meta["check"](value)
            if msg:
                problems.append(f"{key}: {msg}")
                continue
        out[name] = copy.deepcopy(value)
    return out


def _field_default(f: _dc.Field) -> Any:
    return f.default_factory() if f.default_factory is not _dc.MISSING else f.default  # type: ignore[misc]


def _cross_problems(section: str, values: Mapping[str, Any]) -> list[str]:
    """Conflicts between keys of one (already type-checked) section."""
    if section == "data" and values.get("source") == "nifti" and not values.get("root"):
        return ["data.root: must name a folder of NIfTI stacks when data.source is 'nifti'"]
    if section == "executor" and values.get("kind") != "dask" and (values.get("scheduler") or values.get("cluster")):
        return ["executor.scheduler / executor.cluster: only with executor.kind 'dask'"]
    if section == "seg" and values.get("lr_schedule") == "cosine" and values.get("plateau_decay") is not None:
        return ["seg.lr_schedule: cosine sets the learning rate of every epoch; set seg.plateau_decay to null with it"]
    return []


def validate_params(params: Mapping[str, Any], where: str = "parameters") -> dict[str, Any]:
    """Check every parameter against the schema; return them with missing keys at their defaults.

    Parameters
    ----------
    params : mapping
        Merged parameters (a profile plus overrides).
    where : str
        What to call them in the error (e.g. the file or the command).

    Returns
    -------
    dict
        The parameters, every key of the schema present.

    Raises
    ------
    ParameterError
        Listing every problem: unknown keys at any depth (with the nearest known name), wrong
        types (a string where a list is expected included), values out of range or not among
        the allowed ones, and cross-parameter conflicts. Each line names the dotted key.
    """
    problems: list[str] = []
    if not isinstance(params, Mapping):
        raise ParameterError(f"{where}: expected a mapping, got {_describe(params)}")
    out = _validate_section(params, StudyParams, "", problems)
    if not problems:
        for name in SECTIONS:
            problems.extend(_cross_problems(name, out[name]))
    if problems:
        raise ParameterError(f"{where}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return out


# =========================================================================== one section at a time
#: Section name -> its dataclass (the sections of :class:`StudyParams`).
SECTIONS: dict[str, type] = {name: tp for name, tp in _hints(StudyParams).items() if _is_section(tp)}


def _field(key: str) -> _dc.Field:
    """The schema field of a dotted key such as ``"seg.optimizer"``."""
    cls: type = StudyParams
    *path, name = key.split(".")
    for part in path:
        tp = _hints(cls).get(part)
        if not _is_section(tp):
            raise KeyError(f"{key!r} is not a parameter of the schema (umcam_lib/config.py)")
        cls = tp
    fields = {f.name: f for f in _dc.fields(cls)}
    if name not in fields or _is_section(_hints(cls)[name]):
        raise KeyError(f"{key!r} is not a parameter of the schema (umcam_lib/config.py)")
    return fields[name]


def choices(key: str) -> tuple[Any, ...]:
    """The allowed values of a dotted key (``choices("seg.optimizer") == ("adamw", "sgd")``)."""
    allowed = _field(key).metadata.get("choices")
    if not allowed:
        raise KeyError(f"{key!r} has no list of allowed values in the schema")
    return tuple(allowed)


def default(key: str) -> Any:
    """The schema's default of a dotted key (the value of ``params/quick.yaml``)."""
    return _field_default(_field(key))


def section_name(cls: type) -> str:
    """The name of a section's dataclass in :class:`StudyParams` (``SegParams -> "seg"``)."""
    for name, tp in SECTIONS.items():
        if tp is cls:
            return name
    raise KeyError(f"{cls.__name__} is not a parameter section of the schema")


@_functools.lru_cache(maxsize=None)
def trained_keys(name: str) -> tuple[str, ...]:
    """Keys of section ``name`` that a trained model depends on, in schema order.

    They are the fields declared with ``param(..., trains=True)``: a training run records their
    values, and a resumed run whose values differ starts again (:func:`umcam_lib.train.common.resume`).
    ``trained_keys("seg")`` holds the UNet's recipe but not ``tta``, ``postprocess`` or the
    sweep's keys, which change how models are evaluated or which are trained, not what one
    training computes.
    """
    if name not in SECTIONS:
        raise KeyError(f"unknown parameter section {name!r} (known: {', '.join(SECTIONS)})")
    return tuple(f.name for f in _dc.fields(SECTIONS[name]) if f.metadata.get("trains"))


def check_choice(key: str, value: Any) -> Any:
    """Return ``value`` when the schema allows it for ``key``; else raise :class:`ParameterError`.

    For values that reach a function as an argument rather than inside a section (e.g. the
    reading of Eq. 8 of one sweep point); the message is the one :func:`validate_params` gives.
    """
    allowed = choices(key)
    if value not in allowed:
        raise ParameterError(f"{key}: must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def check_section(name: str, values: Mapping[str, Any] | Section) -> Section:
    """One parameter section checked against its dataclass, with missing keys at their defaults.

    This is the only validator of a section: a library function that takes a section
    (``classifier``, ``seg``, ...) passes what it was given through here once, at its entry, and
    then passes the returned object on; a section object that is already checked comes back
    unchanged, so nothing is checked twice.

    Parameters
    ----------
    name : str
        Section name: one of :data:`SECTIONS` (``data``, ``classifier``, ``cam``, ``gse``,
        ``seg``, ``baselines``).
    values : mapping or the section's object
        The section as a notebook or caller holds it; keys it lacks take the schema's default.

    Returns
    -------
    Section
        The typed, frozen section (:class:`SegParams` for ``seg``, ...): attributes in the
        schema's order, also readable as a mapping.

    Raises
    ------
    ParameterError
        Listing every problem, each naming the full key (``seg.optimizer``) and, for a key with
        a fixed set of values, the allowed ones; unknown keys name the nearest known one.
    """
    if name not in SECTIONS:
        raise ParameterError(f"unknown parameter section {name!r} (known: {', '.join(SECTIONS)})")
    cls = SECTIONS[name]
    if isinstance(values, cls):
        return values
    if isinstance(values, Section):
        raise ParameterError(f"{name}: expected the {name} section, got the {section_name(type(values))} section")
    if _dc.is_dataclass(values) and not isinstance(values, type):
        values = _dc.asdict(values)
    if not isinstance(values, Mapping):
        raise ParameterError(f"{name}: expected {_type_name(cls)}, got {_describe(values)}")
    unknown = unknown_keys(values, cls, f"{name}.")
    if unknown:
        raise ParameterError(f"{name} section: {len(unknown)} problem(s):\n  " + "\n  ".join(unknown))
    return cls(**values)
