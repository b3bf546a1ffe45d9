"""The status table, Retry-After and the error line of a refused request, from built responses."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from exporter.reasons import ProbeFailure, Reason
from exporter.responses import XSRF_BODY, redact, retry_after, status_failure
from exporter.transport import HttpResponse


def response(
    status: int, body: bytes = b"", reason: str = "Phrase", **headers: str
) -> HttpResponse:
    """A response as the transport returns it."""
    fields: CIMultiDict[str] = CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()})
    return HttpResponse(status, reason, fields, body)


def failure(resp: HttpResponse, *, via_proxy: bool = False) -> ProbeFailure:
    """The failure ``resp`` stands for, which must be one."""
    found = status_failure(resp, "GET /x", via_proxy=via_proxy)
    assert found is not None
    return found


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_2xx_is_no_failure(status: int) -> None:
    assert status_failure(response(status), "GET /x", via_proxy=True) is None


@pytest.mark.parametrize(
    ("status", "via_proxy", "reason", "message"),
    [
        (199, False, Reason.INVALID_RESPONSE, "GET /x: unexpected status 199"),
        (101, True, Reason.INVALID_RESPONSE, "GET /x: unexpected status 101"),
        (401, False, Reason.UNAUTHORIZED, "GET /x: 401 Phrase: no"),
        (403, False, Reason.FORBIDDEN, "GET /x: 403 Phrase: no"),
        (404, False, Reason.NOT_FOUND, "GET /x: 404 (wrong virtual proxy or path?)"),
        (429, False, Reason.RATE_LIMITED, "GET /x: 429 rate limited"),
        (499, False, Reason.INVALID_RESPONSE, "GET /x: unexpected status 499"),
        (400, True, Reason.INVALID_RESPONSE, "GET /x: unexpected status 400"),
        (500, False, Reason.SERVER_ERROR, "GET /x: 500 Phrase: no"),
        (503, True, Reason.SERVER_ERROR, "GET /x: 503 Phrase: no"),
        (300, False, Reason.INVALID_RESPONSE, "GET /x: 300 redirect not followed"),
        (302, False, Reason.INVALID_RESPONSE, "GET /x: 302 redirect not followed"),
        (399, False, Reason.INVALID_RESPONSE, "GET /x: 399 redirect not followed"),
        (300, True, Reason.UNAUTHORIZED, "GET /x: 300 redirect to login (not authenticated)"),
        (302, True, Reason.UNAUTHORIZED, "GET /x: 302 redirect to login (not authenticated)"),
        (399, True, Reason.UNAUTHORIZED, "GET /x: 399 redirect to login (not authenticated)"),
    ],
)
def test_each_status_has_its_reason_and_line(
    status: int, via_proxy: bool, reason: Reason, message: str
) -> None:
    """The one table, status by status, with the boundaries of each range."""
    found = failure(response(status, b"no"), via_proxy=via_proxy)
    assert (found.reason, found.message) == (reason, message)


def test_the_xsrf_body_is_xrfkey_rejected_when_it_is_in_the_first_500_characters() -> None:
    """QRS/QPS's xrfkey refusal is a 403 with a set body; it is looked for where it starts."""
    at_end = ("a" * (500 - len(XSRF_BODY)) + XSRF_BODY).encode()
    assert failure(response(403, at_end)).reason is Reason.XRFKEY_REJECTED
    assert failure(response(403, b"a" + at_end)).reason is Reason.FORBIDDEN
    found = failure(response(403, XSRF_BODY.encode(), "Forbidden"))
    assert found.message == f"GET /x: 403 Forbidden: {XSRF_BODY}"
    assert XSRF_BODY == "XSRF prevention check failed"


def test_a_429_names_the_wait_it_asks_for() -> None:
    found = failure(response(429, Retry_After="2.5"))
    assert found.message == "GET /x: 429 rate limited; retry after 2.5s"
    assert failure(response(429, Retry_After="0")).message == "GET /x: 429 rate limited"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0.5", 0.5),
        ("86399", 86399.0),
        ("86400", None),
        ("0", None),
        ("-3", None),
        ("soon", None),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),  # a date: not followed
        ("", None),
    ],
)
def test_retry_after_is_a_sane_number_of_seconds(value: str, seconds: float | None) -> None:
    assert retry_after(response(429, Retry_After=value)) == seconds


def test_retry_after_without_the_header_is_none() -> None:
    assert retry_after(response(429)) is None


def test_the_error_line_is_the_reason_phrase_and_the_body_start_on_one_line() -> None:
    """Whitespace collapses, the body is read up to 300 characters and told up to 200."""
    body = ("x" * 150 + " \n\t" * 50 + "y" * 100).encode()  # 300 chars: 150 x, 150 blanks
    assert failure(response(500, body, "Oops")).message == "GET /x: 500 Oops: " + "x" * 150
    body = ("x" * 150 + " " * 150 + "y").encode()  # the 301st character is not read
    assert failure(response(500, body, "Oops")).message == "GET /x: 500 Oops: " + "x" * 150
    body = ("z" * 250).encode()
    assert failure(response(500, body, "Oops")).message == "GET /x: 500 Oops: " + "z" * 200
    assert failure(response(500, b" \r\n ", "Oops")).message == "GET /x: 500 Oops"
    assert failure(response(401, b"", "")).message == "GET /x: 401 "


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def", "Authorization: Bearer <redacted>"),
        ("authorization=Basic dXNlcg==, next", "authorization=Basic <redacted>, next"),
        ("AUTHORIZATION : abc;rest", "AUTHORIZATION : <redacted>;rest"),
        ("sent bearer   tok-en_1 and more", "sent bearer   <redacted> and more"),
        ("Bearer x'y", "Bearer <redacted>'y"),
        ("cookie X-Qlik-Session-jwt=s1; b=2", "cookie X-Qlik-Session-jwt=<redacted>; b=2"),
        ("X-Qlik-Session=abc<b>", "X-Qlik-Session=<redacted><b>"),
        ("key eyJhbGci.eyJzdWIi.c2ln-_x end", "key <redacted> end"),
        ("key eyJhbGci.p.q.r", "key <redacted>.r"),
        ("eyJab is too short", "eyJab is too short"),
        ("eyJabcd", "<redacted>"),
        ("nothing secret here", "nothing secret here"),
        ('X-Qlik-Session-jwt="s1"; b=2', 'X-Qlik-Session-jwt="<redacted>"; b=2'),
        ('{"X-Qlik-Session-hdr": "s2"}', '{"X-Qlik-Session-hdr": "<redacted>"}'),
        ("{'authorization': 'Basic dXNl'}", "{'authorization': 'Basic <redacted>'}"),
        ('"Authorization":"tok"', '"Authorization":"<redacted>"'),
    ],
)
def test_redact_replaces_credentials_and_keeps_the_rest(text: str, expected: str) -> None:
    """What precedes a credential stays; the credential up to a delimiter goes."""
    assert redact(text) == expected


def test_a_probe_failure_reads_as_its_reason_and_message() -> None:
    """What an unexpected log line or traceback shows of a failure."""
    failure = ProbeFailure(Reason.DNS, "cannot resolve qlik.example: no addresses")
    assert str(failure) == "dns: cannot resolve qlik.example: no addresses"
    assert failure.message == "cannot resolve qlik.example: no addresses"
