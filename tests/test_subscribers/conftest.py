"""Fixtures for the subscriber tests: a bus on fakeredis, a local SMTP server, helpers to read events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import anyio
import fakeredis
import msgspec
import pytest
import redis.asyncio as aioredis
from aiosmtpd.controller import Controller

from bus import BusSettings, EventBus
from tests.conftest import free_port

from ._data import make_directory


class SmtpRecorder:
    """aiosmtpd handler: records messages; scripted failures per RCPT address or per DATA attempt."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.data_attempts = 0
        #: Replies for the next DATA commands, consumed in order (e.g. ``["451 4.3.0 Try later"]``).
        self.data_failures: list[str] = []
        #: A RCPT reply per address (e.g. ``{"x@y": "550 5.1.1 No such user"}``).
        self.rcpt_replies: dict[str, str] = {}

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        reply = self.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_attempts += 1
        if self.data_failures:
            return self.data_failures.pop(0)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"

    def recipients(self) -> set[str]:
        """The To addresses of every accepted message."""
        return {str(m["To"]).rsplit("<", 1)[-1].rstrip(">") for m in self.messages}


class SmtpServer:
    """A running aiosmtpd server on a free port."""

    def __init__(self, controller: Controller, recorder: SmtpRecorder) -> None:
        self.controller = controller
        self.recorder = recorder
        self.host = "127.0.0.1"
        self.port = int(controller.port)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A local SMTP server (aiosmtpd Controller, own thread) on a free port."""
    recorder = SmtpRecorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpServer(controller, recorder)
    finally:
        controller.stop()


@pytest.fixture
def directory() -> Any:
    """The test tenant's directory."""
    return make_directory()


@pytest.fixture
async def fake_bus(test_prefix: str) -> AsyncIterator[EventBus]:
    """A connected bus on a fresh fakeredis server, keys under the test prefix."""
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    async with EventBus(BusSettings(prefix=test_prefix), client=client) as bus:
        yield bus
    await client.aclose()


@pytest.fixture
async def any_bus(backend: aioredis.Redis, test_prefix: str) -> AsyncIterator[EventBus]:
    """A connected bus on fakeredis or the real Redis (keys under the test prefix)."""
    async with EventBus(BusSettings(prefix=test_prefix), client=backend) as bus:
        yield bus


async def published(bus: EventBus, event_type: str) -> list[dict[str, Any]]:
    """Payloads of ``event_type`` events on the global channel, oldest first."""
    entries: Any = await bus.client.xrange(bus.keys.stream("global", event_type))
    return [msgspec.json.decode(fields[b"event"])["payload"] for _, fields in entries]


async def entries(bus: EventBus, key: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Every entry of a stream, oldest first, as ``(id, fields)`` bytes."""
    raw: Any = await bus.client.xrange(key)
    return [(entry_id, dict(fields)) for entry_id, fields in raw]


def part(msg: Message, content_type: str) -> str:
    """The decoded text of a message's ``text/plain`` or ``text/html`` part."""
    for p in msg.walk():
        if p.get_content_type() == content_type:
            raw = p.get_payload(decode=True)
            assert isinstance(raw, bytes)
            return raw.decode()
    raise AssertionError(f"no {content_type} part")


async def wait_until(check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0, interval_s: float = 0.01) -> None:
    """Poll ``check`` until it is true, failing after ``timeout_s``."""
    with anyio.fail_after(timeout_s):
        while True:
            if await check():
                return
            await anyio.sleep(interval_s)
