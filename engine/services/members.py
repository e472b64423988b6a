"""Who works in a studio: list members, add one (owners only)."""

from __future__ import annotations

from sqlmodel import col, select

from engine.errors import Conflict, InvalidInput
from engine.security.auth import ADMIN, READ, Actor, hash_password
from engine.services.workflows import Out
from engine.store.models import Membership, Role, User
from engine.uow import UnitOfWork

__all__ = ["MemberOut", "list_members", "add_member"]


class MemberOut(Out):
    user_id: str
    email: str
    name: str
    role: str


def list_members(*, uow: UnitOfWork, actor: Actor) -> list[MemberOut]:
    """The studio's users and their roles, by e-mail."""
    actor.require(READ)
    s = uow.session
    rows = s.exec(
        select(User, Membership.role)
        .join(Membership, col(Membership.user_id) == User.id)
        .where(Membership.tenant_id == actor.tenant_id)
        .order_by(User.email)
    ).all()
    return [MemberOut(user_id=u.id, email=u.email, name=u.name, role=role) for u, role in rows]


def add_member(
    *, uow: UnitOfWork, actor: Actor, email: str, role: str, password: str | None = None, name: str = ""
) -> MemberOut:
    """Give a user a role in this studio; creates the login when the e-mail is new (owners only).

    An existing user keeps their password (it is theirs, possibly used in another studio).
    """
    actor.require(ADMIN)
    email = (email or "").strip().lower()
    if "@" not in email:
        raise InvalidInput(f"{email!r} is not an e-mail address", field="email")
    if role not in {r.value for r in Role}:
        raise InvalidInput(f"unknown role {role!r} (owner, editor or analyst)", field="role")
    s = uow.session
    user = s.exec(select(User).where(User.email == email)).first()
    if user is None:
        if not password:
            raise InvalidInput("a new user needs an initial password", field="password")
        user = User(email=email, name=name, password_hash=hash_password(password))
        s.add(user)
        s.flush()
    elif s.exec(
        select(Membership).where(Membership.user_id == user.id, Membership.tenant_id == actor.tenant_id)
    ).first():
        raise Conflict(f"{email} is already a member of this studio")
    s.add(Membership(user_id=user.id, tenant_id=actor.tenant_id, role=role))
    return MemberOut(user_id=user.id, email=user.email, name=user.name, role=role)
