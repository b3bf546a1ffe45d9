"""Checks: one module per check, named in :data:`exporter.catalog.CHECKS`.

Each module defines ``async def run(ctx: ProbeContext) -> CheckValues``: it knows one endpoint,
sends its request through the context, and returns the values it parsed; a failure is a
:class:`~exporter.reasons.ProbeFailure` with a reason and a message.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Awaitable, Callable
from typing import cast

from exporter import catalog
from exporter.checks.context import ProbeContext
from exporter.results import CheckValues

CheckFn = Callable[[ProbeContext], Awaitable[CheckValues]]


@functools.cache
def check_fn(name: str) -> CheckFn:
    """The ``run`` of check ``name``, from the module the catalog names."""
    return cast(CheckFn, importlib.import_module(catalog.check(name).module).run)


__all__ = ["CheckFn", "ProbeContext", "check_fn"]
