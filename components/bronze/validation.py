"""Validation of raw market candles before they enter (or leave) bronze."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spx.core.errors import DataValidationError

REQUIRED_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")


def validate_candles(
    df: pd.DataFrame,
    *,
    source: str,
    bar: pd.Timedelta | None = None,
    allowed_gaps: list[tuple[pd.Timestamp, pd.Timestamp]] | None = None,
    max_missing_sessions: int | None = None,
) -> pd.DataFrame:
    """Check candles and return them with normalised dtypes, or raise :class:`DataValidationError`.

    Checks: schema (required columns, numeric prices), UTC timestamps, no duplicates, strictly
    increasing time, finite positive prices, high >= max(open, close, low), low <= min(open, close),
    non-negative volume and, when ``bar`` is given, no hole of more than ``max_missing_sessions`` (default
    :data:`~spx.components.bronze.sessions.MAX_MISSING_SESSIONS`) consecutive exchange sessions without a bar
    (:func:`~spx.components.bronze.sessions.missing_session_runs`: weekends, holidays and real closures are in
    the calendar, so they are no hole) — except a documented data gap (``allowed_gaps``: [from, to) windows a
    dataset declares missing). No bar is invented. Naive time stamps are refused (they are not silently read as
    UTC). ``source`` (an object URI or file name) is named in every message.
    """
    if not isinstance(df, pd.DataFrame) or df.empty:
        raise DataValidationError(f"{source}: no candles (empty or missing data)")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataValidationError(f"{source}: wrong schema, missing columns {missing}; got {list(df.columns)}")
    out = df.copy()
    raw = out["timestamp"]
    if pd.api.types.is_datetime64_any_dtype(raw) and getattr(raw.dt, "tz", None) is None:
        raise DataValidationError(
            f"{source}: naive time stamps (no time zone, e.g. {raw.iloc[0]}); refusing to guess UTC — "
            "give the file UTC stamps or name the zone its clock is in (--market-tz)"
        )
    if raw.dtype == object and len(raw):
        try:
            first = pd.Timestamp(raw.iloc[0])
        except (ValueError, TypeError) as exc:
            raise DataValidationError(f"{source}: unparseable timestamps ({exc})") from exc
        if first.tzinfo is None:
            raise DataValidationError(
                f"{source}: naive time stamps (no time zone, e.g. {raw.iloc[0]!r}); refusing to guess UTC — "
                "give the file UTC stamps or name the zone its clock is in (--market-tz)"
            )
    try:
        ts = pd.to_datetime(out["timestamp"], utc=True)
    except (ValueError, TypeError) as exc:
        raise DataValidationError(f"{source}: unparseable timestamps ({exc})") from exc
    if ts.isna().any():
        raise DataValidationError(f"{source}: {int(ts.isna().sum())} missing timestamps")
    out["timestamp"] = ts.astype("datetime64[ns, UTC]")
    for col in (*PRICE_COLUMNS, "volume", *[c for c in ("bid", "ask") if c in out.columns]):
        if not pd.api.types.is_numeric_dtype(out[col]):
            converted = pd.to_numeric(out[col], errors="coerce")
            bad = converted.isna() & out[col].notna()
            if bad.any():
                raise DataValidationError(
                    f"{source}: column {col!r} is not numeric (first bad value {out[col][bad].iloc[0]!r})"
                )
            out[col] = converted
        out[col] = out[col].astype("float64")

    dup = out["timestamp"].duplicated(keep=False)
    if dup.any():
        first = out.loc[dup, "timestamp"].iloc[0]
        raise DataValidationError(
            f"{source}: {int(out['timestamp'].duplicated().sum())} duplicate timestamps (first at {first})"
        )
    deltas = out["timestamp"].diff().iloc[1:]
    if (deltas <= pd.Timedelta(0)).any():
        pos = int(np.argmax((deltas <= pd.Timedelta(0)).to_numpy())) + 1
        raise DataValidationError(
            f"{source}: timestamps not strictly increasing at row {pos} "
            f"({out['timestamp'].iloc[pos - 1]} -> {out['timestamp'].iloc[pos]})"
        )
    prices = out[list(PRICE_COLUMNS)].to_numpy()
    if not np.isfinite(prices).all():
        n_bad = int((~np.isfinite(prices)).any(axis=1).sum())
        first = out["timestamp"][~np.isfinite(prices).all(axis=1)].iloc[0]
        raise DataValidationError(f"{source}: {n_bad} bars with NaN/inf prices (first at {first})")
    if (prices <= 0).any():
        raise DataValidationError(f"{source}: non-positive prices")
    tol = 1e-9 * out["close"].abs()
    bad_hl = (out["high"] + tol < out[["open", "close", "low"]].max(axis=1)) | (
        out["low"] - tol > out[["open", "close"]].min(axis=1)
    )
    if bad_hl.any():
        raise DataValidationError(
            f"{source}: {int(bad_hl.sum())} bars with high/low inconsistent with open/close "
            f"(first at {out.loc[bad_hl, 'timestamp'].iloc[0]})"
        )
    if not np.isfinite(out["volume"]).all() or (out["volume"] < 0).any():
        raise DataValidationError(f"{source}: volume has NaN/inf or negative values")
    if bar is not None:
        check_missing_sessions(
            out["timestamp"], bar, source=source, allowed_gaps=allowed_gaps, limit=max_missing_sessions
        )
    return out.reset_index(drop=True)


def check_missing_sessions(
    ts: pd.Series,
    bar: pd.Timedelta,
    *,
    source: str,
    allowed_gaps: list[tuple[pd.Timestamp, pd.Timestamp]] | None = None,
    limit: int | None = None,
) -> list[tuple[pd.Timestamp, pd.Timestamp, int]]:
    """Refuse a run of more than ``limit`` consecutive exchange sessions without a bar (outside a documented
    gap); return the shorter runs (accepted, for the caller to report)."""
    from spx.components.bronze.sessions import MAX_MISSING_SESSIONS, missing_session_runs

    limit = MAX_MISSING_SESSIONS if limit is None else limit
    accepted = []
    for first, last, n in missing_session_runs(ts, bar):
        lo, hi = pd.Timestamp(first).tz_localize("UTC"), pd.Timestamp(last).tz_localize("UTC")
        if any(a <= lo and hi < b for a, b in (allowed_gaps or [])):
            continue  # a documented hole in the data (e.g. a month missing from the source)
        if n > limit:
            raise DataValidationError(
                f"{source}: no bar in {n} consecutive exchange sessions, {first.date()} .. {last.date()} "
                f"(the exchange was open; at most {limit} missing sessions in a row are accepted) — "
                "give the file the missing bars, or cut it with --start/--end"
                + ("" if not allowed_gaps else f"; documented gaps {[(str(a), str(b)) for a, b in allowed_gaps]}")
            )
        accepted.append((first, last, n))
    return accepted


def quoted_bars(bars: pd.DataFrame) -> np.ndarray:
    """True on the bars whose quote is whole: bid and ask both finite, positive, ask >= bid."""
    if not {"bid", "ask"} <= set(bars.columns):
        return np.zeros(len(bars), dtype=bool)
    bid, ask = bars["bid"].to_numpy(np.float64), bars["ask"].to_numpy(np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(bid) & np.isfinite(ask) & (bid > 0) & (ask >= bid)
