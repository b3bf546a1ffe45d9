"""Live state shared by the simulated services: proxy sessions and tickets.

User directory and user id compare case-insensitively, as they do on a Windows-hosted Qlik
Sense site (``LAB\\Goran`` and ``lab\\goran`` are one user).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

UserKey = tuple[str, str]


def user_key(user_directory: str, user_id: str) -> UserKey:
    """The identity used to compare users."""
    return user_directory.casefold(), user_id.casefold()


@dataclass(frozen=True, slots=True)
class ProxySession:
    """One proxy session of a user on a virtual proxy (``vp`` is ``""`` for the default one).

    ``node`` names the node whose proxy holds the session: each proxy lists only its own.
    """

    session_id: str
    vp: str
    user_directory: str
    user_id: str
    user_name: str
    attributes: tuple[dict[str, str], ...] = ()
    created: float = field(default_factory=time.time)
    node: str = ""

    @property
    def user(self) -> UserKey:
        """This session's user identity."""
        return user_key(self.user_directory, self.user_id)

    def to_qps(self) -> dict[str, Any]:
        """The PascalCase session object the QPS API returns (Butler SOS and Ctrl-Q read it)."""
        return {
            "UserDirectory": self.user_directory,
            "UserId": self.user_id,
            "UserName": self.user_name,
            "Attributes": list(self.attributes),
            "SessionId": self.session_id,
        }


class ProxySessions:
    """Every live proxy session, by id; sessions created without a node go to ``default_node``."""

    def __init__(self, default_node: str = "") -> None:
        self._by_id: dict[str, ProxySession] = {}
        self.default_node = default_node

    def create(
        self,
        vp: str,
        user_directory: str,
        user_id: str,
        user_name: str | None = None,
        attributes: tuple[dict[str, str], ...] = (),
        node: str | None = None,
    ) -> ProxySession:
        """Start a session (each login through a virtual proxy creates one)."""
        session = ProxySession(
            session_id=str(uuid.uuid4()),
            vp=vp,
            user_directory=user_directory,
            user_id=user_id,
            user_name=user_name or user_id,
            attributes=attributes,
            node=self.default_node if node is None else node,
        )
        self._by_id[session.session_id] = session
        return session

    def get(self, session_id: str) -> ProxySession | None:
        """The session with that id, if still live."""
        return self._by_id.get(session_id)

    def find(
        self, vp: str | None = None, user: UserKey | None = None, node: str | None = None
    ) -> list[ProxySession]:
        """Sessions, optionally of one virtual proxy, one user and/or one node's proxy."""
        return [
            s
            for s in self._by_id.values()
            if (vp is None or s.vp == vp)
            and (user is None or s.user == user)
            and (node is None or s.node == node)
        ]

    def drop_node(self, node: str) -> None:
        """Forget the sessions of a proxy that stopped (they lived in its memory)."""
        for s in self.find(node=node):
            del self._by_id[s.session_id]

    def delete(self, session_id: str) -> ProxySession | None:
        """End one session."""
        return self._by_id.pop(session_id, None)

    def delete_user(
        self, user: UserKey, vp: str | None = None, node: str | None = None
    ) -> list[ProxySession]:
        """End every session of a user (on one virtual proxy, or on all; on one node or all)."""
        ended = self.find(vp=vp, user=user, node=node)
        for s in ended:
            del self._by_id[s.session_id]
        return ended

    def counts(self) -> list[dict[str, Any]]:
        """Session counts per virtual proxy and user, for ``GET /state``."""
        tally = Counter((s.vp, s.user_directory, s.user_id) for s in self._by_id.values())
        return [
            {"vp": vp, "userDirectory": ud, "userId": uid, "count": n}
            for (vp, ud, uid), n in sorted(tally.items())
        ]


TICKET_LIFETIME = 60.0
"""A QPS ticket is valid for one minute and one use (help.qlik.com "Add ticket")."""


@dataclass(frozen=True, slots=True)
class Ticket:
    """A ticket issued by ``POST /qps/[{vp}/]ticket``."""

    ticket: str
    vp: str
    user_directory: str
    user_id: str
    attributes: tuple[dict[str, str], ...]
    expires: float


class Tickets:
    """Outstanding tickets; each redeems once."""

    def __init__(self) -> None:
        self._tickets: dict[str, Ticket] = {}

    def issue(
        self,
        vp: str,
        user_directory: str,
        user_id: str,
        attributes: tuple[dict[str, str], ...] = (),
    ) -> Ticket:
        """Create a ticket for that user on that virtual proxy."""
        value = uuid.uuid4().hex[:16]
        t = Ticket(value, vp, user_directory, user_id, attributes, time.time() + TICKET_LIFETIME)
        self._tickets[value] = t
        return t

    def redeem(self, value: str, vp: str) -> Ticket | None:
        """Use a ticket up; ``None`` if unknown, expired, or for another virtual proxy."""
        t = self._tickets.pop(value, None)
        if t is None or t.vp != vp or t.expires < time.time():
            return None
        return t
