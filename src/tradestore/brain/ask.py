"""`brain ask`: answer a question from the stored documents, citing the chunks used.

The retrieved chunks are numbered [1]..[n] in the prompt; the model is told to answer only
from them and to cite by number. The call and its answer are recorded in
brain.llm_prompts / brain.llm_responses (the trace).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from tradestore.brain.embed import Embedder
from tradestore.brain.search import Chunk, search
from tradestore.db.errors import ValidationError

PROMPT_NAME = "brain.ask"
PROMPT_VERSION = 1
SYSTEM = (
    "You answer questions about markets from the numbered context passages only. "
    "Cite the passages you use as [n]. If the passages do not answer the question, say so. "
    "Answer in the language of the question."
)
TEMPLATE = "Context:\n{context}\n\nQuestion: {question}"
_CITATION = re.compile(r"\[(\d+)\]")


@dataclass(frozen=True)
class ChatReply:
    text: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: int


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    chunks: list[Chunk]  # the context, in citation order ([1] is chunks[0])
    cited: list[int]  # citation numbers the answer uses that name a context chunk
    response_id: int | None  # brain.llm_responses row of the trace


# MERGE NOTE: a minimal OpenAI-compatible chat call, to be replaced by the shared traced
# LLM client (brain/llm.py) when the branches meet; record_trace() then goes too.
def chat(messages: list[dict[str, str]]) -> ChatReply:
    """One chat completion from LLM_BASE_URL / LLM_API_KEY / LLM_MODEL."""
    from openai import OpenAI

    model = os.environ.get("LLM_MODEL")
    if not model:
        raise ValidationError("LLM_MODEL", "must name the chat model to use", model)
    client = OpenAI(
        base_url=os.environ.get("LLM_BASE_URL"),
        api_key=os.environ.get("LLM_API_KEY") or "unused",
        max_retries=1,
        timeout=120,
    )
    started = time.monotonic()
    reply = client.chat.completions.create(model=model, messages=messages, temperature=0)  # type: ignore[arg-type]
    usage = reply.usage
    return ChatReply(
        text=reply.choices[0].message.content or "",
        model=reply.model or model,
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
        latency_ms=int((time.monotonic() - started) * 1000),
    )


def build_prompt(question: str, chunks: Sequence[Chunk]) -> str:
    context = "\n\n".join(
        f"[{n}] ({c.source}, {c.file_path}#{c.chunk_id}, {c.published_at:%Y-%m-%d}) {c.content}"
        for n, c in enumerate(chunks, start=1)
    )
    return TEMPLATE.format(context=context or "(no passages found)", question=question)


def record_trace(conn: psycopg.Connection[Any], rendered: str, reply: ChatReply) -> int:
    """The prompt template (once per version) and this call's response."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO brain.llm_prompts (name, version, template) VALUES (%s, %s, %s) "
            "ON CONFLICT (name, version) DO NOTHING",
            (PROMPT_NAME, PROMPT_VERSION, SYSTEM + "\n\n" + TEMPLATE),
        )
        row = conn.execute(
            """
            INSERT INTO brain.llm_responses
                   (prompt_id, model_name, rendered_prompt, response_text, prompt_tokens,
                    completion_tokens, latency_ms)
            SELECT id, %s, %s, %s, %s, %s, %s FROM brain.llm_prompts
             WHERE name = %s AND version = %s
            RETURNING id
            """,
            (reply.model[:100], rendered, reply.text, reply.prompt_tokens,
             reply.completion_tokens, reply.latency_ms, PROMPT_NAME, PROMPT_VERSION),
        ).fetchone()  # fmt: skip
    return int(row[0]) if row else 0


def ask(
    conn: psycopg.Connection[Any],
    question: str,
    *,
    embedder: Embedder | None = None,
    symbols: Sequence[str] | None = None,
    since: dt.datetime | None = None,
    limit: int = 5,
) -> Answer:
    """Retrieve (hybrid search), ask the model, keep the trace."""
    chunks = search(conn, question, embedder=embedder, symbols=symbols, since=since, limit=limit)
    rendered = build_prompt(question, chunks)
    reply = chat([{"role": "system", "content": SYSTEM}, {"role": "user", "content": rendered}])
    response_id = record_trace(conn, rendered, reply)
    cited = sorted({int(n) for n in _CITATION.findall(reply.text) if 1 <= int(n) <= len(chunks)})
    return Answer(question, reply.text, chunks, cited, response_id)
