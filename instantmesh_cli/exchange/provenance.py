"""The generator string and the provenance record written into every output file."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np


def generator() -> str:
    from instantmesh_cli.version import __version__

    return f"imesh {__version__}"


def normalize_provenance(provenance: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A JSON-ready copy with sorted keys at every level, or None for no provenance.

    Accepts what a caller naturally has at hand: numpy scalars and arrays, tuples, paths.
    Raises TypeError for anything else and ValueError for NaN / infinity (JSON has
    neither, and glTF validators reject the file), before any output file is written.
    """
    if provenance is None:
        return None
    if not isinstance(provenance, Mapping):
        raise TypeError(f"provenance must be a mapping, not {type(provenance).__name__}")
    return _plain(provenance, "provenance")


def _plain(value: Any, where: str) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    elif isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, os.PathLike):
        value = os.fspath(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value}: JSON has no NaN or infinity")
        return value
    if isinstance(value, Mapping):
        out = {}
        for key in sorted(value, key=str):
            if not isinstance(key, str):
                raise TypeError(f"{where} has a non-string key {key!r}")
            out[key] = _plain(value[key], f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{where} is a {type(value).__name__}, which has no JSON form")


def provenance_json(provenance: Mapping[str, Any]) -> str:
    """One line of ASCII JSON, keys sorted: fit for a comment line in OBJ and PLY headers."""
    return json.dumps(normalize_provenance(provenance), sort_keys=True, ensure_ascii=True, allow_nan=False,
                      separators=(",", ":"))
