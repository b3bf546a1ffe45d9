"""Property tests: no server answer makes a parser raise anything but a failure reason.

Every check is run end to end against a fake HTTP session that answers with an arbitrary
status and body (so status mapping, JSON decoding and the check's own parsing all see it);
the engine websocket greeting and EngineVersion reply get arbitrary frames; ``token_expiry``
gets arbitrary strings and arbitrary claim sets; and the transport gets arbitrary response
bytes, chunkings and websocket frames from a real TLS server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from exporter.auth.common import CredentialError, Prepared, TlsContexts, token_expiry
from exporter.checks import ProbeContext, check_fn
from exporter.checks.engine import parse_health
from exporter.checks.engine_session import parse_version, read_greeting, read_message
from exporter.checks.repository import parse_about
from exporter.config import Target, parse_config
from exporter.reasons import Reason
from exporter.results import CheckValues
from exporter.transport import (
    MAX_HEADER_BYTES,
    HttpResponse,
    HttpSession,
    ProbeFailure,
    SystemResolver,
)
from tests.unit.transport_peers import HOST, CraftedServer, Pki, frame, make_pki, switching

T = TypeVar("T")
MAX_EXAMPLES = 150
PROPS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=25,
)


def outcome(fn: Callable[[], T]) -> tuple[T | None, ProbeFailure | None]:
    """``fn()``'s value, or the ProbeFailure it raised; any other exception propagates."""
    try:
        return fn(), None
    except ProbeFailure as exc:
        return None, exc


async def outcome_async(coro: Awaitable[T]) -> tuple[T | None, ProbeFailure | None]:
    """The awaited value, or the ProbeFailure it raised; any other exception propagates."""
    try:
        return await coro, None
    except ProbeFailure as exc:
        return None, exc


def _near(keys: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Objects shaped almost like a documented answer: its keys with arbitrary values."""
    return st.fixed_dictionaries({}, optional={k: v for k, v in keys.items()}) | json_values


about_like = _near({"buildVersion": json_values | st.text(), "buildDate": json_values})
health_like = _near(
    {
        "version": st.text(max_size=80) | json_values,
        "apps": st.fixed_dictionaries({}, optional={"loaded_docs": json_values}) | json_values,
        "session": st.fixed_dictionaries({}, optional={"active": json_values}),
        "users": st.fixed_dictionaries({}, optional={"active": json_values}),
        "mem": st.fixed_dictionaries(
            {}, optional={"committed": json_values, "comitted": json_values}
        ),
        "cpu": st.fixed_dictionaries({}, optional={"total": json_values}),
        "saturated": json_values,
    }
)
whoami_like = _near(
    {"userDirectory": json_values | st.just("LAB"), "userId": json_values, "session": json_values}
)
users_me_like = _near({"id": json_values, "tenantId": json_values, "status": json_values})


@functools.cache
def _target(method: str) -> Target:
    auth: dict[str, Any] = {
        "header": {"method": "header", "header_name": "X-Sso-User", "user_id": "monitor"},
        "apikey": {"method": "apikey", "api_key": "not-a-real-key"},
        # Files that exist (only validation sees them; the context never loads them).
        "certificate": {"method": "certificate", "cert_file": __file__, "key_file": __file__},
    }[method]
    target = {
        "name": "t",
        "type": "cloud" if method == "apikey" else "qseow",
        "host": "localhost",
        "auth": auth,
    }
    if method == "header":
        target["virtual_proxy"] = "hdr"
    return parse_config({"targets": [target]}, base_dir=Path(".")).targets[0]


class FakeSession:
    """An HttpSession stand-in that answers every request with one canned response."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.response = HttpResponse(status, "Reason", CIMultiDict(headers or {}), body)
        self.phases: dict[str, float] = {}

    async def request(self, *args: Any) -> HttpResponse:
        """The canned response."""
        return self.response


@functools.cache
def _tls() -> TlsContexts:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # never used to connect
    return TlsContexts(ctx, ctx)


def _ctx(method: str, check: str, session: FakeSession, *, via_proxy: bool) -> ProbeContext:
    ctx = ProbeContext(
        target=_target(method),
        check=check,
        auth=Prepared(tls=_tls()),
        session=session,  # type: ignore[arg-type]
    )
    assert ctx.via_proxy == via_proxy
    return ctx


def _plain_ctx(check: str) -> ProbeContext:
    return _ctx("certificate", check, FakeSession(200, b""), via_proxy=False)


# (check, auth method, via proxy) of every HTTP check path.
HTTP_PATHS = [
    ("repository", "certificate", False),
    ("repository", "header", True),
    ("proxy", "certificate", False),
    ("proxy", "header", True),
    ("engine", "certificate", False),
    ("engine", "header", True),
    ("tenant", "apikey", False),
]
SHAPES = {
    "repository": about_like,
    "proxy": whoami_like | st.lists(json_values, max_size=4),
    "engine": health_like,
    "tenant": users_me_like,
}


def _body(value: Any) -> bytes:
    return json.dumps(value).encode()


@given(data=st.data())
@PROPS
@pytest.mark.parametrize(("check", "method", "via_proxy"), HTTP_PATHS)
async def test_http_check_raises_only_probe_failure_for_any_answer(
    check: str, method: str, via_proxy: bool, data: st.DataObject
) -> None:
    """Any status and body (near-documented JSON or raw bytes) is a result or a reason."""
    status = data.draw(
        st.sampled_from([200, 200, 200, 201, 204, 302, 400, 401, 403, 404, 429, 500])
    )
    body = data.draw(st.one_of(SHAPES[check].map(_body), st.binary(max_size=200)))
    headers = data.draw(
        st.fixed_dictionaries(
            {}, optional={"Retry-After": st.text(max_size=10), "Set-Cookie": st.text(max_size=40)}
        )
    )
    ctx = _ctx(method, check, FakeSession(status, body, headers), via_proxy=via_proxy)
    values, failure = await outcome_async(check_fn(check)(ctx))
    assert isinstance(values, CheckValues) or (failure is not None and failure.message)


@given(about=about_like)
@PROPS
def test_parse_about_raises_only_probe_failure(about: Any) -> None:
    """parse_about turns any JSON value into build info or invalid_response."""
    values, failure = outcome(lambda: parse_about(_plain_ctx("repository"), about))
    if failure is not None:
        assert failure.reason == "invalid_response"
    else:
        assert values.repository_build is not None
        assert all(len(v) <= 64 for v in values.repository_build)


@given(health=health_like)
@PROPS
def test_parse_health_raises_only_probe_failure(health: Any) -> None:
    """parse_health turns any JSON value into engine numbers or invalid_response."""
    values, failure = outcome(lambda: parse_health(_plain_ctx("engine"), health))
    if failure is not None:
        assert failure.reason == "invalid_response"
    else:
        assert values.engine_health is not None
        assert values.engine_version is not None
        assert len(values.engine_version) <= 64


@given(reply=_near({"result": json_values, "error": json_values, "id": json_values}))
@PROPS
def test_engine_version_reply_raises_only_probe_failure(reply: Any) -> None:
    """Any EngineVersion reply object is a version string or invalid_response."""
    if not isinstance(reply, dict):
        reply = {"result": reply}
    version, failure = outcome(lambda: parse_version(_plain_ctx("engine_session"), reply))
    if failure is not None:
        assert failure.reason == "invalid_response"
    else:
        assert isinstance(version, str)
        assert 0 < len(version) <= 64


class FakeWebSocket:
    """Hands out prepared text messages, then fails as a server's close does.

    Frame kinds, sizes and closes are the transport's (tests/unit/test_transport_websocket.py);
    here the check's reading of the messages is on trial.
    """

    def __init__(self, messages: list[str]) -> None:
        self._messages: Iterator[str] = iter(messages)

    async def receive(self) -> str:
        """The next message, or the failure a closed websocket raises."""
        message = next(self._messages, None)
        if message is None:
            raise ProbeFailure(
                Reason.SESSION_REJECTED, "websocket closed by the server (code 1000)"
            )
        return message


frame_text = st.one_of(
    _near(
        {
            "method": st.sampled_from(
                ["OnConnected", "OnAuthenticationInformation", "OnMaxParallelSessionsExceeded"]
            )
            | json_values,
            "params": st.fixed_dictionaries(
                {},
                optional={
                    "severity": st.sampled_from(["fatal", "info"]) | json_values,
                    "mustAuthenticate": json_values,
                },
            )
            | json_values,
            "id": json_values,
        }
    ).map(json.dumps),
    st.text(max_size=40),
)
frames = st.lists(frame_text, max_size=7)


@given(frames=frames)
@PROPS
async def test_engine_greeting_raises_only_probe_failure(frames: list[str]) -> None:
    """Any sequence of websocket frames is a greeting, a reply, or a failure reason."""
    ctx = _plain_ctx("engine_session")
    ws = FakeWebSocket(frames)

    async def converse() -> str:
        await read_greeting(ctx, ws)  # type: ignore[arg-type]
        reply = await read_message(ctx, ws, expect_id=1)  # type: ignore[arg-type]
        return parse_version(ctx, reply)

    version, failure = await outcome_async(converse())
    if failure is not None:
        assert failure.reason in ("invalid_response", "session_rejected")
    else:
        assert isinstance(version, str)


@given(token=st.text(max_size=200))
@PROPS
@example(token="a.b.c")
@example(token="eyJhbGciOiJub25lIn0.eyJleHAiOiJzb29uIn0.")
@example(token="eyJhbGciOjF9.e30.")
def test_token_expiry_of_any_string_is_a_number_none_or_credential_invalid(token: str) -> None:
    """token_expiry of any string is an expiry, None, or credential_invalid, never quoting it."""
    exp, failure = outcome(lambda: token_expiry(token, "the JWT"))
    if failure is not None:
        assert isinstance(failure, CredentialError)
        assert failure.reason == "credential_invalid"
        assert len(token) < 8 or token not in failure.message
    else:
        assert exp is None or isinstance(exp, float)


def _b64(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


@given(
    claims=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    exp=json_values,
    header=st.dictionaries(
        st.sampled_from(["alg", "kid", "typ", "cty", "x5t", "crit"]), json_values, max_size=2
    ),
)
@PROPS
def test_token_expiry_of_any_claims_is_a_number_none_or_credential_invalid(
    claims: dict[str, Any], exp: Any, header: dict[str, Any]
) -> None:
    """A well-formed JWT with any exp and header fields is an expiry, None or credential_invalid."""
    token = ".".join(
        [_b64({"alg": "RS256", "typ": "JWT", **header}), _b64({**claims, "exp": exp}), "c2ln"]
    )
    got, failure = outcome(lambda: token_expiry(token, "the JWT"))
    if failure is not None:
        assert isinstance(failure, CredentialError)
        assert failure.reason == "credential_invalid"
    else:
        assert got is None or isinstance(got, float)


# -- the transport: HTTP framing and websocket frames from a real TLS server ----------------

ALLOWED_TRANSPORT_ERRORS = (ProbeFailure, ConnectionError, asyncio.IncompleteReadError)
"""What HttpSession.request documents: a failure reason, or the peer closing mid-response
(which the runner maps to server_error)."""

header_line = st.one_of(
    st.sampled_from(
        [
            b"Content-Length: 5\r\n",
            b"Content-Length: -1\r\n",
            b"Content-Length: \xb2\r\n",
            b"Content-Length: 99999999999\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"Connection: close\r\n",
            b"X-Odd\r\n",
        ]
    ),
    st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"") + b"\r\n"),
)
raw_response = st.one_of(
    st.binary(max_size=300),
    st.tuples(
        st.sampled_from([b"HTTP/1.1 ", b"HTTP/1.0 ", b"HTTP/2 ", b"HTTP/1.1 \xb2"])
        | st.binary(max_size=12),
        st.sampled_from([b"200", b"204", b"404", b"100", b"\xb2\xb3\xb9"]) | st.binary(max_size=4),
        st.sampled_from([b" OK\r\n", b"\r\n", b"\n"]),
        st.lists(header_line, max_size=5),
        st.sampled_from([b"\r\n", b"\n", b""]),
        st.sampled_from([b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n", b"-3\r\nabc\r\n", b"zz\r\n"])
        | st.binary(max_size=60),
    ).map(lambda p: p[0] + p[1] + p[2] + b"".join(p[3]) + p[4] + p[5]),
)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


class Scripted:
    """The answer a CraftedServer sends next, set by each example."""

    data = b""

    def __call__(self, head: bytes) -> bytes:
        return self.data


@pytest.fixture
async def scripted(pki: Pki) -> AsyncIterator[tuple[Scripted, CraftedServer]]:
    """A TLS server on 127.0.0.1 that answers each connection's request with ``data``."""
    script = Scripted()
    server = await CraftedServer(pki.server_context(), script).start()
    yield script, server
    await server.stop()


async def read_response(
    pki: Pki, server: tuple[Scripted, CraftedServer], data: bytes, *, head: bool, max_body: int
) -> HttpResponse:
    """Send one request with HttpSession.request to a server that answers ``data``."""
    script, crafted = server
    script.data = data
    session = HttpSession(resolver=SystemResolver(), max_body=max_body)
    try:
        method = "HEAD" if head else "GET"
        return await session.request(method, HOST, crafted.port, pki.client_context(), "/", {})
    finally:
        await session.close()


@given(data=raw_response, head=st.booleans())
@PROPS
@example(data=b"", head=False)
@example(data=b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n", head=False)
@example(data=b"HTTP/1.1 \xb200 OK\r\n\r\n", head=False)
@example(data=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n", head=False)
@example(data=b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * (MAX_HEADER_BYTES + 10), head=False)
@example(data=b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20000 + b"\r\n", head=False)
@example(data=b"HTTP/1.1 101 Switching Protocols\r\n\r\n", head=False)
async def test_response_reader_raises_only_documented_errors(
    pki: Pki, scripted: tuple[Scripted, CraftedServer], data: bytes, head: bool
) -> None:
    """Arbitrary bytes from the server are a response, a failure reason, or a closed connection."""
    try:
        resp = await read_response(pki, scripted, data, head=head, max_body=1024)
    except ALLOWED_TRANSPORT_ERRORS:
        return
    assert 0 <= resp.status <= 999
    assert len(resp.body) <= 1024


@given(
    body=st.binary(max_size=3000),
    sizes=st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=20),
    extension=st.sampled_from([b"", b";x=1", b';name="quoted"']),
    trailers=st.sampled_from([b"", b"X-Trailer: 1\r\n"]),
)
@PROPS
async def test_any_chunking_of_a_body_reads_back_the_body(
    pki: Pki,
    scripted: tuple[Scripted, CraftedServer],
    body: bytes,
    sizes: list[int],
    extension: bytes,
    trailers: bytes,
) -> None:
    """However a server cuts a body into chunks, the body read is the body sent."""
    chunks, rest = [], body
    for size in sizes * (len(body) // sum(sizes) + 1):
        if not rest:
            break
        piece, rest = rest[:size], rest[size:]
        chunks.append(b"%x%s\r\n%s\r\n" % (len(piece), extension, piece))
    data = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(chunks)
        + b"0\r\n"
        + trailers
        + b"\r\n"
    )
    resp = await read_response(pki, scripted, data, head=False, max_body=4096)
    assert resp.body == body


def _ws_frame(header: tuple[bool, int, bool], payload: bytes) -> bytes:
    fin, opcode, masked = header
    raw = frame(opcode, payload, fin=fin)
    if not masked:
        return raw
    # A masked server frame is a protocol error; the mask bit alone is enough to break it.
    return raw[:1] + bytes([raw[1] | 0x80]) + b"\0\0\0\0" + raw[2:]


ws_frames = st.lists(
    st.one_of(
        st.builds(
            _ws_frame,
            st.tuples(
                st.booleans(),
                st.sampled_from([0x0, 0x1, 0x1, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3]),
                st.sampled_from([False, False, False, True]),  # masked
            ),
            st.binary(max_size=150) | st.text(max_size=40).map(str.encode),
        ),
        st.binary(max_size=12),
    ),
    max_size=8,
).map(b"".join)


@given(frames=ws_frames)
@PROPS
@example(frames=frame(0x1, b"ok"))
@example(frames=frame(0x1, "\u00e9".encode()[:1]))
@example(frames=frame(0x8, b"\x03\xe8"))
async def test_websocket_frames_are_a_message_or_a_failure_reason(
    pki: Pki, scripted: tuple[Scripted, CraftedServer], frames: bytes
) -> None:
    """Any bytes after a valid 101 are a text message, or session_rejected/invalid_response."""
    script, server = scripted
    script.data = b""
    session = HttpSession(resolver=SystemResolver())

    def answer(head: bytes) -> bytes:
        return switching(head) + frames

    server.answer = answer
    try:
        _, ws = await session.websocket(
            HOST, server.port, pki.client_context(), "/", {}, max_message=100, max_frames=5
        )
        assert ws is not None
        text, failure = await outcome_async(ws.receive())
    finally:
        server.answer = script
        await session.close()
    if failure is not None:
        assert failure.reason in ("invalid_response", "session_rejected")
    else:
        assert isinstance(text, str)
        assert len(text.encode()) <= 100


NESTED = b"[" * 100_000  # deeper than the interpreter's recursion limit


@pytest.mark.parametrize(("check", "method", "via_proxy"), HTTP_PATHS)
async def test_json_nested_too_deep_is_an_invalid_response(
    check: str, method: str, via_proxy: bool
) -> None:
    """A body nested deeper than Python can parse is invalid_response, not a crash."""
    ctx = _ctx(method, check, FakeSession(200, NESTED), via_proxy=via_proxy)
    _, failure = await outcome_async(check_fn(check)(ctx))
    assert failure is not None
    assert failure.reason == "invalid_response"


async def test_engine_frame_nested_too_deep_is_an_invalid_response() -> None:
    """The same for a websocket frame from the engine."""
    frame = NESTED.decode()
    _, failure = await outcome_async(
        read_message(_plain_ctx("engine_session"), FakeWebSocket([frame]), expect_id=1)  # type: ignore[arg-type]
    )
    assert failure is not None
    assert failure.reason == "invalid_response"
