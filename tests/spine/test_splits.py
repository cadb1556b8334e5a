"""Labels never cross a purged boundary: walk-forward folds and the OOT split."""

import numpy as np
import pytest

from spx.components.gold.labels import label_span
from spx.components.training.splits import oot_split, walk_forward


@pytest.mark.parametrize("h", [1, 5, 30, 60])
@pytest.mark.parametrize("n", [500, 4758, 100_000])
def test_every_training_label_window_ends_before_the_test_block(h, n):
    span = label_span(h)
    oot = oot_split(n, 0.1, span)
    # the label of row t uses closes up to t + 1 + h = t + span
    assert oot.train.max() + span < oot.test.min()
    assert oot.test.max() == n - 1 and len(oot.test) == int(np.ceil(n * 0.1))
    for fold in walk_forward(len(oot.train), 5, span):
        assert fold.train.max() + span < fold.test.min()
        assert fold.test.max() < oot.test.min() - span  # folds live inside the development set
        assert fold.train.min() == 0  # expanding window


def test_folds_are_contiguous_and_ordered():
    folds = walk_forward(1000, 4, 3)
    assert [f.test.min() for f in folds] == sorted(f.test.min() for f in folds)
    covered = np.concatenate([f.test for f in folds])
    assert (np.diff(covered) == 1).all() and covered.max() == 999


def test_too_few_rows_is_a_clear_error():
    with pytest.raises(ValueError, match="not enough rows"):
        oot_split(10, 0.1, 61)
