"""``{{trigger.from}}``-style templates: rendering, references, and the sandbox."""

from __future__ import annotations

import pytest

from engine.errors import TemplateError
from engine.workflow import templating


@pytest.fixture
def context():
    return {
        "trigger": {"from": "+49 170 1234567", "content": "Was kostet ein Probetraining?"},
        "results": {"ai-1": {"text": "Dein Plan"}},
        "lead": {"name": "Ana"},
        "tenant": {"name": "Studio A"},
        "now": "2026-03-01T10:00:00+01:00",
    }


def test_dotted_paths_render_from_the_context(context):
    assert templating.render("Hallo {{lead.name}}, wir rufen {{ trigger.from }} an.", context) == (
        "Hallo Ana, wir rufen +49 170 1234567 an."
    )


def test_action_ids_with_dashes_are_read_as_names_not_subtraction(context):
    assert templating.render("{{results.ai-1.text}}!", context) == "Dein Plan!"


def test_filters_and_string_literals_with_dots_are_left_alone(context):
    assert templating.render('{{ trigger.from | replace(" ", "") }} {{ "a.b" }}', context) == "+491701234567 a.b"


def test_text_without_a_template_is_returned_unchanged():
    assert templating.render("Kein {Platzhalter}", {}) == "Kein {Platzhalter}"


@pytest.mark.parametrize("template", ["{{ foo }}", "{{ lead.phone }}", "{{ results.ai-2.text }}"])
def test_an_unknown_variable_raises_instead_of_rendering_empty(template, context):
    with pytest.raises(TemplateError, match="unknown variable"):
        templating.render(template, context)


@pytest.mark.parametrize(
    "template", ["{{ trigger.__class__ }}", "{{ ''.__class__.__mro__ }}", "{{ lead.update({'name': 'x'}) }}"]
)
def test_the_sandbox_refuses_attribute_tricks_and_mutation(template, context):
    with pytest.raises(TemplateError):
        templating.render(template, context)


def test_a_syntax_error_is_a_template_error_and_check_syntax_names_it(context):
    assert "syntax" in templating.check_syntax("{{ trigger.from ")
    assert templating.check_syntax("{{ trigger.from }}") is None
    with pytest.raises(TemplateError, match="syntax"):
        templating.render("{{ trigger.from ", context)


def test_references_lists_every_variable_path_but_not_filters_or_literals():
    refs = templating.references(
        '{{ results.ai-1.text }} {{ foo }} {{ trigger.content | lower }} {{ "x.y" }} {{ now }}'
    )
    assert refs == [("results", "ai-1", "text"), ("foo",), ("trigger", "content"), ("now",)]


def test_render_value_renders_strings_inside_lists_and_dicts_but_keeps_keys(context):
    body = {"{{lead.name}}": ["{{lead.name}}", 3, {"from": "{{trigger.from}}"}], "flag": True}
    assert templating.render_value(body, context) == {
        "{{lead.name}}": ["Ana", 3, {"from": "+49 170 1234567"}],
        "flag": True,
    }


def test_iter_strings_yields_a_path_for_every_nested_string():
    found = list(templating.iter_strings({"message": "a", "body": {"items": ["b", {"c": "d"}]}, "n": 1}))
    assert found == [("message", "a"), ("body.items[0]", "b"), ("body.items[1].c", "d")]


# --------------------------------------------------------------------------- plain-path fast path

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, width=32),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
_PATHS = [
    "trigger.from",
    "trigger.n",
    "results.ai-1.text",
    "lead.name",
    "now",
    "trigger.items",
    "trigger.missing",
    "results.send-1.status",
]
_LITERALS = st.text(alphabet=st.sampled_from("ab {}%#-\n!ü"), max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.tuples(_LITERALS, st.sampled_from(_PATHS), st.sampled_from(["", " "])), min_size=1, max_size=3),
    tail=_LITERALS,
    values=st.lists(_VALUES, min_size=4, max_size=4),
)
def test_plain_paths_render_exactly_as_jinja_renders_them(pieces, tail, values):
    template = "".join(f"{lit}{{{{{sp}{path}{sp}}}}}" for lit, path, sp in pieces) + tail
    context = {
        "trigger": {"from": values[0], "n": values[1]},
        "results": {"ai-1": {"text": values[2]}},
        "lead": {"name": values[3]},
        "now": "2026-03-01T10:00:00+01:00",
    }

    def outcome(fn):
        try:
            return "ok", fn()
        except Exception as exc:  # noqa: BLE001 - compared, not hidden
            return "error", type(exc).__name__

    def jinja():
        try:
            return templating._compile(template).render(context)
        except Exception as exc:
            raise TemplateError(str(exc)) from exc

    assert outcome(lambda: templating.render(template, context)) == outcome(jinja)


def test_the_fast_path_is_taken_only_for_plain_paths():
    assert templating._plan("Hi {{trigger.from}}!") is not None
    assert templating._plan("{{ results.ai-1.text }} {{now}}") is not None
    for template in (
        "{{trigger.from|upper}}",
        "{{ 1 + 2 }}",
        "{% if x %}y{% endif %}",
        "{{- trigger.from }}",
        "{# note #}{{trigger.from}}",
        "{{trigger['from']}}",
    ):
        assert templating._plan(template) is None, template
