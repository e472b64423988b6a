"""Reply providers for the ``ask_ai`` action.

* :class:`OfflineProvider` answers from the studio's :class:`KnowledgeBase` by retrieval
  (no network, no model download) and hands off to a human when nothing fits.
* :class:`OpenAICompatibleProvider` calls any server speaking the OpenAI chat-completions
  API. It maps failures onto the engine's error types and never retries by itself: the
  engine's runner retries :class:`RetryableError` durably, honouring ``retry_after``.

``prompt`` is always the workflow author's instruction; ``question`` is the member's message
(the trigger content). When ``question`` is None the prompt is the question.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from engine.ai.intent import INTENTS, IntentResult
from engine.ai.intent import classify as classify_offline
from engine.ai.knowledge import DEMO_KNOWLEDGE_BASE, KnowledgeBase, KnowledgeEntry, Match, PriceItem, Retriever
from engine.errors import InvalidInput, PermanentError, RetryableError
from engine.outbound.retry import parse_retry_after

logger = logging.getLogger(__name__)

__all__ = [
    "DEMO_KNOWLEDGE_BASE",
    "AIAnswer",
    "AIProvider",
    "KnowledgeBase",
    "KnowledgeEntry",
    "OfflineProvider",
    "OpenAICompatibleProvider",
    "PriceItem",
    "ProviderSettings",
    "provider_from_settings",
]

HANDOFF = {
    "de": "Danke für deine Nachricht! Ein Teammitglied meldet sich so schnell wie möglich bei dir.",
    "en": "Thanks for your message! A member of our team will get back to you as soon as possible.",
}
GREETING_REPLY = {
    "de": "Hallo! Schön, von dir zu hören. Wie können wir dir helfen?",
    "en": "Hi! Great to hear from you. How can we help?",
}
LANGUAGE_INSTRUCTION = {
    "de": "Antworte auf Deutsch, freundlich, per du und in höchstens drei kurzen Sätzen.",
    "en": "Reply in English, friendly and in at most three short sentences.",
}
DEFAULT_INSTRUCTION = (
    "Du bist der freundliche Assistent eines Fitness- und Yogastudios und beantwortest Fragen von Mitgliedern."
)
FACTS_INSTRUCTION = (
    "Nutze nur die folgenden Fakten. Wenn sie die Frage nicht beantworten, erfinde nichts, sondern sag, "
    "dass sich ein Teammitglied meldet."
)
CLASSIFY_INSTRUCTION = (
    "Classify the intent of a message a member sent to a fitness/yoga studio. Possible intents: {intents}. "
    'Answer only with JSON like {{"intent": "pricing", "confidence": 0.9}}.'
)


@dataclass
class AIAnswer:
    """A reply produced by a provider. ``handoff`` is True when a human should take over."""

    text: str
    provider: str
    sources: list[str] = field(default_factory=list)
    model: str | None = None
    handoff: bool = False

    def to_output(self) -> dict[str, Any]:
        """Return a JSON-able dict for the action's output."""
        return {
            "text": self.text,
            "provider": self.provider,
            "sources": list(self.sources),
            "model": self.model,
            "handoff": self.handoff,
        }


class AIProvider(Protocol):
    """What the ``ask_ai`` action needs from a provider."""

    name: str

    def answer(self, prompt: str, *, question: str | None = None, language: str = "de") -> AIAnswer:
        """Reply to ``question`` (or ``prompt``) following the instruction ``prompt``."""
        ...

    def classify(self, text: str) -> IntentResult:
        """Return the intent of a member's message."""
        ...


def _language(language: str | None) -> str:
    return "en" if (language or "de").lower().startswith("en") else "de"


# ---------------------------------------------------------------------------------------
# offline


class OfflineProvider:
    """Answers from the knowledge base by TF-IDF retrieval; hands off when unsure.

    Complaints always go to a human; a bare greeting gets a friendly greeting back. When the
    second-best document scores close to the best (``combine_ratio``), both are used, e.g.
    the 10er-Karte price line and the 10er-Karte FAQ entry.
    """

    name = "offline"

    def __init__(
        self,
        knowledge_base: KnowledgeBase | None = None,
        *,
        min_score: float = 0.25,
        combine_ratio: float = 0.75,
    ) -> None:
        self.knowledge_base = knowledge_base if knowledge_base is not None else KnowledgeBase()
        self.min_score = min_score
        self.combine_ratio = combine_ratio
        self._retrievers: dict[str, Retriever] = {}
        self._lock = threading.Lock()

    @property
    def retriever(self) -> Retriever:
        """The retrieval index, built on first use."""
        return self._index("de")

    def _index(self, language: str) -> Retriever:
        if language not in self._retrievers:
            with self._lock:
                if language not in self._retrievers:
                    self._retrievers[language] = Retriever(self.knowledge_base, language)
        return self._retrievers[language]

    def search(self, question: str, language: str = "de") -> list[Match]:
        """The documents that answer ``question`` well enough (best first, at most two).

        An English question is looked up in the English texts first, then as before.
        """
        for index in ["en", "de"] if language == "en" else ["de"]:
            matches = [m for m in self._index(index).search(question, limit=2) if m.score >= self.min_score]
            if matches:
                if len(matches) == 2 and matches[1].score < matches[0].score * self.combine_ratio:
                    matches = matches[:1]
                return matches
        return []

    def answer(self, prompt: str, *, question: str | None = None, language: str = "de") -> AIAnswer:
        """Answer the member's ``question`` from the knowledge base (``prompt`` if no question)."""
        language = _language(language)
        text = (question if question is not None else prompt) or ""
        if not text.strip():
            return self._handoff(language)
        intent = classify_offline(text)
        if intent.intent == "complaint" and intent.confidence >= 0.5:
            logger.debug("complaint detected, handing off")
            return self._handoff(language)
        matches = self.search(text, language)
        if not matches:
            if intent.intent == "greeting" and intent.confidence >= 0.6:
                return AIAnswer(text=GREETING_REPLY[language], provider=self.name)
            return self._handoff(language)
        reply = " ".join(m.document.answer_in(language) for m in matches)
        return AIAnswer(text=reply, provider=self.name, sources=[m.document.key for m in matches])

    def classify(self, text: str) -> IntentResult:
        """Classify with the built-in offline intent model."""
        return classify_offline(text)

    def _handoff(self, language: str) -> AIAnswer:
        return AIAnswer(text=HANDOFF[language], provider=self.name, handoff=True)


# ---------------------------------------------------------------------------------------
# OpenAI-compatible


class OpenAICompatibleProvider:
    """Chat-completions client (OpenAI, Azure-style gateways, vLLM, Ollama, LM Studio ...)."""

    name = "openai_compatible"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        model: str,
        timeout: float = 20.0,
        client: httpx.Client | None = None,
        *,
        knowledge_base: KnowledgeBase | None = None,
        temperature: float = 0.3,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.model = model
        self.timeout = timeout
        self.knowledge_base = knowledge_base
        self.temperature = temperature
        self._client = client  # None: a short-lived client per request (nothing to close)

    def __repr__(self) -> str:
        return f"OpenAICompatibleProvider(base_url={self.base_url!r}, model={self.model!r})"

    def close(self) -> None:
        """Nothing to release: a client passed in belongs to the caller, otherwise none is kept."""

    def __enter__(self) -> OpenAICompatibleProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def system_prompt(self, prompt: str, *, question: str | None, language: str) -> str:
        """The system message: instruction, language, and the knowledge base facts if any."""
        instruction = prompt if question is not None else DEFAULT_INSTRUCTION
        parts = [instruction.strip(), LANGUAGE_INSTRUCTION[_language(language)]]
        if self.knowledge_base is not None:
            parts.append(f"{FACTS_INSTRUCTION}\n\n{self.knowledge_base.facts()}")
        return "\n\n".join(p for p in parts if p)

    def answer(self, prompt: str, *, question: str | None = None, language: str = "de") -> AIAnswer:
        """Ask the model; see the module docstring for how errors are reported."""
        user = question if question is not None else prompt
        messages = [
            {"role": "system", "content": self.system_prompt(prompt, question=question, language=language)},
            {"role": "user", "content": user},
        ]
        data = self._chat(messages, self.temperature)
        return AIAnswer(text=self._content(data).strip(), provider=self.name, model=data.get("model") or self.model)

    def classify(self, text: str) -> IntentResult:
        """Ask the model for the intent; anything not in :data:`INTENTS` becomes ``other``."""
        if not text or not text.strip():
            return IntentResult("other", 0.0)
        messages = [
            {"role": "system", "content": CLASSIFY_INSTRUCTION.format(intents=", ".join(INTENTS))},
            {"role": "user", "content": text},
        ]
        return parse_intent_reply(self._content(self._chat(messages, 0.0)))

    # -- HTTP ----------------------------------------------------------------------------

    def _chat(self, messages: list[dict[str, str]], temperature: float) -> dict[str, Any]:
        url = f"{self.base_url}/chat/completions"
        body = {"model": self.model, "messages": messages, "temperature": temperature}
        headers = {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}
        try:
            response = self._post(url, body, headers)
        except httpx.TimeoutException as exc:
            raise RetryableError(
                f"The AI provider did not answer within {self.timeout:g} s.", provider=self.name
            ) from exc
        except httpx.TransportError as exc:
            raise RetryableError(
                f"Could not reach the AI provider at {self.base_url}: {self._redact(type(exc).__name__)}.",
                provider=self.name,
            ) from exc
        self._raise_for_status(response)
        try:
            data = response.json()
        except ValueError as exc:
            raise PermanentError("The AI provider sent a response that is not valid JSON.", provider=self.name) from exc
        if not isinstance(data, dict):
            raise PermanentError("The AI provider sent an unexpected response.", provider=self.name)
        return data

    def _post(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        if self._client is not None:
            return self._client.post(url, json=body, headers=headers, timeout=self.timeout)
        with httpx.Client(timeout=self.timeout) as client:
            return client.post(url, json=body, headers=headers)

    def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        detail = self._error_detail(response)
        if status == 429 or status >= 500 or status == 408:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            reason = "is rate limiting requests" if status == 429 else "is temporarily unavailable"
            raise RetryableError(
                f"The AI provider {reason} (HTTP {status}){detail}.",
                retry_after=retry_after,
                status=status,
                provider=self.name,
            )
        if status in (401, 403):
            message = f"The AI provider rejected the API key (HTTP {status}){detail}. Check the provider settings."
        elif status == 404:
            message = f"The AI provider does not know this endpoint or model {self.model!r} (HTTP 404){detail}."
        else:
            message = f"The AI provider rejected the request (HTTP {status}){detail}."
        raise PermanentError(message, status=status, provider=self.name)

    def _error_detail(self, response: httpx.Response) -> str:
        """``": <message>"`` from an OpenAI-style error body, redacted and shortened."""
        try:
            error = response.json().get("error")
            message = error.get("message") if isinstance(error, dict) else error
        except (ValueError, AttributeError):
            message = None
        if not message or not isinstance(message, str):
            return ""
        message = self._redact(message)
        return f": {message[:200]}"

    def _content(self, data: dict[str, Any]) -> str:
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise PermanentError(
                "The AI provider's response has no choices[0].message.content.", provider=self.name
            ) from exc
        if not isinstance(content, str):
            raise PermanentError("The AI provider's reply is not text.", provider=self.name)
        return content

    def _redact(self, text: str) -> str:
        return text.replace(self.api_key, "***") if self.api_key else text


_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def parse_intent_reply(content: str) -> IntentResult:
    """Parse a model's ``{"intent", "confidence"}`` reply leniently (code fences, extra text)."""
    match = _JSON_OBJECT.search(content or "")
    try:
        data = json.loads(match.group()) if match else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    intent = str(data.get("intent", "")).strip().lower()
    try:
        confidence = float(data.get("confidence", 0.0))
    except (TypeError, ValueError):
        confidence = 0.0
    if confidence != confidence:  # NaN
        confidence = 0.0
    confidence = min(1.0, max(0.0, confidence))
    if intent not in INTENTS:
        logger.info("AI provider returned unknown intent %r; using 'other'", intent[:40])
        return IntentResult("other", confidence if intent == "other" else 0.0)
    return IntentResult(intent, confidence)


# ---------------------------------------------------------------------------------------
# settings


class ProviderSettings(BaseModel):
    """Tenant settings for the AI provider (camelCase or snake_case keys)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    provider: str = "offline"
    base_url: str = "https://api.openai.com/v1"
    api_key: str | None = None
    model: str | None = None
    timeout: float = 20.0
    temperature: float = 0.3

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str) -> str:
        name = value.strip().lower().replace("-", "_")
        aliases = {"offline": "offline", "builtin": "offline", "local": "offline", "openai": "openai_compatible"}
        name = aliases.get(name, name)
        if name not in ("offline", "openai_compatible"):
            raise ValueError("must be 'offline' or 'openai_compatible'")
        return name

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value.strip()):
            raise ValueError("must be an http(s) URL such as https://api.openai.com/v1")
        return value.strip()

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 0 < value <= 300:
            raise ValueError("must be between 0 and 300 seconds")
        return value


def provider_from_settings(
    settings: dict[str, Any] | None, knowledge_base: KnowledgeBase | None = None, *, client: httpx.Client | None = None
) -> OfflineProvider | OpenAICompatibleProvider:
    """Create the provider configured in ``settings``.

    ``{"provider": "offline"}`` (the default, also for empty settings) or
    ``{"provider": "openai_compatible", "baseUrl": ..., "apiKey": ..., "model": ..., "timeout": ...}``.
    Invalid settings raise :class:`InvalidInput` naming the field (never echoing the key).
    """
    try:
        parsed = ProviderSettings.model_validate(settings or {})
    except ValidationError as exc:
        error = exc.errors()[0]
        field_name = str(error["loc"][0]) if error["loc"] else "settings"
        raise InvalidInput(error["msg"], field=to_camel(field_name)) from None
    if parsed.provider == "offline":
        return OfflineProvider(knowledge_base)
    if not parsed.api_key:
        raise InvalidInput("is required for the openai_compatible provider", field="apiKey")
    if not parsed.model:
        raise InvalidInput("is required for the openai_compatible provider", field="model")
    return OpenAICompatibleProvider(
        parsed.base_url,
        parsed.api_key,
        parsed.model,
        timeout=parsed.timeout,
        client=client,
        knowledge_base=knowledge_base,
        temperature=parsed.temperature,
    )
