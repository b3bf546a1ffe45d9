"""Building blocks of the YAML models: the base model, durations, file paths and secrets.

Shared by :mod:`exporter.config` and by the auth methods' own config models (each auth method
defines its ``Settings`` next to the code that uses them; see :mod:`exporter.catalog`).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def show(value: object) -> str:
    """``value`` for an error line: as is when printable, else quoted, so a line stays one line."""
    text = str(value)
    return text if text and text.isprintable() and text.strip() == text else repr(text)


def parse_duration(value: object) -> float:
    """``500ms``, ``30s``, ``5m``, ``1h`` or a number of seconds, as seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m or 500ms")
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str) and (m := _DURATION.match(value)):
            seconds = float(m.group(1)) * _UNITS[m.group(2)]
        else:
            seconds = math.nan
    except OverflowError:  # an int too large for a float
        seconds = math.inf
    if not math.isfinite(seconds):
        shown = repr(value) if isinstance(value, str) else "value"
        raise ValueError(f"invalid duration {shown}: expected a duration like 30s, 5m or 500ms")
    if seconds <= 0:
        raise ValueError("duration must be positive")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _resolve(value: str | Path, info: ValidationInfo) -> Path:
    """``value`` resolved against the config file's folder; it must name an existing file.

    With ``missing`` in the validation context (a list: the daemon's lenient load), a missing
    file is noted there instead: the target then fails as ``credential_invalid`` naming the
    file until it appears, and the other targets run.
    """
    context = info.context or {}
    path = Path(value)
    with contextlib.suppress(RuntimeError):  # an unknown ~user: kept, so reported not found
        path = path.expanduser()
    if not path.is_absolute():
        path = Path(context.get("base_dir", ".")) / path
    try:
        found = path.is_file()
    except OSError:  # e.g. a name too long for the file system
        found = False
    if not found:
        missing = context.get("missing")
        if missing is None:
            raise ValueError(f"file not found: {show(value)}")
        missing.append(str(path))
    return path


def _resolve_field(value: Any, info: ValidationInfo) -> Path | None:
    """A ``*_file`` key's value: ``None`` when unset, else an existing file's resolved path."""
    if value is None:
        return None
    if not isinstance(value, str | Path):
        raise ValueError("expected a file path")
    return _resolve(value, info)


# A file key: resolved against the config file's folder and required to exist.
FilePath = Annotated[Path, BeforeValidator(_resolve_field)]
OptionalFilePath = Annotated[Path | None, BeforeValidator(_resolve_field)]


class Model(BaseModel):
    """Every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthSettings(Model):
    """What every auth method's ``Settings`` model has: ``method``, the tag that selects it."""

    method: str


def secret_from(
    data: dict[str, Any], name: str, info: ValidationInfo, *, required: bool
) -> dict[str, Any]:
    """Turn ``name`` / ``name_file`` / ``name_env`` into one resolved secret value.

    ``name_file`` is kept (as a resolved path) so that a rotated file is re-read.
    """
    keys = [k for k in (name, f"{name}_file", f"{name}_env") if data.get(k) is not None]
    if len(keys) > 1:
        raise ValueError(
            f"{keys[1]}: cannot be combined with {keys[0]}"
            f" (give only one of {name}, {name}_file or {name}_env)"
        )
    if not keys:
        if required:
            raise ValueError(f"{name}: required (give {name}, {name}_file or {name}_env)")
        return data
    key = keys[0]
    raw = data.pop(key)
    if key.endswith("_file"):
        try:
            path = _resolve(str(raw), info)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
        try:
            data[name] = path.read_text(encoding="utf-8").strip()
            if not data[name]:
                raise ValueError(f"{key}: {show(raw)} is empty")
        except (OSError, UnicodeDecodeError) as exc:
            if (info.context or {}).get("missing") is None:
                raise ValueError(
                    f"{key}: cannot read {show(raw)}: {exc.__class__.__name__}"
                ) from None
            data[name] = ""  # never sent: the file is read again on every probe
        data[f"{name}_file"] = path
    elif key.endswith("_env"):
        env = os.environ.get(str(raw))
        if not env:
            raise ValueError(f"{key}: environment variable {show(raw)} is not set")
        data[name] = env.strip()
    else:
        if isinstance(raw, str) and not raw.strip():
            raise ValueError(f"{name}: empty (give the value, or {name}_file or {name}_env)")
        data[name] = raw
    return data


def is_latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
