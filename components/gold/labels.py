"""Labels: direction and % return over a horizon of ``h`` bars, starting at the NEXT bar.

A signal computed from bar t's close can only trade at bar t+1, so (as in Qlib's
``Ref($close,-h-1)/Ref($close,-1)-1``) the label of row t is the return from close[t+1] to
close[t+1+h]. The last h+1 rows have no label (NaN). The label of row t therefore depends on
prices up to t+1+h, which is what the purge at every train/test boundary removes.

Intraday, with sessions (``session`` = session number per bar): a label window never crosses the
session close — row t is labelled only when bar t+1+h is in the same session as bar t, so the last
h+1 bars of every session have no label (a 15:50 one-minute bar has no 30-minute label).
``cross_close=True`` lets the window run into the next session (the overnight move included).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def label_columns(h: int) -> tuple[str, str]:
    return f"y_up_h{h}", f"y_ret_h{h}"


def label_span(h: int) -> int:
    """Bars after t that the label of row t looks at (the purge length)."""
    return h + 1


def make_labels(
    close: pd.Series,
    horizons: list[int] | tuple[int, ...],
    *,
    session: np.ndarray | None = None,
    cross_close: bool = False,
) -> pd.DataFrame:
    c = close.to_numpy(np.float64)
    n = len(c)
    sess = None if session is None or cross_close else np.asarray(session)
    out: dict[str, np.ndarray] = {}
    for h in horizons:
        if h < 1:
            raise ValueError(f"horizon must be >= 1 bar, got {h}")
        up, ret = label_columns(h)
        r = np.full(n, np.nan)
        if n > h + 1:
            # row t: close[t+1] -> close[t+1+h]
            r[: n - h - 1] = (c[h + 1 :] / c[1 : n - h] - 1.0) * 100.0
            if sess is not None:
                r[: n - h - 1][sess[h + 1 :] != sess[: n - h - 1]] = np.nan
        out[ret] = r
        up_values = (r > 0).astype(float)
        up_values[np.isnan(r)] = np.nan
        out[up] = up_values
    return pd.DataFrame(out, index=close.index)
