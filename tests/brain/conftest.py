"""Shared by the RAG tests: the real local embedding model (loaded once per process)."""

from __future__ import annotations

import pytest

from tradestore.brain.embed import Embedder, UseEmbedder, get_embedder


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    model = get_embedder("use-multilingual")  # the default model
    assert isinstance(model, UseEmbedder)
    return model
