"""Time-ordered splits with the label horizon purged at every train/test boundary.

A label at row t looks ``span = h + 1`` bars ahead (see ``spx.components.gold.labels``). A training
row is kept only if its label window ends strictly before the first test row: train rows are
``[0, test_start - span)``. Walk-forward folds are expanding windows that never train on data after
their test block, so no embargo is needed after a test block (nothing after it is trained on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        if len(self.train) == 0 or len(self.test) == 0:
            raise ValueError("empty train or test split: not enough rows for the horizon/folds")


def oot_split(n: int, oot_frac: float, span: int) -> Split:
    """Development rows and the out-of-time test (last ``oot_frac``), purged by ``span`` rows."""
    if not 0 < oot_frac < 1:
        raise ValueError("oot_frac must be in (0, 1)")
    start = n - max(1, math.ceil(n * oot_frac))
    return Split(train=np.arange(0, max(0, start - span)), test=np.arange(start, n))


@dataclass(frozen=True)
class Blocks:
    """Time-ordered blocks: ``sel_train`` | ``val`` | ``oot``, each boundary purged by the label span.

    Selection compares variants on ``val`` (models fitted on ``sel_train``); the served model is
    refitted on ``final_train`` (= ``sel_train`` + ``val``) and reported on ``oot``, which no
    choice looks at."""

    sel_train: np.ndarray
    val: np.ndarray
    final_train: np.ndarray
    oot: np.ndarray


def validation_split(n: int, oot_frac: float, val_frac: float, span: int) -> Blocks:
    if not 0 < oot_frac < 1 or not 0 < val_frac < 1 or oot_frac + val_frac >= 0.8:
        raise ValueError("oot_frac and val_frac must be in (0, 1) and leave most rows for training")
    oot_start = n - max(1, math.ceil(n * oot_frac))
    val_start = oot_start - max(1, math.ceil(n * val_frac))
    blocks = Blocks(
        sel_train=np.arange(0, max(0, val_start - span)),
        val=np.arange(val_start, max(val_start, oot_start - span)),
        final_train=np.arange(0, max(0, oot_start - span)),
        oot=np.arange(oot_start, n),
    )
    for name in ("sel_train", "val", "oot"):
        if len(getattr(blocks, name)) == 0:
            raise ValueError(f"empty {name} block: not enough rows for the horizon ({n} rows, span {span})")
    return blocks


def walk_forward(n: int, n_folds: int, span: int, min_train_frac: float = 0.3) -> list[Split]:
    """Expanding-window folds over ``n`` development rows, each purged by ``span``."""
    if n_folds < 1:
        raise ValueError("n_folds must be >= 1")
    first_test = int(n * min_train_frac)
    edges = np.linspace(first_test, n, n_folds + 1).astype(int)
    folds = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        folds.append(Split(train=np.arange(0, max(0, lo - span)), test=np.arange(lo, hi)))
    return folds
