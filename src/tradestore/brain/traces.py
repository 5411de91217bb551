"""Reading LLM call traces and exporting them as OpenTelemetry spans.

The export speaks OTLP/HTTP with the JSON encoding (POST {"resourceSpans": [...]}) through
httpx, which tradestore already depends on, so users who run Langfuse, Jaeger or an
OpenTelemetry Collector receive one span per call without the OpenTelemetry SDK being a
dependency. A span's attributes are the trace columns under their OTel GenAI names
(gen_ai_usage_input_tokens -> gen_ai.usage.input_tokens); exported rows are marked so a
later export sends only new ones.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import psycopg

__all__ = ["OTEL_NAMES", "export_otlp", "list_traces", "span_of"]

# Trace columns that are not gen_ai_* and their attribute names.
OTEL_NAMES = {
    "prompt_name": "tradestore.prompt.name",
    "prompt_version": "tradestore.prompt.version",
    "prompt_sha256": "tradestore.prompt.sha256",
    "user_id": "tradestore.user.id",
    "status": "tradestore.status",
    "error_type": "error.type",
    "cost": "tradestore.cost",
    "latency_ms": "tradestore.latency_ms",
    "time_to_first_token_ms": "gen_ai.server.time_to_first_token_ms",
    "data_snapshot_key": "tradestore.data_snapshot.key",
    "snapshot_instruments": "tradestore.data_snapshot.instruments",
    "snapshot_sha256": "tradestore.data_snapshot.sha256",
    "id": "tradestore.llm_call.id",
}

_COLUMNS = """id, trace_id, span_id, user_id, gen_ai_operation_name, gen_ai_provider_name,
    gen_ai_request_model, prompt_name, prompt_version, prompt_sha256, gen_ai_request_temperature,
    gen_ai_request_top_p, gen_ai_request_seed, gen_ai_request_max_tokens, snapshot_instruments,
    snapshot_from, snapshot_to, snapshot_sha256, data_snapshot_key, status, error_type,
    error_message, gen_ai_response_id, gen_ai_response_model, gen_ai_response_finish_reasons,
    gen_ai_usage_input_tokens, gen_ai_usage_output_tokens, cost, latency_ms,
    time_to_first_token_ms, started_at, finished_at"""


def list_traces(
    conn: psycopg.Connection[Any],
    *,
    limit: int = 50,
    status: str | None = None,
    user_id: int | None = None,
) -> list[dict[str, Any]]:
    cur = conn.execute(
        f"""SELECT {_COLUMNS} FROM brain.llm_calls
             WHERE (%(status)s::text IS NULL OR status = %(status)s)
               AND (%(user)s::bigint IS NULL OR user_id = %(user)s)
             ORDER BY id DESC LIMIT %(limit)s""",
        {"status": status, "user": user_id, "limit": limit},
    )
    cols = [d.name for d in cur.description or []]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _attr_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}  # OTLP JSON writes 64-bit integers as strings
    if isinstance(value, (float, Decimal)):
        return {"doubleValue": float(value)}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_attr_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _nanos(at: datetime) -> str:
    return str(int(at.timestamp()) * 1_000_000_000 + at.microsecond * 1000)


def span_of(row: dict[str, Any]) -> dict[str, Any]:
    """The OTLP span of one finished trace row."""
    attributes = []
    for column, value in row.items():
        if value is None or column in {
            "trace_id",
            "span_id",
            "started_at",
            "finished_at",
            "error_message",
            "snapshot_from",
            "snapshot_to",
        }:
            continue
        name = OTEL_NAMES.get(column)
        if column.startswith("gen_ai_"):
            # gen_ai_request_max_tokens -> gen_ai.request.max_tokens: the first two '_' only.
            head, _, rest = column.partition("gen_ai_")[2].partition("_")
            name = f"gen_ai.{head}.{rest}" if rest else f"gen_ai.{head}"
        if name:
            attributes.append({"key": name, "value": _attr_value(value)})
    for column in ("snapshot_from", "snapshot_to"):
        if row.get(column) is not None:
            attributes.append(
                {
                    "key": f"tradestore.data_snapshot.{column[9:]}",
                    "value": {"stringValue": row[column].isoformat()},
                }
            )
    ok = row["status"] == "ok"
    status: dict[str, Any] = {"code": 1 if ok else 2}
    if not ok and row.get("error_message"):
        status["message"] = row["error_message"]
    return {
        "traceId": row["trace_id"],
        "spanId": row["span_id"],
        "name": f"{row['gen_ai_operation_name']} {row['gen_ai_request_model']}",
        "kind": 3,  # CLIENT
        "startTimeUnixNano": _nanos(row["started_at"]),
        "endTimeUnixNano": _nanos(row["finished_at"] or row["started_at"]),
        "attributes": attributes,
        "status": status,
    }


def export_otlp(
    conn: psycopg.Connection[Any],
    endpoint: str,
    *,
    headers: dict[str, str] | None = None,
    batch: int = 200,
    client: httpx.Client | None = None,
) -> int:
    """Send finished, not yet exported traces to an OTLP/HTTP traces endpoint
    (`.../v1/traces`); returns how many were sent. A failed POST raises and marks none."""
    sent = 0
    http = client or httpx.Client(timeout=30)
    try:
        while True:
            cur = conn.execute(
                f"""SELECT {_COLUMNS} FROM brain.llm_calls
                     WHERE exported_at IS NULL AND status <> 'started' ORDER BY id LIMIT %s""",
                (batch,),
            )
            cols = [d.name for d in cur.description or []]
            rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
            if not rows:
                return sent
            body = {
                "resourceSpans": [
                    {
                        "resource": {
                            "attributes": [
                                {"key": "service.name", "value": {"stringValue": "tradestore"}}
                            ]
                        },
                        "scopeSpans": [
                            {
                                "scope": {"name": "tradestore.brain"},
                                "spans": [span_of(r) for r in rows],
                            }
                        ],
                    }
                ]
            }
            resp = http.post(endpoint, json=body, headers=headers or {})
            resp.raise_for_status()
            conn.execute(
                "UPDATE brain.llm_calls SET exported_at = now() WHERE id = ANY(%s)",
                ([r["id"] for r in rows],),
            )
            sent += len(rows)
    finally:
        if client is None:
            http.close()


def parse_headers(text: str | None) -> dict[str, str]:
    """`k=v,k2=v2` (OTEL_EXPORTER_OTLP_HEADERS' format) as a dict."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out
