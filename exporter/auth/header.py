"""Header auth through a header virtual proxy (static or dynamic user directory)."""

from __future__ import annotations

from exporter.auth.common import CredentialError, Prepared, TrustFiles, shared_contexts
from exporter.config import HeaderAuth, Target


class HeaderMethod:
    """``auth.method: header``: the configured header carries the user (and directory)."""

    def __init__(self, target: Target) -> None:
        assert isinstance(target.auth, HeaderAuth)
        self._target = target
        self._headers = {target.auth.header_name: target.auth.header_value()}
        self._trust = TrustFiles(target)

    def prepare(self) -> Prepared:
        """The header and the trust context."""
        infos = self._trust.infos()
        try:
            contexts = shared_contexts(self._target)
        except CredentialError as exc:
            exc.certificates = infos
            raise
        return Prepared(tls=contexts, headers=dict(self._headers), certificates=infos)
