"""``{{trigger.from}}``-style templates: rendering, references, and the sandbox."""

from __future__ import annotations

import pytest

from engine import templating
from engine.errors import TemplateError


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


@pytest.mark.parametrize("template", ["{{ trigger.__class__ }}", "{{ ''.__class__.__mro__ }}", "{{ lead.update({'name': 'x'}) }}"])
def test_the_sandbox_refuses_attribute_tricks_and_mutation(template, context):
    with pytest.raises(TemplateError):
        templating.render(template, context)


def test_a_syntax_error_is_a_template_error_and_check_syntax_names_it(context):
    assert "syntax" in templating.check_syntax("{{ trigger.from ")
    assert templating.check_syntax("{{ trigger.from }}") is None
    with pytest.raises(TemplateError, match="syntax"):
        templating.render("{{ trigger.from ", context)


def test_references_lists_every_variable_path_but_not_filters_or_literals():
    refs = templating.references('{{ results.ai-1.text }} {{ foo }} {{ trigger.content | lower }} {{ "x.y" }} {{ now }}')
    assert refs == [("results", "ai-1", "text"), ("foo",), ("trigger", "content"), ("now",)]


def test_render_value_renders_strings_inside_lists_and_dicts_but_keeps_keys(context):
    body = {"{{lead.name}}": ["{{lead.name}}", 3, {"from": "{{trigger.from}}"}], "flag": True}
    assert templating.render_value(body, context) == {
        "{{lead.name}}": ["Ana", 3, {"from": "+49 170 1234567"}], "flag": True,
    }


def test_iter_strings_yields_a_path_for_every_nested_string():
    found = list(templating.iter_strings({"message": "a", "body": {"items": ["b", {"c": "d"}]}, "n": 1}))
    assert found == [("message", "a"), ("body.items[0]", "b"), ("body.items[1].c", "d")]
