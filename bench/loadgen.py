"""A small HTTP/1.1 load generator (the fallback when ``wrk`` is not installed).

``python -m bench.loadgen URL --connections 64 --duration 20 --header 'K: V' --body '{...}'``
keeps ``connections`` keep-alive connections busy with POSTs for ``duration`` seconds and
prints one JSON line: requests, ok (2xx), non2xx, errors, req/s, p50/p99 in ms.
SIGINT ends the run early (requests in flight are finished) and still prints the figures.
It is plain asyncio on raw sockets: an HTTP client library would cost more CPU per
request than the server under test, on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from urllib.parse import urlsplit


def _request(url: str, headers: list[str], body: bytes) -> bytes:
    parts = urlsplit(url)
    lines = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *headers,
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def _connection(host: str, port: int, payload: bytes, until: list[float], stats: dict, latencies: list) -> None:
    while time.perf_counter() < until[0]:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            stats["errors"] += 1
            await asyncio.sleep(0.05)
            continue
        try:
            while time.perf_counter() < until[0]:
                start = time.perf_counter()
                writer.write(payload)
                status = await asyncio.wait_for(_read_response(reader), timeout=10)
                latencies.append(time.perf_counter() - start)
                stats["requests"] += 1
                stats["ok" if 200 <= status < 300 else "non2xx"] += 1
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            stats["errors"] += 1
        finally:
            writer.close()


async def run(
    url: str, connections: int, duration: float, headers: list[str], body: bytes, stop_on_sigint: bool = False
) -> dict:
    parts = urlsplit(url)
    payload = _request(url, headers, body)
    stats = {"requests": 0, "ok": 0, "non2xx": 0, "errors": 0}
    latencies: list[float] = []
    start = time.perf_counter()
    until = [start + duration]  # a list: SIGINT moves the end to now
    if stop_on_sigint:
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, until.__setitem__, 0, 0.0)
    await asyncio.gather(
        *(
            _connection(parts.hostname or "127.0.0.1", parts.port or 80, payload, until, stats, latencies)
            for _ in range(connections)
        )
    )
    elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0

    return {**stats, "rps": stats["requests"] / elapsed, "p50_ms": pct(0.50), "p99_ms": pct(0.99), "seconds": elapsed}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--duration", type=float, default=20)
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--body", default="{}")
    args = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    print(
        json.dumps(
            asyncio.run(
                run(args.url, args.connections, args.duration, args.header, args.body.encode(), stop_on_sigint=True)
            )
        )
    )


if __name__ == "__main__":
    main()
