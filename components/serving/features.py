"""The transformer's online feature lookup: one instrument's latest feature vector from Feast's online store
(the store itself, its definitions and materialization: :mod:`spx.components.feature_store.store`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Sequence

import orjson

from spx.components.feature_store.store import ENTITY, feature_store
from spx.core.errors import SpxError


class FeatureLookupError(SpxError, LookupError):
    """An instrument or feature is missing in the online store (HTTP 404/422 at the edge)."""

    def __init__(self, message: str, status: int = 404):
        super().__init__(message)
        self.status = status


@dataclass
class OnlineFeatures:
    instrument: str
    values: dict[str, float]
    event_time: datetime  # the oldest event timestamp among the features read
    row: list[float] = field(default_factory=list)  # the values in the order of the columns asked for
    values_json: str = ""  # ``values`` as a compact JSON object (the transformer's features_used)


class OnlineFeatureReader:
    """Reads one instrument's latest feature vector from Feast's online store.

    With ``cache_seconds`` > 0 a row read from Feast is reused for that long (per instrument and
    column list): the online store changes only when a materialization writes it, so under load
    Feast is read about once per instrument per ``cache_seconds`` instead of once per request, and a
    newer materialization is served at most ``cache_seconds`` later. Only rows found are cached
    (an unknown instrument or a missing feature is looked up again on the next request). The row
    keeps its event time: the caller's ``as_of`` and maximum-age checks apply to every request."""

    def __init__(self, store=None, cache_seconds: float = 0.0):
        self.store = store or feature_store()
        self.cache_seconds = cache_seconds
        self._refs: dict[tuple[str, ...], list[str]] = {}
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[float, OnlineFeatures]] = {}

    def invalidate(self) -> None:
        """Forget cached rows (the next read of each instrument goes to Feast)."""
        self._cache.clear()

    def refs_for(self, columns: Sequence[str]) -> list[str]:
        key = tuple(columns)
        if key not in self._refs:
            where: dict[str, str] = {}
            for view in self.store.list_feature_views():
                for feat in view.features:
                    where.setdefault(feat.name, view.name)
            missing = [c for c in columns if c not in where]
            if missing:
                raise FeatureLookupError(
                    f"the feature store has no feature view serving {missing[:10]}"
                    f"{' …' if len(missing) > 10 else ''}; materialize the champion's gold run first",
                    status=503,
                )
            self._refs[key] = [f"{where[c]}:{c}" for c in columns]
        return self._refs[key]

    def read(self, instrument: str, columns: Sequence[str]) -> OnlineFeatures:
        if self.cache_seconds <= 0:
            return self._read(instrument, columns)
        key = (instrument, tuple(columns))
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = self._read(instrument, columns)
        if len(self._cache) >= 4096:  # bounded: instruments are few, but names come from requests
            self._cache.clear()
        self._cache[key] = (now + self.cache_seconds, found)
        return found

    def _read(self, instrument: str, columns: Sequence[str]) -> OnlineFeatures:
        refs = self.refs_for(columns)
        result = self.store.get_online_features(features=refs, entity_rows=[{ENTITY: instrument}]).to_dict(
            include_event_timestamps=True
        )
        values: dict[str, float] = {}
        missing: list[str] = []
        stamps: list[int] = []
        for col in columns:
            value = result.get(col, [None])[0]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                missing.append(col)
                continue
            values[col] = float(value)
            ts = result.get(col + "__ts", [0])[0]
            if ts:
                stamps.append(int(ts))
        if len(missing) == len(columns):
            raise FeatureLookupError(f"unknown instrument {instrument!r}: no features in the online store", status=404)
        if missing:
            raise FeatureLookupError(
                f"instrument {instrument!r} lacks features {missing[:10]} in the online store", status=422
            )
        event_time = (
            datetime.fromtimestamp(min(stamps), tz=timezone.utc)
            if stamps
            else datetime.fromtimestamp(0, tz=timezone.utc)
        )
        return OnlineFeatures(
            instrument=instrument,
            values=values,
            event_time=event_time,
            row=[values[c] for c in columns],
            values_json=orjson.dumps(values).decode(),
        )
