"""Files the product creates hold members' data or keys: only their owner may read them.

Every file the product writes (the SQLite database and, through it, its ``-wal`` and ``-shm``
files, which SQLite creates with the database file's mode; the secret key and its backups;
backups; exports) is created with mode 0600, and folders it creates with 0700. The mode is set
when the file is created (``os.open(..., 0o600)``), so there is no moment in which another user
could open it; files left 0644 by older versions are tightened when the product opens them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_umask() -> None:
    """Make this process create files for its owner only (keeps any stricter bits already set)."""
    os.umask(os.umask(0o077) | 0o077)


def private_dir(path: str | os.PathLike) -> Path:
    """``path`` as a folder: each missing folder on the way is created with mode 0700."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=DIR_MODE)
    return path


def private_file(path: str | os.PathLike) -> Path:
    """``path`` exists as a file only its owner may read: created empty with 0600 if missing,
    tightened to 0600 if it is there already (an older version made it 0644)."""
    path = Path(path)
    private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        tighten(path)
    return path


def tighten(*paths: str | os.PathLike) -> None:
    """Set 0600 on those of ``paths`` that exist (one that cannot be changed is left and logged)."""
    for path in paths:
        try:
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, FILE_MODE)
        except FileNotFoundError:
            continue
        except OSError:  # someone else's file, or a read-only file system
            logger.warning("%s is readable by others and could not be changed (chmod 600 it)", path)


def write_private(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` atomically (a temporary file renamed over it), mode 0600."""
    path = Path(path)
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)  # O_TRUNC of a leftover temporary file keeps its old mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
