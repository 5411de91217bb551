"""Settings of the LLM client, read from environment variables (and `.env`).

One OpenAI-compatible chat endpoint: a hosted model or a local server (llama.cpp,
Ollama, vLLM) differ only in LLM_BASE_URL, LLM_API_KEY and LLM_MODEL. The key is read
from the environment only: it is never written to the database or to a log.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tradestore.config import SettingsError

__all__ = ["LLMSettings", "load_llm_settings"]


class LLMSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    LLM_BASE_URL: str = "https://api.openai.com/v1"
    # Local servers ignore the key; the openai package needs a non-empty one.
    LLM_API_KEY: SecretStr = SecretStr("unused")
    LLM_MODEL: str = "gpt-4o-mini"
    # The provider name traces and the price table use (gen_ai.provider.name).
    LLM_PROVIDER: str = "openai"
    LLM_TIMEOUT: float = Field(default=60.0, gt=0)
    LLM_MAX_TOKENS: int = Field(default=1024, ge=1)
    LLM_TEMPERATURE: float = Field(default=0.0, ge=0, le=2)
    # OTLP/HTTP traces endpoint (e.g. Langfuse's /api/public/otel/v1/traces); empty: off.
    LLM_OTLP_ENDPOINT: str | None = None
    LLM_OTLP_HEADERS: SecretStr | None = None  # "k=v,k2=v2", e.g. an Authorization header


def load_llm_settings(**overrides: object) -> LLMSettings:
    try:
        return LLMSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(str(exc)) from None
