"""Synthetic one-minute bars for benchmarks, made from the REAL bundled daily S&P 500.

Daily log returns of the bundled series are bootstrapped (with replacement) and scaled by
sqrt(1/390) to minute size; intrabar ranges and volumes are bootstrapped from the real daily
range/volume in the same way. The bars are therefore synthetic — realistic in scale, not a
market history — and are used for speed/memory figures only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spx.components.bronze.market import load_bundled_daily

NOTE = ("synthetic 1-minute bars: bootstrapped real daily S&P 500 returns/ranges/volumes (arch), "
        "scaled to one minute; speed figures only")


def minute_bars(n: int, seed: int = 0) -> pd.DataFrame:
    daily = load_bundled_daily()
    rng = np.random.default_rng(seed)
    logc = np.log(daily["close"].to_numpy())
    rets = np.diff(logc) / np.sqrt(390.0)
    rng_pct = ((daily["high"] - daily["low"]) / daily["close"]).to_numpy() / np.sqrt(390.0)
    vol = daily["volume"].to_numpy() / 390.0
    r = rng.choice(rets, size=n)
    close = daily["close"].iloc[-1] * np.exp(np.cumsum(r))
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 1e-5, n))
    span = rng.choice(rng_pct, size=n) * close
    frac = rng.uniform(0.2, 0.8, n)
    high = np.maximum(np.maximum(open_, close), np.minimum(open_, close) + span * frac)
    low = np.minimum(np.minimum(open_, close), np.maximum(open_, close) - span * (1 - frac))
    ts = pd.date_range("2019-01-02 14:30", periods=n, freq="min", tz="UTC")
    return pd.DataFrame({"timestamp": ts, "open": open_, "high": high, "low": low, "close": close,
                         "volume": rng.choice(vol, size=n)})
