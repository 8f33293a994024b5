"""Accepted request parameters, derived from the installed SDK's typed parameter definitions.

Each route names its `stripe.params` TypedDict (e.g. `CustomerCreateParams`). We walk its type hints
(nested TypedDicts, `List[...]`, `Dict[str, str]`, `Union`, `Literal`) into a small schema and use
it to refuse unknown parameters exactly like Stripe (`Received unknown parameter: phases[0][iterations]`)
and to coerce form strings into ints/bools/lists. Removed parameters (`iterations`, invoice-item
`price`, customer `coupon`, `recurring.aggregate_usage`) are absent from the SDK types, so they are
refused without any hand-kept list.
"""

from __future__ import annotations

import decimal
import importlib
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal, Union

import stripe._request_options as _request_options
import typing_extensions
from stripe._stripe_object import UntypedStripeObject

from .errors import StripeError, invalid, missing_param, unknown_param

_REQUEST_OPTION_KEYS = frozenset(_request_options.RequestOptions.__annotations__)


class Node:
    def coerce(self, value: Any, path: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class Obj(Node):
    name: str
    fields: dict[str, Node] = field(default_factory=dict)
    required: frozenset[str] = frozenset()

    def coerce(self, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise invalid(f"Invalid object: {path}" if path else "Invalid object", param=path or None)
        out: dict[str, Any] = {}
        for key, sub in value.items():
            sub_path = f"{path}[{key}]" if path else key
            node = self.fields.get(key)
            if node is None:
                raise unknown_param(sub_path)
            out[key] = node.coerce(sub, sub_path)
        for key in sorted(self.required):
            if key not in out:
                raise missing_param(f"{path}[{key}]" if path else key)
        return out


@dataclass
class ListOf(Node):
    item: Node

    def coerce(self, value: Any, path: str) -> Any:
        if isinstance(value, dict):
            if not all(k.isdigit() for k in value):
                raise invalid(f"Invalid array: {path}", param=path)
            items = [value[k] for k in sorted(value, key=int)]
        elif isinstance(value, list):
            items = value
        else:
            raise invalid(f"Invalid array: {path}", param=path)
        return [self.item.coerce(v, f"{path}[{i}]") for i, v in enumerate(items)]


@dataclass
class MapOf(Node):
    """Metadata-like free-form string maps."""

    def coerce(self, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise invalid(f"Invalid object: {path}", param=path)
        out = {}
        for k, v in value.items():
            if not isinstance(v, str):
                raise invalid(f"Invalid value for {path}[{k}]: must be a string", param=f"{path}[{k}]")
            out[k] = v
        return out


@dataclass
class Scalar(Node):
    kind: str  # str | int | bool | float | decimal | any

    def coerce(self, value: Any, path: str) -> Any:
        if self.kind == "any":
            return value
        if not isinstance(value, str):
            raise invalid(f"Invalid {self.kind}: {path} must be a {self.kind}", param=path)
        if self.kind == "str":
            return value
        if self.kind == "int":
            if re.fullmatch(r"-?\d+", value):
                return int(value)
            raise StripeError(400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=path)
        if self.kind == "bool":
            if value in ("true", "false"):
                return value == "true"
            raise StripeError(400, f"Invalid boolean: {value}", code="parameter_invalid_boolean", param=path)
        if self.kind in ("float", "decimal"):
            try:
                num = decimal.Decimal(value)
            except decimal.InvalidOperation:
                raise invalid(f"Invalid decimal: {value}", param=path) from None
            if not num.is_finite():
                raise invalid(f"Invalid decimal: {value}", param=path)
            return num
        raise AssertionError(self.kind)


@dataclass
class Enum(Node):
    values: tuple[str, ...]

    def coerce(self, value: Any, path: str) -> Any:
        if isinstance(value, str) and value in self.values:
            return value
        shown = [v for v in self.values if v != ""]
        choices = ", ".join(shown[:-1]) + (f", or {shown[-1]}" if len(shown) > 1 else shown[0] if shown else "")
        raise invalid(f"Invalid {path}: must be one of {choices}", param=path)


@dataclass
class OneOf(Node):
    options: list[Node]

    def coerce(self, value: Any, path: str) -> Any:
        # Prefer the option whose shape matches the value; report that option's error.
        shaped: list[Node]
        if isinstance(value, dict):
            shaped = [o for o in self.options if isinstance(o, (Obj, MapOf, ListOf))]
            if len(shaped) > 1 and all(k.isdigit() for k in value) and value:
                shaped = [o for o in shaped if isinstance(o, ListOf)] or shaped
            elif len(shaped) > 1:
                shaped = [o for o in shaped if not isinstance(o, ListOf)] or shaped
        else:
            shaped = [o for o in self.options if not isinstance(o, (Obj, MapOf, ListOf))]
        if not shaped:
            shaped = self.options
        first_error: StripeError | None = None
        for opt in shaped:
            try:
                return opt.coerce(value, path)
            except StripeError as e:
                first_error = first_error or e
        assert first_error is not None
        raise first_error


def _literal_values(tp: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in typing.get_args(tp))


def _hints(cls: type) -> dict[str, Any]:
    mod = sys.modules[cls.__module__]
    # Request options in the base class use names only imported under TYPE_CHECKING there.
    globalns = {**_request_options.__dict__, "StripeContext": object, **mod.__dict__}
    return typing.get_type_hints(cls, globalns=globalns)


_cache: dict[type, Obj] = {}


def _node_for(tp: Any) -> Node:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return Scalar("any")
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        literals = [a for a in members if typing.get_origin(a) is Literal]
        others = [a for a in members if typing.get_origin(a) is not Literal]
        nodes: list[Node] = []
        lit_values = tuple(v for lit in literals for v in _literal_values(lit))
        # `Literal['a', 'b'] | str` is how the SDK spells an enum that may grow; Stripe still
        # refuses values outside it, so treat it as the enum.
        if lit_values and others == [str] and any(v != "" for v in lit_values):
            return Enum(lit_values)
        if lit_values:
            nodes.append(Enum(lit_values))
        nodes.extend(_node_for(a) for a in others)
        return nodes[0] if len(nodes) == 1 else OneOf(nodes)
    if origin is Literal:
        return Enum(_literal_values(tp))
    if origin in (list, typing.List):  # noqa: UP006
        return ListOf(_node_for(args[0]))
    if origin in (dict, typing.Dict) or origin is UntypedStripeObject or tp is UntypedStripeObject:  # noqa: UP006
        return MapOf()
    if isinstance(tp, type) and typing_extensions.is_typeddict(tp):
        return typed_dict_schema(tp)
    if tp is str:
        return Scalar("str")
    if tp is bool:
        return Scalar("bool")
    if tp is int:
        return Scalar("int")
    if tp is float:
        return Scalar("float")
    if tp is decimal.Decimal:
        return Scalar("decimal")
    return Scalar("any")


def typed_dict_schema(cls: type) -> Obj:
    cached = _cache.get(cls)
    if cached is not None:
        return cached
    node = Obj(cls.__name__)
    _cache[cls] = node  # registered before recursion: the SDK types are self-referential in places
    for key, tp in _hints(cls).items():
        if key in _REQUEST_OPTION_KEYS:
            continue
        node.fields[key] = _node_for(tp)
    node.required = frozenset(k for k in getattr(cls, "__required_keys__", ()) if k not in _REQUEST_OPTION_KEYS)
    return node


def _module_name(class_name: str) -> str:
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).lower()
    return f"stripe.params._{snake}"


@cache
def schema(class_name: str) -> Obj:
    """Schema of `stripe.params.<class_name>` (loaded from its own module, which is cheap)."""
    module = importlib.import_module(_module_name(class_name))
    return typed_dict_schema(getattr(module, class_name))


def validate(class_name: str, raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = schema(class_name).coerce(raw, "")
    return out
