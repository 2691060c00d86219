"""The parameters a notebook runs with: a profile plus overrides.

Every notebook's ``parameters`` cell is four short lines::

    profile = "quick"      # params/<profile>.yaml, or the path of any parameter file
    overrides = {}         # dotted keys -> values, e.g. {"classifier.epochs": 2}
    run_dir = None         # None: runs/<profile>
    figures_dir = None     # None: figures/<profile>

and the cell after it calls :func:`load`, which reads the profile, applies the overrides and
validates everything against the schema of :mod:`umcam_lib.config`. The pipeline
(``python -m umcam_lib.pipeline``) injects ``profile`` and ``overrides`` (its ``--set`` options)
through papermill, so a notebook run by hand and one run by the pipeline build their parameters
with the same function; papermill alone can set any key too::

    papermill notebooks/02_classifier_training.ipynb out.ipynb \\
        -p profile tiny -y '{"overrides": {"classifier.epochs": 2}}'

A notebook reads its parameters only as ``params["<top-level key>"]`` with a literal key;
:func:`keys_read` finds those keys in its source, and the pipeline fingerprints a notebook by
them (so a changed ``seg`` key does not rerun notebooks 01-05).
"""
from __future__ import annotations

import ast
import copy
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..paths import resolve
from .files import load_params, parse_override, profile_path, set_key
from .schema import ParameterError, unknown_keys, validate_params

#: Name of the variable that holds a notebook's parameters (what :func:`keys_read` looks for).
PARAMS_NAME = "params"

#: The names a notebook's ``parameters`` cell declares, with their defaults.
CELL_DEFAULTS: dict[str, Any] = {"profile": "quick", "overrides": {}, "run_dir": None, "figures_dir": None}


def parameter_file(profile: str | Path) -> Path:
    """The YAML file of a profile name (``params/<name>.yaml``) or of a path to a ``.yaml`` file."""
    text = str(profile)
    if text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text:
        return resolve(text)
    return profile_path(text)


def parse_set(texts: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` options as overrides: ``{"data.n_volumes": 12}`` (values parsed as YAML).

    Raises
    ------
    ParameterError
        An option without ``=`` or with an empty key part, or a value that is not YAML.
    """
    out: dict[str, Any] = {}
    for text in texts:
        keys, value = parse_override(text)
        out[".".join(keys)] = value
    return out


def set_values(params: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``params`` with each dotted key of ``overrides`` set to its value.

    Every key must already exist (a typo is an error, not a new parameter); a section is
    replaced whole only when its own name is the key (``{"classifier.augment": {...}}``).

    Raises
    ------
    ParameterError
        A key (or one of its sections) that ``params`` does not have, naming the known keys.
    """
    out = copy.deepcopy(dict(params))
    for key, value in overrides.items():
        parts = str(key).split(".")
        if not all(parts):
            raise ParameterError(f"override {key!r}: empty key or key part")
        set_key(out, parts, copy.deepcopy(value), name=f"override {key!r}")
    return out


def _check_file(path: Path, data: dict[str, Any]) -> None:
    """Unknown keys, at any depth, of one parameter file (named in the error)."""
    bad = unknown_keys(data)
    if bad:
        raise ParameterError(f"{path}: {len(bad)} unknown key(s):\n  " + "\n  ".join(bad))


def _subjects_follow_root(params: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    """Explicit subjects of a parameter file belong to that file's ``data.root``.

    When an override points a profile at another folder (``data.root``; the README's own-data
    command on the real profile) and ``data.val_subjects`` / ``data.test_subjects`` were not
    overridden too, the file's lists (``sub-02`` of the CC0 stacks) are dropped and the split
    follows ``data.split_ratio``; a line says so.
    """
    data = params.get("data")
    if "data.root" not in keys or not isinstance(data, dict):
        return params
    for name in ("val_subjects", "test_subjects"):
        if f"data.{name}" not in keys and data.get(name):
            print(f"note: data.root was set on the command line, so the parameter file's data.{name} "
                  f"{data[name]} (written for its own folder) is not used; subjects are split by "
                  f"data.split_ratio {data.get('split_ratio')} unless you pass --set data.{name}=[...]",
                  flush=True)
            data[name] = []
    return params


def load(profile: str | Path = "quick", overrides: Mapping[str, Any] | None = None, *,
         validate: bool = True, where: str | None = None) -> dict[str, Any]:
    """Load a profile, apply overrides, validate every parameter.

    Parameters
    ----------
    profile : str or Path
        A profile name (``"tiny"``, ``"quick"``, ``"paper"``, ``"real"``: ``params/<name>.yaml``)
        or the path of any parameter file (it may name a ``base:`` profile).
    overrides : mapping, optional
        Dotted keys and their values, e.g. ``{"data.n_volumes": 12, "seg.sweep_lambda": [0.1]}``.
    validate : bool
        Check the file's keys and every value against the schema of :mod:`umcam_lib.config`
        (only stand-in notebooks in the runner's tests turn it off).
    where : str, optional
        What to call the parameters in an error (default: the file and the overrides).

    Returns
    -------
    dict
        Every parameter (with validation: every key of the schema, missing ones at their
        defaults); ``params["profile"]`` is the profile's name.

    Raises
    ------
    ParameterError
        An unknown key in a file or an override (at any depth), a value of the wrong type or
        out of range; the message names the key (and the file) and what is allowed.
    """
    overrides = dict(overrides or {})
    path = parameter_file(profile)
    params = load_params(path, check=_check_file if validate else None)
    params = set_values(params, overrides)
    params = _subjects_follow_root(params, set(overrides))
    params.setdefault("profile", path.stem)      # a file's own `profile:` (or its base's) comes first
    if validate:
        if where is None:
            where = f"parameters of {path}" + (f" with overrides {overrides}" if overrides else "")
        params = validate_params(params, where=where)
    return params


def keys_read(notebook: str | Path) -> list[str]:
    """Top-level parameter keys a notebook reads, as ``params["key"]`` in its code cells.

    Parameters
    ----------
    notebook : path
        An ``.ipynb`` file.

    Returns
    -------
    list of str
        The keys, sorted.

    Raises
    ------
    ValueError
        ``params`` is used other than subscripted by a string literal (passed whole, ``.get``,
        a computed key): the keys it reads could not be known, and with them what the notebook's
        result depends on. Lines starting with ``%`` or ``!`` (IPython magics) are ignored.
    """
    path = Path(notebook)
    keys: set[str] = set()
    for i, cell in enumerate(json.loads(path.read_text(encoding="utf-8")).get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        src = "".join(cell.get("source", ""))
        src = "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in src.splitlines())
        tree = ast.parse(src)
        literal = set()
        for node in ast.walk(tree):
            if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == PARAMS_NAME
                    and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
                keys.add(node.slice.value)
                literal.add(id(node.value))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Name) and node.id == PARAMS_NAME and isinstance(node.ctx, ast.Load)
                    and id(node) not in literal):
                raise ValueError(f"{path.name}, code cell {i}: `{PARAMS_NAME}` is used other than as "
                                 f"{PARAMS_NAME}[\"<key>\"] at line {node.lineno}; the runner cannot tell "
                                 f"which parameters the notebook depends on")
    return sorted(keys)
