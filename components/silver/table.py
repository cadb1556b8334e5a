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
