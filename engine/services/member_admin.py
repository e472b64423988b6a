"""Changing and removing a studio's users (owners only). The last owner can be neither
removed nor demoted; removing someone ends their sessions."""

from __future__ import annotations

import logging

from sqlmodel import col, select

from engine.errors import Conflict, InvalidInput, NotFound
from engine.security import auth
from engine.security.auth import ADMIN, Actor
from engine.services.channel_settings import record_audit
from engine.store.models import Membership, Role, User
from engine.uow import UnitOfWork

logger = logging.getLogger(__name__)

__all__ = ["change_role", "end_user_sessions", "remove_member"]


def end_user_sessions(*, uow: UnitOfWork, user_id: str) -> int:
    """End every sign-in session of ``user_id`` (their open browsers stop at the next click)."""
    return auth.end_sessions(uow=uow, user_id=user_id)


def _membership(s, actor: Actor, user_id: str, *, lock: bool = False) -> tuple[Membership, User]:
    stmt = (
        select(Membership, User)
        .join(User, col(User.id) == col(Membership.user_id))
        .where(Membership.tenant_id == actor.tenant_id, Membership.user_id == user_id)
    )
    if lock and s.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = s.exec(stmt).first()
    if row is None:
        raise NotFound(f"user {user_id} is not a member of this studio")
    return row


def _owners(s, tenant_id: str) -> int:
    stmt = select(Membership.id).where(Membership.tenant_id == tenant_id, Membership.role == Role.OWNER)
    if s.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update()  # two owners demoting each other at once cannot both succeed
    return len(s.exec(stmt).all())


def change_role(*, uow: UnitOfWork, actor: Actor, user_id: str, role: str) -> str:
    """Give a member another role; the last owner keeps being owner."""
    actor.require(ADMIN)
    if role not in {r.value for r in Role}:
        raise InvalidInput(f"unknown role {role!r} (owner, editor or analyst)", field="role")
    s = uow.session
    membership, user = _membership(s, actor, user_id, lock=True)
    old = membership.role
    if old == role:
        return role
    if old == Role.OWNER and _owners(s, actor.tenant_id) <= 1:
        raise Conflict(f"{user.email} is the last owner: make someone else owner first", field="role")
    membership.role = role
    s.add(membership)
    email = user.email
    record_audit(uow=uow, actor=actor, area="users", changes={email: {"from": old, "to": role}})
    return role


def remove_member(*, uow: UnitOfWork, actor: Actor, user_id: str) -> None:
    """Take a member out of this studio (their login stays for other studios) and end their sessions."""
    actor.require(ADMIN)
    s = uow.session
    membership, user = _membership(s, actor, user_id, lock=True)
    if membership.role == Role.OWNER and _owners(s, actor.tenant_id) <= 1:
        raise Conflict(f"{user.email} is the last owner of this studio and cannot be removed")
    s.delete(membership)
    email = user.email
    end_user_sessions(uow=uow, user_id=user_id)
    record_audit(uow=uow, actor=actor, area="users", changes={email: {"from": "member", "to": "removed"}})
