"""Telegram's sending limits, as evenly spaced slots.

Telegram asks bots to stay near one message per second in a chat, 20 messages per minute
in a group (negative chat ids), and 30 messages per second overall; beyond that it answers
429 with a retry_after. The limiter spaces sends rather than allowing bursts: a send takes
the later of its chat's next free slot and the global next free slot.

`reserve` is the pure scheduling step (tested with a made-up clock); `acquire` waits for
the chat's slot first and only then takes a global slot, so a chat that must wait never
holds up the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["RateLimiter"]


def _gap(rate: float) -> float:
    return 1.0 / rate if rate > 0 else 0.0


class RateLimiter:
    def __init__(
        self,
        per_chat: float = 1.0,
        per_group: float = 20 / 60,
        overall: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Rates in messages per second; 0 switches that limit off."""
        self._chat_gap = _gap(per_chat)
        self._group_gap = _gap(per_group)
        self._global_gap = _gap(overall)
        self._clock = clock
        self._chat_next: dict[int, float] = {}
        self._global_next = 0.0

    def _gap_of(self, chat_id: int) -> float:
        return self._group_gap if chat_id < 0 else self._chat_gap

    def chat_ready_at(self, chat_id: int) -> float:
        return self._chat_next.get(chat_id, 0.0)

    def reserve(self, chat_id: int, now: float) -> float:
        """Take the next slot for a send to chat_id at or after `now`; returns its time.

        Slots are handed out in call order, so call it once the chat is ready (as
        `acquire` does): reserving a chat's far-off slot early would hold the others up.
        """
        slot = max(now, self._chat_next.get(chat_id, 0.0), self._global_next)
        self._global_next = slot + self._global_gap
        self._chat_next[chat_id] = slot + self._gap_of(chat_id)
        return slot

    def pause(self, chat_id: int, seconds: float) -> None:
        """Hold a chat back (Telegram's retry_after)."""
        until = self._clock() + max(seconds, 0.0)
        self._chat_next[chat_id] = max(self._chat_next.get(chat_id, 0.0), until)

    async def acquire(self, chat_id: int) -> None:
        """Wait until a message may be sent to chat_id."""
        while (wait := self.chat_ready_at(chat_id) - self._clock()) > 0:
            await asyncio.sleep(wait)
        now = self._clock()
        slot = self.reserve(chat_id, now)
        if slot > now:
            await asyncio.sleep(slot - now)
