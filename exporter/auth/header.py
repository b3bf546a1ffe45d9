"""Header auth through a header virtual proxy (static or dynamic user directory)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import field_validator, model_validator

from exporter.auth.common import Holdings, Prepared, TrustFiles, shared_contexts
from exporter.fields import AuthSettings, is_latin1

if TYPE_CHECKING:
    from exporter.config import Target
    from exporter.transport import HttpSession


class HeaderAuth(AuthSettings):
    """Header authentication through a virtual proxy (static or dynamic user directory)."""

    method: Literal["header"]
    header_name: str
    user_id: str
    user_directory: str | None = None
    # Dynamic user directory: the QMC pattern, with $ud and $id as placeholders, e.g. $ud\$id.
    header_pattern: str | None = None

    @field_validator("header_name")
    @classmethod
    def _reserved(cls, v: str) -> str:
        # Qlik refuses these names for header authentication (help.qlik.com "Virtual proxies").
        reserved = (
            "x-qlik-user",
            "x-qlik-security",
            "x-qlik-proxysession",
            "x-qlik-proxyid",
            "x-qlik-trace",
            "x-qlik-app",
            "x-qlik-capabilities",
        )
        if any(r in v.lower() for r in reserved):
            raise ValueError(f"header name {v!r} is reserved by Qlik Sense")
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", v):
            raise ValueError(f"invalid HTTP header name {v!r}")
        return v

    @model_validator(mode="after")
    def _pattern(self) -> HeaderAuth:
        if self.header_pattern is not None:
            if "$ud" not in self.header_pattern or "$id" not in self.header_pattern:
                raise ValueError("header_pattern: must contain $ud and $id")
            if not self.user_directory:
                raise ValueError("user_directory: required with header_pattern")
        # The value goes into an HTTP header as is: no line breaks or other control characters
        # (they would inject headers), and only what HTTP/1.1 can carry (Latin-1).
        key, value = "header_pattern" if self.header_pattern else "user_id", self.header_value()
        if not value.isprintable():
            raise ValueError(
                f"{key}: the header value must not hold line breaks or control characters"
            )
        if not value.isascii() and not is_latin1(value):
            raise ValueError(f"{key}: the header value can only hold Latin-1 characters")
        return self

    def header_value(self) -> str:
        """The header value: the user id, or the pattern filled in for a dynamic directory."""
        if self.header_pattern is None:
            return self.user_id
        return self.header_pattern.replace("$ud", self.user_directory or "").replace(
            "$id", self.user_id
        )


class HeaderMethod:
    """``auth.method: header``: the configured header carries the user (and directory)."""

    def __init__(self, target: Target) -> None:
        assert isinstance(target.auth, HeaderAuth)
        self._target = target
        self._headers = {target.auth.header_name: target.auth.header_value()}
        self._trust = TrustFiles(target)

    def holdings(self) -> Holdings:
        """The CAs of ``ca_file``."""
        return Holdings(self._trust.infos())

    def verify(self) -> None:
        """The trust file."""
        self._trust.load()
        shared_contexts(self._target)

    async def prepare(self, session: HttpSession) -> Prepared:
        """The header and the trust context."""
        self._trust.load()
        return Prepared(tls=shared_contexts(self._target), headers=dict(self._headers))


Settings = HeaderAuth
Method = HeaderMethod
