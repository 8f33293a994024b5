"""Users, roles, passwords, API tokens, browser sessions and the sign-in throttle.

Sessions and failed sign-ins live in the database, not in a process: every web process sees the
same revocations and counts the same failures.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from store.models import ApiToken, LoginFailure, User, WebSession, utcnow

ROLES = ("viewer", "operator", "admin")
_RANK = {role: rank for rank, role in enumerate(ROLES)}
_hasher = PasswordHasher()  # Argon2id with the library's current recommended parameters
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
TOKEN_PREFIX = "rvo_"  # noqa: S105 - a visible prefix, not a secret


class AccountError(Exception):
    """A sentence for the person at the keyboard."""


@dataclass(frozen=True)
class Principal:
    """Who is acting: what request handlers and the audit timeline need to know."""

    user_id: int
    email: str
    role: str

    def can(self, role: str) -> bool:
        return _RANK[self.role] >= _RANK[role]


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"Unknown role {role!r}: use one of {', '.join(ROLES)}.")
    return role


def add_user(session: Session, email: str, password: str, role: str) -> User:
    email = email.strip().lower()
    check_role(role)
    if not _EMAIL.match(email):
        raise AccountError(f"{email!r} is not an email address.")
    if len(password) < 10:
        raise AccountError("The password must be at least 10 characters long.")
    if session.scalar(select(User).where(User.email == email)) is not None:
        raise AccountError(f"A user with the email {email} already exists.")
    user = User(email=email, password_hash=_hasher.hash(password), role=role)
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, email: str, password: str) -> Principal | None:
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None or not user.active:
        _hasher.hash(password)  # same work either way, so timing does not reveal who exists
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return Principal(user.id, user.email, user.role)


def create_token(session: Session, email: str) -> str:
    """Make an API token for the user; the token is returned once and only its hash is kept."""
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise AccountError(f"No user with the email {email}: add one with `revops users add`.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_hash=_digest(token), prefix=token[:10]))
    session.flush()
    return token


def principal_for_token(session: Session, token: str) -> Principal | None:
    # The lookup is by a SHA-256 of a 256-bit random token: nothing to learn from timing.
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(token)))
    if row is None or row.revoked_at is not None or not row.user.active:
        return None
    row.last_used_at = utcnow()
    return Principal(row.user.id, row.user.email, row.user.role)


def revoke_token(session: Session, token_id: int) -> None:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise AccountError(f"No API token with id {token_id}.")
    if row.revoked_at is None:
        row.revoked_at = utcnow()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- browser sessions -------------------------------------------------------------------------

# A session's "last seen" is written at most this often: a write per page view buys nothing.
SEEN_EVERY = timedelta(minutes=1)


def open_web_session(session: Session, user_id: int, address: str | None) -> str:
    """Record a new signed-in session; returns its token (for the cookie), stored only as a hash."""
    token = secrets.token_urlsafe(32)
    session.add(WebSession(token_hash=_digest(token), user_id=user_id, address=(address or "")[:64] or None))
    session.flush()
    return token


def principal_for_web_session(session: Session, token: str, now: datetime | None = None) -> Principal | None:
    """Who a session cookie belongs to, or None once the session is revoked or its user deactivated."""
    row = session.scalar(select(WebSession).where(WebSession.token_hash == _digest(token)))
    if row is None or row.revoked_at is not None or not row.user.active:
        return None
    now = now or utcnow()
    if now - _aware(row.last_seen_at) > SEEN_EVERY:
        row.last_seen_at = now
    return Principal(row.user.id, row.user.email, row.user.role)


def revoke_web_session(session: Session, token: str) -> None:
    session.execute(update(WebSession).where(WebSession.token_hash == _digest(token),
                                             WebSession.revoked_at.is_(None)).values(revoked_at=utcnow()))


def revoke_user_sessions(session: Session, user_id: int) -> int:
    """End every session of the user (an admin's "sign out everywhere"); returns how many."""
    result = session.execute(update(WebSession).where(WebSession.user_id == user_id,
                                                      WebSession.revoked_at.is_(None)).values(revoked_at=utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)


def active_session_counts(session: Session) -> dict[int, int]:
    """Open sessions per user id, for the admin page."""
    rows = session.execute(select(WebSession.user_id, func.count()).where(WebSession.revoked_at.is_(None))
                           .group_by(WebSession.user_id)).all()
    return {user_id: int(count) for user_id, count in rows}


# --- the sign-in throttle ---------------------------------------------------------------------

@dataclass(frozen=True)
class LoginLimit:
    """At most `failures` failed sign-ins within `window` for the same key."""

    key: str  # "address+email" | "email" | "address"
    failures: int
    window: timedelta


LOGIN_LIMITS = (
    # Guessing at one account from one address.
    LoginLimit("address+email", 5, timedelta(minutes=5)),
    # Guessing at one account from many addresses: the per-address limit alone would not see it.
    LoginLimit("email", 10, timedelta(minutes=15)),
    # Trying many accounts from one address.
    LoginLimit("address", 50, timedelta(minutes=15)),
)
_KEEP_FAILURES = max(limit.window for limit in LOGIN_LIMITS)


def login_wait_seconds(session: Session, address: str, email: str, now: datetime | None = None) -> int:
    """Seconds until this address may try this email again (0: now), by the strictest limit."""
    now = now or utcnow()
    email, address = email.strip().lower(), address[:64]
    wait = 0.0
    for limit in LOGIN_LIMITS:
        query = select(LoginFailure.at).where(LoginFailure.at > now - limit.window)
        if "email" in limit.key:
            query = query.where(LoginFailure.email == email)
        if "address" in limit.key:
            query = query.where(LoginFailure.address == address)
        # The failure that must age out of the window before another attempt fits the limit.
        blocking = session.scalar(query.order_by(LoginFailure.at.desc()).offset(limit.failures - 1).limit(1))
        if blocking is not None:
            wait = max(wait, (limit.window - (now - _aware(blocking))).total_seconds())
    return int(wait) + 1 if wait > 0 else 0


def record_login_failure(session: Session, address: str, email: str, now: datetime | None = None) -> None:
    now = now or utcnow()
    session.add(LoginFailure(email=email.strip().lower(), address=address[:64], at=now))
    # Failures older than every window count for nothing: drop them as we go.
    session.execute(delete(LoginFailure).where(LoginFailure.at < now - _KEEP_FAILURES))
    session.flush()


def clear_login_failures(session: Session, address: str, email: str) -> None:
    """After a good sign-in from this address. Failures from other addresses stay counted."""
    session.execute(delete(LoginFailure).where(LoginFailure.email == email.strip().lower(),
                                               LoginFailure.address == address[:64]))


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; we only ever store UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
