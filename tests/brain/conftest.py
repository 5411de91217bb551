"""Shared by the RAG tests: the real local embedding model (loaded once per process)."""

from __future__ import annotations

import pytest

from tradestore.brain.embed import E5Embedder, Embedder, get_embedder


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    model = get_embedder("e5-small")
    assert isinstance(model, E5Embedder)
    return model
