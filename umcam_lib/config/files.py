"""Parameter files: loading, inheritance, ``--set`` overrides and fingerprints.

A parameter file is YAML. It may name another profile under ``base:`` whose values it
overrides (deep merge). Every profile ultimately rests on ``params/quick.yaml``, whose values
are also the defaults of the notebooks' ``parameters`` cells.
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
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from ..paths import PARAMS_DIR, resolve
from .schema import ParameterError, Section
from ..hashing import value_hash


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``override``; nested mappings merge key by key."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ParameterError(f"parameter file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def profile_path(profile: str) -> Path:
    """Path of a named profile (``params/<profile>.yaml``)."""
    return PARAMS_DIR / f"{profile}.yaml"


def load_params(path: str | Path, _seen: tuple[Path, ...] = (),
                check: Callable[[Path, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Load a parameter file, resolving its ``base:`` chain.

    Parameters
    ----------
    path : str or Path
        A YAML file. Relative ``base:`` names refer to profiles in ``params/``.
    check : callable, optional
        ``check(path, data)`` is called with every file of the chain (its own keys, before
        merging), e.g. to refuse unknown keys naming the file that holds them.
    """
    path = resolve(path).resolve()
    if path in _seen:
        raise ParameterError(f"{path}: 'base' chain loops: {' -> '.join(map(str, _seen))}")
    data = _read_yaml(path)
    if check is not None:
        check(path, {k: v for k, v in data.items() if k != "base"})
    base = data.pop("base", None)
    if base:
        base_path = Path(base) if str(base).endswith((".yaml", ".yml")) else profile_path(str(base))
        if not base_path.is_absolute() and not str(base).endswith((".yaml", ".yml")):
            base_path = profile_path(str(base))
        elif not base_path.is_absolute():
            base_path = path.parent / base_path
        data = deep_merge(load_params(base_path, _seen + (path,), check), data)
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"a.b.c=VALUE"`` into its key path and a YAML-parsed value."""
    if "=" not in text:
        raise ParameterError(f"--set expects KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ParameterError(f"--set {text!r}: empty key or key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ParameterError(f"--set {text!r}: value is not valid YAML: {exc}") from exc
    return key.split("."), value


def set_key(params: dict[str, Any], keys: Sequence[str], value: Any, strict: bool = True,
            name: str = "override") -> None:
    """Set ``params[k0][k1]...[kn] = value`` in place: the one walk of a dotted key.

    Parameters
    ----------
    params : dict
        Nested parameters, changed in place.
    keys : sequence of str
        The key's parts (``"seg.lr"`` -> ``["seg", "lr"]``).
    value : object
        Set as given (callers copy it when it may be shared).
    strict : bool
        A key (and each of its sections) must already exist: a typo is an error, not a new
        parameter. Without it, missing sections are created.
    name : str
        How an error names the override (``"--set 'seg.lr=0.1'"``).

    Raises
    ------
    ParameterError
        With ``strict``, a key or section ``params`` does not have, naming the known keys.

    Examples
    --------
    >>> p = {"seg": {"lr": 0.01}}
    >>> set_key(p, ["seg", "lr"], 0.1); p
    {'seg': {'lr': 0.1}}
    >>> set_key(p, ["seg", "lr2"], 1)
    Traceback (most recent call last):
    ...
    umcam_lib.config.schema.ParameterError: override: unknown parameter 'seg.lr2' (known here: lr)
    """
    node: Any = params
    for i, k in enumerate(keys[:-1]):
        if not isinstance(node.get(k), dict):
            if strict:
                raise ParameterError(f"{name}: unknown parameter section {'.'.join(keys[: i + 1])!r}")
            node[k] = {}
        node = node[k]
    if strict and keys[-1] not in node:
        known = ", ".join(sorted(node)) if isinstance(node, dict) else ""
        raise ParameterError(f"{name}: unknown parameter {'.'.join(keys)!r} (known here: {known})")
    node[keys[-1]] = value


def apply_overrides(params: Mapping[str, Any], overrides: list[str], strict: bool = True) -> dict[str, Any]:
    """Apply ``--set`` overrides. With ``strict`` a key must already exist (catches typos)."""
    out = copy.deepcopy(dict(params))
    for text in overrides:
        keys, value = parse_override(text)
        set_key(out, keys, value, strict, name=f"--set {text!r}")
    return out


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted keys: ``{"data": {"n": 1}} -> {"data.n": 1}``."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _json_default(obj: Any) -> Any:
    """JSON form of what ``json`` does not know: a section as its dict, anything else as text."""
    return obj.to_dict() if isinstance(obj, Section) else str(obj)


def fingerprint(obj: Any) -> str:
    """A short stable hash of a JSON-serialisable object (for caching decisions)."""
    return value_hash(obj, default=_json_default)
