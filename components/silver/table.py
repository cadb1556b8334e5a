"""Silver feature tables: float32 columns written one at a time into one preallocated block.

Every indicator is computed in float64 (TA-Lib needs float64 input, and rolling sums need the precision);
only the stored value is float32 (7 significant digits, far finer than any feature's noise). The block
becomes the frame's single float32 block, so no pandas intermediate or consolidation copy is made; the
``timestamp`` column is the bars' own (tz-aware) array, never boxed into Python objects.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DTYPE = np.float32


class FeatureTable:
    """``table[name] = values`` stores one column (converted to float32); ``frame()`` returns the table."""

    def __init__(self, bars: pd.DataFrame, names: list[str]):
        self.bars = bars
        self.names = list(names)
        self._pos = {name: i for i, name in enumerate(self.names)}
        self._filled: set[str] = set()
        self.block = np.empty((len(self.names), len(bars)), dtype=DTYPE)

    def __setitem__(self, name: str, values) -> None:
        self.block[self._pos[name]] = values
        self._filled.add(name)

    def frame(self) -> pd.DataFrame:
        missing = [n for n in self.names if n not in self._filled]
        if missing:
            raise RuntimeError(f"feature columns never computed: {missing}")
        out = pd.DataFrame(self.block.T, columns=self.names, index=self.bars.index, copy=False)
        out.insert(0, "timestamp", self.bars["timestamp"].array)
        return out


def lag(x: np.ndarray, k: int = 1) -> np.ndarray:
    """``x`` shifted ``k`` rows later (float64; the first ``k`` rows NaN): the value known ``k`` bars ago."""
    out = np.full(len(x), np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def rolling(x: np.ndarray, window: int):
    """pandas' trailing rolling window over a float64 array (no copy of ``x``)."""
    return pd.Series(x, copy=False).rolling(window)


def sqrt_pos(x: np.ndarray) -> np.ndarray:
    """sqrt of x clipped at 0 (NaN stays NaN)."""
    return np.sqrt(np.where(x < 0.0, 0.0, x))
