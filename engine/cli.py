"""``python -m engine <command>``: init, validate, schema, import, export, worker, bench, classify, api, start,
api-key, tenant, callback-urls, contact, backup, prune, scenarios, secrets.

Files the commands create are for their owner only (umask 077); commands that use the secret key
(``needs_key``) check it first and refuse to start when encrypted secrets exist without it."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError

from engine import services
from engine.errors import EngineError, ValidationFailed
from engine.files import private_umask
from engine.security.auth import system_actor
from engine.security.secrets import ensure_key
from engine.settings import get_settings
from engine.store.db import get_engine
from engine.uow import UnitOfWork, unit_of_work
from engine.workflow.validation import validate


def _load_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EngineError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    except OSError as exc:
        raise EngineError(f"{path}: cannot read ({exc.strerror})") from exc


def cmd_init(args) -> int:
    from engine.demo.seed import init

    settings = get_settings()
    db = get_engine(args.database_url)
    result = init(db, demo_email=settings.demo_email, demo_password=settings.demo_password)
    state = "created" if result["tenant_created"] else "already there"
    print(f"data folder: {settings.data_dir}")
    print(f"database:    {db.url.render_as_string(hide_password=True)}")
    print(f"secret key:  {args.key_status.describe()}")
    print(f"database ready; demo tenant {state}; login {settings.demo_email} / {settings.demo_password}")
    return 0


def cmd_validate(args) -> int:
    failed = False
    for path in args.files:
        try:
            raw = _load_json(path)
        except EngineError as exc:
            print(f"{path}: error: {exc.message}")
            failed = True
            continue
        items = raw if isinstance(raw, list) else [raw]
        for n, item in enumerate(items):
            prefix = f"{path}" + (f"[{n}]" if isinstance(raw, list) else "")
            problems = validate(item)
            for p in problems:
                print(f"{prefix}: {p.severity}: {p.path or '(workflow)'}: {p.message}")
            failed |= any(p.severity == "error" for p in problems)
            if not problems:
                print(f"{prefix}: ok")
    return 1 if failed else 0


def cmd_schema(args) -> int:
    from engine.workflow.definitions import workflow_json_schema

    print(json.dumps(workflow_json_schema(), indent=2))
    return 0


def cmd_import(args) -> int:
    db = get_engine(args.database_url)
    items: list = []
    for path in args.files:
        raw = _load_json(path)
        items += raw if isinstance(raw, list) else [raw]
    with unit_of_work(db) as uow:  # every workflow of the files, or none
        actor = system_actor(services.find_tenant(uow=uow, slug_or_id=args.tenant).id)
        imported = services.import_workflows(uow=uow, actor=actor, items=items)
    for wf in imported:
        print(f"imported {wf.id}  {wf.name}")
    return 0


def cmd_export(args) -> int:
    with unit_of_work(get_engine(args.database_url), read_only=True) as uow:
        actor = system_actor(services.find_tenant(uow=uow, slug_or_id=args.tenant).id)
        items = services.export_workflows(uow=uow, actor=actor, workflow_id=args.workflow)
    print(json.dumps(items[0] if args.workflow else items, indent=2, ensure_ascii=False))
    return 0


def cmd_worker(args) -> int:
    from engine.worker import run_worker

    return run_worker(get_engine(args.database_url), once=args.once, name=args.name)


def cmd_bench(args) -> int:
    """The benchmarks live in the checkout's ``bench/`` folder (not in the installed package):
    imported only here, with a clear error when run outside the checkout."""
    import importlib

    try:
        module = importlib.import_module("bench.http" if args.what == "http" else "bench.run")
    except ModuleNotFoundError as exc:
        if exc.name not in ("bench", "bench.http", "bench.run"):
            raise
        print(
            "error: the benchmarks are in the source checkout's bench/ folder, which the installed package "
            "does not ship; run 'python -m engine bench' from the checkout's top folder",
            file=sys.stderr,
        )
        return 2
    return module.main(args)


def cmd_classify(args) -> int:
    from engine.ai.intent import main as classify_main

    return classify_main(args.texts)


def cmd_api(args) -> int:
    from engine.api.serve import serve

    url = get_engine(args.database_url).url.render_as_string(hide_password=False)
    serve(url, host=args.host, port=args.port, workers=args.workers, verbose=args.verbose)
    return 0


def cmd_tenant(args) -> int:
    db = get_engine(args.database_url)
    if args.tenant_command == "create":
        with unit_of_work(db) as uow:
            tenant = services.create_tenant(uow=uow, slug=args.slug, name=args.name, timezone=args.timezone)
        print(f"created tenant {tenant.slug} ({tenant.name}, {tenant.timezone}) id {tenant.id}")
        print(
            f"next: python -m engine api-key create --tenant {tenant.slug} --name <name> --role owner", file=sys.stderr
        )
        return 0
    with unit_of_work(db, read_only=True) as uow:
        tenants = services.list_tenants(uow=uow)
    if args.json:
        print(
            json.dumps(
                [{"id": t.id, "slug": t.slug, "name": t.name, "timezone": t.timezone} for t in tenants], indent=2
            )
        )
    for t in [] if args.json else tenants:
        print(f"{t.slug:<24}  {t.timezone:<20}  {t.id}  {t.name}")
    if not tenants and not args.json:
        print("no tenants yet; create one with: python -m engine tenant create --slug S --name N", file=sys.stderr)
    return 0


def cmd_api_key(args) -> int:
    with unit_of_work(get_engine(args.database_url), read_only=args.key_command == "list") as uow:
        return _api_key(args, uow)


def _api_key(args, uow: UnitOfWork) -> int:
    actor = system_actor(services.find_tenant(uow=uow, slug_or_id=args.tenant).id)
    if args.key_command == "create":
        key, secret = services.create_api_key(uow=uow, actor=actor, name=args.name, role=args.role)
        # The secret alone on stdout, so KEY=$(python -m engine api-key create ...) works.
        print(
            f"created API key {key.id} ({key.name}, {key.role}); the secret is shown only this once:", file=sys.stderr
        )
        print(secret)
    elif args.key_command == "list":
        for key in services.list_api_keys(uow=uow, actor=actor):
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
            used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
            print(f"{key.id}  {key.prefix}...  {key.role:<7}  {state:<23}  last used {used}  {key.name}")
    else:
        key = services.revoke_api_key(uow=uow, actor=actor, key_id=args.key_id)
        print(f"revoked {key.id} ({key.name})")
    return 0


def cmd_callback_urls(args) -> int:
    """Print the provider callback URLs and the web chat snippet of a tenant."""
    from engine.services import channel_settings

    conf = get_settings()
    base = args.base_url or conf.public_url or conf.api_url  # what the API verifies, never a made-up domain
    if not args.base_url and not conf.public_url:
        print(
            f"STUDIO_PUBLIC_URL is not set: these are the URLs the API verifies when providers call it directly "
            f"at {conf.api_url}; behind HTTPS or a proxy set STUDIO_PUBLIC_URL to the address they call.",
            file=sys.stderr,
        )
    with unit_of_work(get_engine(args.database_url)) as uow:  # the first call creates the chat key
        actor = system_actor(services.find_tenant(uow=uow, slug_or_id=args.tenant).id)
        urls = channel_settings.callback_urls(uow=uow, actor=actor, base_url=base)
        chat_key = channel_settings.chat_key(uow=uow, actor=actor)
    for name, url in urls.items():
        print(f"{name}\t{url}")
    print(f'widget\t<script src="{base.rstrip("/")}/widget.js" data-studio="{chat_key}" async></script>')
    return 0


def cmd_contact(args) -> int:
    from engine.lifecycle.privacy import erase_contact, export_contact

    db = get_engine(args.database_url)
    if args.contact_command == "export":
        with unit_of_work(db, read_only=True) as uow:
            actor = system_actor(services.find_tenant(uow=uow, slug_or_id=args.tenant).id)
            text = json.dumps(
                export_contact(uow=uow, actor=actor, phone=args.phone, email=args.email), indent=2, ensure_ascii=False
            )
        if args.out:
            from engine.files import write_private

            write_private(args.out, text + "\n")  # a member's data: for the owner's eyes only
            print(f"wrote {args.out}", file=sys.stderr)
        else:
            print(text)
        return 0
    if not args.yes:
        print("error: erasure cannot be undone; export first if needed, then repeat with --yes", file=sys.stderr)
        return 2
    with unit_of_work(db) as uow:
        actor = system_actor(services.find_tenant(uow=uow, slug_or_id=args.tenant).id)
        record = erase_contact(uow=uow, actor=actor, phone=args.phone, email=args.email)
    rows = ", ".join(f"{k} {v}" for k, v in record.counts.items() if v) or "nothing stored"
    print(f"erased ({rows}); recorded as {record.id}, contact hash {record.contact_hash}")
    return 0


def cmd_backup(args) -> int:
    from engine.lifecycle.backup import backup

    result = backup(get_engine(args.database_url), args.path, overwrite=args.overwrite)
    print(f"backup written to {result.path} ({result.bytes / 1e6:.1f} MB in {result.seconds:.1f} s, {result.method})")
    return 0


def cmd_secrets(args) -> int:
    """``secrets rotate``: every stored secret re-encrypted with a new key (engine/security/secrets.py)."""
    from engine.security.secrets import rotate

    done = rotate(get_engine(args.database_url))
    if done.key_path is None:
        print(
            f"re-encrypted {done.secrets} secrets with the first key of STUDIO_SECRET_KEY; "
            "remove the other keys from it once every process runs with the new value"
        )
    else:
        print(f"re-encrypted {done.secrets} secrets with a new key in {done.key_path}")
        print(f"the old key is kept in {done.old_key_backup}: backups made before now need it")
    return 0


def cmd_prune(args) -> int:
    from engine.lifecycle.retention import Pruner

    report = Pruner(get_engine(args.database_url)).run(budget=args.budget)
    print(
        f"details removed: {dict(report.details) or 'none'}; rows deleted: {dict(report.deleted) or 'none'}; "
        f"{report.batches} batches; {report.vacuumed_pages} pages given back"
        + ("" if report.finished else "; more to do (run again)")
    )
    return 0


def cmd_scenarios(args) -> int:
    """Run a studio's test-console scenarios: one line per scenario, exit 1 on any failure."""
    from engine.services import scenarios

    with unit_of_work(get_engine(args.database_url), read_only=args.scenario_command == "list") as uow:
        actor = system_actor(services.find_tenant(uow=uow, slug_or_id=args.tenant).id)
        if args.scenario_command == "list":
            for sc in scenarios.list_scenarios(uow=uow, actor=actor):
                print(f"{sc.status:<9}  {sc.name}")
            return 0
        results = scenarios.run_all(uow=uow, actor=actor)
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.name}" + (f"  -- {'; '.join(r.failures)}" if r.failures else ""))
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} pass, {failed} fail", file=sys.stderr)
    return 1 if failed else 0


def cmd_start(args) -> int:
    """The whole product: migrate and seed (``init``), then the app, the API and a worker, kept
    running together until Ctrl-C or SIGTERM (engine/supervisor.py)."""
    import subprocess

    from engine.supervisor import Addresses, addresses_from_env, start

    root = Path(__file__).resolve().parent.parent
    if not (root / "app.py").is_file():
        raise EngineError(f"'start' runs the app from the source checkout; {root / 'app.py'} is missing")
    addresses_from_env(os.environ)  # a bad port is refused before anything starts
    init = [sys.executable, "-m", "engine"] + (["--database-url", args.database_url] if args.database_url else [])
    done = subprocess.run([*init, "init"], cwd=root, check=False)
    if done.returncode != 0:
        return done.returncode

    def announce(where: Addresses) -> None:
        print(f"Open {where.app_url}  (the app)")
        print(f"API  {where.api_url}  (provider webhooks, web chat widget, REST; docs at /docs)")
        print("A worker runs beside them. Ctrl-C stops all three.", flush=True)

    app_args = [a for a in args.app_args if a != "--"]
    return start(cwd=str(root), database_url=args.database_url, app_args=app_args, announce=announce)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="Studio Automations engine")
    parser.add_argument("--database-url", default=None, help="overrides DATABASE_URL")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "init", help="create or migrate the database and seed the demo tenant; shows the data folder and key"
    ).set_defaults(func=cmd_init, needs_key=True)
    p = sub.add_parser("validate", help="check workflow JSON files; exit 1 on errors")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_validate)
    sub.add_parser("schema", help="print the JSON Schema of the workflow format").set_defaults(func=cmd_schema)
    p = sub.add_parser("import", help="import workflow JSON files into a tenant (all or nothing)")
    p.add_argument("files", nargs="+")
    p.add_argument("--tenant", required=True, help="tenant slug or id")
    p.set_defaults(func=cmd_import)
    p = sub.add_parser("export", help="print a tenant's workflows as JSON")
    p.add_argument("--tenant", required=True)
    p.add_argument("--workflow", default=None, help="one workflow id")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("worker", help="run due work (waits, follow-ups, retries, cron)")
    p.add_argument("--once", action="store_true", help="run what is due now, then exit")
    p.add_argument("--name", default=None, help="worker name in leases (default host:pid)")
    p.set_defaults(func=cmd_worker, needs_key=True)
    p = sub.add_parser("bench", help="measure executions per second ('bench http': the REST API under load)")
    p.add_argument(
        "what",
        nargs="?",
        default="engine",
        choices=["engine", "http"],
        help="engine: in-process figures (a), (b), (c); http: POST /api/events over loopback",
    )
    p.add_argument("--duration", type=float, default=20, help="http: seconds per load run")
    p.add_argument("--connections", default="16,64", help="http: connection counts, comma-separated")
    p.add_argument(
        "--pg-workers", type=int, default=2, help="http: PostgreSQL server processes to compare with 1 (0: skip)"
    )
    p.add_argument("--python-load", action="store_true", help="http: use bench/loadgen.py even when wrk is installed")
    p.add_argument("--n", type=int, default=2000, help="events per measurement")
    p.add_argument("--waiting", type=int, default=100_000, help="waiting executions for (c)")
    p.add_argument(
        "--producers",
        type=int,
        default=40,
        help="concurrent callers for (a) and (b), like the REST API's 40 worker threads (default 40)",
    )
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("classify", help="print intent<TAB>confidence per text (built-in classifier)")
    p.add_argument("texts", nargs="+")
    p.set_defaults(func=cmd_classify)
    p = sub.add_parser("api", help="serve the REST API (OpenAPI docs at /docs)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (PostgreSQL only; SQLite runs one process, see engine/api/serve.py)",
    )
    p.set_defaults(func=cmd_api, needs_key=True)
    p = sub.add_parser(
        "start", help="init, then run the app, the API and a worker together (what scripts/start.sh runs)"
    )
    p.add_argument("app_args", nargs=argparse.REMAINDER, help="after --: more options for streamlit run")
    p.set_defaults(func=cmd_start)
    p = sub.add_parser("tenant", help="create or list studios (tenants)")
    tenants = p.add_subparsers(dest="tenant_command", required=True)
    t = tenants.add_parser("create", help="a new studio")
    t.add_argument("--slug", required=True, help="short id: lower-case letters, digits, dashes")
    t.add_argument("--name", required=True, help="the studio's name")
    t.add_argument("--timezone", default="Europe/Berlin", help="IANA timezone (default Europe/Berlin)")
    t = tenants.add_parser("list", help="every studio: slug, timezone, id, name")
    t.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=cmd_tenant, needs_key=True)
    p = sub.add_parser("api-key", help="create, list or revoke a tenant's API keys")
    keys = p.add_subparsers(dest="key_command", required=True)
    k = keys.add_parser("create", help="print a new key's secret (shown once)")
    k.add_argument("--name", required=True, help="what the key is for, e.g. CRM")
    k.add_argument("--role", default="editor", choices=["owner", "editor", "analyst"])
    k = keys.add_parser("list", help="the tenant's keys (never the secrets)")
    k = keys.add_parser("revoke", help="stop a key from working")
    k.add_argument("key_id", metavar="ID")
    for k in keys.choices.values():
        k.add_argument("--tenant", required=True, help="tenant slug or id")
    p.set_defaults(func=cmd_api_key)
    p = sub.add_parser(
        "callback-urls", help="print the URLs to paste into Meta's, Twilio's and the mail service's consoles"
    )
    p.add_argument("--tenant", required=True, help="tenant slug or id")
    p.add_argument("--base-url", default=None, help="public address of the API (default STUDIO_PUBLIC_URL)")
    p.set_defaults(func=cmd_callback_urls, needs_key=True)
    p = sub.add_parser("contact", help="a member's data (GDPR): export it as JSON, or erase it")
    contact = p.add_subparsers(dest="contact_command", required=True)
    c_export = contact.add_parser("export", help="everything stored about one phone number or e-mail address")
    c_export.add_argument("--out", default=None, help="write to this file instead of stdout")
    c_erase = contact.add_parser("erase", help="anonymise the contact everywhere (cannot be undone)")
    c_erase.add_argument("--yes", action="store_true", help="confirm the erasure")
    for c in (c_export, c_erase):
        c.add_argument("--tenant", required=True, help="tenant slug or id")
        who = c.add_mutually_exclusive_group(required=True)
        who.add_argument("--phone", default=None)
        who.add_argument("--email", default=None)
    p.set_defaults(func=cmd_contact)
    p = sub.add_parser("backup", help="write a consistent copy of the database while it runs")
    p.add_argument("path", help="target file (SQLite copy, or pg_dump custom format on PostgreSQL)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_backup)
    p = sub.add_parser("prune", help="apply the studios' retention now (the worker also does this)")
    p.add_argument("--budget", type=float, default=None, help="stop after this many seconds (default: until done)")
    p.set_defaults(func=cmd_prune)
    p = sub.add_parser("scenarios", help="run or list a studio's test-console scenarios (exit 1 on any failure)")
    sc = p.add_subparsers(dest="scenario_command", required=True)
    for name, text in (("run", "replay every scenario in test mode"), ("list", "scenarios with their last result")):
        sc.add_parser(name, help=text).add_argument("--tenant", required=True, help="tenant slug or id")
    p.set_defaults(func=cmd_scenarios, needs_key=True)
    p = sub.add_parser("secrets", help="the key that encrypts studio secrets (see README: key backup and rotation)")
    keys = p.add_subparsers(dest="secrets_command", required=True)
    keys.add_parser(
        "rotate", help="re-encrypt every stored secret with a new key (the old key file is kept as a backup)"
    )
    p.set_defaults(func=cmd_secrets, needs_key=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command in ("worker", "start") else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    private_umask()
    try:
        if getattr(args, "needs_key", False):
            db = get_engine(args.database_url)
            args.key_status = ensure_key(db)
            db.dispose()  # `api` forks its server processes: none may inherit an open connection
        return args.func(args)
    except ValidationFailed as exc:
        for p in exc.problems:
            print(f"{p.severity}: {p.path or '(workflow)'}: {p.message}", file=sys.stderr)
        return 1
    except EngineError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except DBAPIError as exc:
        # No traceback for a missing schema or an unreachable server: say what to do.
        logging.getLogger(__name__).debug("database error", exc_info=True)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else exc.__class__.__name__
        print(
            f"error: database error ({reason}); is the database reachable and set up with 'python -m engine init'?",
            file=sys.stderr,
        )
        return 1
