"""The OpenAI-compatible provider against a real local HTTP server speaking chat-completions."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from engine.ai.intent import IntentResult
from engine.ai.providers import DEMO_KNOWLEDGE_BASE, OpenAICompatibleProvider, provider_from_settings
from engine.errors import PermanentError, RetryableError

API_KEY = "sk-test-0123456789abcdef"
MODEL = "studio-chat-1"


@dataclass
class Reply:
    status: int = 200
    body: bytes | dict[str, Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def completion(content: str, model: str = MODEL) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    }


class FakeLLM:
    """A chat-completions server on 127.0.0.1 with a queue of scripted replies."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.replies: list[Reply] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                fake.requests.append(Recorded("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                reply = fake.replies.pop(0) if fake.replies else Reply(body=completion("ok"))
                if reply.delay:
                    time.sleep(reply.delay)
                payload = json.dumps(reply.body).encode() if isinstance(reply.body, dict) else reply.body
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def reply(self, *replies: Reply) -> None:
        self.replies.extend(replies)


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    server = FakeLLM()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def provider(llm: FakeLLM) -> Iterator[OpenAICompatibleProvider]:
    with OpenAICompatibleProvider(llm.base_url, API_KEY, MODEL, timeout=5.0, knowledge_base=DEMO_KNOWLEDGE_BASE) as p:
        yield p


def test_answer_sends_exact_chat_completions_request(llm: FakeLLM, provider: OpenAICompatibleProvider) -> None:
    llm.reply(Reply(body=completion("  Die 10er-Karte kostet 140 €.  ", model="studio-chat-1-2024")))
    prompt = "Beantworte die Frage des Mitglieds kurz."
    answer = provider.answer(prompt, question="Was kostet die 10er-Karte?")

    assert answer.text == "Die 10er-Karte kostet 140 €."
    assert answer.provider == "openai_compatible"
    assert answer.model == "studio-chat-1-2024"
    assert answer.to_output()["provider"] == "openai_compatible"

    [request] = llm.requests
    assert request.method == "POST"
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert set(body) == {"model", "messages", "temperature"}
    assert body["model"] == MODEL
    assert body["temperature"] == 0.3
    system, user = body["messages"]
    assert user == {"role": "user", "content": "Was kostet die 10er-Karte?"}
    assert system["role"] == "system"
    assert system["content"] == provider.system_prompt(prompt, question="Was kostet die 10er-Karte?", language="de")
    assert system["content"].startswith(prompt)
    assert "Antworte auf Deutsch" in system["content"]
    assert "10er-Karte: 140 €" in system["content"]  # knowledge base facts
    assert "Mo-Fr 07:00-22:00" in system["content"]


def test_answer_without_question_sends_prompt_as_user_message(llm: FakeLLM, provider: OpenAICompatibleProvider) -> None:
    provider.answer("Wann habt ihr offen?", language="en")
    body = llm.requests[0].json()
    assert body["messages"][1] == {"role": "user", "content": "Wann habt ihr offen?"}
    assert "Reply in English" in body["messages"][0]["content"]


def test_without_knowledge_base_no_facts_are_sent(llm: FakeLLM) -> None:
    with OpenAICompatibleProvider(llm.base_url + "/", API_KEY, MODEL) as bare:
        bare.answer("Sei nett.", question="Hallo")
    body = llm.requests[0].json()
    assert llm.requests[0].path == "/v1/chat/completions"  # trailing slash in base_url is fine
    assert (
        body["messages"][0]["content"]
        == "Sei nett.\n\nAntworte auf Deutsch, freundlich, per du und in höchstens drei kurzen Sätzen."
    )


def test_classify_parses_json_reply(llm: FakeLLM, provider: OpenAICompatibleProvider) -> None:
    llm.reply(Reply(body=completion('```json\n{"intent": "trial_class", "confidence": 0.82}\n```')))
    assert provider.classify("Kann ich morgen zum Probetraining kommen?") == IntentResult("trial_class", 0.82)
    body = llm.requests[0].json()
    assert body["temperature"] == 0.0
    assert "trial_class" in body["messages"][0]["content"]
    assert body["messages"][1] == {"role": "user", "content": "Kann ich morgen zum Probetraining kommen?"}


def test_classify_unknown_intent_becomes_other(llm: FakeLLM, provider: OpenAICompatibleProvider) -> None:
    llm.reply(Reply(body=completion('{"intent": "yoga_philosophy", "confidence": 0.99}')))
    assert provider.classify("Was ist Karma?") == IntentResult("other", 0.0)


def test_classify_empty_text_makes_no_request(llm: FakeLLM, provider: OpenAICompatibleProvider) -> None:
    assert provider.classify("   ") == IntentResult("other", 0.0)
    assert llm.requests == []


def test_429_is_retryable_with_retry_after(llm: FakeLLM, provider: OpenAICompatibleProvider) -> None:
    llm.reply(Reply(status=429, body={"error": {"message": "Rate limit reached"}}, headers={"Retry-After": "7"}))
    with pytest.raises(RetryableError) as info:
        provider.answer("p", question="q")
    assert info.value.retry_after == 7.0
    assert "429" in str(info.value) and "Rate limit reached" in str(info.value)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_retryable(llm: FakeLLM, provider: OpenAICompatibleProvider, status: int) -> None:
    llm.reply(Reply(status=status, body=b"<html>oops</html>"))
    with pytest.raises(RetryableError) as info:
        provider.answer("p", question="q")
    assert info.value.retry_after is None
    assert str(status) in str(info.value)


def test_503_with_retry_after(llm: FakeLLM, provider: OpenAICompatibleProvider) -> None:
    llm.reply(Reply(status=503, headers={"Retry-After": "120"}))
    with pytest.raises(RetryableError) as info:
        provider.classify("Hallo")
    assert info.value.retry_after == 120.0


def test_400_is_permanent_with_clear_message(llm: FakeLLM, provider: OpenAICompatibleProvider) -> None:
    llm.reply(
        Reply(status=400, body={"error": {"message": "Unknown parameter: 'foo'", "type": "invalid_request_error"}})
    )
    with pytest.raises(PermanentError) as info:
        provider.answer("p", question="q")
    assert not isinstance(info.value, RetryableError)
    assert "HTTP 400" in str(info.value) and "Unknown parameter" in str(info.value)


def test_401_never_leaks_the_api_key(llm: FakeLLM, provider: OpenAICompatibleProvider) -> None:
    llm.reply(Reply(status=401, body={"error": {"message": f"Incorrect API key provided: {API_KEY}"}}))
    with pytest.raises(PermanentError) as info:
        provider.answer("p", question="q")
    message = str(info.value)
    assert "API key" in message
    assert API_KEY not in message and API_KEY not in repr(info.value.details)


def test_malformed_json_is_permanent(llm: FakeLLM, provider: OpenAICompatibleProvider) -> None:
    llm.reply(Reply(body=b"{not json"))
    with pytest.raises(PermanentError, match="not valid JSON"):
        provider.answer("p", question="q")


def test_missing_choices_is_permanent(llm: FakeLLM, provider: OpenAICompatibleProvider) -> None:
    llm.reply(Reply(body={"id": "x", "choices": []}))
    with pytest.raises(PermanentError, match="choices"):
        provider.answer("p", question="q")


def test_timeout_is_retryable(llm: FakeLLM) -> None:
    llm.reply(Reply(body=completion("late"), delay=1.0))
    with (
        OpenAICompatibleProvider(llm.base_url, API_KEY, MODEL, timeout=0.2) as slow,
        pytest.raises(RetryableError, match="did not answer"),
    ):
        slow.answer("p", question="q")


def test_connection_error_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        OpenAICompatibleProvider(f"http://127.0.0.1:{port}/v1", API_KEY, MODEL, timeout=2.0) as down,
        pytest.raises(RetryableError) as info,
    ):
        down.answer("p", question="q")
    assert API_KEY not in str(info.value)


def test_no_retry_loop_inside(llm: FakeLLM, provider: OpenAICompatibleProvider) -> None:
    llm.reply(Reply(status=500), Reply(body=completion("second")))
    with pytest.raises(RetryableError):
        provider.answer("p", question="q")
    assert len(llm.requests) == 1


def test_provider_from_settings_talks_to_server(llm: FakeLLM) -> None:
    llm.reply(Reply(body=completion("Hallo zurück!")))
    client = httpx.Client()
    try:
        provider = provider_from_settings(
            {"provider": "openai_compatible", "baseUrl": llm.base_url, "apiKey": API_KEY, "model": MODEL, "timeout": 3},
            DEMO_KNOWLEDGE_BASE,
            client=client,
        )
        answer = provider.answer("Antworte kurz.", question="Hallo")
    finally:
        client.close()
    assert answer.text == "Hallo zurück!"
    assert llm.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert "Lotus Yoga & Fitness" in llm.requests[0].json()["messages"][0]["content"]
