"""Reading the prediction log back from the bucket (drift, the live hit rate, the canary loop)."""

from __future__ import annotations

import json
from datetime import date, datetime

import pandas as pd

from spx.components.prediction_log.schema import KEY, OK, TABLE
from spx.core import layout


def _utc(value: datetime | str | None) -> pd.Timestamp | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _day(key: str) -> date | None:
    for part in key.split("/"):
        if part.startswith("date="):
            try:
                return date.fromisoformat(part[5:])
            except ValueError:
                return None
    return None


def read_predictions(
    store,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    prefix: str = layout.PREDICTIONS,
    flatten: bool = True,
    raw: bool = False,
) -> pd.DataFrame:
    """The prediction log between ``start`` and ``end`` (request time, UTC, inclusive), one row per
    ``(request_id, row_index)``.

    ``raw=True`` keeps duplicate rows (what the bucket physically holds), for auditing. ``flatten=True`` adds
    the logged inputs (the instrument and the features the model received) as columns; ``inputs`` is kept."""
    start_ts, end_ts = _utc(start), _utc(end)
    frames = []
    for key in store.list(f"{prefix}/"):
        day = _day(key)
        if not key.endswith(".parquet") or (
            day is not None
            and ((start_ts is not None and day < start_ts.date()) or (end_ts is not None and day > end_ts.date()))
        ):
            continue
        frames.append(store.read_parquet(key))
    if not frames:
        return TABLE.empty_table().to_pandas()
    df = pd.concat(frames, ignore_index=True)
    if start_ts is not None:
        df = df[df["timestamp"] >= start_ts]
    if end_ts is not None:
        df = df[df["timestamp"] <= end_ts]
    if not raw:  # an "ok" row wins over a partial one a former logger may have written for the same key
        rank = (df["status"].astype("string") != OK).fillna(True).astype(int)
        df = df.assign(_rank=rank).sort_values(["_rank", "timestamp"], kind="stable").drop_duplicates(KEY)
        df = df.drop(columns="_rank")
    df = df.sort_values(["timestamp", "request_id", "row_index"], kind="stable").reset_index(drop=True)
    if flatten and len(df):
        feats = pd.json_normalize([json.loads(s) if isinstance(s, str) else {} for s in df["inputs"]])
        feats.index = df.index
        feats = feats.rename(columns={c: f"input_{c}" for c in feats.columns if c in df.columns})
        df = pd.concat([df, feats], axis=1)
    return df
