"""Issue 13: the limits themselves - JSON checks, the bounded template sandbox, cron that never
fires, the rate limiter's buckets and the SSRF guard's IPv6 forms of the metadata address."""

from __future__ import annotations

import math

import pytest

from engine.api.ratelimit import TokenBuckets
from engine.errors import BlockedAddress, TemplateError
from engine.outbound.webhooks import check_url_allowed, is_metadata_address
from engine.workflow import limits, templating
from engine.workflow.validation import cron_problem, validate


def test_json_problems_name_the_path_of_each_problem():
    value = {"a": [1, {"b": float("nan")}], "c": "x\x00", "d\x00": 1, "e": math.inf}
    found = dict(limits.json_problems(value))
    assert set(found) == {"a[1].b", "c", "d\\u0000", "e"}
    assert "finite" in found["a[1].b"] and "NUL" in found["c"]


def test_json_depth_is_checked_without_recursion():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert [m for _, m in limits.json_problems({"x": deep})] == ["nested more than 32 levels deep"]
    shallow: list = []
    for _ in range(limits.MAX_JSON_DEPTH - 1):
        shallow = [shallow]
    assert list(limits.json_problems(shallow)) == []


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'x' * 100000000 }}",
        "{{ 100000000 * 'x' }}",
        "{{ 'x'|center(1000000000) }}",
        "{{ 'x'.ljust(10**9) }}",
        "{{ 'x'.zfill(10**9) }}",
        "{{ '%999999999s' % 'x' }}",
        "{{ '{:>999999999}'.format('x') }}",
        "{{ ('x' * 60000)|replace('x', 'x' * 60000) }}",
        "{{ ('x' * 60000).replace('x', 'yy') * 2 }}",
        "{{ 'y'.join('x' * 60000) }}",
        "{{ ('x' * 60000)|join('y' * 100) }}",
        "{{ 9 ** (9 ** 9) }}",
        "{% set ns = namespace(x=2) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}{% endfor %}{{ ns.x }}",
        "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
        "{{ [1] * 100000000 }}",
        "{{ ('x' * 40000) + ('x' * 40000) }}",
    ],
)
def test_templates_cannot_build_huge_values(template):
    with pytest.raises(TemplateError, match="limit|too large|not allowed"):
        templating.render(template, {"trigger": {}})


@pytest.mark.parametrize(
    "template",
    [
        "{{" * 3000 + "x" + "}}" * 3000,
        "{{ " + "(" * 1000 + "1" + ")" * 1000 + " }}",
        "{{ " + "[" * 500 + "]" * 500 + " }}",
    ],
)
def test_deeply_nested_templates_are_a_syntax_problem_not_a_crash(template):
    assert "nested too deeply" in templating.check_syntax(template)
    with pytest.raises(TemplateError):
        templating.render(template, {})


def test_ordinary_templates_still_render():
    ctx = {"trigger": {"from": "+49151", "customFields": {"n": 3}}, "results": {"ai-1": {"text": "Hi"}}}
    assert (
        templating.render("Hallo {{trigger.from}}: {{ results.ai-1.text|upper }} {{ 2 ** 10 }} {{ 'ab' * 3 }}", ctx)
        == "Hallo +49151: HI 1024 ababab"
    )
    assert templating.render("{{ '%05d' % trigger.customFields.n }} {{ 'a-b'|replace('-', '+') }}", ctx) == "00003 a+b"
    assert templating.render("{{ ['a', 'b']|join(', ') }} {{ 'x'|center(5) }}", ctx) == "a, b   x  "


def test_a_plain_path_to_a_huge_value_is_refused_too():
    with pytest.raises(TemplateError, match="64 KB"):
        templating.render("{{trigger.big}}", {"trigger": {"big": "x" * (limits.MAX_RENDERED_BYTES + 1)}})


@pytest.mark.parametrize("schedule", ["0 9 30 2 *", "0 9 31 4 *", "0 0 31 11 *"])
def test_a_cron_schedule_that_never_fires_is_a_validation_error(schedule):
    assert "never fires" in cron_problem(schedule)
    wf = {
        "name": "x",
        "trigger": {"type": "time_based", "config": {"schedule": schedule}},
        "actions": [{"id": "a", "type": "send_email", "config": {"message": "hi", "recipient": "a@b.de"}}],
    }
    assert [p.path for p in validate(wf) if p.severity == "error"] == ["trigger.config.schedule"]


@pytest.mark.parametrize("schedule", ["0 9 29 2 *", "*/5 * * * *", "0 9 * * 1-5", "0 0 31 * *"])
def test_schedules_that_fire_are_fine(schedule):
    assert cron_problem(schedule) is None


def test_condition_groups_are_bounded_in_depth_and_number():
    leaf = {"type": "keyword_match", "operator": "contains", "value": "x"}
    wf = {
        "name": "x",
        "trigger": {"type": "whatsapp_message"},
        "actions": [{"id": "a", "type": "send_whatsapp", "config": {"message": "hi"}}],
    }
    cond = leaf
    for _ in range(limits.MAX_CONDITION_DEPTH):
        cond = {"type": "all", "conditions": [cond]}
    assert not [p for p in validate({**wf, "conditions": [cond]}) if p.severity == "error"]
    deeper = {"type": "not", "condition": cond}
    assert "nest at most" in validate({**wf, "conditions": [deeper]})[0].message
    many = [leaf] * (limits.MAX_CONDITIONS + 1)
    assert "at most" in validate({**wf, "conditions": many})[0].message


def test_token_buckets_refill_over_time():
    now = [0.0]
    buckets = TokenBuckets(60, clock=lambda: now[0])
    assert all(buckets.take("k") == 0 for _ in range(60))
    wait = buckets.take("k")
    assert 0 < wait <= 1.0
    assert buckets.take("other") == 0
    now[0] += 1.0
    assert buckets.take("k") == 0


@pytest.mark.parametrize(
    "url,allow",
    [
        ("http://[::ffff:169.254.169.254]/", ["::ffff:0:0/96"]),
        ("http://[64:ff9b::a9fe:a9fe]/", ["64:ff9b::/96"]),
        ("http://[2002:a9fe:a9fe::]/", ["2002::/16"]),
        ("http://[::ffff:169.254.169.254]/", []),
        ("http://[::ffff:a9fe:a9fe]/latest/meta-data/", ["::/0"]),
    ],
)
def test_the_metadata_address_in_ipv6_forms_needs_the_exact_address(url, allow):
    with pytest.raises(BlockedAddress):
        check_url_allowed(url, allow)


def test_the_exact_metadata_address_unlocks_its_ipv6_forms_and_networks_still_work():
    check_url_allowed("http://[::ffff:169.254.169.254]/", ["169.254.169.254"])
    check_url_allowed("http://[::ffff:10.0.0.1]/", ["::ffff:0:0/96"])
    assert is_metadata_address(__import__("ipaddress").ip_address("64:ff9b::a9fe:a9fe"))
