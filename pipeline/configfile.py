"""Config files and --set overrides as plain data: a size limit, YAML without aliases, dotted `key=value` edits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.configerrors import ConfigError

# A config is a few KiB; a bigger file is a mistake (or an attack), refused before parsing.
MAX_CONFIG_BYTES = 1 << 20


class UnsafeYaml(ConfigError):
    """YAML that the guard refuses (aliases): never taken as a plain string instead."""


def read_config_file(path: str | Path) -> dict:
    """A config file's sections as plain data (not yet validated); ConfigError for a file that is no config."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {size} bytes is too big for a config (limit {MAX_CONFIG_BYTES}); is it the right file?"
        )
    data = load_yaml(path.read_bytes(), str(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def apply_override(data: dict, item: str) -> None:
    """Set a dotted key from `key=value`; the value is parsed as YAML (3 -> int, null -> None) through
    the same guard as config files; text that is not YAML at all is kept as a string."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        # Worded without a "key=" pair: redaction hides whatever follows a secret-looking name and "=".
        raise ConfigError(f"--set {item!r}: expected a dotted config name, '=' and a value, e.g. output.format=wav")
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"--set {key.strip()}: the value is {len(raw)} bytes (limit {MAX_CONFIG_BYTES})")
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key.strip()!r}: {part!r} is a value, not a section")
        node = child
    try:
        node[parts[-1]] = load_yaml(raw, f"--set {key.strip()}") if raw.strip() else ""
    except UnsafeYaml:
        raise
    except ConfigError:
        node[parts[-1]] = raw


def load_yaml(text: str | bytes, where: str) -> Any:
    """Parse YAML with the safe loader, refusing aliases (a 600-byte alias bomb expands to gigabytes)."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except _AliasRefused as exc:
        mark = exc.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise UnsafeYaml(f"{where}: not valid YAML{at} ({exc.problem}; quote the value if it is text)") from None
    except yaml.MarkedYAMLError as exc:
        # str(exc) quotes the offending line, which may hold a secret: position and problem only.
        mark = exc.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{where}: not valid YAML{at} ({exc.problem or exc.context})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({type(exc).__name__})") from None


class _AliasRefused(yaml.MarkedYAMLError):
    """An `*alias` reference: refused wherever YAML comes from (files or --set)."""


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses `*alias` references (anchors alone are harmless)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise _AliasRefused(
                problem="YAML aliases (*name) are not allowed in barkpipe configs; write the value out",
                problem_mark=mark,
            )
        return super().compose_node(parent, index)
