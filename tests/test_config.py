"""Settings: defaults, precedence flags > env > file > defaults, and clear errors naming the setting."""

from __future__ import annotations

import json

import pydantic
import pytest

from semcache import ConfigError, Settings


def write(path, text: str):
    path.write_text(text)
    return path


def test_defaults():
    s = Settings.load()
    assert s == Settings()
    assert s.cache_dir == ".semcache"
    assert s.ttl == 7 * 86_400
    assert s.threshold is None
    assert s.fallback_models == ()
    assert s.host == "127.0.0.1"
    assert s.stale_if_error is True


def test_settings_are_frozen():
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        Settings().ttl = 5  # type: ignore[misc]


def test_replace_returns_a_validated_copy():
    s = Settings()
    assert s.replace(port=9000).port == 9000
    assert s.port == 8080
    with pytest.raises(ConfigError, match="'port'"):
        s.replace(port=-1)


@pytest.mark.parametrize("suffix, text", [
    (".toml", 'cache_dir = "from-file"\nrpm = 60\nttl = 3600\nfallback_models = ["a", "b"]\n'),
    (".toml", '[semcache]\ncache_dir = "from-file"\nrpm = 60\nttl = 3600\nfallback_models = ["a", "b"]\n'),
    (".json", json.dumps({"cache_dir": "from-file", "rpm": 60, "ttl": 3600, "fallback_models": ["a", "b"]})),
], ids=["toml", "toml-table", "json"])
def test_config_file(tmp_path, suffix, text):
    s = Settings.load(config_file=write(tmp_path / f"semcache{suffix}", text))
    assert s.cache_dir == "from-file"
    assert s.rpm == 60
    assert s.ttl == 3600.0 and isinstance(s.ttl, float)
    assert s.fallback_models == ("a", "b")


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path):
    path = write(tmp_path / "s.toml", 'cache_dir = "file"\nrpm = 10\ntpm = 1000\nport = 1111\n')
    environ = {"SEMCACHE_RPM": "20", "SEMCACHE_TPM": "2000"}
    s = Settings.load(flags={"rpm": 30, "tpm": None}, environ=environ, config_file=path)
    assert s.rpm == 30  # flag beats env and file
    assert s.tpm == 2000  # a None flag is unset: env beats file
    assert s.port == 1111  # file beats default
    assert s.cache_dir == "file"
    assert s.max_attempts == Settings().max_attempts  # default


def test_config_file_named_by_environment(tmp_path):
    path = write(tmp_path / "s.json", '{"port": 9001}')
    assert Settings.load(environ={"SEMCACHE_CONFIG": str(path)}).port == 9001


@pytest.mark.parametrize("name, raw, expected", [
    ("ttl", "60", 60.0),
    ("threshold", "0.85", 0.85),
    ("shared_cache", "yes", True),
    ("stale_if_error", "off", False),
    ("rpm", "none", None),
    ("tenant", "team-a", "team-a"),
    ("fallback_models", "gpt-4o-mini, gpt-3.5-turbo,", ("gpt-4o-mini", "gpt-3.5-turbo")),
])
def test_environment_values_are_parsed(name, raw, expected):
    s = Settings.load(environ={f"SEMCACHE_{name.upper()}": raw})
    assert getattr(s, name) == expected


def test_ttl_zero_means_never_expire():
    assert Settings(ttl=0).ttl is None
    assert Settings.load(environ={"SEMCACHE_TTL": "0"}).ttl is None


@pytest.mark.parametrize("environ, setting", [
    ({"SEMCACHE_RPM": "fast"}, "SEMCACHE_RPM"),
    ({"SEMCACHE_SHARED_CACHE": "maybe"}, "SEMCACHE_SHARED_CACHE"),
    ({"SEMCACHE_THRESHOLD": "high"}, "SEMCACHE_THRESHOLD"),
])
def test_bad_environment_value_names_the_variable(environ, setting):
    with pytest.raises(ConfigError, match=setting):
        Settings.load(environ=environ)


@pytest.mark.parametrize("changes, setting", [
    ({"rpm": "60"}, "rpm"),
    ({"port": 80.5}, "port"),
    ({"shared_cache": "yes"}, "shared_cache"),
    ({"top_k": True}, "top_k"),
    ({"cache_dir": 3}, "cache_dir"),
    ({"max_entries": -5}, "max_entries"),
    ({"max_bytes": 0}, "max_bytes"),
    ({"rpm": 0}, "rpm"),
    ({"port": -1}, "port"),
    ({"threshold": 1.5}, "threshold"),
    ({"threshold": -1.01}, "threshold"),
    ({"budget_alert_fraction": 0}, "budget_alert_fraction"),
    ({"ttl": -60}, "ttl"),
    ({"stale_ttl": -1}, "stale_ttl"),
    ({"budget_usd_per_day": -1.0}, "budget_usd_per_day"),
    ({"budget_tokens_per_month": -10}, "budget_tokens_per_month"),
    ({"embed_cache_size": -1}, "embed_cache_size"),
    ({"upstream_timeout": 0}, "upstream_timeout"),
    ({"deadline": -5}, "deadline"),
])
def test_bad_values_raise_config_error_naming_the_setting(changes, setting):
    with pytest.raises(ConfigError, match=f"'{setting}'"):
        Settings(**changes)


@pytest.mark.parametrize("threshold", [-1, -1.0, 0, 0.5, 1])
def test_threshold_bounds_are_inclusive(threshold):
    assert Settings(threshold=threshold).threshold == threshold


def test_zero_budget_and_embed_cache_are_allowed():
    s = Settings(budget_tokens_per_day=0, embed_cache_size=0, stale_ttl=0)
    assert (s.budget_tokens_per_day, s.embed_cache_size, s.stale_ttl) == (0, 0, 0.0)


def test_int_is_accepted_for_float_settings():
    s = Settings(upstream_timeout=30)
    assert s.upstream_timeout == 30.0 and isinstance(s.upstream_timeout, float)


def test_bad_value_in_file_names_the_setting(tmp_path):
    with pytest.raises(ConfigError, match="'max_entries'"):
        Settings.load(config_file=write(tmp_path / "s.toml", "max_entries = -1\n"))


def test_unknown_key_in_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown setting 'cache_size'"):
        Settings.load(config_file=write(tmp_path / "s.toml", "cache_size = 10\n"))


def test_unknown_flag_is_an_error():
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        Settings.load(flags={"colour": "blue"})


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(config_file=tmp_path / "nope.toml")


@pytest.mark.parametrize("name, text", [
    ("bad.toml", "cache_dir = \n"),
    ("bad.json", "{not json"),
    ("list.json", "[1, 2]"),
])
def test_unparseable_file_is_an_error(tmp_path, name, text):
    with pytest.raises(ConfigError, match=name):
        Settings.load(config_file=write(tmp_path / name, text))


def test_settings_hold_no_secret():
    # The key is named by an environment variable, never stored: the repr cannot leak it.
    s = Settings.load(environ={"OPENAI_API_KEY": "sk-secret-value"})
    assert "sk-secret" not in repr(s)
    assert s.upstream_api_key_env == "OPENAI_API_KEY"


def test_sidecar_exposure_settings():
    s = Settings()
    assert (s.client_keys_file, s.client_keys_env, s.open, s.allowed_hosts, s.allowed_origins) == (
        None, "SEMCACHE_CLIENT_KEYS", False, (), ())
    s = Settings.load(environ={"SEMCACHE_ALLOWED_HOSTS": "sidecar.internal, 10.0.0.5", "SEMCACHE_OPEN": "yes",
                               "SEMCACHE_ALLOWED_ORIGINS": "https://app.example", "SEMCACHE_CLIENT_KEYS_FILE": "/etc/keys.toml"})
    assert s.allowed_hosts == ("sidecar.internal", "10.0.0.5") and s.open is True
    assert s.allowed_origins == ("https://app.example",) and s.client_keys_file == "/etc/keys.toml"


def test_sidecar_exposure_settings_from_a_file(tmp_path):
    path = write(tmp_path / "s.toml", 'open = true\nallowed_origins = ["https://a.example", "https://b.example"]\n')
    s = Settings.load(config_file=path)
    assert s.open is True and s.allowed_origins == ("https://a.example", "https://b.example")
    with pytest.raises(ConfigError, match="'open'"):
        Settings(open="yes")
