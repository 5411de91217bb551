"""Message splitting, formatting, the rate limiter's schedule, Bot API answers."""

from __future__ import annotations

import asyncio
import itertools

import httpx
from hypothesis import given
from hypothesis import strategies as st

from tests.notify.botapi import BotApiServer, Reply
from tradestore.notify.ratelimit import RateLimiter
from tradestore.notify.telegram import (
    MAX_MESSAGE_LENGTH,
    TelegramClient,
    format_message,
    redact,
    split_message,
    utf16_len,
)


def test_short_message_is_one_part() -> None:
    assert split_message("hello") == ["hello"]


def test_long_message_splits_at_line_breaks() -> None:
    lines = [f"line {i:05d} " + "x" * 80 for i in range(200)]
    text = "\n".join(lines)
    parts = split_message(text)
    assert len(parts) > 1
    assert "".join(parts) == text
    assert all(utf16_len(p) <= MAX_MESSAGE_LENGTH for p in parts)
    # every part but the last ends exactly at a line break
    assert all(p.endswith("\n") for p in parts[:-1])


def test_emoji_count_twice_and_are_never_cut() -> None:
    text = "🚀" * 3000  # 6000 UTF-16 units
    parts = split_message(text)
    assert [utf16_len(p) for p in parts] == [4096, 1904]
    assert "".join(parts) == text


@given(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12000),
    st.integers(min_value=2, max_value=5000),
)
def test_split_property(text: str, limit: int) -> None:
    parts = split_message(text, limit)
    assert parts
    assert all(utf16_len(p) <= limit for p in parts)
    if text.strip():
        assert all(p.strip() for p in parts)
        # nothing but whitespace-only runs is ever dropped
        assert "".join("".join(parts).split()) == "".join(text.split())


def test_format_message_has_icon_title_and_body() -> None:
    assert format_message("CRITICAL", "disk", "full") == "🚨 disk\n\nfull"
    assert format_message("INFO", "t", "") == "ℹ️ t"


def test_redact_hides_the_token() -> None:
    assert (
        redact("POST https://x/bot123:abc/sendMessage", "123:abc")
        == "POST https://x/bot<token>/sendMessage"
    )


def test_rate_limiter_spaces_one_chat_by_its_rate() -> None:
    limiter = RateLimiter(per_chat=1.0, per_group=20 / 60, overall=30.0)
    slots = [limiter.reserve(7, now=0.0) for _ in range(4)]
    assert slots == [0.0, 1.0, 2.0, 3.0]


def test_rate_limiter_groups_get_20_per_minute() -> None:
    limiter = RateLimiter(per_chat=1.0, per_group=20 / 60, overall=30.0)
    slots = [limiter.reserve(-100, now=0.0) for _ in range(3)]
    assert [round(s, 6) for s in slots] == [0.0, 3.0, 6.0]


def test_rate_limiter_overall_30_per_second_across_chats() -> None:
    limiter = RateLimiter(per_chat=1.0, per_group=20 / 60, overall=30.0)
    slots = [limiter.reserve(chat, now=0.0) for chat in range(1, 61)]
    assert abs(slots[-1] - 59 / 30) < 1e-9
    assert all(b - a >= 1 / 30 - 1e-12 for a, b in itertools.pairwise(slots))


def test_rate_limiter_off_never_waits() -> None:
    limiter = RateLimiter(0, 0, 0)
    assert {limiter.reserve(1, now=5.0) for _ in range(100)} == {5.0}


def test_rate_limiter_pause_holds_the_chat_back() -> None:
    now = [100.0]
    limiter = RateLimiter(per_chat=1.0, overall=0, clock=lambda: now[0])
    limiter.pause(9, 7.0)
    assert limiter.chat_ready_at(9) == 107.0
    assert limiter.reserve(10, now=100.0) == 100.0  # other chats are not held
    assert limiter.reserve(9, now=100.0) == 107.0


def _send(server: BotApiServer, chat_id: int, timeout: float = 5.0):
    async def go():
        async with httpx.AsyncClient(timeout=timeout) as http:
            return await TelegramClient(http, server.token, server.base_url).send_message(
                chat_id, "hi"
            )

    return asyncio.run(go())


def test_client_reads_each_kind_of_answer(botapi: BotApiServer) -> None:
    botapi.script(
        1, Reply.too_many(7), Reply.bad_request(), Reply.server_error(503), Reply.slow(2.0)
    )
    too_many = _send(botapi, 1)
    assert (too_many.ok, too_many.status, too_many.retry_after, too_many.permanent) == (
        False,
        429,
        7.0,
        False,
    )
    bad = _send(botapi, 1)
    assert (bad.ok, bad.status, bad.permanent) == (False, 400, True)
    assert "chat not found" in (bad.error or "")
    unavailable = _send(botapi, 1)
    assert (unavailable.ok, unavailable.status, unavailable.permanent) == (False, 503, False)
    slow = _send(botapi, 1, timeout=0.3)
    assert not slow.ok and slow.status is None and "timeout" in (slow.error or "")
    assert _send(botapi, 1).ok


def test_client_errors_never_show_the_token() -> None:
    async def go():
        async with httpx.AsyncClient(timeout=1) as http:
            # nothing listens on port 9 of loopback: connection refused
            return await TelegramClient(http, "999:SECRET", "http://127.0.0.1:9").send_message(
                1, "x"
            )

    result = asyncio.run(go())
    assert not result.ok and "SECRET" not in (result.error or "")
