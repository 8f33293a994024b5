"""Users, roles, passwords and API tokens."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import ApiToken, User, utcnow

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
