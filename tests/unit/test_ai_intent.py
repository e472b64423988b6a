"""Tests for the built-in offline intent classifier."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.ai import intent
from engine.ai.intent import INTENTS, IntentClassifier, IntentResult, classify, evaluate, load_examples, main, train


def test_intents_order() -> None:
    assert INTENTS == (
        "training_plan",
        "booking",
        "cancellation",
        "pricing",
        "opening_hours",
        "trial_class",
        "membership",
        "complaint",
        "greeting",
        "other",
    )


def test_shipped_examples_cover_every_intent_in_both_languages() -> None:
    examples = load_examples()
    per_intent = Counter(e["intent"] for e in examples)
    assert set(per_intent) == set(INTENTS)
    assert min(per_intent.values()) >= 40
    for name in INTENTS:
        langs = Counter(e["lang"] for e in examples if e["intent"] == name)
        assert langs["de"] >= 15 and langs["en"] >= 15, (name, langs)
    texts = [e["text"].strip().lower() for e in examples]
    assert len(texts) == len(set(texts)), "duplicate examples leak across the evaluation split"


def test_held_out_accuracy_floor() -> None:
    report = evaluate()
    assert report["accuracy"] >= 0.80
    assert report["n_train"] + report["n_test"] == len(load_examples())
    assert set(report["per_intent"]) == set(INTENTS)
    assert all(v["support"] > 0 for v in report["per_intent"].values())


def test_evaluate_is_deterministic() -> None:
    assert evaluate(seed=7)["accuracy"] == evaluate(seed=7)["accuracy"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Kann ich morgen zum Probetraining kommen?", "trial_class"),
        ("how much is a 10 class pass", "pricing"),
        ("Was kostet die 10er-Karte?", "pricing"),
        ("Ich möchte meine Mitgliedschaft kündigen", "cancellation"),
        ("I need to cancel my class tomorrow, sorry", "cancellation"),
        ("Wann habt ihr am Sonntag offen?", "opening_hours"),
        ("what are your opening hours", "opening_hours"),
        ("Kann ich mich für Yoga am Freitag um 18 Uhr anmelden?", "booking"),
        ("can I book the spin class tonight?", "booking"),
        ("Kannst du mir einen Trainingsplan für Muskelaufbau machen?", "training_plan"),
        ("can you make me a workout plan to lose weight", "training_plan"),
        ("Kann ich meinen Vertrag pausieren?", "membership"),
        ("can I freeze my membership for two months", "membership"),
        ("Die Duschen sind schon wieder kalt, echt ärgerlich!", "complaint"),
        ("the instructor was rude and the room was dirty", "complaint"),
        ("Hallo :)", "greeting"),
        ("thanks a lot!", "greeting"),
        ("Wo kann ich mein Fahrrad abstellen?", "other"),
        ("do you have lockers?", "other"),
    ],
)
def test_classifies_typical_messages(text: str, expected: str) -> None:
    result = classify(text)
    assert result.intent == expected
    assert 0.5 <= result.confidence <= 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("probetrainig morgen möglich??", "trial_class"),  # typo
        ("oeffnungszeiten am wochenende", "opening_hours"),  # umlaut spelled out
        ("Hi! was kostet bei euch ein monat", "pricing"),  # greeting + question
    ],
)
def test_robust_to_typos_and_greetings(text: str, expected: str) -> None:
    assert classify(text).intent == expected


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_other_with_zero_confidence(text: str) -> None:
    assert classify(text) == IntentResult("other", 0.0)


@pytest.mark.parametrize("text", ["asdfgh", "👍", "Lorem ipsum dolor sit amet", "x" * 5000])
def test_confidence_is_a_probability(text: str) -> None:
    result = classify(text)
    assert result.intent in INTENTS
    assert 0.0 <= result.confidence <= 1.0


def test_gibberish_gets_low_confidence() -> None:
    assert classify("asdfgh qwertz").confidence < 0.5


def test_train_custom_classifier_accepts_pairs_and_dicts() -> None:
    examples = [("was kostet das", "pricing"), ("wie teuer ist es", "pricing"), ("preis bitte", "pricing")]
    examples += [{"text": t, "intent": "greeting"} for t in ("hallo", "hi", "guten morgen")]
    classifier = train(examples)
    assert isinstance(classifier, IntentClassifier)
    assert classifier.classify("was kostet ein kurs").intent == "pricing"
    assert classifier.classify("") == IntentResult("other", 0.0)
    assert [r.intent for r in classifier.classify_many(["hallo", ""])] == ["greeting", "other"]


def test_train_rejects_unknown_intents() -> None:
    with pytest.raises(ValueError, match="unknown intent"):
        train([("hi", "greeting"), ("pizza", "food")])


def test_default_model_is_trained_once_across_threads() -> None:
    """The default classifier is a LazyClassifier over the shipped examples; a fresh one shows it trains once."""
    calls: list[int] = []

    def counting_train() -> IntentClassifier:
        calls.append(1)
        return train(load_examples())

    lazy = intent.LazyClassifier(counting_train)
    results: list[IntentResult] = []
    threads = [
        threading.Thread(target=lambda: results.append(lazy.get().classify("Was kostet das?"))) for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert {r.intent for r in results} == {"pricing"}
    assert intent.default_classifier() is intent.default_classifier()  # the process-wide one is built once too


def test_to_output() -> None:
    assert IntentResult("pricing", 0.91234567).to_output() == {"intent": "pricing", "confidence": 0.9123}


def test_main_prints_intent_and_confidence(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["Was kostet die 10er Karte?", "Hallo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    name, confidence = lines[0].split("\t")
    assert name == "pricing"
    assert len(confidence.split(".")[1]) == 2 and 0 <= float(confidence) <= 1
    assert lines[1].startswith("greeting\t")


def test_main_without_texts_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_one_message_scores_exactly_as_the_scikit_learn_pipeline(text: str) -> None:
    import numpy as np

    classifier = intent.default_classifier()
    assert classifier._direct is not None  # the fast path is in use for single messages
    if not intent.normalize(text):
        return
    expected = classifier._pipeline.predict_proba([text])[0]
    assert np.allclose(classifier._direct.predict_proba(text), expected, rtol=0, atol=1e-9)


def test_every_shipped_example_scores_as_the_pipeline() -> None:
    import numpy as np

    classifier = intent.default_classifier()
    texts = [e["text"] if isinstance(e, dict) else e[0] for e in load_examples()]
    direct = np.array([classifier._direct.predict_proba(t) for t in texts])
    assert np.allclose(direct, classifier._pipeline.predict_proba(texts), rtol=0, atol=1e-9)
    assert [classifier.classify(t).intent for t in texts] == [r.intent for r in classifier.classify_many(texts)]


def _concepts_by_search(norm: str) -> list[str]:
    """The concept markers as the patterns alone give them (what the pre-filtered version must equal)."""
    return [f"zz{name}" for name, pattern in intent._COMPILED_CONCEPTS if pattern.search(norm)]


#: Pieces of the concept patterns' literal text, so generated messages hit concepts often.
_FRAGMENTS = sorted(
    {
        piece
        for patterns in intent._CONCEPTS.values()
        for p in patterns
        for piece in __import__("re").findall(r"[a-z0-9€/ ']+", p)
    }
)


def test_concept_markers_of_every_shipped_example_match_the_patterns() -> None:
    for example in load_examples():
        norm = intent.normalize(example["text"])
        assert intent._concepts_of(norm) == _concepts_by_search(norm), example["text"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_FRAGMENTS), st.integers(0, 3), st.text(max_size=3)), max_size=6))
def test_concept_markers_match_the_patterns_on_mixed_texts(parts: list[tuple[str, int, str]]) -> None:
    norm = intent.normalize("".join(fragment[cut:] + noise for fragment, cut, noise in parts))
    assert intent._concepts_of(norm) == _concepts_by_search(norm)


@pytest.mark.parametrize(
    ("pattern", "required"),
    [
        (r"^(hallo|hi+|yo)\b", {"hallo", "hi", "yo"}),
        (r"programm?|\bsets?\b", {"program", "set"}),
        (r"was (soll|sollte) ich", {"was "}),
        (r"trag .*\bein\b", {"trag "}),
        (r"[0-9]+x", {"x"}),
        (r"€", {"€"}),
    ],
)
def test_required_literals_of_a_pattern(pattern: str, required: set[str]) -> None:
    import re

    assert set(intent._concept_filter(re.compile(pattern))) == required


@pytest.mark.parametrize("pattern", [r"a?b?", r"[ab]+", r"(?i)hallo", r"x|.*"])
def test_patterns_without_required_literals_are_always_searched(pattern: str) -> None:
    import re

    assert intent._concept_filter(re.compile(pattern)) is None
