"""Inbound webhook benchmark: signed WhatsApp deliveries over loopback HTTP into the real API.

    python -m bench.bench_inbound                         # temporary SQLite file
    python -m bench.bench_inbound --requests 2000 --concurrency 8
    python -m bench.bench_inbound --database-url postgresql://postgres@127.0.0.1:5432/bench

Starts the API (uvicorn) on 127.0.0.1, configures a studio with WhatsApp secrets and one
enabled ``whatsapp_message`` workflow that replies, then posts signed webhooks (each a new
message id; then the same ones again as provider retries). Prints requests/s and latency
percentiles: what a provider sees (signature check, event + execution + outbox row
committed, 200). Delivery of the replies is the worker's job and is not part of the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from engine.uow import unit_of_work


def _server(db):
    import uvicorn

    from engine.api import create_app

    sock_port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(db), host="127.0.0.1", port=sock_port, log_level="warning", workers=1)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{sock_port}"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _body(i: int) -> bytes:
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "WABA",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "contacts": [{"wa_id": f"49176{i % 5000:07d}", "profile": {"name": "Mia"}}],
                                "messages": [
                                    {
                                        "from": f"49176{i % 5000:07d}",
                                        "id": f"wamid.BENCH{i:08d}",
                                        "timestamp": str(int(time.time())),
                                        "type": "text",
                                        "text": {"body": "Wann ist morgen Yoga?"},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()


def run(requests: int, concurrency: int, database_url: str | None) -> dict:
    from cryptography.fernet import Fernet

    os.environ.setdefault("STUDIO_SECRET_KEY", Fernet.generate_key().decode())
    from engine import services
    from engine.inbound.signatures import meta_signature
    from engine.security.auth import system_actor
    from engine.services import channel_settings as cs
    from engine.store.db import get_engine, migrate

    tmp = None
    if not database_url:
        tmp = tempfile.TemporaryDirectory()
        database_url = f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    db = get_engine(database_url)
    migrate(db)
    with unit_of_work(db) as uow:
        tenant = services.create_tenant(uow=uow, slug=f"bench-inbound-{int(time.time())}", name="Bench")
    actor = system_actor(tenant.id)
    with unit_of_work(db) as uow:
        cs.save_channel(
            uow=uow,
            actor=actor,
            channel="whatsapp",
            enabled=True,
            values={"phoneNumberId": "1"},
            secrets={"accessToken": "t", "appSecret": "bench-secret", "verifyToken": "v"},
        )
        services.create_workflow(
            uow=uow,
            actor=actor,
            data={
                "name": "Reply",
                "trigger": {"type": "whatsapp_message", "config": {}},
                "conditions": [],
                "actions": [
                    {
                        "id": "r",
                        "type": "send_whatsapp",
                        "config": {"message": "Hallo {{trigger.content}}"},
                        "nextActionId": None,
                    }
                ],
            },
        )
        hook = cs.webhook_id(uow=uow, actor=actor)
    server, thread, base = _server(db)
    url = f"{base}/hooks/{hook}/whatsapp"
    bodies = [_body(i) for i in range(requests)]
    signed = [(b, meta_signature("bench-secret", b)) for b in bodies]
    figures = {}
    try:
        with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as client:

            def post(item):
                body, sig = item
                t0 = time.perf_counter()
                r = client.post(
                    url, content=body, headers={"X-Hub-Signature-256": sig, "Content-Type": "application/json"}
                )
                assert r.status_code == 200, r.text
                return time.perf_counter() - t0

            for label in ("new messages", "provider retries (duplicates)"):
                start = time.perf_counter()
                with ThreadPoolExecutor(concurrency) as pool:
                    lat = sorted(pool.map(post, signed))
                wall = time.perf_counter() - start
                figures[label] = {
                    "requests/s": round(len(lat) / wall, 1),
                    "p50 ms": round(statistics.median(lat) * 1000, 1),
                    "p95 ms": round(lat[int(len(lat) * 0.95) - 1] * 1000, 1),
                    "max ms": round(lat[-1] * 1000, 1),
                }
            bad = client.post(url, content=bodies[0], headers={"X-Hub-Signature-256": "sha256=00"})
            assert bad.status_code == 403
    finally:
        server.should_exit = True
        thread.join(10)
        db.dispose()
        if tmp:
            tmp.cleanup()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    figures = run(args.requests, args.concurrency, args.database_url)
    print(
        f"inbound WhatsApp webhooks, {args.requests} requests, {args.concurrency} concurrent, "
        f"{(args.database_url or 'sqlite (temp file)').split('@')[-1]}"
    )
    for label, values in figures.items():
        print(f"  {label:32} " + "  ".join(f"{k} {v}" for k, v in values.items()))


if __name__ == "__main__":
    main()
