"""Typed, validated configuration of ``querycache/config.py`` against API.md "Configuration"."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Any

import pytest

from querycache import Config, ConfigError, QueryCacheError

# Transcribed from /work/shared/API.md, "Configuration (YAML root = from_dict argument; defaults shown)".
DOCUMENTED_DEFAULTS: dict[str, Any] = {
    "l1": {"enabled": True, "max_entries": 10000, "max_bytes": 67108864},
    "l2": {"enabled": True, "backend": "memory", "url": None, "namespace": "querycache",
           "max_bytes": 268435456, "timeout_ms": 50, "hmac_secret": None},
    "l3": {"enabled": False, "model": None, "threshold": 0.97, "max_entries": 100000, "budget_ms": 20,
           # added by issue 6 (L3): which reads, and the embedding worker's and index's bounds
           "all_reads": False, "batch_max": 32, "batch_wait_ms": 0.0, "queue_max": 256, "hnsw_above": 20000,
           "top_k": 8,
           # added by issue 22: a model that must load, loaded in QueryCache() or in the background
           "warmup": "background"},
    "ttl": {"default_s": 300, "max_s": 3600, "tables": {}, "swr_s": 0, "swr_tables": {},
            "max_stale_s": {}},  # added by issue 19 (bounded staleness): per table, none by default
    "max_result_rows": 10000,
    "max_result_bytes": 8388608,
    "invalidation": {"mode": "strict", "lease_ms": 500, "dependencies": {},
                     "capture": {"dsn": None, "database_id": None},
                     "row_level": True,  # added by issue 10 (row-level invalidation), on since proven
                     # added by issue 18 (maintained answers): off by default, bounded per write
                     "maintain": {"enabled": False, "max_entries_per_write": 256, "max_delta_ms": 250.0,
                                  "catch_up": True, "max_state_groups": 2000, "state_cache_groups": 200_000}},
    "coalesce": {"enabled": True, "max_wait_ms": 5000, "lease_ms": 30000},
    "hints": {"strict": False},
    "stats": {"enabled": True, "publish_interval_s": 10.0},
    # added by issue 19: refresh-ahead (XFetch beta) and the background refresh pool's bounds
    "refresh": {"early_beta": 1.0, "workers": 2, "queue": 64},
}


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# -- defaults -----------------------------------------------------------------------------------

def test_defaults_equal_the_documented_ones() -> None:
    actual = Config().to_dict()
    for key, expected in DOCUMENTED_DEFAULTS.items():
        assert actual[key] == expected, key


def test_defaults_have_exactly_the_documented_keys_per_section() -> None:
    actual = Config().to_dict()
    for key, expected in DOCUMENTED_DEFAULTS.items():
        if isinstance(expected, dict) and expected:
            assert set(actual[key]) == set(expected), key


def test_documented_defaults_typed_exactly() -> None:
    config = Config()
    assert config.l3.threshold == 0.97 and type(config.l3.threshold) is float
    assert type(config.l1.max_entries) is int
    assert config.l2.url is None


@pytest.mark.parametrize("empty", [None, {}])
def test_from_dict_of_nothing_is_the_default(empty: Any) -> None:
    assert Config.from_dict(empty) == Config()


def test_empty_yaml_file_is_the_default(tmp_path: Path) -> None:
    assert Config.from_yaml(write(tmp_path, "")) == Config()


def test_documented_defaults_round_trip_through_from_dict() -> None:
    assert Config.from_dict(DOCUMENTED_DEFAULTS) == Config()


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_result_rows = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.l1.enabled = False  # type: ignore[misc]


# -- from_dict and from_yaml agree ------------------------------------------------------------------

FULL_DICT: dict[str, Any] = {
    "l1": {"enabled": False, "max_entries": 50, "max_bytes": 4096},
    "l2": {"enabled": True, "backend": "redis", "url": "redis://127.0.0.1:6379/3", "namespace": "app1",
           "max_bytes": 1024, "timeout_ms": 20, "hmac_secret": "s3cret"},
    "l3": {"enabled": True, "model": "minilm", "threshold": 0.9, "max_entries": 10, "budget_ms": 5},
    "ttl": {"default_s": 60, "max_s": 600, "tables": {"orders": 10, "items": 0}},
    "max_result_rows": 100,
    "max_result_bytes": 2048,
    "invalidation": {"mode": "bounded", "lease_ms": 250, "dependencies": {"orders": ["order_totals"]}},
    "coalesce": {"enabled": False, "max_wait_ms": 100, "lease_ms": 1000},
    "hints": {"strict": True},
}

FULL_YAML = """\
l1: {enabled: false, max_entries: 50, max_bytes: 4096}
l2:
  enabled: true
  backend: redis
  url: redis://127.0.0.1:6379/3
  namespace: app1
  max_bytes: 1024
  timeout_ms: 20
  hmac_secret: s3cret
l3: {enabled: true, model: minilm, threshold: 0.9, max_entries: 10, budget_ms: 5}
ttl:
  default_s: 60
  max_s: 600
  tables:
    orders: 10
    items: 0
max_result_rows: 100
max_result_bytes: 2048
invalidation:
  mode: bounded
  lease_ms: 250
  dependencies:
    orders: [order_totals]
coalesce: {enabled: false, max_wait_ms: 100, lease_ms: 1000}
hints: {strict: true}
"""


def test_from_yaml_equals_from_dict(tmp_path: Path) -> None:
    from_yaml = Config.from_yaml(write(tmp_path, FULL_YAML))
    from_dict = Config.from_dict(FULL_DICT)
    assert from_yaml == from_dict
    assert from_yaml != Config()
    assert from_dict.l2.backend == "redis"
    assert from_dict.l2.url == "redis://127.0.0.1:6379/3"
    assert from_dict.ttl.tables == {"orders": 10, "items": 0}
    assert from_dict.invalidation.dependencies == {"orders": ["order_totals"]}
    assert from_dict.l3.threshold == 0.9
    assert from_dict.hints.strict is True


def test_from_yaml_accepts_a_str_path(tmp_path: Path) -> None:
    assert Config.from_yaml(str(write(tmp_path, "hints: {strict: true}\n"))).hints.strict is True


def test_to_dict_round_trips() -> None:
    config = Config.from_dict(FULL_DICT)
    assert Config.from_dict(config.to_dict()) == config


def test_partial_section_keeps_other_defaults() -> None:
    config = Config.from_dict({"l1": {"max_entries": 7}})
    assert config.l1.max_entries == 7
    assert config.l1.max_bytes == 67108864
    assert config.l2 == Config().l2


# -- unknown keys ------------------------------------------------------------------------------------

def test_unknown_top_level_key() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"l4": {}})
    message = str(info.value)
    assert "l4" in message
    for accepted in ("l1", "l2", "l3", "ttl", "max_result_rows", "invalidation", "coalesce", "hints"):
        assert accepted in message


def test_unknown_nested_key_names_the_full_path_and_accepted_keys() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"l2": {"backend": "memory", "max_byte": 10}})
    message = str(info.value)
    assert "l2.max_byte" in message
    for accepted in ("enabled", "backend", "url", "namespace", "max_bytes", "timeout_ms", "hmac_secret"):
        assert accepted in message


def test_unknown_nested_key_in_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "coalesce:\n  enabled: true\n  max_wait: 10\n")
    with pytest.raises(ConfigError) as info:
        Config.from_yaml(path)
    assert "coalesce.max_wait" in str(info.value)
    assert "max_wait_ms" in str(info.value)


def test_unknown_key_under_hints() -> None:
    with pytest.raises(ConfigError, match=r"hints\.stric\b.*strict"):
        Config.from_dict({"hints": {"stric": True}})


# -- wrong types and ranges --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("data", "path", "value", "accepted"),
    [
        ({"l1": {"max_entries": "many"}}, "l1.max_entries", "many", "integer"),
        ({"l1": {"max_entries": 1.5}}, "l1.max_entries", "1.5", "integer"),
        ({"l1": {"max_entries": True}}, "l1.max_entries", "True", "integer"),
        ({"l1": {"enabled": "maybe"}}, "l1.enabled", "maybe", "true or false"),
        ({"l1": {"enabled": 2}}, "l1.enabled", "2", "true or false"),
        ({"l3": {"threshold": "high"}}, "l3.threshold", "high", "number"),
        ({"l2": {"backend": "memcached"}}, "l2.backend", "memcached", "'memory', 'redis'"),
        ({"invalidation": {"mode": "loose"}}, "invalidation.mode", "loose", "'strict', 'bounded'"),
        ({"ttl": {"tables": {"orders": "long"}}}, "ttl.tables.orders", "long", "integer"),
        ({"ttl": {"tables": ["orders"]}}, "ttl.tables", "orders", "mapping"),
        ({"l2": "redis"}, "l2", "redis", "mapping"),
        ({"max_result_rows": [1]}, "max_result_rows", "[1]", "integer"),
    ],
)
def test_wrong_type_names_path_value_and_accepted(data: dict[str, Any], path: str, value: str,
                                                  accepted: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict(data)
    message = str(info.value)
    assert path in message
    assert value in message
    assert accepted in message


@pytest.mark.parametrize(
    ("data", "path", "value", "accepted"),
    [
        ({"l1": {"max_entries": 0}}, "l1.max_entries", "0", "greater than 0"),
        ({"l1": {"max_bytes": -1}}, "l1.max_bytes", "-1", "greater than 0"),
        ({"l2": {"max_bytes": 0}}, "l2.max_bytes", "0", "greater than 0"),
        ({"l2": {"timeout_ms": 0}}, "l2.timeout_ms", "0", "greater than 0"),
        ({"l3": {"threshold": 1.5}}, "l3.threshold", "1.5", "(0, 1]"),
        ({"l3": {"threshold": 0}}, "l3.threshold", "0", "(0, 1]"),
        ({"ttl": {"default_s": -1}}, "ttl.default_s", "-1", "0 or greater"),
        ({"ttl": {"max_s": 0}}, "ttl.max_s", "0", "greater than 0"),
        ({"ttl": {"default_s": 100, "max_s": 50}}, "ttl.default_s", "100", "ttl.max_s"),
        ({"ttl": {"tables": {"orders": -5}}}, "ttl.tables.orders", "-5", "0 or greater"),
        ({"max_result_rows": 0}, "max_result_rows", "0", "greater than 0"),
        ({"max_result_bytes": -3}, "max_result_bytes", "-3", "greater than 0"),
        ({"invalidation": {"lease_ms": 0}}, "invalidation.lease_ms", "0", "greater than 0"),
        ({"coalesce": {"max_wait_ms": 0}}, "coalesce.max_wait_ms", "0", "greater than 0"),
        ({"coalesce": {"lease_ms": -1}}, "coalesce.lease_ms", "-1", "greater than 0"),
        ({"l2": {"namespace": "has space"}}, "l2.namespace", "has space", "without spaces"),
    ],
)
def test_out_of_range_names_path_value_and_accepted(data: dict[str, Any], path: str, value: str,
                                                    accepted: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict(data)
    message = str(info.value)
    assert path in message
    assert value in message
    assert accepted in message


def test_boundary_values_are_accepted() -> None:
    config = Config.from_dict({"l3": {"threshold": 1}, "ttl": {"default_s": 0, "max_s": 1}, "l1": {"max_entries": 1}})
    assert config.l3.threshold == 1.0
    assert config.ttl.default_s == 0
    assert config.l1.max_entries == 1


def test_strings_are_coerced_to_declared_types() -> None:
    config = Config.from_dict({"l1": {"enabled": "false", "max_entries": "12"}, "l3": {"threshold": "0.5"}})
    assert config.l1.enabled is False
    assert config.l1.max_entries == 12 and type(config.l1.max_entries) is int
    assert config.l3.threshold == 0.5


def test_redis_backend_without_url_fails() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"l2": {"backend": "redis"}})
    assert "l2.url" in str(info.value)
    assert "redis" in str(info.value)


def test_redis_backend_without_url_fails_in_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"l2\.url"):
        Config.from_yaml(write(tmp_path, "l2:\n  backend: redis\n"))


def test_redis_backend_with_url_is_accepted() -> None:
    config = Config.from_dict({"l2": {"backend": "redis", "url": "redis://localhost:6379/0"}})
    assert config.l2.url == "redis://localhost:6379/0"


def test_memory_backend_with_url_fails() -> None:
    with pytest.raises(ConfigError, match=r"l2\.url"):
        Config.from_dict({"l2": {"backend": "memory", "url": "redis://localhost"}})


# -- environment expansion ------------------------------------------------------------------------------

def test_env_variable_expands_in_from_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QC_TEST_REDIS_URL", "redis://cache-host:6380/2")
    config = Config.from_dict({"l2": {"backend": "redis", "url": "${QC_TEST_REDIS_URL}"}})
    assert config.l2.url == "redis://cache-host:6380/2"


def test_env_variable_expands_in_from_yaml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("QC_TEST_NS", "tenant42")
    monkeypatch.setenv("QC_TEST_ROWS", "77")
    path = write(tmp_path, 'l2:\n  namespace: "app-${QC_TEST_NS}"\nmax_result_rows: "${QC_TEST_ROWS}"\n')
    config = Config.from_yaml(path)
    assert config.l2.namespace == "app-tenant42"
    assert config.max_result_rows == 77 and type(config.max_result_rows) is int


def test_env_variable_expanded_value_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QC_TEST_ROWS", "lots")
    with pytest.raises(ConfigError, match="max_result_rows"):
        Config.from_dict({"max_result_rows": "${QC_TEST_ROWS}"})


def test_env_default_used_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QC_TEST_UNSET", raising=False)
    config = Config.from_dict({"l2": {"namespace": "${QC_TEST_UNSET:-fallback}"}})
    assert config.l2.namespace == "fallback"


def test_env_default_ignored_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QC_TEST_SET", "real")
    config = Config.from_dict({"l2": {"namespace": "${QC_TEST_SET:-fallback}"}})
    assert config.l2.namespace == "real"


def test_env_empty_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QC_TEST_UNSET", raising=False)
    config = Config.from_dict({"l2": {"hmac_secret": "x${QC_TEST_UNSET:-}y"}})
    assert config.l2.hmac_secret == "xy"


def test_env_in_yaml_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("QC_TEST_UNSET", raising=False)
    config = Config.from_yaml(write(tmp_path, "l3:\n  threshold: ${QC_TEST_UNSET:-0.8}\n"))
    assert config.l3.threshold == 0.8


def test_missing_env_without_default_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QC_TEST_MISSING", raising=False)
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"l2": {"hmac_secret": "${QC_TEST_MISSING}"}})
    assert "QC_TEST_MISSING" in str(info.value)


def test_missing_env_error_names_the_key_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # config.py's own docstring: "Every error names the key path"; STYLE.md rule 2 says the same.
    monkeypatch.delenv("QC_TEST_MISSING", raising=False)
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"l2": {"hmac_secret": "${QC_TEST_MISSING}"}})
    assert "l2.hmac_secret" in str(info.value)


def test_missing_env_in_yaml_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("QC_TEST_MISSING", raising=False)
    with pytest.raises(ConfigError, match="QC_TEST_MISSING"):
        Config.from_yaml(write(tmp_path, "l2:\n  namespace: ${QC_TEST_MISSING}\n"))


def test_double_dollar_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QC_TEST_SET", "expanded")
    config = Config.from_dict({"l2": {"hmac_secret": "a$${QC_TEST_SET}b"}})
    assert config.l2.hmac_secret == "a${QC_TEST_SET}b"


def test_double_dollar_escape_of_an_unset_variable_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QC_TEST_MISSING", raising=False)
    config = Config.from_dict({"l2": {"hmac_secret": "$${QC_TEST_MISSING}"}})
    assert config.l2.hmac_secret == "${QC_TEST_MISSING}"


def test_expanded_value_is_not_expanded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QC_TEST_SET", "${QC_TEST_OTHER}")
    monkeypatch.setenv("QC_TEST_OTHER", "nope")
    config = Config.from_dict({"l2": {"hmac_secret": "${QC_TEST_SET}"}})
    assert config.l2.hmac_secret == "${QC_TEST_OTHER}"


def test_env_expands_inside_lists_and_mappings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QC_TEST_DEP", "order_totals")
    monkeypatch.setenv("QC_TEST_TTL", "15")
    config = Config.from_dict({"invalidation": {"dependencies": {"orders": ["${QC_TEST_DEP}"]}},
                               "ttl": {"tables": {"orders": "${QC_TEST_TTL}"}}})
    assert config.invalidation.dependencies == {"orders": ["order_totals"]}
    assert config.ttl.tables == {"orders": 15}


# -- errors and files ---------------------------------------------------------------------------------

def test_config_error_is_querycache_error_and_value_error() -> None:
    assert issubclass(ConfigError, QueryCacheError)
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(ValueError):
        Config.from_dict({"nope": 1})
    with pytest.raises(QueryCacheError):
        Config.from_dict({"nope": 1})


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "l1: {enabled: true\nl2: [\n")
    with pytest.raises(ConfigError) as info:
        Config.from_yaml(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", ["- l1\n- l2\n", "just a string\n", "42\n"])
def test_non_mapping_root_is_a_config_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        Config.from_yaml(write(tmp_path, text))


def test_non_mapping_root_in_from_dict_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="mapping"):
        Config.from_dict(["l1"])  # type: ignore[arg-type]


# -- wrong values of every kind, for the keys the tables above do not cover (issue 9, part 4) ----------

@pytest.mark.parametrize(
    ("data", "path", "accepted"),
    [
        ({"l1": 5}, "l1", "mapping"),
        ({"l1": {"max_entries": None}}, "l1.max_entries", "integer"),
        ({"l1": {"max_entries": "1e3"}}, "l1.max_entries", "integer"),
        ({"l2": {"enabled": "sometimes"}}, "l2.enabled", "true or false"),
        ({"l2": {"backend": None}}, "l2.backend", "'memory', 'redis'"),
        ({"l2": {"backend": "Redis"}}, "l2.backend", "'memory', 'redis'"),
        ({"l2": {"namespace": ""}}, "l2.namespace", "non-empty"),
        ({"l2": {"namespace": "a{b}"}}, "l2.namespace", "braces"),
        ({"l2": {"hmac_secret": ["a"]}}, "l2.hmac_secret", "string"),
        ({"l2": {"timeout_ms": -5}}, "l2.timeout_ms", "greater than 0"),
        ({"l3": {"threshold": float("nan")}}, "l3.threshold", "a finite number"),
        ({"l3": {"threshold": "inf"}}, "l3.threshold", "a finite number"),
        ({"l3": {"all_reads": "perhaps"}}, "l3.all_reads", "true or false"),
        ({"l3": {"model": "  "}}, "l3.model", "minilm"),
        ({"l3": {"warmup": "eager"}}, "l3.warmup", "'background', 'block'"),
        ({"l3": {"max_entries": 0}}, "l3.max_entries", "greater than 0"),
        ({"l3": {"budget_ms": 0}}, "l3.budget_ms", "greater than 0"),
        ({"l3": {"batch_max": -1}}, "l3.batch_max", "greater than 0"),
        ({"l3": {"batch_wait_ms": -1}}, "l3.batch_wait_ms", "0 or greater"),
        ({"l3": {"queue_max": 0}}, "l3.queue_max", "greater than 0"),
        ({"l3": {"hnsw_above": 0}}, "l3.hnsw_above", "greater than 0"),
        ({"l3": {"top_k": 0}}, "l3.top_k", "greater than 0"),
        ({"l3": {"nope": 1}}, "l3.nope", "threshold"),
        ({"ttl": {"swr_s": -1}}, "ttl.swr_s", "0 or greater"),
        ({"ttl": {"swr_tables": {"t": -1}}}, "ttl.swr_tables.t", "0 or greater"),
        ({"ttl": {"swr_tables": ["t"]}}, "ttl.swr_tables", "mapping"),
        ({"ttl": {"tables": {"t": None}}}, "ttl.tables.t", "integer"),
        ({"ttl": {"tables": {"t": 1.5}}}, "ttl.tables.t", "integer"),
        ({"ttl": {"max_s": -1}}, "ttl.max_s", "greater than 0"),
        ({"ttl": {"nope": 1}}, "ttl.nope", "default_s"),
        ({"max_result_rows": 1e20}, "max_result_rows", "integer"),
        ({"max_result_bytes": "lots"}, "max_result_bytes", "integer"),
        ({"invalidation": {"row_level": "maybe"}}, "invalidation.row_level", "true or false"),
        ({"invalidation": {"mode": "STRICT"}}, "invalidation.mode", "'strict', 'bounded'"),
        ({"invalidation": {"dependencies": {"a": {"b": 1}}}}, "invalidation.dependencies.a", "list"),
        ({"invalidation": {"dependencies": ["a"]}}, "invalidation.dependencies", "mapping"),
        ({"invalidation": {"capture": {"dsn": "x", "nope": 1}}}, "invalidation.capture.nope", "dsn"),
        ({"invalidation": {"capture": "postgresql://x"}}, "invalidation.capture", "mapping"),
        ({"coalesce": {"enabled": "often"}}, "coalesce.enabled", "true or false"),
        ({"hints": {"strict": 7}}, "hints.strict", "true or false"),
        ({"stats": {"enabled": "x"}}, "stats.enabled", "true or false"),
        ({"stats": {"publish_interval_s": 0}}, "stats.publish_interval_s", "greater than 0"),
        ({"stats": {"publish_interval_s": "soon"}}, "stats.publish_interval_s", "number"),
        ({"stats": {"nope": 1}}, "stats.nope", "publish_interval_s"),
        ({"scope": {"settings": 5}}, "scope.settings", "list"),
        ({"scope": {"settings": [["a"]]}}, "scope.settings[0]", "string"),
        ({"scope": {"tenant": "a"}}, "scope.tenant", "settings"),
        ({"scope": {"policy_settings": {"docs": ["app tenant"]}}}, "scope.policy_settings.docs", "app.tenant"),
        ({"scope": {"policy_settings": ["docs"]}}, "scope.policy_settings", "mapping"),
    ],
)
def test_every_key_rejects_wrong_values_naming_path_and_accepted(data: dict[str, Any], path: str,
                                                                 accepted: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict(data)
    message = str(info.value)
    assert message.startswith(path + ":"), message
    assert accepted in message, message


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379/0", "not a url", "redis://127.0.0.1:notaport/0"])
def test_bad_redis_url_is_a_config_error_naming_l2_url(url: str) -> None:
    import querycache

    with pytest.raises(ConfigError, match=r"^l2\.url:.*redis://"):
        querycache.QueryCache.from_dict({"l2": {"backend": "redis", "url": url}}).close()


def test_nan_publish_interval_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"stats\.publish_interval_s"):
        Config.from_dict({"stats": {"publish_interval_s": "nan"}})


@pytest.mark.parametrize("text", ["${QC_SECRET", "${1BAD}", "${QC SECRET}"])
def test_malformed_env_reference_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match=r"l2\.hmac_secret"):
        Config.from_dict({"l2": {"hmac_secret": text}})
