"""Metrics, baselines, block-bootstrap confidence intervals and a cost-aware backtest."""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    precision_score,
    recall_score,
)

EPS = 1e-6
BOOT_BATCH_CELLS = 1 << 18  # resamples x rows handled at once by the bootstrap (cache-sized)
# A bootstrap interval needs at least this many blocks of the block length (at the label span, independent
# label windows) in the sample: with fewer, the resamples are a handful of rearrangements of the same few
# windows and the interval says nothing (issue 19: 0.108 with an "interval" of [0.141, 0.308]).
MIN_BOOT_BLOCKS = 10


def auc_score(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC via the rank-sum formula (ties averaged); NaN when y has one class."""
    y = np.asarray(y, dtype=bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    pred = (p > threshold).astype(int)
    return {
        "auc": auc_score(y, p),
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "base_rate": float(y.mean()),
    }


def regression_metrics(y_ret: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    y_ret, pred = np.asarray(y_ret, float), np.asarray(pred, float)
    return {
        "rmse": float(np.sqrt(np.mean((y_ret - pred) ** 2))),
        "mae": float(mean_absolute_error(y_ret, pred)),
        "directional_accuracy": float(np.mean((pred > 0) == (y_ret > 0))),
        "auc": auc_score(y_ret > 0, pred),
    }


def information_coefficients(score: np.ndarray, y_ret: np.ndarray) -> dict[str, float]:
    score, y_ret = np.asarray(score, float), np.asarray(y_ret, float)
    if np.std(score) == 0 or np.std(y_ret) == 0:
        return {"ic": 0.0, "rank_ic": 0.0}
    return {"ic": float(np.corrcoef(score, y_ret)[0, 1]), "rank_ic": float(stats.spearmanr(score, y_ret).statistic)}


def majority_baseline(y_train: np.ndarray, y_test: np.ndarray) -> dict[str, float]:
    """Always predict the training set's majority class, with its base rate as probability."""
    rate = float(np.mean(y_train))
    return classification_metrics(y_test, np.full(len(y_test), rate))


def momentum_baseline(
    y_train: np.ndarray, last_ret_train: np.ndarray, y_test: np.ndarray, last_ret_test: np.ndarray
) -> dict[str, float]:
    """Predict the sign of the last return; probability = training P(up | sign of last return)."""
    up_tr = np.asarray(last_ret_train) > 0
    p_up = float(np.mean(np.asarray(y_train)[up_tr])) if up_tr.any() else 0.5
    p_dn = float(np.mean(np.asarray(y_train)[~up_tr])) if (~up_tr).any() else 0.5
    # orient so that "up" means the sign rule's up call (p > 0.5 when the last return was up)
    hi, lo = max(p_up, 0.5 + EPS), min(p_dn, 0.5 - EPS)
    p = np.where(np.asarray(last_ret_test) > 0, hi, lo)
    return classification_metrics(y_test, p)


def _block_starts(rng: np.random.Generator, n: int, block: int, n_boot: int) -> np.ndarray:
    """The circular-block start rows of ``n_boot`` resamples (any row may start a block; a block running past
    the last row wraps to the first), drawn one resample after another so the same seed gives the same
    resamples."""
    n_blocks = int(np.ceil(n / block))
    return np.stack([rng.integers(0, n, size=n_blocks) for _ in range(n_boot)])


def _block_multiplicities(starts: np.ndarray, n: int, block: int) -> np.ndarray:
    """How many times each row is drawn by each resample (rows = resamples): blocks ``[s, s + block)`` taken
    modulo ``n`` (circular), concatenated and cut to ``n`` rows (the last block keeps only its first
    ``n - (k - 1) * block`` rows). Counted without materialising the resampled indices: on the circle unrolled
    to ``2n`` positions, a position ``i`` is covered by every full block starting in ``(i - block, i]`` (a
    difference of the cumulative start counts); the two laps are then folded onto the ``n`` rows."""
    b, k = starts.shape
    width = 2 * n
    offset = (np.arange(b, dtype=np.int64) * width)[:, None]
    counts = np.bincount((starts[:, :-1] + offset).ravel(), minlength=b * width).reshape(b, width)
    cum = np.cumsum(counts, axis=1, dtype=np.int32)
    w = cum.copy()
    w[:, block:] -= cum[:, :-block]
    last = n - (k - 1) * block
    for row, s in zip(w, starts[:, -1]):
        row[s : s + last] += 1
    return w[:, :n] + w[:, n:]


class _TiedRanks:
    """AUC of weighted resamples of one (y, score) sample, exact: the Mann-Whitney statistic with ties
    counted one half — what the rank-sum formula with averaged ranks (:func:`auc_score`) gives on the
    resampled rows. The scores are sorted once; a resample is then only its row multiplicities ``w``.

    With ``C`` the cumulative negative weight in score order, a positive row in a tie group spanning
    sorted positions ``[lo, hi]`` beats ``C[lo - 1]`` negatives and ties with ``C[hi] - C[lo - 1]``, so
    it contributes ``w * (C[lo - 1] + C[hi]) / 2``."""

    def __init__(self, y: np.ndarray, score: np.ndarray) -> None:
        self.order = np.argsort(score, kind="stable")
        s = np.asarray(score)[self.order]
        pos = np.asarray(y, dtype=bool)[self.order]
        n = len(s)
        first = np.r_[True, s[1:] != s[:-1]] if n else np.array([], dtype=bool)
        group = np.cumsum(first) - 1
        starts = np.flatnonzero(first)
        ends = np.r_[starts[1:], n] - 1
        self.neg = (~pos).astype(np.float64)
        self.pos_at = np.flatnonzero(pos)  # sorted positions of the positives
        # indices into C padded with a leading 0: C[lo - 1] -> lo, C[hi] -> hi + 1
        self.lo = starts[group[self.pos_at]]
        self.hi = ends[group[self.pos_at]] + 1

    def aucs(self, weights: np.ndarray) -> np.ndarray:
        """AUC per row of ``weights`` (resamples x rows, in the original row order); NaN for one class."""
        w = np.take(weights, self.order, axis=1)
        c = np.zeros((w.shape[0], w.shape[1] + 1))
        np.cumsum(w * self.neg, axis=1, out=c[:, 1:])
        wp = w[:, self.pos_at].astype(np.float64)
        num = 0.5 * (np.einsum("ij,ij->i", wp, c[:, self.lo]) + np.einsum("ij,ij->i", wp, c[:, self.hi]))
        n_pos, n_neg = wp.sum(axis=1), c[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = num / (n_pos * n_neg)
        out[(n_pos == 0) | (n_neg == 0)] = np.nan
        return out


def block_bootstrap_aucs(
    y: np.ndarray, score: np.ndarray, *, block: int, n_boot: int = 500, seed: int = 0
) -> np.ndarray:
    """AUCs of ``n_boot`` circular-block bootstrap resamples (Politis & Romano 1992; blocks keep the overlap of
    h-bar labels).

    Each resample concatenates ``ceil(n / block)`` blocks of ``block`` consecutive rows (wrapping from the last
    row to the first), starting at uniformly drawn rows, cut to ``n`` rows; resamples with one class are
    dropped. Unlike the moving-block scheme, every row is drawn equally often on average: the first and last
    rows of a short block are not under-weighted, so the resamples centre on the sample's own AUC. The AUC of a
    resample is computed exactly from how many times it draws each row (see :class:`_TiedRanks`),
    in batches of resamples, instead of ranking every resample anew."""
    y, score = np.asarray(y), np.asarray(score)
    n = len(y)
    if n == 0 or n_boot <= 0:
        return np.array([])
    block = max(1, min(block, n))
    starts = _block_starts(np.random.default_rng(seed), n, block, n_boot)
    ranks = _TiedRanks(y, score)
    batch = max(1, BOOT_BATCH_CELLS // n)
    aucs = np.concatenate(
        [ranks.aucs(_block_multiplicities(starts[i : i + batch], n, block)) for i in range(0, n_boot, batch)]
    )
    return aucs[~np.isnan(aucs)]


def bonferroni_interval(aucs, k: int, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile interval at level 1 - alpha/k (Bonferroni for k candidates compared at once)."""
    aucs = np.asarray(aucs, dtype=float)
    if not len(aucs):
        return float("nan"), float("nan")
    a = alpha / max(1, int(k))
    lo, hi = np.quantile(aucs, [a / 2, 1 - a / 2])
    return float(lo), float(hi)


def block_bootstrap_ci(
    y: np.ndarray, score: np.ndarray, *, block: int, n_boot: int = 500, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Circular-block bootstrap percentile CI for AUC (blocks keep the overlap of h-bar labels)."""
    return bonferroni_interval(block_bootstrap_aucs(y, score, block=block, n_boot=n_boot, seed=seed), 1, alpha)


def too_short_for_bootstrap(n: int, block: int) -> str:
    """Why a sample of ``n`` rows is too short for intervals with ``block``-row blocks ("" when it is not)."""
    if n < MIN_BOOT_BLOCKS * block:
        return (
            f"{n} rows are fewer than {MIN_BOOT_BLOCKS} blocks of {block} rows (independent label windows): "
            "too short for an interval"
        )
    return ""


def auc_interval(
    y: np.ndarray, score: np.ndarray, *, block: int, n_boot: int = 500, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, np.ndarray, str]:
    """The AUC's bootstrap interval ``(low, high)``, the resampled AUCs, and a note — or NaNs, no resamples and
    the reason the interval is not given: the sample is too short for the block length
    (:func:`too_short_for_bootstrap`), or the percentile interval does not contain the sample's own AUC (the
    resamples are off-centre: an interval that excludes its estimate is not printed)."""
    n = len(y)
    nan = float("nan")
    short = too_short_for_bootstrap(n, block)
    if short:
        return nan, nan, np.array([]), short
    aucs = block_bootstrap_aucs(y, score, block=block, n_boot=n_boot, seed=seed)
    lo, hi = bonferroni_interval(aucs, 1, alpha)
    point = auc_score(y, score)
    if not (np.isfinite(lo) and np.isfinite(point)):
        return nan, nan, np.array([]), "no interval: the block holds one class only"
    if not lo <= point <= hi:
        return (
            nan,
            nan,
            np.array([]),
            (
                f"no interval: the bootstrap percentiles [{lo:.3f}, {hi:.3f}] exclude the block's own AUC {point:.3f} "
                "(resamples off-centre)"
            ),
        )
    return lo, hi, aucs, ""


def long_flat_trades(
    prob: np.ndarray,
    y_ret: np.ndarray,
    *,
    horizon: int,
    cost_bps: float = 1.0,
    threshold: float = 0.5,
    returns_in_percent: bool = True,
) -> dict[str, np.ndarray]:
    """Long/flat on non-overlapping h-bar trades: enter at the next bar when p > threshold.

    ``y_ret`` is the label return (next bar to h bars later). Every h-th row is a trade decision,
    so holdings never overlap; each position change pays ``cost_bps``. Returns the per-trade arrays:
    ``idx`` (rows traded), ``ret`` (asset return), ``pos``, ``turnover`` and ``strat`` (net return).
    """
    p, r = np.asarray(prob, float), np.asarray(y_ret, float)
    if len(p) != len(r):
        raise ValueError(f"prob has {len(p)} values, returns {len(r)}")
    idx = np.arange(0, len(p), max(1, int(horizon)))
    r = np.nan_to_num(r[idx] / (100.0 if returns_in_percent else 1.0))
    pos = (p[idx] > threshold).astype(float)
    turnover = np.abs(np.diff(np.concatenate([[0.0], pos])))
    return {"idx": idx, "ret": r, "pos": pos, "turnover": turnover, "strat": pos * r - turnover * cost_bps / 1e4}


def max_drawdown(equity: np.ndarray) -> float:
    return float((equity / np.maximum.accumulate(equity) - 1).min()) if len(equity) else 0.0


def backtest_long_flat(
    prob: np.ndarray,
    y_ret_pct: np.ndarray,
    *,
    horizon: int,
    periods_per_year: float,
    cost_bps: float = 1.0,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Summary of :func:`long_flat_trades` (returns in %) beside buy-and-hold over the same rows."""
    t = long_flat_trades(prob, y_ret_pct, horizon=horizon, cost_bps=cost_bps, threshold=threshold)
    ann = periods_per_year / max(1, horizon)

    def summary(x: np.ndarray) -> tuple[float, float, float]:
        equity = np.cumprod(1 + x)
        sharpe = float(np.mean(x) / np.std(x) * np.sqrt(ann)) if len(x) and np.std(x) > 0 else 0.0
        return (float(equity[-1] - 1) if len(x) else 0.0), sharpe, max_drawdown(equity)

    tot, sharpe, mdd = summary(t["strat"])
    bh_tot, bh_sharpe, bh_mdd = summary(t["ret"])
    return {
        "bt_total_return": tot,
        "bt_sharpe": sharpe,
        "bt_max_drawdown": mdd,
        "bt_turnover": float(t["turnover"].mean()),
        "bt_exposure": float(t["pos"].mean()),
        "bt_trades": float(len(t["idx"])),
        "bh_total_return": bh_tot,
        "bh_sharpe": bh_sharpe,
        "bh_max_drawdown": bh_mdd,
    }
