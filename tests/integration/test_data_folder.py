"""Issue 21: the data folder and the secret key do not depend on the current directory; a missing key
is never replaced by a new one while encrypted secrets exist; ``secrets rotate`` re-encrypts them all.

The CLI runs as real processes from folders other than the project's. The project is a folder of
the test's own with the ``engine`` package linked in, so its default data folder (``data/`` in the
project folder) is the test's, not the real checkout's.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from engine.security import secrets
from engine.security.secrets import SecretKeyError, rotate, stored_secrets
from engine.services import channel_settings
from engine.settings import get_settings
from engine.store.db import get_engine
from engine.store.models import Tenant, TenantSecret
from engine.uow import unit_of_work

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path) -> Path:
    """A project folder of its own: ``engine`` linked in, and the checkout's pyproject.toml."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "engine").symlink_to(ROOT / "engine")
    shutil.copy(ROOT / "pyproject.toml", folder / "pyproject.toml")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    return folder


def cli(project: Path, cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m engine ...`` from ``cwd`` with the project's engine and no data folder, key or URL set."""
    full = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "STUDIO_DATA_DIR", "STUDIO_SECRET_KEY")}
    full |= {"PYTHONPATH": str(project)} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=180
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_command_finds_the_same_data_folder_from_any_directory(project, tmp_path):
    a, b, data = tmp_path / "a", tmp_path / "b", project / "data"
    made = cli(project, a, "init")
    assert made.returncode == 0, made.stderr
    # From another folder: the same database and the same key, so the e-mail token decrypts.
    urls = cli(project, b, "callback-urls", "--tenant", "demo")
    assert urls.returncode == 0, urls.stderr
    assert "/email/" in urls.stdout and "secret key" not in urls.stderr
    # The database named absolutely: the key still comes from the data folder, not from the current one.
    named = cli(project, b, "--database-url", f"sqlite:///{data / 'studio.db'}", "callback-urls", "--tenant", "demo")
    assert named.returncode == 0 and named.stdout == urls.stdout, named.stderr
    assert f"data folder: {data}" in made.stdout and f"{data / 'secret.key'} (created now" in made.stdout
    again = cli(project, b, "init")
    assert again.returncode == 0 and "already there" in again.stdout and "(found;" in again.stdout
    assert not (a / "data").exists() and not (b / "data").exists()
    # What the product created is for its owner only.
    assert mode(data) == 0o700
    assert {p.name: mode(p) for p in data.iterdir()} == {p.name: 0o600 for p in data.iterdir()}
    assert {"studio.db", "secret.key"} <= {p.name for p in data.iterdir()}
    # A relative STUDIO_DATA_DIR is taken from the project folder, not from the current one.
    rel = cli(project, b, "init", env={"STUDIO_DATA_DIR": "elsewhere"})
    assert rel.returncode == 0 and f"data folder: {project / 'elsewhere'}" in rel.stdout
    assert (project / "elsewhere" / "studio.db").exists() and not (b / "elsewhere").exists()


def test_a_missing_key_with_stored_secrets_refuses_to_start_and_names_the_path(project, tmp_path):
    b, key = tmp_path / "b", project / "data" / "secret.key"
    assert cli(project, tmp_path / "a", "init").returncode == 0
    kept = key.read_bytes()
    key.unlink()
    for args in (["worker", "--once"], ["api", "--port", "1"], ["init"], ["callback-urls", "--tenant", "demo"]):
        refused = cli(project, b, *args)
        assert refused.returncode == 1, (args, refused.stdout, refused.stderr)
        assert f"expected at {key}" in refused.stderr and "encrypted secrets" in refused.stderr, args
        assert not key.exists(), args  # never a new key
    # Work that needs no key goes on (a backup must be possible exactly when something is lost).
    assert cli(project, b, "backup", str(tmp_path / "copy.db")).returncode == 0
    key.write_bytes(kept)
    assert cli(project, b, "worker", "--once").returncode == 0


@pytest.fixture
def file_key(project, monkeypatch):
    """This process uses the project's data folder and key file, like the CLI processes."""
    monkeypatch.delenv("STUDIO_SECRET_KEY", raising=False)
    monkeypatch.setenv("STUDIO_DATA_DIR", str(project / "data"))
    get_settings.cache_clear()
    yield project / "data" / "secret.key"
    get_settings.cache_clear()


def _store_secrets(db, tenant_id: str) -> None:
    """A channel token (tenant_secrets) and an AI key (settings.ai.apiKeyEncrypted), as the settings store them."""
    token = secrets.encrypt("EAAtok")
    with unit_of_work(db) as uow:
        uow.session.add(TenantSecret(tenant_id=tenant_id, name="channels.whatsapp.accessToken", ciphertext=token))
        tenant = uow.session.get(Tenant, tenant_id)
        assert tenant is not None
        ai = {"provider": "openai_compatible", "baseUrl": "https://ai.example", "model": "m"}
        tenant.settings = {**(tenant.settings or {}), "ai": ai | {"apiKeyEncrypted": secrets.encrypt("sk-rotate")}}


def _tokens(db) -> dict[str, str]:
    with db.connect() as conn:
        return {s.where: s.token for s in stored_secrets(conn)}


def test_rotate_re_encrypts_every_secret_and_the_old_key_no_longer_opens_them(project, tmp_path, file_key):
    assert cli(project, tmp_path / "a", "init").returncode == 0
    db = get_engine(f"sqlite:///{project / 'data' / 'studio.db'}")
    with db.connect() as conn:
        tenant_id = conn.execute(sa.select(Tenant.__table__.c.id).where(Tenant.__table__.c.slug == "demo")).scalar()
    _store_secrets(db, tenant_id)
    old_key, before = file_key.read_text().strip(), _tokens(db)
    assert any("apiKeyEncrypted" in w for w in before) and len(before) >= 3  # + the webhook signing secret
    done = cli(project, tmp_path / "b", "secrets", "rotate")
    assert done.returncode == 0, done.stderr
    assert f"re-encrypted {len(before)} secrets with a new key in {file_key}" in done.stdout
    new_key = file_key.read_text().strip()
    [backup] = [p for p in file_key.parent.iterdir() if p.name.startswith("secret.key.") and p.name.endswith(".old")]
    assert new_key != old_key and "," not in new_key and backup.read_text().strip() == old_key
    assert mode(backup) == mode(file_key) == 0o600 and str(backup) in done.stdout
    after = _tokens(db)
    assert after.keys() == before.keys()
    for where, token in after.items():
        assert token != before[where], where
        assert Fernet(new_key.encode()).decrypt(token.encode()), where
        with pytest.raises(InvalidToken):
            Fernet(old_key.encode()).decrypt(token.encode())
    # The product reads them with the new key (this process reads the key file on each use).
    with unit_of_work(db, read_only=True) as uow:
        assert channel_settings.secret_value(uow=uow, tenant_id=tenant_id, name="channels.whatsapp.accessToken") == (
            "EAAtok"
        )
        settings = uow.session.get(Tenant, tenant_id).settings
    assert secrets.decrypt(settings["ai"]["apiKeyEncrypted"]) == "sk-rotate"
    assert cli(project, tmp_path / "b", "callback-urls", "--tenant", "demo").returncode == 0
    # A secret that no key opens stops a rotation before anything changes: key file, backups, rows.
    with unit_of_work(db) as uow:
        foreign = Fernet(Fernet.generate_key()).encrypt(b"x").decode()
        uow.session.add(TenantSecret(tenant_id=tenant_id, name="channels.sms.authToken", ciphertext=foreign))
    files, rows = sorted(file_key.parent.iterdir()), _tokens(db)
    refused = cli(project, tmp_path / "b", "secrets", "rotate")
    assert refused.returncode == 1 and "nothing was rotated" in refused.stderr
    assert sorted(file_key.parent.iterdir()) == files and file_key.read_text().strip() == new_key
    assert _tokens(db) == rows
    db.dispose()


def test_rotate_with_the_environment_key_and_a_secret_that_does_not_decrypt(db, tenant_factory, monkeypatch, tmp_path):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("STUDIO_SECRET_KEY", old)
    tenant = tenant_factory()
    _store_secrets(db, tenant.id)
    monkeypatch.setenv("STUDIO_SECRET_KEY", f"{new},{old}")  # the new key in front, the old one still decrypts
    done = rotate(db)
    assert done.key_path is None and done.secrets == len(_tokens(db)) >= 3
    for where, token in _tokens(db).items():
        assert Fernet(new.encode()).decrypt(token.encode()), where
        with pytest.raises(InvalidToken):
            Fernet(old.encode()).decrypt(token.encode())
    # One secret written with a key nobody has any more: the rotation stops, nothing is changed.
    with unit_of_work(db) as uow:
        uow.session.add(
            TenantSecret(
                tenant_id=tenant.id,
                name="channels.sms.authToken",
                ciphertext=Fernet(Fernet.generate_key()).encrypt(b"x").decode(),
            )
        )
    before = _tokens(db)
    monkeypatch.setenv("STUDIO_SECRET_KEY", f"{Fernet.generate_key().decode()},{new}")
    with pytest.raises(SecretKeyError) as exc:
        rotate(db)
    assert "tenant_secrets" in exc.value.message and "nothing was rotated" in exc.value.message
    assert _tokens(db) == before
    monkeypatch.setenv("STUDIO_SECRET_KEY", new)
    with unit_of_work(db, read_only=True) as uow:
        assert channel_settings.secret_value(uow=uow, tenant_id=tenant.id, name="channels.whatsapp.accessToken") == (
            "EAAtok"
        )
