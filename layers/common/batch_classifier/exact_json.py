"""JSON objects read back fast and exactly: orjson reads a line unless it may give another value than the json
module would, and the json module reads it then.

orjson reads an integer beyond 64 bits as a float and refuses ``NaN`` and numbers such as ``1e400``, which the json
module reads (and writes: records carry the input's values through ``json.dumps``). A top-level float beyond 64-bit
range may have been such an integer; so may any number inside a nested list or object.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import orjson

_BIG = 2.0**63


def load_object(line: bytes | str, inner: str | None = None) -> dict[str, Any]:
    """The JSON object on ``line``, exactly as ``json.loads`` reads it. ``inner``: the key of an object inside it whose
    values are checked as the top level's are (a record's carried columns)."""
    try:
        data: dict[str, Any] = orjson.loads(line)
    except orjson.JSONDecodeError:
        return dict(json.loads(line))
    values: Iterable[Any] = data.values()
    if inner is not None:
        nested = data.get(inner)
        if nested:
            if type(nested) is not dict:
                return dict(json.loads(line))
            values = nested.values()
    for value in values:
        kind = type(value)
        if kind is dict or kind is list or (kind is float and not -_BIG < value < _BIG):
            return dict(json.loads(line))
    return data
