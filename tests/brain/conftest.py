"""Shared by the brain tests: the fake OpenAI-compatible server (LLM half) and the real local
embedding model, loaded once per process (RAG half)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.brain.fake_llm import FakeLLM, fake_llm
from tradestore.brain.embed import Embedder, UseEmbedder, get_embedder


@pytest.fixture
def llm_server() -> Iterator[FakeLLM]:
    with fake_llm() as fake:
        yield fake


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    model = get_embedder("use-multilingual")  # the default model
    assert isinstance(model, UseEmbedder)
    return model
