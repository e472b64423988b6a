"""Who is acting: users, argon2 password hashes, roles and the permission check."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import col, select

from engine.errors import InvalidInput, PermissionDenied
from engine.store.models import Membership, Role, Tenant, User, UserSession
from engine.uow import UnitOfWork

_hasher = PasswordHasher()

#: After this many wrong passwords in a row, each further try waits longer (seconds).
FREE_ATTEMPTS = 3
MAX_LOCK_SECONDS = 300

READ, EDIT, ADMIN = "read", "edit", "admin"
_ALLOWED = {
    Role.OWNER: {READ, EDIT, ADMIN},
    Role.EDITOR: {READ, EDIT},
    Role.ANALYST: {READ},
}


@dataclass(frozen=True)
class Actor:
    """A user acting in one tenant. Every service call takes one."""

    tenant_id: str
    user_id: str | None = None
    role: str = Role.OWNER
    email: str | None = None

    def can(self, permission: str) -> bool:
        return permission in _ALLOWED.get(Role(self.role), set())

    def require(self, permission: str) -> None:
        if not self.can(permission):
            raise PermissionDenied(f"the {self.role} role may not do this ({permission})")


def system_actor(tenant_id: str) -> Actor:
    """The engine itself (worker, CLI) acting for a tenant."""
    return Actor(tenant_id=tenant_id, user_id=None, role=Role.OWNER)


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise InvalidInput("must be at least 8 characters", field="password")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_user(*, uow: UnitOfWork, email: str, password: str, name: str = "") -> User:
    email = email.strip().lower()
    if "@" not in email:
        raise InvalidInput(f"{email!r} is not an e-mail address", field="email")
    s = uow.session
    if s.exec(select(User).where(User.email == email)).first():
        raise InvalidInput(f"a user with e-mail {email} already exists", field="email")
    user = User(email=email, name=name, password_hash=hash_password(password))
    s.add(user)
    s.flush()  # written now, so rows that refer to it (memberships) can follow in the same unit of work
    return user


def add_membership(*, uow: UnitOfWork, user_id: str, tenant_id: str, role: str) -> None:
    if role not in {r.value for r in Role}:
        raise InvalidInput(f"unknown role {role!r} (owner, editor or analyst)", field="role")
    s = uow.session
    s.add(Membership(user_id=user_id, tenant_id=tenant_id, role=role))


class LoginFailed(InvalidInput):
    """Wrong e-mail or password."""


class LoginThrottled(InvalidInput):
    """Too many wrong passwords; wait a moment before trying again."""


def authenticate(*, uow: UnitOfWork, email: str, password: str) -> tuple[User, list[tuple[Tenant, str]]]:
    """The user and their (tenant, role) pairs; raises LoginFailed or LoginThrottled.

    After ``FREE_ATTEMPTS`` wrong passwords the account is locked for a growing number of
    seconds (2, 4, 8 ... up to five minutes); the message says how long.
    """
    email = (email or "").strip().lower()
    s = uow.session
    user = s.exec(select(User).where(User.email == email)).first()
    if user is None:
        _hasher.hash(password or "x")  # spend the same time as a real check
        raise LoginFailed()
    now = uow.now()
    if user.locked_until and user.locked_until > now:
        wait = int((user.locked_until - now).total_seconds()) + 1
        raise LoginThrottled(f"Too many wrong passwords. Try again in {wait} seconds.")
    if not verify_password(user.password_hash, password or ""):
        user.failed_logins += 1
        if user.failed_logins >= FREE_ATTEMPTS:
            lock = min(2 ** (user.failed_logins - FREE_ATTEMPTS + 1), MAX_LOCK_SECONDS)
            user.locked_until = now + timedelta(seconds=lock)
        s.add(user)
        s.commit()
        raise LoginFailed()
    user.failed_logins, user.locked_until = 0, None
    s.add(user)
    rows = s.exec(
        select(Tenant, Membership.role)
        .join(Membership, col(Membership.tenant_id) == Tenant.id)
        .where(Membership.user_id == user.id)
        .order_by(Tenant.name)
    ).all()
    return user, [(t, role) for t, role in rows]


# --------------------------------------------------------------------------- browser sessions

#: A sign-in lasts a working day; after that the browser asks for the password again.
SESSION_HOURS = 10


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(*, uow: UnitOfWork, user_id: str, tenant_id: str | None = None, hours: float = SESSION_HOURS) -> str:
    """Record a sign-in and return its secret token (for the browser's cookie; stored hashed)."""
    token = secrets.token_urlsafe(32)
    s = uow.session
    s.add(
        UserSession(
            user_id=user_id,
            tenant_id=tenant_id,
            token_hash=_token_hash(token),
            expires_at=uow.now() + timedelta(hours=hours),
        )
    )
    return token


def resume_session(*, uow: UnitOfWork, token: str | None) -> tuple[User, list[tuple[Tenant, str]], str | None] | None:
    """The user, their (tenant, role) pairs and the chosen tenant of a live session, else ``None``.

    ``None`` for an unknown, expired or ended token, and when the user no longer belongs to
    any studio. A chosen tenant the user has left is dropped (they pick again).
    """
    if not token:
        return None
    s = uow.session
    row = s.exec(select(UserSession).where(UserSession.token_hash == _token_hash(token))).first()
    if row is None or row.revoked_at is not None or row.expires_at <= uow.now():
        return None
    user = s.get(User, row.user_id)
    memberships = _memberships(s, row.user_id)
    if user is None or not memberships:
        return None
    chosen = row.tenant_id if any(t.id == row.tenant_id for t, _ in memberships) else None
    return user, memberships, chosen


def choose_session_tenant(*, uow: UnitOfWork, token: str, tenant_id: str) -> None:
    """Remember the studio picked in this browser (a reload opens it again)."""
    s = uow.session
    row = s.exec(select(UserSession).where(UserSession.token_hash == _token_hash(token))).first()
    if row is not None:
        row.tenant_id = tenant_id
        s.add(row)


def end_session(*, uow: UnitOfWork, token: str | None) -> None:
    """Sign this browser out (the token stops working at once)."""
    if not token:
        return
    s = uow.session
    row = s.exec(select(UserSession).where(UserSession.token_hash == _token_hash(token))).first()
    if row is not None and row.revoked_at is None:
        row.revoked_at = uow.now()
        s.add(row)


def end_sessions(*, uow: UnitOfWork, user_id: str) -> int:
    """Sign a user out everywhere (password change, removal, lost device). Returns how many ended.

    Call this when a user is removed from a studio or deleted: their open browsers stop
    working on the next click instead of at the end of the day.
    """
    s = uow.session
    rows = s.exec(
        select(UserSession).where(UserSession.user_id == user_id, col(UserSession.revoked_at).is_(None))
    ).all()
    now = uow.now()
    for row in rows:
        row.revoked_at = now
        s.add(row)
    return len(rows)


def change_password(*, uow: UnitOfWork, user_id: str, current: str, new: str) -> None:
    """Set a new password after checking the current one; ends every session of the user."""
    s = uow.session
    user = s.get(User, user_id)
    if user is None or not verify_password(user.password_hash, current):
        raise InvalidInput("the current password is not right", field="currentPassword")
    user.password_hash = hash_password(new)
    s.add(user)
    end_sessions(uow=uow, user_id=user_id)


def _memberships(s, user_id: str) -> list[tuple[Tenant, str]]:
    rows = s.exec(
        select(Tenant, Membership.role)
        .join(Membership, col(Membership.tenant_id) == Tenant.id)
        .where(Membership.user_id == user_id)
        .order_by(Tenant.name)
    ).all()
    return [(t, role) for t, role in rows]
