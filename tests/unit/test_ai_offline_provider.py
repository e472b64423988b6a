"""Unit tests for the offline provider, knowledge base and provider settings."""

from __future__ import annotations

import pytest

from engine.ai.intent import IntentResult
from engine.ai.knowledge import Retriever
from engine.ai.providers import (
    DEMO_KNOWLEDGE_BASE,
    HANDOFF,
    AIAnswer,
    KnowledgeBase,
    OfflineProvider,
    OpenAICompatibleProvider,
    parse_intent_reply,
    parse_retry_after,
    provider_from_settings,
)
from engine.errors import InvalidInput

PROMPT = "Beantworte die Frage des Mitglieds freundlich."


@pytest.fixture(scope="module")
def provider() -> OfflineProvider:
    return OfflineProvider(DEMO_KNOWLEDGE_BASE)


def test_price_question_answers_with_price_entry(provider: OfflineProvider) -> None:
    answer = provider.answer(PROMPT, question="Was kostet die 10er-Karte?")
    assert answer.provider == "offline"
    assert not answer.handoff
    assert "140 €" in answer.text
    assert answer.sources[0] == "price:10er-Karte"


def test_generic_price_question_gets_price_list(provider: OfflineProvider) -> None:
    answer = provider.answer(PROMPT, question="Was kostet das bei euch?")
    assert answer.sources == ["prices"]
    assert "10er-Karte" in answer.text and "Flex-Mitgliedschaft" in answer.text


@pytest.mark.parametrize(
    ("question", "source"),
    [
        ("Wann habt ihr offen?", "opening_hours"),
        ("Ich möchte meinen Vertrag kündigen", "faq:Wie kann ich meine Mitgliedschaft kündigen?"),
        ("Kann ich mein Abo pausieren?", "faq:Kann ich meine Mitgliedschaft pausieren?"),
        ("Kann ich den Kurs heute noch absagen?", "faq:Bis wann kann ich einen Kurs absagen?"),
        ("Wo kann ich parken?", "faq:Wo kann ich parken und wie komme ich zu euch?"),
        ("probetrainig möglich?", "faq:Wie funktioniert das Probetraining?"),
        ("Gibts Studentenrabatt?", "faq:Gibt es Rabatt für Studierende?"),
    ],
)
def test_retrieves_matching_entry(provider: OfflineProvider, question: str, source: str) -> None:
    answer = provider.answer(PROMPT, question=question)
    assert source in answer.sources
    assert not answer.handoff


def test_opening_hours_are_in_the_answer(provider: OfflineProvider) -> None:
    assert "07:00-22:00" in provider.answer(PROMPT, question="Habt ihr am Samstag geöffnet?").text


@pytest.mark.parametrize(
    "question",
    ["Wie wird das Wetter morgen?", "Was ist die Hauptstadt von Frankreich?", "asdf", "Wer ist heute die Trainerin?"],
)
def test_unrelated_question_gets_handoff(provider: OfflineProvider, question: str) -> None:
    answer = provider.answer(PROMPT, question=question)
    assert answer.handoff
    assert answer.text == HANDOFF["de"]
    assert answer.text.startswith("Danke für deine Nachricht!")
    assert answer.sources == []


def test_complaint_goes_to_a_human(provider: OfflineProvider) -> None:
    answer = provider.answer(PROMPT, question="Die Duschen waren schon wieder kalt, echt ärgerlich!")
    assert answer.handoff


def test_greeting_gets_greeting(provider: OfflineProvider) -> None:
    answer = provider.answer(PROMPT, question="Hallo :)")
    assert not answer.handoff
    assert answer.text.startswith("Hallo")


def test_english_handoff(provider: OfflineProvider) -> None:
    answer = provider.answer(PROMPT, question="What is the meaning of life?", language="en")
    assert answer.handoff and answer.text == HANDOFF["en"]


@pytest.mark.parametrize(
    "question, source, text",
    [
        (
            "Can I book a trial class?",
            "faq:Wie funktioniert das Probetraining?",
            "Your first trial class with us is free!",
        ),
        ("What are your prices?", "prices", "Our prices: Trial class: 0 € (free, once per person); "),
        ("How much is the Flex membership?", "price:Flex-Mitgliedschaft", "Flex membership: 89 € / month"),
        (
            "Are you open on Sunday?",
            "opening_hours",
            "Our opening hours: Mon-Fri 07:00-22:00, Sat 09:00-18:00, Sun 09:00-16:00.",
        ),
        ("Do you have a student discount?", "faq:Gibt es Rabatt für Studierende?", "Yes! Pupils, students"),
    ],
)
def test_english_question_gets_the_english_answer(
    provider: OfflineProvider, question: str, source: str, text: str
) -> None:
    answer = provider.answer(PROMPT, question=question, language="en")
    assert source in answer.sources and text in answer.text, answer


def test_german_question_still_gets_the_german_answer(provider: OfflineProvider) -> None:
    answer = provider.answer(PROMPT, question="Habt ihr sonntags offen?", language="de")
    assert answer.text.startswith("Unsere Öffnungszeiten: Mo-Fr 07:00-22:00"), answer


def test_entry_without_english_answer_answers_in_german_to_english_questions() -> None:
    kb = KnowledgeBase.model_validate(
        {
            "entries": [
                {"question": "Habt ihr eine Sauna?", "answer": "Ja, eine finnische Sauna.", "tags": ["Sauna", "sauna"]}
            ]
        }
    )
    answer = OfflineProvider(kb).answer(PROMPT, question="Do you have a sauna?", language="en")
    assert answer.text == "Ja, eine finnische Sauna.", answer


def test_english_texts_come_from_camel_case_settings() -> None:
    kb = KnowledgeBase.model_validate(
        {
            "entries": [
                {
                    "question": "Habt ihr eine Sauna?",
                    "questionEn": "Do you have a sauna?",
                    "answer": "Ja.",
                    "answerEn": "Yes, a Finnish sauna.",
                }
            ],
            "prices": [
                {"name": "Sauna", "price": "5 € / Stunde", "nameEn": "Sauna", "descriptionEn": "towel included"}
            ],
        }
    )
    provider = OfflineProvider(kb)
    assert provider.answer(PROMPT, question="Do you have a sauna?", language="en").text == "Yes, a Finnish sauna."
    assert kb.prices[0].display("en") == "Sauna: 5 € / hour (towel included)"


def test_prompt_is_the_question_when_no_question(provider: OfflineProvider) -> None:
    assert "140 €" in provider.answer("Was kostet die 10er-Karte?").text


def test_empty_question_and_empty_knowledge_base_hand_off() -> None:
    assert OfflineProvider(DEMO_KNOWLEDGE_BASE).answer(PROMPT, question="  ").handoff
    assert OfflineProvider(KnowledgeBase()).answer(PROMPT, question="Was kostet die 10er-Karte?").handoff
    assert OfflineProvider().answer(PROMPT, question="Wann habt ihr offen?").handoff


def test_custom_knowledge_base_from_camel_case_dict() -> None:
    kb = KnowledgeBase.model_validate(
        {
            "studioName": "Flow Loft",
            "openingHours": {"Mo-So": "06:00-23:00"},
            "prices": [
                {"name": "Drop-in", "price": 15},
                {"name": "Monatsabo", "price": 59.5, "description": "unbegrenzt"},
            ],
            "entries": [
                {
                    "question": "Gibt es Handtücher?",
                    "answer": "Ja, Handtücher leihen wir für 1 € aus.",
                    "tags": ["Handtuch"],
                }
            ],
        }
    )
    provider = OfflineProvider(kb)
    assert "06:00-23:00" in provider.answer(PROMPT, question="Wann habt ihr geöffnet?").text
    assert "59,50 €" in provider.answer(PROMPT, question="Was kostet das Monatsabo?").text
    assert "1 €" in provider.answer(PROMPT, question="Habt ihr Handtücher?").text
    assert "Flow Loft" in kb.facts()


def test_classify_uses_offline_model(provider: OfflineProvider) -> None:
    assert provider.classify("Was kostet die 10er-Karte?").intent == "pricing"
    assert provider.classify("") == IntentResult("other", 0.0)


def test_retriever_search_is_sorted_and_bounded() -> None:
    matches = Retriever(DEMO_KNOWLEDGE_BASE).search("Was kostet die Mitgliedschaft im Monat?", limit=3)
    assert 1 <= len(matches) <= 3
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)
    assert all(0 < m.score <= 1.0 + 1e-9 for m in matches)


def test_demo_knowledge_base_covers_the_basics() -> None:
    facts = DEMO_KNOWLEDGE_BASE.facts()
    for word in ("Probetraining", "10er-Karte", "Mitgliedschaft", "kündigen", "Öffnungszeiten"):
        assert word in facts


def test_ai_answer_to_output() -> None:
    answer = AIAnswer(text="Hi", provider="offline")
    assert answer.to_output() == {"text": "Hi", "provider": "offline", "sources": [], "model": None, "handoff": False}
    assert AIAnswer(text="x", provider="p").sources is not answer.sources


# -- settings -------------------------------------------------------------------------


def test_provider_from_settings_offline() -> None:
    assert isinstance(provider_from_settings({"provider": "offline"}, DEMO_KNOWLEDGE_BASE), OfflineProvider)
    assert isinstance(provider_from_settings({}, None), OfflineProvider)
    assert provider_from_settings(None, DEMO_KNOWLEDGE_BASE).knowledge_base is DEMO_KNOWLEDGE_BASE


def test_provider_from_settings_openai() -> None:
    provider = provider_from_settings(
        {
            "provider": "openai_compatible",
            "baseUrl": "http://llm.local/v1/",
            "apiKey": "sk-secret",
            "model": "m",
            "timeout": 5,
        },
        DEMO_KNOWLEDGE_BASE,
    )
    assert isinstance(provider, OpenAICompatibleProvider)
    assert provider.base_url == "http://llm.local/v1"
    assert provider.timeout == 5
    assert provider.knowledge_base is DEMO_KNOWLEDGE_BASE
    assert "sk-secret" not in repr(provider)
    provider.close()


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"provider": "magic"}, "provider"),
        ({"provider": "openai_compatible", "model": "m"}, "apiKey"),
        ({"provider": "openai_compatible", "apiKey": "sk-secret"}, "model"),
        ({"provider": "openai_compatible", "apiKey": "sk-secret", "model": "m", "baseUrl": "ftp://x"}, "baseUrl"),
        ({"provider": "openai_compatible", "apiKey": "sk-secret", "model": "m", "timeout": 0}, "timeout"),
    ],
)
def test_provider_from_settings_rejects_bad_settings(settings: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        provider_from_settings(settings, None)
    assert info.value.field == field
    assert "sk-secret" not in str(info.value)


# -- helpers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), ("1.5", 1.5), ("0", 0.0), (None, None), ("", None), ("soon", None), ("-3", 0.0)],
)
def test_parse_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"intent": "pricing", "confidence": 0.87}', IntentResult("pricing", 0.87)),
        ('```json\n{"intent": "Booking", "confidence": 1.4}\n```', IntentResult("booking", 1.0)),
        ('Sure! {"intent": "dancing", "confidence": 0.9}', IntentResult("other", 0.0)),
        ('{"intent": "other", "confidence": 0.6}', IntentResult("other", 0.6)),
        ("no json here", IntentResult("other", 0.0)),
        ('{"intent": "greeting", "confidence": "high"}', IntentResult("greeting", 0.0)),
        ("[1, 2]", IntentResult("other", 0.0)),
    ],
)
def test_parse_intent_reply(content: str, expected: IntentResult) -> None:
    assert parse_intent_reply(content) == expected
