"""Fixtures the unit tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from exporter.transport import HttpSession, SystemResolver


@pytest.fixture
async def session() -> AsyncIterator[HttpSession]:
    """The probe's session; closed at the end of the test, whatever happened."""
    session = HttpSession(resolver=SystemResolver())
    yield session
    await session.close()
