"""Request checks every Qlik Sense on-premise API makes: xrfkey and the X-Qlik-User header."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from aiohttp import web

XSRF_FAILED = "XSRF prevention check failed. Possible XSRF discovered."
"""The exact 403 body QRS and QPS send on a missing or mismatched xrfkey (qlik-api-facts.md §1)."""

_XRFKEY = re.compile(r"[0-9a-zA-Z]{16}")


def xrfkey_error(request: web.Request) -> web.Response | None:
    """403 unless the ``xrfkey`` query parameter equals ``X-Qlik-Xrfkey`` (16 of [0-9a-zA-Z]).

    The parameter name is case-insensitive: Ctrl-Q sends ``xrfkey``, Butler SOS ``Xrfkey``.
    """
    query = next((v for k, v in request.query.items() if k.lower() == "xrfkey"), None)
    header = request.headers.get("X-Qlik-Xrfkey")
    if query is None or header is None or query != header or not _XRFKEY.fullmatch(header):
        return web.Response(status=403, text=XSRF_FAILED)
    return None


@dataclass(frozen=True, slots=True)
class QlikUser:
    """A user as Qlik names one: directory and id."""

    user_directory: str
    user_id: str


def parse_qlik_user(value: str) -> QlikUser | None:
    """Parse ``UserDirectory=<dir>; UserId=<id>`` (space after ``;`` optional, values %-encoded).

    Ctrl-Q sends no space after ``;``, qsAPI and Butler SOS send one; values are URL-encoded
    UTF-8 (help.qlik.com ProxyServiceAPI "X-Qlik-User header"). Returns ``None`` when garbled.
    """
    fields: dict[str, str] = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        key, sep, raw = part.strip().partition("=")
        if not sep:
            return None
        fields[key.strip().lower()] = unquote(raw.strip(), errors="strict")
    ud, uid = fields.get("userdirectory"), fields.get("userid")
    if not ud or not uid:
        return None
    return QlikUser(ud, uid)


def qlik_user_or_error(
    request: web.Request, disabled: set[tuple[str, str]]
) -> QlikUser | web.Response:
    """The caller named by ``X-Qlik-User``, or a 403 saying what is wrong with the header."""
    value = request.headers.get("X-Qlik-User")
    if value is None:
        return web.Response(status=403, text="Missing X-Qlik-User header.")
    try:
        user = parse_qlik_user(value)
    except UnicodeDecodeError:
        user = None
    if user is None:
        return web.Response(
            status=403,
            text="Malformed X-Qlik-User header; expected 'UserDirectory=<dir>; UserId=<id>'.",
        )
    if is_disabled(disabled, user.user_directory, user.user_id):
        return web.Response(status=403, text="Access denied: the user is disabled.")
    return user


def is_disabled(disabled: set[tuple[str, str]], user_directory: str, user_id: str) -> bool:
    """Whether the user is in the disabled set (directory and id compare case-insensitively)."""
    key = (user_directory.casefold(), user_id.casefold())
    return any((d.casefold(), u.casefold()) == key for d, u in disabled)
