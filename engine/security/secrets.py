"""Encryption at rest for studio secrets (provider tokens, passwords, API keys of AI providers).

Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) with one process-wide key:
``STUDIO_SECRET_KEY`` (a urlsafe-base64 32-byte Fernet key) or, when unset, a key created
once in the data folder (``<STUDIO_DATA_DIR>/secret.key``, mode 0600) on first use.
Several keys may be given comma-separated in ``STUDIO_SECRET_KEY``: the first encrypts, all
decrypt (key rotation with :class:`cryptography.fernet.MultiFernet`).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from engine.errors import EngineError

logger = logging.getLogger(__name__)

KEY_FILE_NAME = "secret.key"
_lock = threading.Lock()
_cache: dict[str, MultiFernet] = {}


class SecretKeyError(EngineError):
    """The studio secret key is missing or does not decrypt this value (was STUDIO_SECRET_KEY changed?)."""


def _key_file(data_dir: Path) -> Path:
    return data_dir / KEY_FILE_NAME


def _load_or_create_key(data_dir: Path) -> str:
    path = _key_file(data_dir)
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    tmp = path.with_name(f".{KEY_FILE_NAME}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    try:
        os.link(tmp, path)  # atomic; fails if another process created the key first
    except FileExistsError:
        return path.read_text().strip()
    finally:
        tmp.unlink(missing_ok=True)
    logger.warning("created a new secret key in %s (set STUDIO_SECRET_KEY to manage it yourself)", path)
    return key


def _keys() -> str:
    from engine.settings import get_settings

    configured = os.environ.get("STUDIO_SECRET_KEY", "").strip()
    if configured:
        return configured
    return _load_or_create_key(Path(get_settings().data_dir))


def fernet() -> MultiFernet:
    """The process's cipher (cached per key material)."""
    material = _keys()
    with _lock:
        found = _cache.get(material)
        if found is None:
            try:
                found = MultiFernet([Fernet(k.strip().encode()) for k in material.split(",") if k.strip()])
            except (ValueError, TypeError) as exc:
                raise SecretKeyError("STUDIO_SECRET_KEY is not a valid Fernet key (32 url-safe base64 bytes)") from exc
            _cache[material] = found
        return found


def encrypt(plaintext: str) -> str:
    """Encrypt a secret for storage; returns a Fernet token (text)."""
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """Decrypt a stored token; raises :class:`SecretKeyError` if the key does not fit."""
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretKeyError() from exc
