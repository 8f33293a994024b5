"""Decode Stripe's form encoding (`a[b][0][c]=v`, `expand[]=x`) into nested dicts.

Lists stay dicts keyed by their (string) index here; `params.py` turns them into lists where the
SDK's parameter types say a list is expected, so metadata keys that look like numbers survive.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from .errors import invalid

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")

Nested = dict[str, Any]


def decode(query: str) -> Nested:
    root: Nested = {}
    for raw_key, value in parse_qsl(query, keep_blank_values=True):
        m = _KEY.match(raw_key)
        if not m:
            raise invalid(f"Invalid parameter name: {raw_key}", param=raw_key)
        parts = [m.group(1), *_PART.findall(m.group(2))]
        node: Nested = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":
                # `x[]=a&x[]=b`: append in order of appearance.
                part = str(len(node))
            if last:
                if isinstance(node.get(part), dict):
                    raise invalid(f"Invalid parameter: {raw_key}", param=raw_key)
                node[part] = value
            else:
                child = node.get(part)
                if child is None:
                    child = node[part] = {}
                elif not isinstance(child, dict):
                    raise invalid(f"Invalid parameter: {raw_key}", param=raw_key)
                node = child
    return root
