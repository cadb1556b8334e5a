"""Every key in the bucket, in one module (the object layout in docs/ARCHITECTURE.md).

Stages build keys only through these functions, so a change of layout is one change here, and readers (the
report, drift, serving) find exactly what writers wrote.
"""

from __future__ import annotations

BRONZE_MARKET = "bronze/market"
BRONZE_NEWS = "bronze/news"
SILVER, GOLD, MODELS, SELECTION, MONITORING, PREDICTIONS, FEAST = (
    "silver",
    "gold",
    "models",
    "selection",
    "monitoring",
    "predictions",
    "feast",
)

# a served model's directory (storageUri): the native file, one of these per format, and the tags beside it
NATIVE_FILES = {"xgboost": ("model.json", "model.ubj", "model.bst"), "lightgbm": ("model.bst", "model.txt")}
MODEL_INFO_FILE = "spx-model.json"  # written by selection beside the native file: what the predictor reports


def bronze_market_prefix(source: str, instrument: str, granularity: str) -> str:
    return f"{BRONZE_MARKET}/{source}/{instrument}/{granularity}/"


def bronze_news_prefix(source: str) -> str:
    return f"{BRONZE_NEWS}/{source}/"


def silver_key(run_id: str, family: str) -> str:
    """``family``: technical | microstructure | volatility | news."""
    return f"{SILVER}/{run_id}/{family}.parquet"


def gold_features_key(run_id: str) -> str:
    return f"{GOLD}/{run_id}/features.parquet"


def gold_manifest_key(run_id: str) -> str:
    return f"{GOLD}/{run_id}/manifest.json"


def news_signals_key(run_id: str) -> str:
    return f"{GOLD}/{run_id}/news_signals.parquet"


def models_prefix(run_id: str, variant: str | None = None) -> str:
    return f"{MODELS}/{run_id}/" + (f"{variant}/" if variant else "")


def model_key(run_id: str, variant: str, name: str) -> str:
    """``name``: metrics.json | oot_predictions.parquet | model.json | model.bst | spx-model.json | …"""
    return f"{models_prefix(run_id, variant)}{name}"


def selection_key(run_id: str) -> str:
    return f"{SELECTION}/{run_id}/best_model_selection.json"


def monitoring_prefix(monitor_run_id: str) -> str:
    return f"{MONITORING}/{monitor_run_id}/"


def monitoring_summary_key(monitor_run_id: str) -> str:
    return f"{monitoring_prefix(monitor_run_id)}summary.json"


def variants_in(keys: list[str], run_id: str) -> list[str]:
    """Variant names of ``run_id`` among listed keys (``models/{run_id}/{variant}/…``)."""
    prefix = models_prefix(run_id)
    return sorted({k[len(prefix) :].split("/", 1)[0] for k in keys if k.startswith(prefix) and k.count("/") >= 3})


def prediction_key(day: str, batch: str) -> str:
    """One parquet batch of the prediction log: ``day`` YYYY-MM-DD (UTC), ``batch`` unique per writer segment."""
    return f"{PREDICTIONS}/date={day}/{batch}.parquet"
