"""The running config as YAML for ``/-/config``, with every secret shown as ``<secret>``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretBytes, SecretStr

from exporter.config import Config


def redacted_config_yaml(config: Config) -> str:
    """The config as YAML with every secret shown as ``<secret>`` (files are never read)."""
    return yaml.safe_dump(
        _redact(config.model_dump(mode="python", exclude_none=True)),
        sort_keys=False,
        allow_unicode=True,
    )


def _redact(value: Any) -> Any:
    if isinstance(value, SecretStr | SecretBytes):
        return "<secret>"
    if isinstance(value, dict):
        return {str(k): _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
