"""A websocket client on an upgraded connection, framed by ``wsproto``.

:meth:`~exporter.transport.http.HttpSession.websocket` does the upgrade request; this module
checks the server's answer to it and then speaks the frames. Reading is bounded twice: by the
size of one message and by the number of frames over the socket's life, so a server can
neither make it buffer without end nor keep it busy with pings and fragments.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from multidict import CIMultiDict
from wsproto import ConnectionType
from wsproto.connection import Connection as Framing
from wsproto.connection import ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, generate_accept_token, generate_nonce

from exporter.reasons import Reason
from exporter.transport.connection import Connection
from exporter.transport.errors import ProbeFailure

# RFC 6455 §7.4.1: no close frame came before the connection ended.
ABNORMAL_CLOSURE = 1006


def upgrade_headers() -> tuple[Mapping[str, str], str]:
    """The headers that ask for a websocket (RFC 6455 §4.1), and the key they carry."""
    key = generate_nonce().decode()
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
    }
    return headers, key


def verify_upgrade(headers: CIMultiDict[str], key: str) -> None:
    """Refuse a 101 that is not a websocket answer to ``key`` (RFC 6455 §4.1, client step 5)."""
    if headers.get("Upgrade", "").lower() != "websocket":
        raise ProbeFailure(Reason.INVALID_RESPONSE, "websocket upgrade answered without Upgrade")
    if "upgrade" not in headers.get("Connection", "").lower():
        raise ProbeFailure(
            Reason.INVALID_RESPONSE, "websocket upgrade answered without Connection: Upgrade"
        )
    if headers.get("Sec-WebSocket-Accept", "") != generate_accept_token(key.encode()).decode():
        raise ProbeFailure(
            Reason.INVALID_RESPONSE, "websocket upgrade answered with a wrong Sec-WebSocket-Accept"
        )


class WebSocket:
    """An open websocket: text messages out and in, pings answered on the way."""

    def __init__(
        self, conn: Connection, trailing: bytes, *, max_message: int, max_frames: int
    ) -> None:
        self._conn = conn
        # Bytes the server sent right behind its 101 are already frames.
        self._framing = Framing(ConnectionType.CLIENT, trailing_data=trailing)
        self._max_message = max_message
        self._frames_left = max_frames

    async def send_text(self, text: str) -> None:
        """Send one text message."""
        await self._send(TextMessage(data=text))

    async def receive(self) -> str:
        """The next whole text message.

        Raises ProbeFailure: ``session_rejected`` when the server closes the websocket,
        ``invalid_response`` for a binary message, a message over ``max_message`` bytes, more
        frames than ``max_frames`` in all, or frames that break the protocol.
        """
        parts: list[str] = []
        size = 0
        while True:
            for event in self._framing.events():
                self._count(event)
                if isinstance(event, TextMessage):
                    parts.append(event.data)
                    size += len(event.data.encode())
                    if size > self._max_message:
                        raise ProbeFailure(Reason.INVALID_RESPONSE, "websocket message too large")
                    if event.message_finished:
                        return "".join(parts)
                else:
                    await self._control(event)
            await self._fill()

    async def close(self) -> None:
        """Say goodbye with a normal close frame if the socket is still open, then drop it."""
        try:
            if self._framing.state is ConnectionState.OPEN:
                with contextlib.suppress(OSError, ProbeFailure):  # the server may be gone
                    await self._send(CloseConnection(code=1000))
        finally:
            self._conn.abort()

    def _count(self, event: Event) -> None:
        """Spend one frame of the allowance per whole frame."""
        if isinstance(event, Message) and not event.frame_finished:
            return
        self._frames_left -= 1
        if self._frames_left < 0:
            raise ProbeFailure(Reason.INVALID_RESPONSE, "websocket sent too many frames")

    async def _control(self, event: Event) -> None:
        """Answer a ping; turn a close or a non-text message into its failure."""
        if isinstance(event, Ping):
            await self._send(event.response())
        elif isinstance(event, BytesMessage):
            raise ProbeFailure(Reason.INVALID_RESPONSE, "websocket sent a binary message")
        elif isinstance(event, CloseConnection):
            if self._framing.state is ConnectionState.OPEN:
                # wsproto reports frames it cannot parse as a close it has not received.
                raise ProbeFailure(
                    Reason.INVALID_RESPONSE,
                    f"websocket protocol error: {(event.reason or '')[:80]}",
                )
            with contextlib.suppress(OSError, ProbeFailure):  # the reply is a courtesy
                await self._send(event.response())
            raise ProbeFailure(
                Reason.SESSION_REJECTED, f"websocket closed by the server (code {event.code})"
            )

    async def _fill(self) -> None:
        try:
            data = await self._conn.receive()
        except ConnectionError:
            raise _lost() from None
        if not data:
            raise ProbeFailure(
                Reason.SESSION_REJECTED,
                f"websocket closed by the server (code {ABNORMAL_CLOSURE})",
            )
        self._framing.receive_data(data)

    async def _send(self, event: Event) -> None:
        try:
            data = self._framing.send(event)
        except LocalProtocolError:
            raise ProbeFailure(Reason.SESSION_REJECTED, "websocket already closed") from None
        try:
            await self._conn.send(data)
        except ConnectionError:
            raise _lost() from None


def _lost() -> ProbeFailure:
    """An open websocket whose connection the server reset: the session is over."""
    return ProbeFailure(Reason.SESSION_REJECTED, "websocket connection reset by the server")
