"""(placeholder: filled in by its owner)"""

from collections.abc import Callable
from typing import Any

from settings import Settings


def build(settings: Settings) -> list[Callable[..., Any]]:
    return []
