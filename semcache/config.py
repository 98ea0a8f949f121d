"""Settings: one frozen object, from CLI flags > environment (SEMCACHE_*) > config file > defaults.

``Settings`` is a pydantic-settings model. Pydantic checks the types, strictly (``"60"`` is no int
in a file or a flag, nor is ``true``; an int is a float, a list a tuple), the validators below check
the ranges, and every failure is a ``ConfigError`` naming the setting. ``Settings(...)`` is its
arguments over the defaults; only ``Settings.load`` reads the environment, from the mapping it is
given (never ``os.environ`` itself), and the config file: TOML or JSON with the same field names,
at the top level or in a ``[semcache]`` table. An environment value is parsed by pydantic's lax
rules for its setting (``"60"``, ``"yes"``), with ``none``, ``null`` or nothing for None and a
comma-separated list for a tuple.

Secrets are never stored here: the upstream key is named by an environment variable
(``upstream_api_key_env``) and read only when the client is built; ``store`` and
``alert_webhook_url``, which may carry one, are kept out of the repr.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any, Mapping, Union, get_args, get_origin

from pydantic import Field, TypeAdapter, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError

__all__ = ["Settings"]

DAY = 86_400


class Settings(BaseSettings):
    """Every setting of semcache, with its default. See README "Configuration"."""

    # strict: a file's "60" is not an int, nor true an int (an int is a float); the tuples are lax, so a list is one.
    # case_sensitive: the names as written (pydantic-settings would take Settings(CACHE_DIR=...) for cache_dir).
    model_config = SettingsConfigDict(env_prefix="SEMCACHE_", frozen=True, extra="forbid", strict=True,
                                      case_sensitive=True)

    # storage
    cache_dir: str = ".semcache"
    # None: the local cache_dir; "redis://host:port/db": one Redis shared by every replica (kept out of repr: a
    # URL may carry a password, though store_password_env is the place for one)
    store: str | None = Field(default=None, repr=False)
    store_password_env: str = "SEMCACHE_REDIS_PASSWORD"  # environment variable that may hold the Redis password
    store_prefix: str = "semcache"  # the Redis key prefix (several caches can share one Redis)
    redis_local_share: float | None = None  # Redis out of reach: None = misses fail closed (429); else this share of rpm/tpm
    shared_limiter_margin: float = 2.0  # seconds the replicas' shared limiter adds to its 60 s window (see wiring)
    recent_entries_bytes: int = 64 * 1024**2  # in-process copy of recently stored/served entries, for hits during an outage
    snapshot_file: str | None = None  # a replica's index snapshot; None: <cache_dir>/index-snapshot.npz with Redis; "": none
    snapshot_interval: float = 300.0  # seconds between snapshots while serving (and one at shutdown); 0 = only at shutdown
    ttl: float | None = 7 * DAY  # seconds; None or 0 = never expire
    sliding_ttl: bool = False
    stale_ttl: float | None = DAY  # how long an expired entry is kept for stale-if-error
    max_entries: int | None = 1_000_000
    max_bytes: int | None = 4 * 1024**3
    # matching
    model: str | None = None  # None = the packaged all-MiniLM-L6-v2
    embed_backend: str = "auto"  # "auto" (ONNX Runtime when it works, else PyTorch), "onnx" or "torch"
    adapter: str = "default"  # "default": the cache directory's tuned adapter (semcache tune), else none; "none"; or a path
    policy: str | None = None  # a policy file written by `semcache calibrate`
    threshold: float | None = None  # overrides the policy's threshold
    top_k: int = 5
    semantic_max_temperature: float = 1.0
    semantic_languages: tuple[str, ...] | None = Field(default=None, strict=False)  # languages the semantic tier answers; None: the policy's ("en"); "all"
    multilingual: str = "auto"  # Chinese to multilingual-e5-small: "auto" (when the extra is installed), "on", "off"
    embed_cache_size: int = 1024
    tenant: str = ""
    # learning from traffic (docs/learning.md)
    answer_groups: bool = True  # serve from an answer group only when no other answer is as close
    target_precision: float | None = None  # move the threshold toward the loosest point the labels support
    learning_floor: float = 0.75  # the calibrated threshold never goes under this cosine
    verify_fraction: float = 0.0  # share of semantic hits also asked upstream (costs quota) for an unbiased estimate
    # upstream
    upstream_base_url: str = "https://api.openai.com/v1"
    upstream_api_key_env: str = "OPENAI_API_KEY"
    upstream_api: str = "openai"  # the default route's API: "openai", or "anthropic" (Messages API at upstream_base_url)
    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None  # requests per day (the default route's; each route has its own), see upstream/daily.py
    tpd: int | None = None  # tokens per day
    max_attempts: int = 5
    upstream_timeout: float = 60.0  # the SDK's timeout: connect, and a stream's longest silence between two chunks
    # A non-streamed attempt waits this long for the provider's answer to begin (a hang fails it, and it is
    # retried within the deadline); keep it above your longest non-streamed answer, or stream long ones.
    first_byte_timeout: float = 30.0
    deadline: float = 60.0  # a whole call, every attempt and wait included: a hanging provider is a 504 by then (#18)
    fallback_models: tuple[str, ...] = Field(default=(), strict=False)
    stale_if_error: bool = True
    budget_tokens_per_day: int | None = None
    budget_usd_per_day: float | None = None
    budget_tokens_per_month: int | None = None
    budget_usd_per_month: float | None = None
    budget_alert_fraction: float = 0.8
    pricing: str | None = None  # a JSON file overriding the pricing table
    # [[routes]] tables: model patterns -> a provider (base_url, api, key_env, limits, prices, fallbacks); requests
    # no route matches go to upstream_base_url (the "default" route). See docs/providers.md.
    routes: tuple = Field(default=(), strict=False)
    # sidecar
    host: str = "127.0.0.1"
    port: int = 8080
    admin_token_env: str = "SEMCACHE_ADMIN_TOKEN"
    shared_cache: bool = False  # True: one cache for every caller; False: partition by API-key hash
    pass_through_key: bool = True  # forward the caller's API key upstream when it sends one
    allow_threshold_header: bool = False
    max_body_bytes: int = 1_000_000
    client_keys_file: str | None = None  # TOML/JSON file of sidecar keys (hashed), see server/auth.py
    client_keys_env: str = "SEMCACHE_CLIENT_KEYS"  # environment variable that may hold the same JSON document
    open: bool = False  # allow serving the sidecar's own upstream key on a non-loopback address without client keys
    allowed_hosts: tuple[str, ...] = Field(default=(), strict=False)  # Host names served besides 127.0.0.1, localhost, [::1] and `host`; "*" = any
    allowed_origins: tuple[str, ...] = Field(default=(), strict=False)  # browser origins allowed to call (and CORS enabled for); "*" = any
    max_header_bytes: int = 64 * 1024  # request line + headers; more: 431 (server/protocol.py)
    max_headers: int = 100  # more: 431
    header_timeout: float = 10.0  # seconds for a request's headers to arrive; else 408 and the connection closed
    body_timeout: float = 30.0  # seconds for a request's body to arrive after its headers; else 408 and closed
    hit_usage: str = "zero"  # usage of an answer not bought upstream (hit, stale, coalesced): "zero" or "stored" (server/usage.py)
    # alerts (server/alerts.py): budget alert and stop, insufficient_quota, a run of upstream 429s
    alert_webhook_url: str | None = Field(default=None, repr=False)  # a secret: Slack's URL holds its token
    alert_format: str = "slack"  # the webhook's JSON: slack, dingtalk, wecom or feishu
    alert_429_count: int = 20  # this many upstream 429s within alert_429_window seconds, all replicas together, alert
    alert_429_window: float = 60.0
    alert_repeat: float = 3600.0  # seconds before the same quota (or 429) alert is sent again

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            # from None: pydantic's own message repeats the input, secrets (store, alert_webhook_url) included
            raise _config_error(exc, values) from None

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # never os.environ or a .env file: load() reads the mapping and the file it is given

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes``, validated as a new ``Settings`` is."""
        return type(self)(**{**dict(self), **changes})

    @classmethod
    def load(cls, *, flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None,
             config_file: str | Path | None = None) -> Settings:
        """Merge flags > environ (``SEMCACHE_<FIELD>``) > config file > defaults. None flags are unset."""
        environ = environ or {}
        config_file = config_file or environ.get("SEMCACHE_CONFIG")
        values = dict(_read_file(config_file)) if config_file else {}
        for name in values:
            if name not in cls.model_fields:
                raise ConfigError(f"unknown setting {name!r} in {str(config_file)!r}")
        values.update(_Environment(cls, environ)())
        values.update((name, value) for name, value in (flags or {}).items() if value is not None)
        return cls(**values)

    # The range checks. Pydantic runs them after the type checks; _config_error passes their messages on.

    @field_validator("ttl")
    @classmethod
    def _zero_ttl_never_expires(cls, value: float | None) -> float | None:
        return None if value == 0 else value

    @field_validator("max_entries", "max_bytes", "rpm", "tpm", "top_k", "max_attempts", "port")
    @classmethod
    def _positive_count(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and value < (0 if info.field_name == "port" else 1):
            raise ValueError(f"setting {info.field_name!r} must be positive, got {value!r}")
        return value

    @field_validator("upstream_timeout", "first_byte_timeout", "deadline", "max_body_bytes", "max_header_bytes",
                     "max_headers", "header_timeout", "body_timeout", "alert_429_count", "alert_429_window",
                     "alert_repeat")
    @classmethod
    def _positive(cls, value: float, info: ValidationInfo) -> float:
        if value <= 0:
            raise ValueError(f"setting {info.field_name!r} must be positive, got {value!r}")
        return value

    @field_validator("ttl", "stale_ttl", "embed_cache_size", "budget_tokens_per_day", "budget_usd_per_day",
                     "budget_tokens_per_month", "budget_usd_per_month", "recent_entries_bytes", "snapshot_interval",
                     "shared_limiter_margin")
    @classmethod
    def _not_negative(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and value < 0:
            raise ValueError(f"setting {info.field_name!r} must be >= 0, got {value!r}")
        return value

    @field_validator("threshold", "learning_floor")
    @classmethod
    def _cosine(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and not -1 <= value <= 1:
            raise ValueError(f"setting {info.field_name!r} must be a cosine in [-1, 1], got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_the_rest(self) -> Settings:
        if self.multilingual not in ("auto", "on", "off"):
            raise ValueError(f"setting 'multilingual' must be auto, on or off, got {self.multilingual!r}")
        if not 0 < self.budget_alert_fraction <= 1:
            raise ValueError(f"setting 'budget_alert_fraction' must be in (0, 1], got {self.budget_alert_fraction!r}")
        if self.store is not None and not self.store.startswith(("redis://", "rediss://", "unix://")):
            scheme = self.store.partition(":")[0][:20] if ":" in self.store else "no scheme"
            raise ValueError("setting 'store' must be a Redis URL (redis://host:port/db, rediss://, unix://) or unset "
                             f"for the local cache_dir, got one with {scheme!r}")
        if not self.store_prefix:
            raise ValueError(f"setting 'store_prefix' must be a non-empty string, got {self.store_prefix!r}")
        if self.redis_local_share is not None and not 0 < self.redis_local_share <= 1:
            raise ValueError(f"setting 'redis_local_share' must be in (0, 1] (this replica's part of the quota while "
                             f"Redis is out of reach), got {self.redis_local_share!r}")
        if self.target_precision is not None and not 0.5 <= self.target_precision < 1:
            raise ValueError(f"setting 'target_precision' must be in [0.5, 1), got {self.target_precision!r}")
        if not 0 <= self.verify_fraction <= 1:
            raise ValueError(f"setting 'verify_fraction' must be in [0, 1], got {self.verify_fraction!r}")
        if self.hit_usage not in ("zero", "stored"):
            raise ValueError(f"setting 'hit_usage' must be 'zero' or 'stored', got {self.hit_usage!r}")
        if self.alert_webhook_url is not None and not self.alert_webhook_url.startswith(("http://", "https://")):
            raise ValueError("setting 'alert_webhook_url' must be an http:// or https:// URL")  # never echoed: a secret
        if self.alert_format not in ("slack", "dingtalk", "wecom", "feishu"):
            raise ValueError(f"setting 'alert_format' must be slack, dingtalk, wecom or feishu, got {self.alert_format!r}")
        return self


class _Environment(PydanticBaseSettingsSource):
    """The ``SEMCACHE_<FIELD>`` variables of the mapping given to ``Settings.load``, each parsed for its field."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        variable = self.config["env_prefix"] + field_name.upper()
        return self.environ.get(variable), variable, False

    def __call__(self) -> dict[str, Any]:
        values = {}
        for name, field in self.settings_cls.model_fields.items():
            raw, variable, _ = self.get_field_value(field, name)
            if raw is not None:
                values[name] = _parse_env(variable, raw, field.annotation)
        return values


def _parse_env(variable: str, raw: str, annotation: Any) -> Any:
    """Parse one variable by pydantic's lax rules (``"60"`` is 60, ``"yes"`` True), or raise ConfigError naming it.

    A tuple is a comma-separated list. ``none``, ``null`` or nothing is None for a setting that may be None,
    else the empty tuple for a tuple; a string setting keeps the text as it is.
    """
    kind = _base_type(annotation)
    if kind is str:
        return raw
    nothing = raw.strip().lower() in ("", "none", "null")
    if nothing and type(None) in get_args(annotation):
        return None
    if kind is tuple:
        return () if nothing else tuple(part.strip() for part in raw.split(",") if part.strip())
    try:
        return TypeAdapter(annotation).validate_python(raw.strip())
    except ValidationError as exc:
        raise ConfigError(f"environment variable {variable} must be {kind.__name__}, got {raw!r}") from exc


def _base_type(annotation: Any) -> type:
    """Return the type a setting holds when set: int for ``int | None``, tuple for ``tuple[str, ...]``."""
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    return get_origin(annotation) or annotation


def _config_error(exc: ValidationError, values: Mapping[str, Any]) -> ConfigError:
    """Translate pydantic's first error into a ConfigError naming the setting and what it must be."""
    error = exc.errors()[0]
    if error["type"] == "value_error":  # a range check of Settings: its message as written
        return ConfigError(str(error["ctx"]["error"]))
    name = error["loc"][0]
    if error["type"] == "extra_forbidden":
        return ConfigError(f"unknown setting {name!r}")
    kind = _base_type(Settings.model_fields[name].annotation)
    return ConfigError(f"setting {name!r} must be {kind.__name__}, got {values[name]!r}")


def _read_file(path: str | Path) -> Mapping[str, Any]:
    """Return the settings in a TOML or JSON file: its ``[semcache]`` table, else its top level."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {str(path)!r} does not exist") from exc
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            from .toml import tomllib

            data = tomllib.loads(text)
    except ValueError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be parsed: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a table of settings")
    return data.get("semcache", data)
