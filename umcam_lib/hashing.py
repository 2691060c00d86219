"""Hashes the study keys its caches, resumes and registries on: of files, JSON values and arrays.

One place for each kind, so a fingerprint written by one stage is read with the same rule by
another. All are SHA-256; short forms keep the first 16 hex digits (64 bits), enough to tell
versions of one input apart, not a security measure.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

#: Hex digits kept by the short hashes (:func:`value_hash`, :func:`array_hash`).
SHORT = 16


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Full hex SHA-256 of a file's bytes, read in chunks of ``chunk`` bytes.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> _ = p.write_bytes(b"abc")
    >>> file_sha256(p)[:16]
    'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def value_hash(value: Any, default: Callable[[Any], Any] = str, sort_keys: bool = True) -> str:
    """Short hash of a JSON value: SHA-256 of its JSON text (keys sorted), first 16 hex digits.

    Parameters
    ----------
    value : JSON-serialisable object
    default : callable
        JSON form of what ``json`` does not know (default: its text).
    sort_keys : bool
        Sort mapping keys, so the order of a dict does not change the hash.

    Examples
    --------
    >>> value_hash({"b": 1, "a": [1, 2]}) == value_hash({"a": [1, 2], "b": 1})
    True
    >>> len(value_hash("text"))
    16
    """
    text = json.dumps(value, sort_keys=sort_keys, default=default)
    return hashlib.sha256(text.encode()).hexdigest()[:SHORT]


def array_hash(*arrays: np.ndarray | Any) -> str:
    """Short hash of arrays' dtypes, shapes and bytes (C order), in the order given.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.arange(6).reshape(2, 3)
    >>> array_hash(a) == array_hash(a.copy()), array_hash(a) == array_hash(a.astype(np.int32))
    (True, False)
    """
    h = hashlib.sha256()
    for a in arrays:
        arr = np.ascontiguousarray(np.asarray(a))
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:SHORT]


def files_hash(paths: Iterable[str | Path], base: str | Path) -> str:
    """Short hash of files' names (relative to ``base``, POSIX form) and bytes, in sorted order.

    Used for source trees: the library's modules, the phantom generator's files.
    """
    h = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        h.update(path.relative_to(base).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:SHORT]
