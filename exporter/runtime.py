"""The event loop the exporter runs on: uvloop where it is installed, else asyncio's own.

``auto`` (the default) takes uvloop when it can be imported and asyncio's loop otherwise,
silently: uvloop is an optional extra (``pip install 'qlik-sense-exporter[speed]'``) and does
not exist on Windows. Asking for ``uvloop`` by name when it is missing is an error instead.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar, get_args

T = TypeVar("T")
LoopChoice = Literal["auto", "asyncio", "uvloop"]
LOOPS: tuple[str, ...] = get_args(LoopChoice)

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class LoopUnavailable(RuntimeError):
    """The loop asked for cannot be had; the message is one line for the operator."""


def _uvloop_factory() -> LoopFactory | None:
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def loop_factory(choice: str) -> LoopFactory:
    """The function that makes the loop ``choice`` names (one of :data:`LOOPS`)."""
    if choice not in LOOPS:
        raise ValueError(f"unknown event loop {choice!r}: expected one of {', '.join(LOOPS)}")
    if choice == "asyncio":
        return asyncio.new_event_loop
    factory = _uvloop_factory()
    if factory is not None:
        return factory
    if choice == "uvloop":
        raise LoopUnavailable(
            "uvloop is not installed: pip install 'qlik-sense-exporter[speed]', "
            "or use --runtime.loop=asyncio"
        )
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """``asyncio.run(main)`` on the loop ``choice`` names."""
    try:
        factory = loop_factory(choice)
    except (ValueError, LoopUnavailable):
        main.close()  # never started: no "never awaited" warning on top of the error
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``: which implementation ``loop`` is, for logs and tests."""
    return "uvloop" if type(loop).__module__.partition(".")[0] == "uvloop" else "asyncio"
