"""Labels: direction and % return over a horizon of ``h`` bars, starting at the NEXT bar.

A signal computed from bar t's close can only trade at bar t+1, so (as in Qlib's
``Ref($close,-h-1)/Ref($close,-1)-1``) the label of row t is the return from close[t+1] to
close[t+1+h]. The last h+1 rows have no label (NaN). The label of row t therefore depends on
prices up to t+1+h, which is what the purge at every train/test boundary removes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def label_columns(h: int) -> tuple[str, str]:
    return f"y_up_h{h}", f"y_ret_h{h}"


def label_span(h: int) -> int:
    """Bars after t that the label of row t looks at (the purge length)."""
    return h + 1


def make_labels(close: pd.Series, horizons: list[int] | tuple[int, ...]) -> pd.DataFrame:
    out = pd.DataFrame(index=close.index)
    entry = close.shift(-1)
    for h in horizons:
        if h < 1:
            raise ValueError(f"horizon must be >= 1 bar, got {h}")
        up, ret = label_columns(h)
        r = (close.shift(-(h + 1)) / entry - 1.0) * 100.0
        out[ret] = r
        out[up] = np.where(r.isna(), np.nan, (r > 0).astype(float))
    return out
