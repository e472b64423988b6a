"""The member's language guess (engine/ai/language.py): counted in C, as the plain word count gives it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.ai import language
from engine.ai.language import detect_language


def _by_counting(text: str | None) -> str | None:
    """The original formulation: score each language's words (shared ones score for neither)."""
    tokens = language._TOKEN.findall((text or "").casefold())
    if not tokens:
        return None
    scores = {
        lang: sum(1 for t in tokens if t in words and t not in language._SHARED)
        for lang, words in language._WORDS.items()
    }
    if "ß" in (text or "") or any(ch in (text or "").casefold() for ch in "äöü"):
        scores["de"] += 1
    best = max(scores, key=scores.get)
    other = "en" if best == "de" else "de"
    if scores[best] == 0 or scores[best] == scores[other]:
        return None
    return best


_VOCABULARY = sorted(language._WORDS["de"] | language._WORDS["en"] | language._SHARED | {"straße", "xyz", "Ärger"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hallo, was kostet die 10er-Karte?", "de"),
        ("How much is a class?", "en"),
        ("ok", None),
        ("", None),
        (None, None),
        ("Straße", "de"),
        ("in was so", None),
        ("hi hallo", None),
    ],
)
def test_typical_messages(text: str | None, expected: str | None) -> None:
    assert detect_language(text) == expected == _by_counting(text)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_VOCABULARY), st.text(max_size=4)), max_size=12))
def test_same_answer_as_counting_word_by_word(words: list[str]) -> None:
    text = " ".join(words)
    assert detect_language(text) == _by_counting(text)
