"""Where settings come from: the four sources :func:`link.settings.load_settings` layers.

Highest precedence first, each a pydantic-settings source, merged by pydantic-settings
(a section's keys merge key by key, so does a mapping such as ``ratelimit.tenants``;
a list or a scalar from a higher source replaces the lower one):

1. command-line flags (``--metering-topic``, ``--set metering.topic=…``), parsed by ``link.cli``;
2. ``STOA_<SECTION>_<KEY>`` variables: env prefix ``STOA_``, nested delimiter ``_`` split once;
3. the platform's own variables (``GATEWAY_MODE``, ``KAFKA_BOOTSTRAP_SERVERS`` …), empty = unset;
4. the YAML file (``--config``).

Text from flags and the environment is read the same way (:func:`text_value`): lists are
comma-separated, mappings are YAML/JSON, an empty value clears an optional setting. A ``STOA_*``
variable that names no setting stops start-up (a typo must not be silently ignored).
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from link.settings import _SECTIONS, CLIENT_ENV, ENV_PREFIX, PLATFORM_ENV, ConfigError, Settings

__all__ = [
    "ConfigFileSource",
    "FlagSource",
    "LayeredSettings",
    "PlatformEnvSource",
    "PrefixedEnvSource",
    "check_key",
    "field_at",
    "layered_sources",
    "prefixed_env_names",
    "read_config_file",
    "refuse_unknown_env",
    "text_value",
]


class LayeredSettings(Settings, BaseSettings):
    """:class:`Settings` built from the layered sources; only :func:`link.settings.load_settings` makes one.

    ``Settings`` itself stays a plain model, so ``Settings.model_validate(data)`` reads nothing but ``data``.
    """

    model_config = SettingsConfigDict(
        extra="forbid", frozen=True, validate_default=True,
        env_prefix=ENV_PREFIX,  # STOA_METERING_TOPIC ...
        env_nested_delimiter="_", env_nested_max_split=1,  # ... is metering.topic; STOA_METERING_SPOOL_DIR spool_dir
    )


def _fields() -> dict[str, FieldInfo]:
    """Every key a flag or a variable can set, by dotted name (sections are set key by key)."""
    out: dict[str, FieldInfo] = {}
    for name, field in Settings.model_fields.items():
        section = _SECTIONS.get(name)
        if section is None:
            out[name] = field
        else:
            out.update({f"{name}.{sub}": f for sub, f in section.model_fields.items()})
    return out


_KEYS = _fields()
# Errors name the dotted key; pydantic-settings hands a source the field, so look the key up by the field.
_KEY_OF_FIELD = {id(field): key for key, field in _KEYS.items()}


def field_at(key: str) -> FieldInfo:
    """The field of a dotted key (``metering.topic``); the key must exist."""
    return _KEYS[key]


def prefixed_env_names() -> dict[str, str]:
    """``STOA_METERING_TOPIC`` -> ``metering.topic``, for every key (the platform's names excluded)."""
    return {ENV_PREFIX + key.replace(".", "_").upper(): key for key in _KEYS}


_PREFIXED = prefixed_env_names()


def _members(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def text_value(field: FieldInfo, raw: str, key: str) -> Any:
    """``raw`` (from a flag or a variable) as the field expects it; pydantic validates the result."""
    members = _members(field.annotation)
    origins = {get_origin(m) or m for m in members}
    if list in origins:
        return [item.strip() for item in raw.split(",") if item.strip()]
    if dict in origins:
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(key, f"expected a mapping (YAML/JSON): {exc}") from None
    if raw == "" and type(None) in members:
        return None
    return raw


def check_key(key: str) -> None:
    """Raise :class:`ConfigError` unless ``key`` is a dotted key a flag can set."""
    head, _, tail = key.partition(".")
    if key in _KEYS:
        return
    if not tail and head in _SECTIONS:
        raise ConfigError(key, "is a section; set one of its keys")
    raise ConfigError(key, "unknown setting")


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    head, _, tail = key.partition(".")
    if tail:
        tree.setdefault(head, {})[tail] = value
    else:
        tree[head] = value


class FlagSource(PydanticBaseSettingsSource):
    """Command-line flags as dotted keys (``link.cli`` parses them); strings are read by :func:`text_value`."""

    def __init__(self, settings_cls: type[BaseSettings], flags: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._tree: dict[str, Any] = {}
        for key, value in flags.items():
            check_key(key)
            _set_dotted(self._tree, key, text_value(field_at(key), value, key) if isinstance(value, str) else value)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._tree.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._tree


# What the kubelet sets for every Service of the namespace (docker-link style): not ours to refuse.
_SERVICE_LINK_ENV = re.compile(
    r"_SERVICE_HOST$|_SERVICE_PORT(_[A-Z0-9_]+)?$|_PORT$|_PORT_\d+_(TCP|UDP|SCTP)(_[A-Z]+)?$"
)


def _unknown_env(var: str) -> str:
    """Why ``var`` is refused, with the closest known spelling."""
    import difflib  # local: only a typo needs it

    names = [*_PREFIXED, *(v for v in PLATFORM_ENV if v.startswith(ENV_PREFIX))]
    close = difflib.get_close_matches(var, names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else "see docs/configuration.md for the names"
    return f"unknown environment variable ({hint}); fix its name or unset it"


def refuse_unknown_env(env: Mapping[str, str]) -> None:
    """Raise :class:`ConfigError` for the first ``STOA_*`` variable that is neither a setting nor allowed."""
    for var in env:
        if not var.startswith(ENV_PREFIX) or var in _PREFIXED or var in PLATFORM_ENV or var in CLIENT_ENV:
            continue
        if _SERVICE_LINK_ENV.search(var):
            continue  # Kubernetes' variables for a Service named stoa-… (STOA_LINK_SERVICE_HOST…)
        raise ConfigError(var, _unknown_env(var))


class PrefixedEnvSource(EnvSettingsSource):
    """``STOA_<SECTION>_<KEY>`` variables of ``env`` (pydantic-settings' env prefix and nested delimiter)."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        refuse_unknown_env(env)
        self._env = env
        # Prefix, delimiter and its single split come from the model's config (LayeredSettings).
        super().__init__(settings_cls)
        # Read now, so a bad value stops start-up before the flags are looked at (as it always has).
        self._values = super().__call__()
        # pydantic-settings leaves out a top-level value read as None; an empty variable still clears the file's.
        for name, field in settings_cls.model_fields.items():
            if env.get(ENV_PREFIX + name.upper()) == "" and name not in self._values and name not in _SECTIONS:
                self._values[name] = text_value(field, "", name)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # The given environment, not os.environ (pydantic-settings' own dotenv source overrides this too;
        # tests/unit/test_settings_sources.py fails if it stops being called). Only the exact spellings:
        # pydantic-settings compares names case-insensitively, and `stoa_metering_topic` has never been
        # a setting (nor is STOA_MCP_TOKEN, a client's).
        return {var.lower(): value for var, value in self._env.items() if var in _PREFIXED}

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        # Lists and mappings are given as text the same way flags give them, not as JSON.
        return text_value(field, value, _KEY_OF_FIELD.get(id(field), field_name))

    def prepare_field_value(self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool) -> Any:
        prepared = super().prepare_field_value(field_name, field, value, value_is_complex)
        # pydantic-settings leaves an empty value as it is; here it clears an optional setting.
        if prepared == "":
            return text_value(field, "", field_name)
        section = _SECTIONS.get(field_name)
        if section is not None and isinstance(prepared, dict):
            return {sub: text_value(section.model_fields[sub], "", f"{field_name}.{sub}") if raw == "" else raw
                    for sub, raw in prepared.items()}
        return prepared

    def __call__(self) -> dict[str, Any]:
        return self._values


class PlatformEnvSource(PydanticBaseSettingsSource):
    """The platform's own variables (``PLATFORM_ENV``: the seeds' names), below ``STOA_*``; empty = unset."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._tree: dict[str, Any] = {}
        for var, key in PLATFORM_ENV.items():
            raw = env.get(var)
            if raw:
                _set_dotted(self._tree, key, text_value(field_at(key), raw, key))

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._tree.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._tree


def read_config_file(path: str) -> dict[str, Any]:
    """The ``--config`` YAML file as a mapping; unreadable or malformed raises :class:`ConfigError`."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError("--config", f"{path} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError("--config", f"{path} must hold a mapping at the top level")
    # The merged values become keyword arguments of the model: a key such as `1:` is refused here.
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(str(key), f"Keys should be strings (got {key!r})")
    return data


class ConfigFileSource(InitSettingsSource):
    """The ``--config`` YAML file, the lowest layer.

    Not pydantic-settings' ``YamlConfigSettingsSource``: it skips a file that is not there and reads
    only regular files, while a file named on the command line must be read, ``/dev/stdin`` included.
    """

    def __init__(self, settings_cls: type[BaseSettings], path: str | None) -> None:
        super().__init__(settings_cls, read_config_file(path) if path is not None else {})


def layered_sources(
    settings_cls: type[BaseSettings],
    config_file: str | None,
    env: Mapping[str, str],
    flags: Mapping[str, Any],
) -> tuple[PydanticBaseSettingsSource, ...]:
    """The sources of one load, highest precedence first.

    Built (and so checked) file first, then the environment (unknown names before bad values),
    then the flags: with several mistakes, the first of them in that order is reported.
    """
    config = ConfigFileSource(settings_cls, config_file)
    platform = PlatformEnvSource(settings_cls, env)
    prefixed = PrefixedEnvSource(settings_cls, env)
    return FlagSource(settings_cls, flags), prefixed, platform, config
