"""The one LLM client: OpenAI-compatible chat completions, every call traced.

A call writes its trace row (brain.llm_calls) before the request is sent: the row's
trigger reserves the call's worst-case cost against the user's daily budget, or records
the call as refused (status refused_budget) and it is never sent. When the request
returns (or fails, or times out) the same row is completed with the response id and
model, finish reasons, token usage, latency and time to first token; the trigger prices
it from brain.llm_prices. Hence the connection must be in autocommit mode: a trace
survives whatever the caller does with its own transaction.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import openai
import psycopg

from tradestore.brain.config import LLMSettings, load_llm_settings
from tradestore.db.errors import TradestoreError, ValidationError

__all__ = [
    "BudgetExceeded",
    "LLMCallFailed",
    "LLMClient",
    "LLMResult",
    "PromptTemplate",
    "Snapshot",
    "prompt_sha256",
]


@dataclass(frozen=True)
class PromptTemplate:
    """A named, versioned prompt: `template` is str.format text ({ticker}, {prices}, ...).
    A changed template must get a new version (the database refuses a second text for a
    name and version)."""

    name: str
    version: int
    template: str
    system: str | None = None

    def messages(self, values: Mapping[str, Any]) -> list[dict[str, str]]:
        out = [{"role": "system", "content": self.system}] if self.system else []
        out.append({"role": "user", "content": self.template.format(**values)})
        return out


@dataclass(frozen=True)
class Snapshot:
    """The data a prompt was built from: instruments, time range and a sha256 of the rows
    (canonical JSON, numbers as their exact decimal text), so the prompt can be rebuilt."""

    instruments: tuple[str, ...]
    start: datetime | None
    end: datetime | None
    rows_sha256: str

    @classmethod
    def of_rows(
        cls,
        instruments: Iterable[str],
        start: datetime | None,
        end: datetime | None,
        rows: Iterable[Sequence[Any]],
    ) -> Snapshot:
        digest = hashlib.sha256()
        for row in rows:
            digest.update(json.dumps([_canon(v) for v in row], separators=(",", ":")).encode())
            digest.update(b"\n")
        return cls(tuple(instruments), start, end, digest.hexdigest())

    @property
    def key(self) -> str:
        """`<sha256 of the rows>@<start>..<end>`: what llm_calls.data_snapshot_key holds."""
        span = f"{_iso(self.start)}..{_iso(self.end)}"
        return f"{self.rows_sha256}@{span}"[:128]


@dataclass(frozen=True)
class LLMResult:
    call_id: int
    text: str
    response_id: str | None
    response_model: str | None
    finish_reasons: list[str]
    input_tokens: int | None
    output_tokens: int | None
    cost: Decimal | None
    latency_ms: int
    time_to_first_token_ms: int | None


class BudgetExceeded(TradestoreError):
    """The call would take the user's daily LLM spending over the budget; it was recorded
    (status refused_budget) and not sent."""

    def __init__(self, call_id: int, message: str) -> None:
        super().__init__(f"LLM call refused (trace {call_id}): {message}")
        self.call_id = call_id


class LLMCallFailed(TradestoreError):
    """The endpoint failed or timed out; the trace row says how (status error/timeout)."""

    def __init__(self, call_id: int, status: str, error_type: str, message: str) -> None:
        super().__init__(f"LLM call {status} (trace {call_id}): {error_type}: {message}")
        self.call_id = call_id
        self.status = status
        self.error_type = error_type


def prompt_sha256(messages: Sequence[Mapping[str, str]]) -> str:
    """sha256 of the rendered messages as canonical JSON: what the model was sent."""
    return hashlib.sha256(
        json.dumps(
            list(messages), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    ).hexdigest()


@dataclass
class _Outcome:
    text_parts: list[str] = field(default_factory=list)
    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    first_token_at: float | None = None


class LLMClient:
    """Chat with the configured endpoint; `chat` returns the text or raises, and leaves
    exactly one trace row either way."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        settings: LLMSettings | None = None,
        *,
        client: openai.OpenAI | None = None,
    ) -> None:
        if not conn.autocommit:
            raise ValueError("LLMClient needs an autocommit connection: traces must be committed")
        self.conn = conn
        self.settings = settings or load_llm_settings()
        self._client = client or openai.OpenAI(
            base_url=self.settings.LLM_BASE_URL,
            api_key=self.settings.LLM_API_KEY.get_secret_value(),
            timeout=self.settings.LLM_TIMEOUT,
            max_retries=0,  # a retry is a new, traced call, never a hidden one
        )

    @property
    def model(self) -> str:
        return self.settings.LLM_MODEL

    def chat(
        self,
        prompt: PromptTemplate,
        values: Mapping[str, Any],
        *,
        user_id: int | None = None,
        snapshot: Snapshot | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        max_tokens: int | None = None,
        stream: bool = True,
    ) -> LLMResult:
        messages = prompt.messages(values)
        sha = prompt_sha256(messages)
        temperature = self.settings.LLM_TEMPERATURE if temperature is None else temperature
        max_tokens = max_tokens or self.settings.LLM_MAX_TOKENS
        prompt_id = self._prompt_id(prompt)
        call_id, status, message = self._begin(
            prompt,
            prompt_id,
            sha,
            messages,
            user_id,
            snapshot,
            temperature,
            top_p,
            seed,
            max_tokens,
        )
        if status == "refused_budget":
            raise BudgetExceeded(call_id, message or "over budget")

        started = time.perf_counter()
        out = _Outcome()
        try:
            self._request(out, messages, temperature, top_p, seed, max_tokens, stream, started)
        except openai.APITimeoutError as exc:
            self._finish(call_id, out, started, "timeout", type(exc).__name__, self._clean(exc))
            raise LLMCallFailed(call_id, "timeout", type(exc).__name__, self._clean(exc)) from None
        except (openai.OpenAIError, ValueError, KeyError) as exc:
            self._finish(call_id, out, started, "error", type(exc).__name__, self._clean(exc))
            raise LLMCallFailed(call_id, "error", type(exc).__name__, self._clean(exc)) from None
        row = self._finish(call_id, out, started, "ok", None, None)
        return LLMResult(
            call_id=call_id,
            text="".join(out.text_parts),
            response_id=out.response_id,
            response_model=out.response_model,
            finish_reasons=out.finish_reasons,
            input_tokens=out.input_tokens,
            output_tokens=out.output_tokens,
            cost=row[0],
            latency_ms=row[1],
            time_to_first_token_ms=row[2],
        )

    # -- the request -------------------------------------------------------------------
    def _request(
        self,
        out: _Outcome,
        messages: list[dict[str, str]],
        temperature: float | None,
        top_p: float | None,
        seed: int | None,
        max_tokens: int,
        stream: bool,
        started: float,
    ) -> None:
        kwargs: dict[str, Any] = {
            "model": self.settings.LLM_MODEL,
            "messages": messages,
            "max_tokens": max_tokens,
        }
        for name, value in (("temperature", temperature), ("top_p", top_p), ("seed", seed)):
            if value is not None:
                kwargs[name] = value
        if not stream:
            resp = self._client.chat.completions.create(**kwargs)
            out.first_token_at = time.perf_counter()
            out.response_id, out.response_model = resp.id, resp.model
            for choice in resp.choices:
                out.text_parts.append(choice.message.content or "")
                if choice.finish_reason:
                    out.finish_reasons.append(choice.finish_reason)
            if resp.usage:
                out.input_tokens = resp.usage.prompt_tokens
                out.output_tokens = resp.usage.completion_tokens
            return
        chunks = self._client.chat.completions.create(
            **kwargs, stream=True, stream_options={"include_usage": True}
        )
        for chunk in chunks:
            out.response_id = out.response_id or chunk.id
            out.response_model = out.response_model or chunk.model
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    if out.first_token_at is None:
                        out.first_token_at = time.perf_counter()
                    out.text_parts.append(choice.delta.content)
                if choice.finish_reason:
                    out.finish_reasons.append(choice.finish_reason)
            if chunk.usage:
                out.input_tokens = chunk.usage.prompt_tokens
                out.output_tokens = chunk.usage.completion_tokens

    def _clean(self, exc: BaseException) -> str:
        """The error text, with the API key taken out should an endpoint echo it."""
        text = str(exc)[:2000]
        key = self.settings.LLM_API_KEY.get_secret_value()
        return text.replace(key, "[redacted]") if key and len(key) >= 8 else text

    # -- the trace ---------------------------------------------------------------------
    def _prompt_id(self, prompt: PromptTemplate) -> int:
        text = (
            prompt.template if prompt.system is None else f"{prompt.system}\n---\n{prompt.template}"
        )
        row = self.conn.execute(
            """INSERT INTO brain.llm_prompts (name, version, template) VALUES (%s, %s, %s)
               ON CONFLICT (name, version) DO UPDATE SET name = EXCLUDED.name
               RETURNING id, template""",
            (prompt.name, prompt.version, text),
        ).fetchone()
        assert row is not None
        if row[1] != text:
            raise ValidationError(
                "prompt.version",
                "a changed template needs a new version",
                f"{prompt.name} v{prompt.version}",
            )
        return int(row[0])

    def _begin(
        self,
        prompt: PromptTemplate,
        prompt_id: int,
        sha: str,
        messages: list[dict[str, str]],
        user_id: int | None,
        snapshot: Snapshot | None,
        temperature: float | None,
        top_p: float | None,
        seed: int | None,
        max_tokens: int,
    ) -> tuple[int, str, str | None]:
        # chars / 3 overestimates tokens for English and Korean alike: a safe reservation.
        estimate = sum(len(m["content"]) for m in messages) // 3 + 8 * len(messages)
        row = self.conn.execute(
            """INSERT INTO brain.llm_calls (
                   user_id, gen_ai_provider_name, gen_ai_request_model, prompt_id, prompt_name,
                   prompt_version, prompt_sha256, gen_ai_request_temperature, gen_ai_request_top_p,
                   gen_ai_request_seed, gen_ai_request_max_tokens, estimated_input_tokens,
                   snapshot_instruments, snapshot_from, snapshot_to, snapshot_sha256,
                   data_snapshot_key)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               RETURNING id, status, error_message""",
            (
                user_id,
                self.settings.LLM_PROVIDER,
                self.settings.LLM_MODEL,
                prompt_id,
                prompt.name,
                prompt.version,
                sha,
                None if temperature is None else Decimal(str(temperature)),
                None if top_p is None else Decimal(str(top_p)),
                seed,
                max_tokens,
                estimate,
                list(snapshot.instruments) if snapshot else None,
                snapshot.start if snapshot else None,
                snapshot.end if snapshot else None,
                snapshot.rows_sha256 if snapshot else None,
                snapshot.key if snapshot else None,
            ),
        ).fetchone()
        assert row is not None
        return int(row[0]), str(row[1]), row[2]

    def _finish(
        self,
        call_id: int,
        out: _Outcome,
        started: float,
        status: str,
        error_type: str | None,
        error_message: str | None,
    ) -> tuple[Decimal | None, int, int | None]:
        now = time.perf_counter()
        ttft = None if out.first_token_at is None else int((out.first_token_at - started) * 1000)
        row = self.conn.execute(
            """UPDATE brain.llm_calls SET
                   status = %s, error_type = %s, error_message = %s, gen_ai_response_id = %s,
                   gen_ai_response_model = %s, gen_ai_response_finish_reasons = %s,
                   gen_ai_usage_input_tokens = %s, gen_ai_usage_output_tokens = %s,
                   response_text = %s, latency_ms = %s, time_to_first_token_ms = %s
               WHERE id = %s
               RETURNING cost, latency_ms, time_to_first_token_ms""",
            (
                status,
                error_type,
                error_message,
                out.response_id,
                out.response_model,
                out.finish_reasons or None,
                out.input_tokens,
                out.output_tokens,
                "".join(out.text_parts) if out.text_parts else None,
                int((now - started) * 1000),
                ttft,
                call_id,
            ),
        ).fetchone()
        assert row is not None
        return row[0], int(row[1]), row[2]


def _canon(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    return str(value)


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()
