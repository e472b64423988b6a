"""The signature check a receiver copies from README.md accepts every secret of a rotation."""

from __future__ import annotations

import re
import time
from pathlib import Path

from engine.outbound.webhooks import sign_payload

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_verify():
    section = README.read_text(encoding="utf-8").split("### Verifying webhook signatures", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace["verify"]


def test_readme_verify_accepts_old_and_new_secret_during_a_rotation():
    verify = _readme_verify()
    body, ts = b'{"hello": "studio"}', int(time.time())
    new, old = sign_payload("new-secret", ts, body), sign_payload("old-secret", ts, body)
    header = f"{new},v1={old.split('v1=')[1]}"
    assert verify("new-secret", header, body) and verify("old-secret", header, body)
    assert not verify("wrong-secret", header, body)
    assert not verify("new-secret", header, body + b" ")
    assert not verify("new-secret", sign_payload("new-secret", ts - 3600, body), body)
