"""Encryption at rest for studio secrets (provider tokens, passwords, API keys of AI providers).

Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) with one process-wide key:
``STUDIO_SECRET_KEY`` (a urlsafe-base64 32-byte Fernet key) or the key file
``<data folder>/secret.key`` (mode 0600; the data folder is absolute, see ``engine.settings``).
Several comma-separated keys (in the variable or the file): the first encrypts, all decrypt
(:class:`cryptography.fernet.MultiFernet`).

The key is never created behind the operator's back. :func:`ensure_key` runs when a process
starts (``python -m engine init``, ``api``, ``worker``, the app): it creates the key file only
while the database holds no encrypted secret, and otherwise refuses with the path where the key
was expected (a new key would leave every stored secret unreadable). Encrypting or decrypting
without a key raises :class:`SecretKeyMissing`. The file is read on each use, so a rotation
(:func:`rotate`, ``python -m engine secrets rotate``) reaches running processes at once.

Where encrypted secrets are stored (:func:`stored_secrets`): every ``tenant_secrets`` row, and
every string under a key ending in ``Encrypted`` in a studio's settings (the AI provider's
``settings.ai.apiKeyEncrypted``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.engine import Engine

from engine.errors import EngineError
from engine.files import private_dir, write_private
from engine.store.db import reader

logger = logging.getLogger(__name__)

KEY_FILE_NAME = "secret.key"
ENV = "STUDIO_SECRET_KEY"
_lock = threading.Lock()
_cache: dict[str, MultiFernet] = {}


class SecretKeyError(EngineError):
    """The studio secret key is missing or does not decrypt this value (was STUDIO_SECRET_KEY changed?)."""


class SecretKeyMissing(SecretKeyError):
    """The studio secret key is missing (see the server log for where it was expected)."""


def key_file() -> Path:
    """Where the key file is expected: ``<data folder>/secret.key``, an absolute path."""
    from engine.settings import get_settings

    return get_settings().data_dir / KEY_FILE_NAME


def _configured() -> str | None:
    return os.environ.get(ENV, "").strip() or None


def _material() -> str:
    """The key text (one or more comma-separated keys) from the environment or the key file."""
    configured = _configured()
    if configured:
        return configured
    path = key_file()
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        logger.error("no secret key: %s is missing and %s is not set", path, ENV)
        raise SecretKeyMissing() from None


def _cipher(material: str) -> MultiFernet:
    with _lock:
        found = _cache.get(material)
        if found is None:
            try:
                found = MultiFernet([Fernet(k.strip().encode()) for k in material.split(",") if k.strip()])
            except (ValueError, TypeError) as exc:
                raise SecretKeyError(f"{ENV} is not a valid Fernet key (32 url-safe base64 bytes)") from exc
            _cache[material] = found
        return found


def fernet() -> MultiFernet:
    """The process's cipher (cached per key material)."""
    return _cipher(_material())


def encrypt(plaintext: str) -> str:
    """Encrypt a secret for storage; returns a Fernet token (text)."""
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """Decrypt a stored token; raises :class:`SecretKeyError` if the key does not fit."""
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretKeyError() from exc


# --------------------------------------------------------------------------- stored secrets


@dataclass(frozen=True)
class StoredSecret:
    """One encrypted value in the database: a ``tenant_secrets`` row or a path in a studio's settings."""

    table: str  # "tenant_secrets" or "tenants"
    row_id: str
    path: tuple[str, ...]  # the keys inside tenants.settings; () for a tenant_secrets row
    token: str

    @property
    def where(self) -> str:
        return f"{self.table} {self.row_id}" + (f" settings.{'.'.join(self.path)}" if self.path else "")


def _tables(conn: sa.Connection) -> tuple[sa.Table, sa.Table]:
    from engine.store.models import Tenant, TenantSecret

    return TenantSecret.__table__, Tenant.__table__


def stored_secrets(conn: sa.Connection, *, for_update: bool = False) -> Iterator[StoredSecret]:
    """Every encrypted value in the database (nothing when the schema is not there yet)."""
    if not sa.inspect(conn).has_table("tenant_secrets"):
        return
    secrets_t, tenants = _tables(conn)
    query = sa.select(secrets_t.c.id, secrets_t.c.ciphertext).order_by(secrets_t.c.id)
    for row_id, token in conn.execute(query.with_for_update() if for_update else query):
        if token:
            yield StoredSecret("tenant_secrets", row_id, (), token)
    query = sa.select(tenants.c.id, tenants.c.settings).order_by(tenants.c.id)
    for row_id, settings in conn.execute(query.with_for_update() if for_update else query):
        for path, token in _encrypted_in(settings or {}, ()):
            yield StoredSecret("tenants", row_id, path, token)


def _encrypted_in(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            if isinstance(key, str) and key.endswith("Encrypted") and isinstance(inner, str) and inner:
                yield (*path, key), inner
            else:
                yield from _encrypted_in(inner, (*path, str(key)))


# --------------------------------------------------------------------------- start-up


@dataclass(frozen=True)
class KeyStatus:
    """Where the process's key comes from (``source``: "environment" or "file")."""

    source: str
    path: Path | None
    created: bool
    secrets: int
    fits: bool  # the key decrypts a stored secret (True when none is stored)

    def describe(self) -> str:
        where = f"{ENV}" if self.path is None else str(self.path)
        state = "created now: back it up with the database" if self.created else "found"
        fit = "" if self.fits else f"; WARNING: it does not decrypt the stored secrets ({self.secrets})"
        return f"{where} ({state}; {self.secrets} encrypted secrets stored{fit})"


def ensure_key(db: Engine) -> KeyStatus:
    """At a process's start: the key for ``db``'s secrets is at hand, or none is stored and one is made.

    Raises :class:`SecretKeyMissing` naming the expected path when the database holds encrypted
    secrets but neither ``STUDIO_SECRET_KEY`` nor the key file is there: a new key would make
    them unreadable for good. A key that does not decrypt them is logged as an error and
    reported in the status (the process still starts: its other work goes on).
    """
    with reader(db).connect() as conn:
        stored = list(stored_secrets(conn))
    path = None if _configured() else key_file()
    created = False
    if path is not None and not path.exists():
        if stored:
            raise SecretKeyMissing(
                f"the secret key is missing: expected at {path} (or in {ENV}); the database holds "
                f"{len(stored)} encrypted secrets that only that key opens. Restore the key file from your "
                f"backup (or set {ENV}); a new key would make them unreadable, so none is created"
            )
        created = _create_key(path)
    fits = not stored or _opens(stored[-1].token)
    if not fits:
        logger.error("the secret key (%s) does not decrypt the stored secrets", path or ENV)
    return KeyStatus("environment" if path is None else "file", path, created, len(stored), fits)


def _opens(token: str) -> bool:
    try:
        fernet().decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def _create_key(path: Path) -> bool:
    """A new key file at ``path`` (0600); False when another process created it first."""
    private_dir(path.parent)
    tmp = path.with_name(f".{KEY_FILE_NAME}.{os.getpid()}")
    write_private(tmp, Fernet.generate_key().decode() + "\n")
    try:
        os.link(tmp, path)  # atomic; fails if another process created the key first
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    logger.warning("created a new secret key in %s: back it up with the database", path)
    return True


# --------------------------------------------------------------------------- rotation


@dataclass(frozen=True)
class Rotation:
    """What :func:`rotate` did."""

    secrets: int
    key_path: Path | None  # None: the keys came from STUDIO_SECRET_KEY
    old_key_backup: Path | None


def rotate(db: Engine, *, now: datetime | None = None) -> Rotation:
    """Re-encrypt every stored secret with a new key, in one transaction.

    Key file: a new key is made; the old file is kept as ``secret.key.<time>.old`` (backups made
    before the rotation need it). The file first holds ``new,old`` (every running process
    encrypts with the new key and still decrypts the old), then the database is re-encrypted in
    one transaction, then the file holds the new key alone. ``STUDIO_SECRET_KEY``: the secrets
    are re-encrypted with its first key (put a new key in front of the old one, restart, rotate,
    then drop the old one). Every secret is decrypted before anything is changed: one that does
    not decrypt stops the rotation with nothing changed.
    """
    old_material = _material()
    old = _cipher(old_material)
    with reader(db).connect() as conn:
        _check_all_decrypt(old, list(stored_secrets(conn)))
    if _configured():
        return Rotation(_reencrypt(db, old), None, None)
    path = key_file()
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    backup = write_private(path.with_name(f"{KEY_FILE_NAME}.{stamp}.old"), old_material + "\n")
    new_key = Fernet.generate_key().decode()
    write_private(path, f"{new_key},{old_material}\n")
    try:
        count = _reencrypt(db, _cipher(f"{new_key},{old_material}"))
    except BaseException:
        # Something may have been encrypted with the new key meanwhile: keep it readable, but
        # encrypt with the old key again, as before the rotation.
        write_private(path, f"{old_material},{new_key}\n")
        raise
    write_private(path, new_key + "\n")
    logger.warning("rotated the secret key in %s (%s secrets); the old key is kept in %s", path, count, backup)
    return Rotation(count, path, backup)


def _check_all_decrypt(cipher: MultiFernet, stored: list[StoredSecret]) -> None:
    for secret in stored:
        try:
            cipher.decrypt(secret.token.encode())
        except InvalidToken:
            raise SecretKeyError(
                f"the current key does not decrypt {secret.where}: nothing was rotated "
                "(restore the key it was encrypted with, or set that secret again)"
            ) from None


def _reencrypt(db: Engine, cipher: MultiFernet) -> int:
    """Every stored secret re-encrypted with ``cipher``'s first key, in one transaction."""
    from engine.store.db import session_scope

    with session_scope(db) as session:
        conn = session.connection()
        secrets_t, tenants = _tables(conn)
        stored = list(stored_secrets(conn, for_update=True))
        settings: dict[str, Any] = {}
        for secret in stored:
            token = cipher.rotate(secret.token.encode()).decode()
            if secret.table == "tenant_secrets":
                conn.execute(sa.update(secrets_t).where(secrets_t.c.id == secret.row_id).values(ciphertext=token))
            else:
                if secret.row_id not in settings:
                    settings[secret.row_id] = conn.execute(
                        sa.select(tenants.c.settings).where(tenants.c.id == secret.row_id)
                    ).scalar_one()
                _set_in(settings[secret.row_id], secret.path, token)
        for tenant_id, value in settings.items():
            conn.execute(sa.update(tenants).where(tenants.c.id == tenant_id).values(settings=value))
    return len(stored)


def _set_in(value: dict[str, Any], path: tuple[str, ...], token: str) -> None:
    for key in path[:-1]:
        value = value[key]
    value[path[-1]] = token
