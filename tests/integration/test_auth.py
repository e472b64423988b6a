"""Users, passwords, memberships and login throttling."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from engine.errors import InvalidInput, PermissionDenied
from engine.security import auth
from engine.store.models import User, utcnow
from engine.uow import unit_of_work

PASSWORD = "correct horse battery"


@pytest.fixture
def owner(db, tenant, tenant_factory):
    """A user who owns studio-a and is an analyst in a second studio."""
    with unit_of_work(db) as uow:
        user = auth.create_user(uow=uow, email="  Ana@Studio.Example ", password=PASSWORD, name="Ana")
    with unit_of_work(db) as uow:
        auth.add_membership(uow=uow, user_id=user.id, tenant_id=tenant.id, role="owner")
    with unit_of_work(db) as uow:
        auth.add_membership(uow=uow, user_id=user.id, tenant_id=tenant_factory("studio-z").id, role="analyst")
    return user


def fail_login(db, times: int, clock=utcnow) -> None:
    for _ in range(times):
        with pytest.raises(auth.LoginFailed):
            with unit_of_work(db, clock=clock) as uow:
                auth.authenticate(uow=uow, email="ana@studio.example", password="wrong password")


class FrozenClock:
    """Login throttling in seconds, independent of how long argon2 takes on a busy machine."""

    def __init__(self) -> None:
        self.at = utcnow()

    def __call__(self):
        return self.at


def test_login_with_the_right_password_returns_the_user_and_memberships(db, owner):
    with unit_of_work(db) as uow:
        user, memberships = auth.authenticate(uow=uow, email="ANA@studio.example", password=PASSWORD)
    assert user.id == owner.id and user.email == "ana@studio.example"
    assert [(t.slug, role) for t, role in memberships] == [("studio-a", "owner"), ("studio-z", "analyst")]


def test_passwords_are_stored_as_argon2_hashes(db, owner):
    assert owner.password_hash.startswith("$argon2") and PASSWORD not in owner.password_hash


def test_a_wrong_password_fails_with_a_message_that_does_not_say_which_part_was_wrong(db, owner):
    with pytest.raises(auth.LoginFailed) as wrong_password:
        with unit_of_work(db) as uow:
            auth.authenticate(uow=uow, email="ana@studio.example", password="nope-nope")
    with pytest.raises(auth.LoginFailed) as unknown_user:
        with unit_of_work(db) as uow:
            auth.authenticate(uow=uow, email="nobody@studio.example", password=PASSWORD)
    assert wrong_password.value.message == unknown_user.value.message == "Wrong e-mail or password."


def test_repeated_wrong_passwords_throttle_even_the_right_password(db, owner):
    clock = FrozenClock()
    fail_login(db, auth.FREE_ATTEMPTS, clock)
    with pytest.raises(auth.LoginThrottled, match=r"Try again in \d+ seconds"):
        with unit_of_work(db, clock=clock) as uow:
            auth.authenticate(uow=uow, email="ana@studio.example", password=PASSWORD)


def test_the_lock_grows_with_each_further_failure(db, owner):
    clock = FrozenClock()

    def locked_until():
        with Session(db) as s:
            return s.exec(select(User).where(User.id == owner.id)).one().locked_until

    fail_login(db, auth.FREE_ATTEMPTS, clock)
    first = (locked_until() - clock.at).total_seconds()
    clock.at = locked_until() + timedelta(seconds=1)  # the first lock has expired
    fail_login(db, 1, clock)
    assert (locked_until() - clock.at).total_seconds() > first > 0


def expire_lock(db, user_id: str) -> None:
    with Session(db) as s:
        user = s.get(User, user_id)
        user.locked_until = utcnow() - timedelta(seconds=1)
        s.add(user)
        s.commit()


def test_after_the_lock_expires_the_right_password_works_and_resets_the_count(db, owner):
    fail_login(db, auth.FREE_ATTEMPTS)
    expire_lock(db, owner.id)
    with unit_of_work(db) as uow:
        auth.authenticate(uow=uow, email="ana@studio.example", password=PASSWORD)
    with Session(db) as s:
        user = s.get(User, owner.id)
        assert (user.failed_logins, user.locked_until) == (0, None)
    fail_login(db, auth.FREE_ATTEMPTS - 1)
    with unit_of_work(db) as uow:
        auth.authenticate(
            uow=uow, email="ana@studio.example", password=PASSWORD
        )  # still under the limit: not throttled


def test_an_unknown_email_fails_like_a_wrong_password(db, owner):
    for _ in range(auth.FREE_ATTEMPTS + 2):
        with pytest.raises(auth.LoginFailed):
            with unit_of_work(db) as uow:
                auth.authenticate(uow=uow, email="ghost@studio.example", password=PASSWORD)


def test_a_second_user_with_the_same_email_is_refused(db, owner):
    with pytest.raises(InvalidInput, match="already exists"):
        with unit_of_work(db) as uow:
            auth.create_user(uow=uow, email="ana@studio.example", password=PASSWORD)


@pytest.mark.parametrize(
    ("email", "password", "field"), [("no-at-sign", PASSWORD, "email"), ("bo@studio.example", "short", "password")]
)
def test_a_bad_email_or_short_password_is_refused_naming_the_field(db, email, password, field):
    with pytest.raises(InvalidInput) as exc:
        with unit_of_work(db) as uow:
            auth.create_user(uow=uow, email=email, password=password)
    assert exc.value.field == field


def test_an_unknown_role_is_refused(db, owner, tenant):
    with pytest.raises(InvalidInput, match="role"):
        with unit_of_work(db) as uow:
            auth.add_membership(uow=uow, user_id=owner.id, tenant_id=tenant.id, role="janitor")


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("owner", {"read", "edit", "admin"}),
        ("editor", {"read", "edit"}),
        ("analyst", {"read"}),
    ],
)
def test_roles_grant_their_permissions_and_nothing_more(role, allowed):
    actor = auth.Actor("t1", role=role)
    for permission in ("read", "edit", "admin"):
        assert actor.can(permission) == (permission in allowed)
        if permission not in allowed:
            with pytest.raises(PermissionDenied, match=role):
                actor.require(permission)


def test_only_owners_add_members_and_members_are_listed_per_studio(db, tenant_factory):
    import pytest as _pytest

    from engine import services
    from engine.errors import Conflict, PermissionDenied
    from engine.security.auth import Actor, authenticate, system_actor

    a, b = tenant_factory(), tenant_factory()
    owner_a = system_actor(a.id)
    with unit_of_work(db) as uow:
        services.add_member(uow=uow, actor=owner_a, email="Eva@Studio.de", password="eva-password-1", role="editor")
    with _pytest.raises(Conflict):
        with unit_of_work(db) as uow:
            services.add_member(uow=uow, actor=owner_a, email="eva@studio.de", role="analyst")
    editor = Actor(tenant_id=a.id, role="editor")
    with _pytest.raises(PermissionDenied):
        with unit_of_work(db) as uow:
            services.add_member(uow=uow, actor=editor, email="x@studio.de", password="x-password-1", role="owner")
    # the same person joins a second studio without a new password
    with unit_of_work(db) as uow:
        services.add_member(uow=uow, actor=system_actor(b.id), email="eva@studio.de", role="analyst")
    with unit_of_work(db, read_only=True) as uow:
        assert [(m.email, m.role) for m in services.list_members(uow=uow, actor=owner_a)] == [
            ("eva@studio.de", "editor")
        ]
    with unit_of_work(db, read_only=True) as uow:
        assert [(m.email, m.role) for m in services.list_members(uow=uow, actor=system_actor(b.id))] == [
            ("eva@studio.de", "analyst")
        ]
    with unit_of_work(db) as uow:
        _, memberships = authenticate(uow=uow, email="eva@studio.de", password="eva-password-1")
    assert sorted(role for _, role in memberships) == ["analyst", "editor"]
