"""Browser sessions: a sign-in survives a reload for a working day and ends when it must."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from engine.errors import InvalidInput
from engine.security import auth
from engine.store.models import UserSession
from engine.uow import unit_of_work

PASSWORD = "studio-pass-2026"


@pytest.fixture
def user(db, tenant):
    with unit_of_work(db) as uow:
        u = auth.create_user(uow=uow, email="anna@studio.test", password=PASSWORD, name="Anna")
    with unit_of_work(db) as uow:
        auth.add_membership(uow=uow, user_id=u.id, tenant_id=tenant.id, role="editor")
    return u


def test_a_session_resumes_with_the_chosen_studio(db, user, tenant):
    with unit_of_work(db) as uow:
        token = auth.start_session(uow=uow, user_id=user.id)
    with unit_of_work(db, read_only=True) as uow:
        found, memberships, chosen = auth.resume_session(uow=uow, token=token)
    assert found.id == user.id and [t.id for t, _ in memberships] == [tenant.id] and chosen is None
    with unit_of_work(db) as uow:
        auth.choose_session_tenant(uow=uow, token=token, tenant_id=tenant.id)
    with unit_of_work(db, read_only=True) as uow:
        assert auth.resume_session(uow=uow, token=token)[2] == tenant.id


def test_only_the_hash_of_the_token_is_stored(db, user):
    with unit_of_work(db) as uow:
        token = auth.start_session(uow=uow, user_id=user.id)
    with Session(db) as s:
        row = s.exec(select(UserSession)).one()
    assert token not in row.token_hash and len(row.token_hash) == 64


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_an_unknown_token_signs_nobody_in(db, user, token):
    with unit_of_work(db) as uow:
        auth.start_session(uow=uow, user_id=user.id)
    with unit_of_work(db, read_only=True) as uow:
        assert auth.resume_session(uow=uow, token=token) is None


def test_signing_out_ends_only_this_browser(db, user):
    with unit_of_work(db) as uow:
        first, second = auth.start_session(uow=uow, user_id=user.id), auth.start_session(uow=uow, user_id=user.id)
    with unit_of_work(db) as uow:
        auth.end_session(uow=uow, token=first)
    with unit_of_work(db, read_only=True) as uow:
        assert auth.resume_session(uow=uow, token=first) is None
    with unit_of_work(db, read_only=True) as uow:
        assert auth.resume_session(uow=uow, token=second) is not None


def test_end_sessions_signs_a_user_out_everywhere(db, user, tenant):
    with unit_of_work(db) as uow:
        other = auth.create_user(uow=uow, email="ben@studio.test", password=PASSWORD)
    with unit_of_work(db) as uow:
        auth.add_membership(uow=uow, user_id=other.id, tenant_id=tenant.id, role="owner")
    with unit_of_work(db) as uow:
        tokens = [auth.start_session(uow=uow, user_id=user.id) for _ in range(2)]
    with unit_of_work(db) as uow:
        kept = auth.start_session(uow=uow, user_id=other.id)
    with unit_of_work(db) as uow:
        assert auth.end_sessions(uow=uow, user_id=user.id) == 2
    with unit_of_work(db, read_only=True) as uow:
        assert all(auth.resume_session(uow=uow, token=t) is None for t in tokens)
    with unit_of_work(db, read_only=True) as uow:
        assert auth.resume_session(uow=uow, token=kept) is not None


def test_a_password_change_ends_every_session(db, user):
    with unit_of_work(db) as uow:
        token = auth.start_session(uow=uow, user_id=user.id)
    with pytest.raises(InvalidInput):
        with unit_of_work(db) as uow:
            auth.change_password(uow=uow, user_id=user.id, current="wrong-password", new="another-pass-1")
    with unit_of_work(db, read_only=True) as uow:
        assert auth.resume_session(uow=uow, token=token) is not None
    with unit_of_work(db) as uow:
        auth.change_password(uow=uow, user_id=user.id, current=PASSWORD, new="another-pass-1")
    with unit_of_work(db, read_only=True) as uow:
        assert auth.resume_session(uow=uow, token=token) is None
    with unit_of_work(db) as uow:
        assert auth.authenticate(uow=uow, email="anna@studio.test", password="another-pass-1")[0].id == user.id


def test_a_session_lasts_a_working_day(db, user):
    with unit_of_work(db) as uow:
        token = auth.start_session(uow=uow, user_id=user.id, hours=-1)
    with unit_of_work(db, read_only=True) as uow:
        assert auth.resume_session(uow=uow, token=token) is None
    with Session(db) as s:
        row = s.exec(select(UserSession)).one()
    assert row.expires_at - row.created_at < timedelta(0)
    with unit_of_work(db) as uow:
        live = auth.start_session(uow=uow, user_id=user.id)
    with Session(db) as s:
        rows = s.exec(select(UserSession).where(UserSession.revoked_at.is_(None))).all()
    spans = sorted(r.expires_at - r.created_at for r in rows)
    assert timedelta(hours=auth.SESSION_HOURS - 0.01) < spans[-1] <= timedelta(hours=auth.SESSION_HOURS)
    with unit_of_work(db, read_only=True) as uow:
        assert auth.resume_session(uow=uow, token=live) is not None


def test_a_user_removed_from_every_studio_cannot_resume(db, user, tenant):
    from engine.store.models import Membership

    with unit_of_work(db) as uow:
        token = auth.start_session(uow=uow, user_id=user.id, tenant_id=tenant.id)
    with Session(db) as s:
        s.delete(s.exec(select(Membership).where(Membership.user_id == user.id)).one())
        s.commit()
    with unit_of_work(db, read_only=True) as uow:
        assert auth.resume_session(uow=uow, token=token) is None


def test_removing_a_member_ends_their_sessions(db, user, tenant):
    from engine.security.auth import Actor
    from engine.services import member_admin

    with unit_of_work(db) as uow:
        owner = auth.create_user(uow=uow, email="owner@studio.test", password=PASSWORD)
    with unit_of_work(db) as uow:
        auth.add_membership(uow=uow, user_id=owner.id, tenant_id=tenant.id, role="owner")
    with unit_of_work(db) as uow:
        token = auth.start_session(uow=uow, user_id=user.id)
    with unit_of_work(db) as uow:
        kept = auth.start_session(uow=uow, user_id=owner.id)
    with unit_of_work(db) as uow:
        member_admin.remove_member(
            uow=uow, actor=Actor(tenant_id=tenant.id, user_id=owner.id, role="owner"), user_id=user.id
        )
    with unit_of_work(db, read_only=True) as uow:
        assert auth.resume_session(uow=uow, token=token) is None
    with unit_of_work(db, read_only=True) as uow:
        assert auth.resume_session(uow=uow, token=kept) is not None
