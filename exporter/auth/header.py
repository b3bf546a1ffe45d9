"""Header auth through a header virtual proxy (static or dynamic user directory)."""

from __future__ import annotations

from exporter.auth.common import (
    CredentialError,
    Prepared,
    TlsContexts,
    TrustFiles,
    build_contexts,
    file_stamp,
)
from exporter.config import HeaderAuth, Target


class HeaderMethod:
    """``auth.method: header``: the configured header carries the user (and directory)."""

    def __init__(self, target: Target) -> None:
        assert isinstance(target.auth, HeaderAuth)
        self._target = target
        self._headers = {target.auth.header_name: target.auth.header_value()}
        self._trust = TrustFiles(target)
        self._contexts: TlsContexts | None = None
        self._stamp: tuple[tuple[str, int, int], ...] = ()

    def prepare(self) -> Prepared:
        """The header and the trust context."""
        infos = self._trust.infos()
        stamp = file_stamp(self._target.ca_file)
        if self._contexts is None or stamp != self._stamp:
            try:
                self._contexts = build_contexts(self._target)
            except CredentialError as exc:
                exc.certificates = infos
                raise
            self._stamp = stamp
        return Prepared(tls=self._contexts, headers=dict(self._headers), certificates=infos)
