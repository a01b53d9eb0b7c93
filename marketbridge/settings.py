"""How every marketbridge program reads its settings: flags first, then ``PREFIX_FLAG`` variables.

The bridge, the cache service, the bench harness and the demo feed all take the same kind of
settings: a frozen dataclass whose fields are flags (``--max-connections``) with an environment
twin (``BRIDGE_MAX_CONNECTIONS``), validated once at start so a bad value stops the process with
one line, never a traceback. The naming rule, the flag-over-environment precedence, the text
to number conversion with its one wording (``--port: expected an integer, got 'abc'``, naming
the flag, or the variable when the value came from the environment) and the one
``ConfigError`` every entry point catches live here, so the programs cannot drift apart; each
program keeps only its own fields and checks.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A setting is missing or invalid; the message is the one line shown to the operator."""


class RaisingParser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of printing usage and exiting."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise ConfigError(message)


@dataclass(frozen=True)
class Raw:
    """One setting's text as given, and where it came from (the flag or the variable name)."""

    text: str
    origin: str
    from_env: bool


def flag_name(field: str) -> str:
    """``max_connections`` -> ``--max-connections``: the one spelling of a field's flag."""
    return "--" + field.replace("_", "-")


def env_name(prefix: str, field: str) -> str:
    """``max_connections`` -> ``BRIDGE_MAX_CONNECTIONS`` for prefix ``BRIDGE_``."""
    return prefix + field.upper()


def add_flags(parser: argparse.ArgumentParser, names: Iterable[str],
              help_text: Callable[[str], str | None] = lambda _name: None) -> None:
    """One ``--flag`` per field, defaulting to None so the environment can fill it in."""
    for name in names:
        parser.add_argument(flag_name(name), dest=name, default=None, metavar=name.upper(),
                            help=help_text(name))


def gather(args: Mapping[str, Any], names: Iterable[str], environ: Mapping[str, str],
           prefix: str) -> dict[str, Raw]:
    """The given text of each field: its flag if on the command line, else its variable if set."""
    found: dict[str, Raw] = {}
    for name in names:
        if args.get(name) is not None:
            found[name] = Raw(str(args[name]), flag_name(name), from_env=False)
            continue
        variable = env_name(prefix, name)
        if variable in environ:
            found[name] = Raw(environ[variable], variable, from_env=True)
    return found


# What a number field's text must be, as the one message says it.
EXPECTED: dict[type, str] = {int: "an integer", float: "a number"}


def number_type(annotation: object) -> type | None:
    """``int`` or ``float`` for a field annotated so (``int | None`` too), else None (text).

    Annotations are strings under ``from __future__ import annotations``; a type works as well.
    """
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    name = name.removesuffix(" | None")
    return next((kind for kind in EXPECTED if kind.__name__ == name), None)


def convert(raw: Raw, annotation: object) -> Any:
    """``raw`` as its field's type: a number parsed, anything else the text as given.

    The one conversion of every program, so one mistake reads the same in each of them:
    ``--port: expected an integer, got 'abc'`` (``BRIDGE_PORT: ...`` from the environment).
    """
    if annotation in ("bool", bool):
        return to_bool(raw)
    kind = number_type(annotation)
    if kind is None:
        return raw.text
    try:
        return kind(raw.text)
    except ValueError:
        raise ConfigError(f"{raw.origin}: expected {EXPECTED[kind]}, got {raw.text!r}") from None


TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def to_bool(raw: Raw) -> bool:
    """A switch's text: true/false (also 1/0, yes/no, on/off, any case), else one line."""
    text = raw.text.strip().lower()
    if text in TRUE_WORDS or text in FALSE_WORDS:
        return text in TRUE_WORDS
    raise ConfigError(f"{raw.origin}: expected true or false, got {raw.text!r}")


def require_positive(config: object, names: Iterable[str], message: Callable[[str, Any], str]) -> None:
    """Raise ConfigError (worded by ``message(flag, value)``) for the first field that is <= 0."""
    for name in names:
        value = getattr(config, name)
        if value is not None and value <= 0:
            raise ConfigError(message(flag_name(name), value))
