"""Browser sessions: a sign-in survives a reload for a working day and ends when it must."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from engine import auth
from engine.errors import InvalidInput
from engine.store.models import UserSession

PASSWORD = "studio-pass-2026"


@pytest.fixture
def user(db, tenant):
    u = auth.create_user(uow=db, email="anna@studio.test", password=PASSWORD, name="Anna")
    auth.add_membership(uow=db, user_id=u.id, tenant_id=tenant.id, role="editor")
    return u


def test_a_session_resumes_with_the_chosen_studio(db, user, tenant):
    token = auth.start_session(uow=db, user_id=user.id)
    found, memberships, chosen = auth.resume_session(uow=db, token=token)
    assert found.id == user.id and [t.id for t, _ in memberships] == [tenant.id] and chosen is None
    auth.choose_session_tenant(uow=db, token=token, tenant_id=tenant.id)
    assert auth.resume_session(uow=db, token=token)[2] == tenant.id


def test_only_the_hash_of_the_token_is_stored(db, user):
    token = auth.start_session(uow=db, user_id=user.id)
    with Session(db) as s:
        row = s.exec(select(UserSession)).one()
    assert token not in row.token_hash and len(row.token_hash) == 64


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_an_unknown_token_signs_nobody_in(db, user, token):
    auth.start_session(uow=db, user_id=user.id)
    assert auth.resume_session(uow=db, token=token) is None


def test_signing_out_ends_only_this_browser(db, user):
    first, second = auth.start_session(uow=db, user_id=user.id), auth.start_session(uow=db, user_id=user.id)
    auth.end_session(uow=db, token=first)
    assert auth.resume_session(uow=db, token=first) is None
    assert auth.resume_session(uow=db, token=second) is not None


def test_end_sessions_signs_a_user_out_everywhere(db, user, tenant):
    other = auth.create_user(uow=db, email="ben@studio.test", password=PASSWORD)
    auth.add_membership(uow=db, user_id=other.id, tenant_id=tenant.id, role="owner")
    tokens = [auth.start_session(uow=db, user_id=user.id) for _ in range(2)]
    kept = auth.start_session(uow=db, user_id=other.id)
    assert auth.end_sessions(uow=db, user_id=user.id) == 2
    assert all(auth.resume_session(uow=db, token=t) is None for t in tokens)
    assert auth.resume_session(uow=db, token=kept) is not None


def test_a_password_change_ends_every_session(db, user):
    token = auth.start_session(uow=db, user_id=user.id)
    with pytest.raises(InvalidInput):
        auth.change_password(uow=db, user_id=user.id, current="wrong-password", new="another-pass-1")
    assert auth.resume_session(uow=db, token=token) is not None
    auth.change_password(uow=db, user_id=user.id, current=PASSWORD, new="another-pass-1")
    assert auth.resume_session(uow=db, token=token) is None
    assert auth.authenticate(uow=db, email="anna@studio.test", password="another-pass-1")[0].id == user.id


def test_a_session_lasts_a_working_day(db, user):
    token = auth.start_session(uow=db, user_id=user.id, hours=-1)
    assert auth.resume_session(uow=db, token=token) is None
    with Session(db) as s:
        row = s.exec(select(UserSession)).one()
    assert row.expires_at - row.created_at < timedelta(0)
    live = auth.start_session(uow=db, user_id=user.id)
    with Session(db) as s:
        rows = s.exec(select(UserSession).where(UserSession.revoked_at.is_(None))).all()
    spans = sorted(r.expires_at - r.created_at for r in rows)
    assert timedelta(hours=auth.SESSION_HOURS - 0.01) < spans[-1] <= timedelta(hours=auth.SESSION_HOURS)
    assert auth.resume_session(uow=db, token=live) is not None


def test_a_user_removed_from_every_studio_cannot_resume(db, user, tenant):
    from engine.store.models import Membership

    token = auth.start_session(uow=db, user_id=user.id, tenant_id=tenant.id)
    with Session(db) as s:
        s.delete(s.exec(select(Membership).where(Membership.user_id == user.id)).one())
        s.commit()
    assert auth.resume_session(uow=db, token=token) is None


def test_removing_a_member_ends_their_sessions(db, user, tenant):
    from engine.auth import Actor
    from engine.services import member_admin

    owner = auth.create_user(uow=db, email="owner@studio.test", password=PASSWORD)
    auth.add_membership(uow=db, user_id=owner.id, tenant_id=tenant.id, role="owner")
    token = auth.start_session(uow=db, user_id=user.id)
    kept = auth.start_session(uow=db, user_id=owner.id)
    member_admin.remove_member(uow=db, actor=Actor(tenant_id=tenant.id, user_id=owner.id, role="owner"),
                               user_id=user.id)
    assert auth.resume_session(uow=db, token=token) is None
    assert auth.resume_session(uow=db, token=kept) is not None
