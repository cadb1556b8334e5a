"""The fixed sets of values options take: one tuple each, read by the stages that act on them and by the CLI.

The CLI turns each into an enum (:func:`enum_of`), so a typo fails before anything starts and lists the valid
values (``--help`` shows them too); the stages check the same tuples, since KFP parameters and the API reach
them without the CLI. Kept free of heavy imports: the CLI builds its enums at start-up.
"""

from __future__ import annotations

from enum import StrEnum

MARKET_SOURCES = ("bundled", "file", "oanda")
DATASET_NAMES = ("spy_m1_2011q1", "spy_m5_2018_2020", "arch")  # components/bronze/datasets.py checks it
TIMESTAMPS = ("auto", "end", "start")
SESSIONS = ("regular", "all")
NEWS_SOURCES = ("file", "gdelt", "rss", "none")  # none: train on market features only
PRECISIONS = ("fp32", "bf16", "int8")
SERVING_MODES = ("serverless", "raw")
MODEL_FORMATS = ("xgboost", "lightgbm")
PIPELINES = ("training", "monitoring")


def enum_of(name: str, values: tuple[str, ...]) -> type[StrEnum]:
    """A ``StrEnum`` whose members are ``values`` (each member's value and str() is the plain string)."""
    return StrEnum(name, [(v, v) for v in values])  # type: ignore[return-value]


# the CLI's option types
MarketSource = enum_of("MarketSource", MARKET_SOURCES)
Dataset = enum_of("Dataset", DATASET_NAMES)
Timestamps = enum_of("Timestamps", TIMESTAMPS)
Session = enum_of("Session", SESSIONS)
NewsSource = enum_of("NewsSource", NEWS_SOURCES)
Precision = enum_of("Precision", PRECISIONS)
ServingMode = enum_of("ServingMode", SERVING_MODES)
ModelFormat = enum_of("ModelFormat", MODEL_FORMATS)
PipelineName = enum_of("PipelineName", PIPELINES)
