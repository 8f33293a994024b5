"""Where a `next=` or `back=` parameter may send the browser: a path on this site, nothing else.

One check for every redirect (the login's `next`, the table's buttons and live rows), because the
ways out are subtle: browsers read `//host` and `/\\host` as another host, and drop tabs and
newlines from a URL before parsing it, so `/\\t/evil.example` becomes `//evil.example`.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import urlsplit


def local_path(target: str | None) -> str | None:
    """`target` when it is a path on this site, else None."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
