"""Benchmarks (run from the checkout: ``python -m bench.<name>`` or ``python -m engine bench``).

They create throw-away studios, whose signing secrets need a key. Without ``STUDIO_SECRET_KEY``
and without the data folder's key file, a key of the process's own is used, so a benchmark never
creates the data folder's key (``engine/security/secrets.py``: only ``init`` and the services' start do).
"""

import os

from cryptography.fernet import Fernet

from engine.security.secrets import key_file

if not os.environ.get("STUDIO_SECRET_KEY") and not key_file().exists():
    os.environ["STUDIO_SECRET_KEY"] = Fernet.generate_key().decode()
