"""Replay protection and de-duplication, as a Bolt middleware that runs after Bolt has
verified the signature and the 5-minute timestamp window.

- A signature seen before inside the window is a replayed request: 401, nothing runs.
  (Bolt alone accepts the same signed body again and again for five minutes.)
- An event id seen before is Slack delivering the same event again (`X-Slack-Retry-Num`),
  usually because the first delivery is still being handled: acknowledged, nothing runs.

Both memories are per process. Across replicas and restarts the workflow id, derived from
the thread, is what guarantees one request per thread; this only keeps duplicates cheap
and steering replies from being queued twice in the common case.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

log = logging.getLogger("honk.chat.guard")

WINDOW_SECONDS = 5 * 60  # Slack's (and Bolt's) timestamp tolerance


class Recent:
    """Keys seen in the last `window` seconds, at most `limit` of them (oldest dropped)."""

    def __init__(self, window: float = WINDOW_SECONDS, limit: int = 200_000) -> None:
        self.window = window
        self.limit = limit
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, key: str, now: float | None = None) -> bool:
        """Remember `key`; True unless it was already seen inside the window."""
        now = time.monotonic() if now is None else now
        self._expire(now)
        if key in self._seen:
            return False
        self._seen[key] = now
        if len(self._seen) > self.limit:
            self._seen.popitem(last=False)
        return True

    def _expire(self, now: float) -> None:
        while self._seen:
            key, at = next(iter(self._seen.items()))
            if now - at < self.window:
                break
            del self._seen[key]

    def __len__(self) -> int:
        return len(self._seen)


class Guard:
    def __init__(self) -> None:
        self.signatures = Recent()
        self.events = Recent()

    async def check(
        self, req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:  # noqa: A002
        if req.mode == "http":
            signature = (req.headers.get("x-slack-signature") or [""])[0]
            if signature and not self.signatures.first_time(signature):
                log.warning("replayed request rejected", extra=_where(req))
                return BoltResponse(
                    status=401, body='{"error":"replayed request"}', headers={"content-type": "application/json"}
                )
        event_id = req.body.get("event_id") if isinstance(req.body, dict) else None
        if event_id and not self.events.first_time(str(event_id)):
            retry = (req.headers.get("x-slack-retry-num") or [""])[0] or None
            log.info("duplicate event acknowledged", extra={**_where(req), "event_id": event_id, "retry": retry})
            # X-Slack-No-Retry: the first delivery is being handled; stop sending this one.
            return BoltResponse(status=200, body="", headers={"x-slack-no-retry": "1"})
        return await next()


def _where(req: AsyncBoltRequest) -> dict[str, object]:
    body = req.body if isinstance(req.body, dict) else {}
    return {"type": body.get("type"), "team": req.context.team_id, "mode": req.mode}
