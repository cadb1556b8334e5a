"""The Feast feature store: definitions built from the gold manifest, apply and materialize (the pipeline's
``feast_materialize`` step, ``spx serve``); the transformer reads the online store through
:func:`feature_store` (``spx.components.serving.features``).

* Entity ``instrument`` (join key ``instrument``, a string such as ``SPX500_USD``).
* Feature view ``market_features``: the gold table's market columns (``base_feature_columns``).
* Feature view ``news_features``: the ``news_*`` columns, only when the manifest lists any.
* Offline source: the gold parquet itself in the object store (``s3://…``), read with the S3
  endpoint override taken from the environment (``SPX_S3_ENDPOINT``), so the same definitions
  work against SeaweedFS on loopback and MinIO/SeaweedFS in the cluster.
* Online store: SQLite in a local directory (default) or Redis in the cluster, chosen by
  ``SPX_FEAST_ONLINE_STORE`` (``sqlite`` | ``redis``); see :func:`repo_config`. The two
  ``feature_store*.yaml`` files in ``feature_repo/`` are the same configuration for the Feast CLI.

Labels (``y_up_h*``, ``y_ret_h*``) live in the same parquet but are never part of a feature view:
they look into the future and must never reach a model at serving time.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Sequence

from spx.core.settings import export_library_env, settings

log = logging.getLogger(__name__)

PROJECT = "spx"
ENTITY = "instrument"
MARKET_VIEW = "market_features"
NEWS_VIEW = "news_features"
TIMESTAMP_FIELD = "timestamp"
DEFAULT_TTL = timedelta(days=7)


def feast_home() -> Path:
    """Local directory for the SQLite online store and the file registry (``SPX_FEAST_HOME``)."""
    return settings().feast_home


def repo_config(online_store: str | None = None, home: Path | None = None):
    """The Feast RepoConfig for this environment.

    ``SPX_FEAST_ONLINE_STORE`` = ``sqlite`` (default, ``$SPX_FEAST_HOME/online.db``) or ``redis``
    (``SPX_FEAST_REDIS`` connection string, default ``redis:6379``). The registry is a file:
    ``SPX_FEAST_REGISTRY`` (a local path or ``s3://bucket/key``; default
    ``$SPX_FEAST_HOME/registry.db``). In the cluster the registry lives in the object store so the
    materialize step and the transformer pods share it.
    """
    from feast.repo_config import RepoConfig

    cfg = settings()
    kind = (online_store or cfg.feast.online_store).lower()
    home = Path(home) if home is not None else feast_home()
    registry = cfg.feast.registry or str(home / "registry.db")
    if not registry.startswith("s3://"):
        Path(registry).parent.mkdir(parents=True, exist_ok=True)
    else:
        export_library_env(cfg)  # Feast's S3 registry store reads FEAST_S3_ENDPOINT_URL and the AWS variables
    if kind == "sqlite":
        home.mkdir(parents=True, exist_ok=True)
        online: dict[str, Any] = {"type": "sqlite", "path": str(home / "online.db")}
    elif kind == "redis":
        online = {"type": "redis", "connection_string": cfg.feast.redis}
    else:
        raise ValueError(f"SPX_FEAST_ONLINE_STORE must be sqlite or redis, not {kind!r}")
    return RepoConfig(
        project=PROJECT,
        provider="local",
        registry={"registry_type": "file", "path": registry, "cache_ttl_seconds": 60},
        online_store=online,
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        repo_path=home if not registry.startswith("s3://") else None,
    )


def feature_store(online_store: str | None = None, home: Path | None = None):
    from feast import FeatureStore

    return FeatureStore(config=repo_config(online_store, home))


@dataclass
class FeatureDefinitions:
    entity: Any
    views: list[Any]
    feature_columns: list[str]
    market_columns: list[str]
    news_columns: list[str] = field(default_factory=list)

    @property
    def objects(self) -> list[Any]:
        return [self.entity, *self.views]

    def refs(self, columns: Sequence[str] | None = None) -> list[str]:
        """Feast feature references (``view:feature``) for the given columns (default: all)."""
        columns = list(columns) if columns is not None else self.feature_columns
        news = set(self.news_columns)
        return [f"{NEWS_VIEW if c in news else MARKET_VIEW}:{c}" for c in columns]


def split_columns(manifest: dict) -> tuple[list[str], list[str]]:
    """(market columns, news columns) from a gold manifest."""
    feature_columns = list(manifest["feature_columns"])
    news = [c for c in (manifest.get("news_feature_columns") or []) if c in feature_columns]
    news += [c for c in feature_columns if c.startswith("news_") and c not in news]
    market = [c for c in feature_columns if c not in set(news)]
    return market, news


def definitions(
    manifest: dict, gold_uri: str, s3_endpoint: str | None = None, ttl: timedelta = DEFAULT_TTL
) -> FeatureDefinitions:
    """Feast objects over the gold parquet at ``gold_uri`` (an ``s3://`` URI or a local path)."""
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64

    market, news = split_columns(manifest)
    if not market and not news:
        raise ValueError("gold manifest lists no feature_columns")
    endpoint = (
        s3_endpoint if s3_endpoint is not None else (settings().s3.endpoint_url if gold_uri.startswith("s3://") else "")
    )
    source = FileSource(
        name="gold_features",
        path=gold_uri,
        timestamp_field=TIMESTAMP_FIELD,
        s3_endpoint_override=endpoint or None,
        description="gold feature table (one row per instrument and bar close)",
    )
    entity = Entity(
        name=ENTITY, join_keys=[ENTITY], value_type=ValueType.STRING, description="traded instrument, e.g. SPX500_USD"
    )
    views = [
        FeatureView(
            name=name,
            entities=[entity],
            ttl=ttl,
            online=True,
            schema=[Field(name=c, dtype=Float64) for c in columns],
            source=source,
            tags={"owner": "spx", "kind": kind},
        )
        for name, kind, columns in ((MARKET_VIEW, "market", market), (NEWS_VIEW, "news", news))
        if columns
    ]
    return FeatureDefinitions(
        entity=entity, views=views, feature_columns=market + news, market_columns=market, news_columns=news
    )


def apply_and_materialize(gold_uri: str, manifest: dict, *, store=None, lookback: timedelta = DEFAULT_TTL) -> dict:
    """``feast apply`` the definitions for this gold table, then materialize its newest rows.

    The window ends just after the newest bar in the table and starts ``lookback`` before it, so
    the online store ends up with each instrument's latest row (Feast keeps the newest event per
    entity). Returns a summary (window, views, instruments, newest timestamp per instrument).
    """
    from spx.core.storage import ObjectStore

    export_library_env()  # s3fs (Feast's file offline store, via dask) reads the AWS variables itself
    store = store or feature_store()
    defs = definitions(manifest, gold_uri)
    # the newest bar per instrument, read once from the same parquet Feast will read
    if gold_uri.startswith("s3://"):
        frame = ObjectStore().read_parquet(gold_uri, columns=[TIMESTAMP_FIELD, ENTITY])
    else:
        import pandas as pd

        frame = pd.read_parquet(gold_uri, columns=[TIMESTAMP_FIELD, ENTITY])
    if frame.empty:
        raise ValueError(f"gold table {gold_uri} has no rows")
    newest = frame.groupby(ENTITY)[TIMESTAMP_FIELD].max()
    end = newest.max().to_pydatetime() + timedelta(seconds=1)
    start = end - lookback
    store.apply(defs.objects)
    store.materialize(start_date=start, end_date=end, feature_views=[v.name for v in defs.views])
    summary = {
        "gold_uri": gold_uri,
        "feature_views": [v.name for v in defs.views],
        "feature_columns": defs.feature_columns,
        "news_feature_columns": defs.news_columns,
        "window": [start.isoformat(), end.isoformat()],
        "instruments": {k: v.isoformat() for k, v in newest.items()},
        "online_store": store.config.online_store.type,
    }
    log.info("materialized %s for %d instrument(s) up to %s", summary["feature_views"], len(newest), end.isoformat())
    return summary


def materialize_logic(gold_uri: str, manifest_uri: str, run_id: str) -> str:
    """Logic of the KFP ``feast_materialize`` component; returns the summary as JSON."""
    from spx.core.storage import ObjectStore

    manifest = ObjectStore().get_json(manifest_uri)
    summary = apply_and_materialize(gold_uri, manifest)
    summary["run_id"] = run_id
    return json.dumps(summary, sort_keys=True)
