"""Process settings: command-line flags, with ``QLIK_EXPORTER_*`` environment variables behind them.

A flag given on the command line wins over the environment, which wins over the default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_SHARD = re.compile(r"^(\d+)/(\d+)$")


class Settings(BaseSettings):
    """Everything that is about the process rather than the targets."""

    model_config = SettingsConfigDict(env_prefix="QLIK_EXPORTER_", extra="forbid", frozen=True)

    config_file: Path = Path("qlik-sense-exporter.yml")
    web_listen_address: str = ":9851"
    web_config_file: Path | None = None
    web_max_connections: int = Field(256, ge=4, le=65536)
    web_header_timeout: float = Field(10.0, gt=0, le=300)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["logfmt", "json"] = "logfmt"
    shard: str | None = Field(None, description="I/N: probe only the targets of shard I of N")
    runtime_loop: Literal["auto", "asyncio", "uvloop"] = "auto"

    @field_validator("shard")
    @classmethod
    def _shard(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        m = _SHARD.match(v)
        if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
            raise ValueError(f"invalid shard {v!r}: expected I/N with 0 <= I < N, e.g. 0/2")
        return v

    @field_validator("web_listen_address")
    @classmethod
    def _address(cls, v: str) -> str:
        split_address(v)
        return v

    @property
    def shard_spec(self) -> tuple[int, int] | None:
        """``(index, count)`` when sharding is on."""
        if self.shard is None:
            return None
        i, n = self.shard.split("/")
        return int(i), int(n)


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (host may be empty for all interfaces, or ``[v6]``) as ``(host, port)``."""
    host, sep, port = address.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f"invalid listen address {address!r}: expected HOST:PORT, e.g. :9851")
    return host.strip("[]"), int(port)
