"""Encryption at rest: a key from STUDIO_SECRET_KEY or created once in the data folder (by
``ensure_key`` at a process's start, never on first use)."""

from __future__ import annotations

import stat

import pytest
from cryptography.fernet import Fernet

from engine.security import secrets
from engine.settings import get_settings
from engine.store.db import new_engine


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("STUDIO_SECRET_KEY", raising=False)
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_key_created_once_in_the_data_folder(data_dir):
    key_file = data_dir / "secret.key"
    with pytest.raises(secrets.SecretKeyMissing):  # no key is made behind the operator's back
        secrets.encrypt("hunter2-secret")
    assert not key_file.exists()
    db = new_engine("sqlite://")
    status = secrets.ensure_key(db)  # an empty database: nothing to lose, so the key is made
    assert status.created and status.path == key_file and secrets.ensure_key(db).created is False
    db.dispose()
    token = secrets.encrypt("hunter2-secret")
    assert key_file.exists() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "hunter2" not in token and secrets.decrypt(token) == "hunter2-secret"
    first = key_file.read_text()
    secrets.encrypt("again")
    assert key_file.read_text() == first


def test_environment_key_and_rotation(monkeypatch, data_dir):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("STUDIO_SECRET_KEY", old)
    token = secrets.encrypt("v")
    monkeypatch.setenv("STUDIO_SECRET_KEY", f"{new},{old}")
    assert secrets.decrypt(token) == "v"  # old tokens still readable
    monkeypatch.setenv("STUDIO_SECRET_KEY", new)
    with pytest.raises(secrets.SecretKeyError):
        secrets.decrypt(token)
    monkeypatch.setenv("STUDIO_SECRET_KEY", "not-a-key")
    with pytest.raises(secrets.SecretKeyError):
        secrets.encrypt("v")
    assert not (data_dir / "secret.key").exists()
