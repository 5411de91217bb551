"""`brain ask`: answer a question from the stored documents, citing the chunks used.

The retrieved chunks are numbered [1]..[n] in the prompt; the model is told to answer only
from them and to cite by number. The call goes through the one traced LLM client
(brain/llm.py): it is charged to the asking user's daily budget and leaves one
brain.llm_calls row (status, tokens, cost, latency, and a snapshot of the chunks sent).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from tradestore.brain.embed import Embedder
from tradestore.brain.llm import LLMClient, PromptTemplate, Snapshot
from tradestore.brain.search import Chunk, search
from tradestore.identity.rls import as_user

__all__ = ["ASK_PROMPT", "Answer", "ask", "build_context"]

ASK_PROMPT = PromptTemplate(
    name="brain.ask",
    version=1,
    system=(
        "You answer questions about markets from the numbered context passages only. "
        "Cite the passages you use as [n]. If the passages do not answer the question, say so. "
        "Answer in the language of the question."
    ),
    template="Context:\n{context}\n\nQuestion: {question}",
)
_CITATION = re.compile(r"\[(\d+)\]")


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    chunks: list[Chunk]  # the context, in citation order ([1] is chunks[0])
    cited: list[int]  # citation numbers the answer uses that name a context chunk
    call_id: int  # the brain.llm_calls row (trace) of the call


def build_context(chunks: Sequence[Chunk]) -> str:
    """The numbered passages as the prompt shows them."""
    context = "\n\n".join(
        f"[{n}] ({c.source}, {c.file_path}#{c.chunk_id}, {c.published_at:%Y-%m-%d}) {c.content}"
        for n, c in enumerate(chunks, start=1)
    )
    return context or "(no passages found)"


def ask(
    conn: psycopg.Connection[Any],
    question: str,
    *,
    client: LLMClient | None = None,
    user_id: int | None = None,
    embedder: Embedder | None = None,
    symbols: Sequence[str] | None = None,
    since: dt.datetime | None = None,
    limit: int = 5,
) -> Answer:
    """Retrieve (hybrid search), then ask the model through the traced client (default: one
        built from the LLM_* settings). With `user_id` the passages are those the user may read
    (row-level security) and the call is charged to their budget. Raises BudgetExceeded / LLMCallFailed as every LLM call
        does; the trace row is written either way. `conn` must be in autocommit mode."""
    if user_id is None:
        chunks = search(
            conn, question, embedder=embedder, symbols=symbols, since=since, limit=limit
        )
    else:
        # Retrieval runs as the asking user: row-level security gives them their own
        # documents and the shared ones, never another user's private ones.
        with as_user(conn, user_id) as acting:
            chunks = search(
                acting, question, embedder=embedder, symbols=symbols, since=since, limit=limit
            )
    # The snapshot names the chunks the prompt was built from, so the prompt can be rebuilt.
    snapshot = Snapshot.of_rows(
        sorted({s for c in chunks for s in c.symbols} | set(symbols or ())),
        since,
        None,
        [(c.id, c.content) for c in chunks],
    )
    result = (client or LLMClient(conn)).chat(
        ASK_PROMPT,
        {"context": build_context(chunks), "question": question},
        user_id=user_id,
        snapshot=snapshot,
    )
    cited = sorted({int(n) for n in _CITATION.findall(result.text) if 1 <= int(n) <= len(chunks)})
    return Answer(question, result.text, chunks, cited, result.call_id)
