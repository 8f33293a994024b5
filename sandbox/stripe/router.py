"""Route table: each Stripe route names its `stripe.params` class for parameter validation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


@dataclass
class Req:
    method: str
    path: str
    params: dict[str, Any]
    expand: list[str] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        return self.params.get(key, default)


Result = dict[str, Any] | tuple[int, dict[str, Any]]
Handler = Callable[..., Result]


@dataclass
class Route:
    method: str
    path: str  # werkzeug rule syntax, e.g. /v1/customers/<id>
    params_class: str
    handler: Handler


ROUTES: list[Route] = []


def route(method: str, path: str, params_class: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        ROUTES.append(Route(method, path, params_class, fn))
        return fn

    return deco
