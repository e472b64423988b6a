"""``python -m engine``: init, validate, schema, import and export, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from engine import services
from engine.demo.seed import demo_workflows
from engine.security.auth import system_actor
from engine.uow import unit_of_work

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "engine" / "examples").glob("*.json"))


def run_cli(
    *args: str, database_url: str | None = None, env: dict | None = None, data_dir: Path | None = None
) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    full_env["STUDIO_DATA_DIR"] = str(data_dir or Path(tempfile.gettempdir()) / "studio-cli-tests")
    full_env.update(env or {})
    argv = [sys.executable, "-m", "engine"] + (["--database-url", database_url] if database_url else []) + list(args)
    return subprocess.run(argv, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120)


def url_of(db) -> str:
    return db.url.render_as_string(hide_password=False)


@pytest.fixture
def acceptance_file(tmp_path) -> Path:
    """A dangling ``nextActionId``, an unknown action type and ``greater_than`` on keyword_match."""
    path = tmp_path / "broken.json"
    path.write_text(
        json.dumps(
            {
                "name": "Broken",
                "trigger": {"type": "whatsapp_message", "config": {}},
                "conditions": [{"type": "keyword_match", "operator": "greater_than", "value": "preis"}],
                "actions": [
                    {"id": "send-1", "type": "send_whatsapp", "config": {"message": "Hallo"}, "nextActionId": "ghost"},
                    {"id": "odd-1", "type": "teleport", "config": {}},
                ],
            }
        )
    )
    return path


# --------------------------------------------------------------------------- validate / schema


def test_validate_reports_each_of_the_three_acceptance_problems_with_its_path(acceptance_file):
    result = run_cli("validate", str(acceptance_file))
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "error: actions[0].nextActionId:" in out and "ghost" in out
    assert "error: actions[1].type:" in out and "teleport" in out
    assert "error: conditions[0].operator:" in out and "greater_than" in out


def test_validate_of_the_spec_examples_exits_0():
    result = run_cli("validate", *map(str, EXAMPLES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": ok") == 4


def test_validate_of_a_list_file_prefixes_each_item_index(tmp_path, acceptance_file):
    good = json.loads(EXAMPLES[0].read_text())
    bad = json.loads(acceptance_file.read_text())
    path = tmp_path / "many.json"
    path.write_text(json.dumps([good, bad]))
    result = run_cli("validate", str(path))
    assert result.returncode == 1
    assert f"{path}[0]: ok" in result.stdout
    assert f"{path}[1]: error: actions[0].nextActionId" in result.stdout


def test_validate_of_a_file_that_is_not_json_says_where(tmp_path):
    path = tmp_path / "half.json"
    path.write_text('{"name": "x",\n  "trigger": ')
    result = run_cli("validate", str(path))
    assert result.returncode == 1
    assert "not valid JSON (line 2" in result.stdout


def test_validate_of_warnings_only_exits_0(tmp_path):
    wf = json.loads(EXAMPLES[0].read_text())
    wf["actions"].append({"id": "never", "type": "wait", "config": {"delay": 1}})
    path = tmp_path / "warn.json"
    path.write_text(json.dumps(wf))
    result = run_cli("validate", str(path))
    assert result.returncode == 0
    assert "warning: actions[1]" in result.stdout


def test_schema_prints_the_json_schema():
    result = run_cli("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "teleport" not in result.stdout and '"branch"' in result.stdout


# --------------------------------------------------------------------------- init / import / export


def test_init_twice_is_idempotent_and_seeds_the_demo_workflows(tmp_path):
    url = f"sqlite:///{tmp_path / 'studio.db'}"
    first = run_cli("init", database_url=url, data_dir=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "demo tenant created" in first.stdout
    second = run_cli("init", database_url=url, data_dir=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "already there" in second.stdout
    exported = run_cli("export", "--tenant", "demo", database_url=url, data_dir=tmp_path)
    names = sorted(wf["name"] for wf in json.loads(exported.stdout))
    assert names == sorted(json.loads(p.read_text())["name"] for p in (ROOT / "engine" / "demo").glob("*.json"))


def test_init_reads_database_url_from_the_environment(tmp_path):
    url = f"sqlite:///{tmp_path / 'env.db'}"
    assert run_cli("init", env={"DATABASE_URL": url}, data_dir=tmp_path).returncode == 0
    assert (tmp_path / "env.db").exists()


def test_init_on_the_test_database_seeds_the_demo_tenant(db):
    result = run_cli("init", database_url=url_of(db))
    assert result.returncode == 0, result.stderr
    with unit_of_work(db, read_only=True) as uow:
        demo = services.find_tenant(uow=uow, slug_or_id="demo")
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_workflows(uow=uow, actor=system_actor(demo.id)).total == len(demo_workflows())


def test_import_then_export_round_trips_the_spec_examples(db, tenant, tmp_path):
    imported = run_cli("import", "--tenant", "studio-a", *map(str, EXAMPLES), database_url=url_of(db))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.count("imported ") == 4
    exported = run_cli("export", "--tenant", tenant.id, database_url=url_of(db))
    assert exported.returncode == 0, exported.stderr
    originals = sorted((json.loads(p.read_text()) for p in EXAMPLES), key=lambda d: d["name"])
    assert sorted(json.loads(exported.stdout), key=lambda d: d["name"]) == originals
    # ... and the export file imports again, into another studio.
    dump = tmp_path / "export.json"
    dump.write_text(exported.stdout)
    with unit_of_work(db) as uow:
        services.create_tenant(uow=uow, slug="studio-c", name="C")
    assert run_cli("import", "--tenant", "studio-c", str(dump), database_url=url_of(db)).returncode == 0
    with unit_of_work(db, read_only=True) as uow:
        assert (
            services.list_workflows(
                uow=uow, actor=system_actor(services.find_tenant(uow=uow, slug_or_id="studio-c").id)
            ).total
            == 4
        )


def test_export_of_one_workflow_prints_one_object(db, actor, spec_examples):
    with unit_of_work(db) as uow:
        wf = services.create_workflow(uow=uow, actor=actor, data=spec_examples[3])
    result = run_cli("export", "--tenant", "studio-a", "--workflow", wf.id, database_url=url_of(db))
    assert result.returncode == 0
    assert json.loads(result.stdout) == spec_examples[3]


def test_import_of_a_bad_file_stores_nothing_and_prints_the_paths(db, actor, acceptance_file):
    result = run_cli("import", "--tenant", "studio-a", str(EXAMPLES[0]), str(acceptance_file), database_url=url_of(db))
    assert result.returncode == 1
    assert "[1].actions[0].nextActionId" in result.stderr
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_workflows(uow=uow, actor=actor).total == 0


@pytest.mark.parametrize("command", [("export",), ("import", str(EXAMPLES[0]))], ids=["export", "import"])
def test_an_unknown_tenant_is_a_clear_error(db, command):
    result = run_cli(command[0], "--tenant", "no-such-studio", *command[1:], database_url=url_of(db))
    assert result.returncode == 1
    assert result.stderr.strip() == "error: tenant 'no-such-studio' not found"
    assert "Traceback" not in result.stderr


def test_a_database_that_was_never_initialised_is_a_clear_error(tmp_path):
    result = run_cli("export", "--tenant", "demo", database_url=f"sqlite:///{tmp_path / 'empty.db'}", data_dir=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "python -m engine init" in result.stderr


def test_scenarios_run_prints_one_line_each_and_fails_on_a_failure(sqlite_db, tmp_path):
    from engine.services import console, scenarios
    from engine.services.console import ConsoleInput

    with unit_of_work(sqlite_db) as uow:
        tenant = services.create_tenant(uow=uow, slug="cli-sc", name="CLI")
    actor = system_actor(tenant.id)
    with unit_of_work(sqlite_db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data={
                "name": "Echo",
                "trigger": {"type": "sms_received", "config": {}},
                "actions": [{"id": "s", "type": "send_sms", "config": {"message": "Pong"}}],
            },
        )
    contact = console.new_contact()
    with unit_of_work(sqlite_db) as uow:
        console.send(uow=uow, actor=actor, contact=contact, inp=ConsoleInput(channel="sms", text="Ping"))
    with unit_of_work(sqlite_db, read_only=True) as uow:
        steps = scenarios.steps_from(console.conversation(uow=uow, actor=actor, contact=contact))
    with unit_of_work(sqlite_db) as uow:
        scenarios.save_scenario(
            uow=uow,
            actor=actor,
            data={"name": "a pong", "steps": steps, "expectations": [{"kind": "sent", "contains": "Pong"}]},
        )
    ok = run_cli("scenarios", "run", "--tenant", "cli-sc", database_url=url_of(sqlite_db), data_dir=tmp_path)
    assert ok.returncode == 0 and ok.stdout.strip() == "PASS  a pong", ok.stderr
    with unit_of_work(sqlite_db) as uow:
        scenarios.save_scenario(
            uow=uow,
            actor=actor,
            data={"name": "b ping", "steps": steps, "expectations": [{"kind": "sent", "contains": "Ping!"}]},
        )
    bad = run_cli("scenarios", "run", "--tenant", "cli-sc", database_url=url_of(sqlite_db), data_dir=tmp_path)
    lines = bad.stdout.strip().splitlines()
    assert (
        bad.returncode == 1
        and lines[0] == "PASS  a pong"
        and lines[1].startswith("FAIL  b ping  -- expected a reply contains 'Ping!'")
    )
    listed = run_cli("scenarios", "list", "--tenant", "cli-sc", database_url=url_of(sqlite_db), data_dir=tmp_path)
    assert listed.stdout.split() == ["pass", "a", "pong", "fail", "b", "ping"]


def test_bench_outside_the_checkout_says_where_the_benchmarks_are(tmp_path) -> None:
    """The installed package does not ship ``bench/``: the bench command says so instead of a traceback."""
    (tmp_path / "engine").symlink_to(ROOT / "engine")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONPATH")}
    done = subprocess.run(
        [sys.executable, "-m", "engine", "bench"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "bench/ folder" in done.stderr and "Traceback" not in done.stderr
