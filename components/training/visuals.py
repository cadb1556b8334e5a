"""Pictures for the KFP UI (and ``spx report``): pure functions, no I/O.

* :func:`roc_and_confusion` -> lists ready for ``ClassificationMetrics.log_roc_curve`` /
  ``log_confusion_matrix``;
* :func:`training_report_html` -> one self-contained HTML page (plots are base64 PNGs, no scripts,
  no network): feature importance (top 20), ROC, calibration (reliability) plot, and the OOT equity
  curve of a long/flat strategy with costs next to buy-and-hold;
* :func:`training_report_markdown` -> the same numbers as Markdown (KFP ``Markdown`` artifact).

The backtest matches the training metrics: a trade decision every ``horizon`` bars (holdings never
overlap), long when ``p > threshold`` else flat, ``cost_bps`` paid on every position change;
``returns`` are the label returns in percent (``y_ret_h{h}``) unless ``returns_in_percent=False``.
"""

from __future__ import annotations

import base64
import html
import io
import re
from typing import Mapping, Sequence

import numpy as np

from spx.components.training.metrics import long_flat_trades, max_drawdown


def _arr(x) -> np.ndarray:
    return np.asarray(x, dtype=float).reshape(-1)


def roc_and_confusion(y_true, y_prob, threshold: float = 0.5) -> dict:
    """ROC points and the 2x2 confusion matrix (rows = actual [down, up], cols = predicted)."""
    from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

    y = _arr(y_true).astype(int)
    p = _arr(y_prob)
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} values, y_prob {len(p)}")
    if len(np.unique(y)) < 2:
        raise ValueError("ROC needs both classes in y_true")
    fpr, tpr, thr = roc_curve(y, p)
    thr = np.where(np.isfinite(thr), thr, 1.0)  # sklearn's first threshold is +inf
    cm = confusion_matrix(y, (p > threshold).astype(int), labels=[0, 1])
    return {
        "fpr": fpr.tolist(),
        "tpr": tpr.tolist(),
        "thresholds": np.clip(thr, 0.0, 1.0).tolist(),
        "confusion_matrix": cm.astype(int).tolist(),
        "labels": ["down", "up"],
        "auc": float(roc_auc_score(y, p)),
        "threshold": threshold,
    }


def calibration_table(y_true, y_prob, bins: int = 10) -> list[dict]:
    """Equal-width probability bins: mean predicted vs observed frequency, and counts."""
    y, p = _arr(y_true), _arr(y_prob)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append(
                {
                    "bin_low": float(edges[b]),
                    "bin_high": float(edges[b + 1]),
                    "n": int(m.sum()),
                    "mean_predicted": float(p[m].mean()),
                    "observed": float(y[m].mean()),
                }
            )
    return out


def long_flat_backtest(
    y_prob, returns, *, horizon: int = 1, cost_bps: float = 1.0, threshold: float = 0.5, returns_in_percent: bool = True
) -> dict:
    """Equity curves (strategy, buy & hold) and summary numbers over non-overlapping trades."""
    t = long_flat_trades(
        _arr(y_prob),
        _arr(returns),
        horizon=horizon,
        cost_bps=cost_bps,
        threshold=threshold,
        returns_in_percent=returns_in_percent,
    )
    eq_s, eq_b = np.cumprod(1 + t["strat"]), np.cumprod(1 + t["ret"])
    n = len(t["idx"])
    return {
        "index": t["idx"].tolist(),
        "strategy": eq_s.tolist(),
        "buy_and_hold": eq_b.tolist(),
        "strategy_return": float(eq_s[-1] - 1) if n else 0.0,
        "buy_and_hold_return": float(eq_b[-1] - 1) if n else 0.0,
        "strategy_max_drawdown": max_drawdown(eq_s),
        "buy_and_hold_max_drawdown": max_drawdown(eq_b),
        "exposure": float(t["pos"].mean()) if n else 0.0,
        "turnover": float(t["turnover"].mean()) if n else 0.0,
        "trades": int(n),
        "costs_paid": float(t["turnover"].sum() * cost_bps / 1e4),
    }


def _summary(y_true, y_prob, returns, cost_bps, horizon, threshold, returns_in_percent) -> dict:
    from sklearn.metrics import brier_score_loss, roc_auc_score

    y, p = _arr(y_true).astype(int), _arr(y_prob)
    up = float(y.mean()) if len(y) else float("nan")
    s = {
        "n": int(len(y)),
        "auc": float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan"),
        "accuracy": float(((p > threshold).astype(int) == y).mean()) if len(y) else float("nan"),
        "majority_baseline_accuracy": max(up, 1 - up),
        "up_rate": up,
        "brier": float(brier_score_loss(y, np.clip(p, 0, 1))) if len(y) else float("nan"),
        "brier_climatology": up * (1 - up),
    }
    s.update(
        {
            f"bt_{k}": v
            for k, v in long_flat_backtest(
                p,
                returns,
                horizon=horizon,
                cost_bps=cost_bps,
                threshold=threshold,
                returns_in_percent=returns_in_percent,
            ).items()
            if not isinstance(v, list)
        }
    )
    return s


# -- plots ---------------------------------------------------------------------------------------


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def training_figures(
    y_true,
    y_prob,
    returns,
    importance: Mapping[str, float] | None,
    cost_bps: float = 1.0,
    horizon: int = 1,
    threshold: float = 0.5,
    returns_in_percent: bool = True,
    timestamps: Sequence | None = None,
) -> dict[str, str]:
    """The report's four pictures as base64 PNGs: ``importance``, ``roc``, ``calibration``, ``equity``.

    Drawn once per variant; the HTML report, MLflow (``figures/*.png``) and the KFP HTML output all use
    these bytes."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figs: dict[str, str] = {}
    top = sorted(((str(k), float(v)) for k, v in (importance or {}).items()), key=lambda kv: -abs(kv[1]))[:20]
    if top:
        fig, ax = plt.subplots(figsize=(7, 0.3 * len(top) + 1.2))
        names, vals = zip(*reversed(top))
        ax.barh(names, vals, color="#3b6ea8")
        ax.set_title(f"Feature importance (top {len(top)})")
        ax.set_xlabel("importance")
        figs["importance"] = _png(fig)

    y, p = _arr(y_true).astype(int), _arr(y_prob)
    if len(np.unique(y)) == 2:
        rc = roc_and_confusion(y, p, threshold)
        fig, ax = plt.subplots(figsize=(4.8, 4.5))
        ax.plot(rc["fpr"], rc["tpr"], color="#3b6ea8", label=f"model (AUC {rc['auc']:.3f})")
        ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title("ROC (out-of-time)")
        ax.legend(loc="lower right")
        figs["roc"] = _png(fig)

    cal = calibration_table(y, p)
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(4.8, 5.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    ax.plot([c["mean_predicted"] for c in cal], [c["observed"] for c in cal], "o-", color="#c0504d", label="model")
    ax.axhline(float(y.mean()), color="#999", lw=0.8, label="base rate")
    ax.set_ylabel("observed frequency of up")
    ax.set_title("Calibration (out-of-time)")
    ax.legend(loc="upper left", fontsize=8)
    axh.hist(p, bins=20, range=(0, 1), color="#c0504d", alpha=0.7)
    axh.set_xlabel("predicted probability of up")
    axh.set_ylabel("count")
    figs["calibration"] = _png(fig)

    bt = long_flat_backtest(
        p, returns, horizon=horizon, cost_bps=cost_bps, threshold=threshold, returns_in_percent=returns_in_percent
    )
    fig, ax = plt.subplots(figsize=(8, 4))
    x = (
        np.asarray(timestamps)[bt["index"]]
        if timestamps is not None and len(timestamps) == len(p)
        else np.arange(len(bt["strategy"]))
    )
    ax.plot(
        x, bt["strategy"], color="#3b6ea8", label=f"long/flat, {cost_bps:g} bp costs ({bt['strategy_return']:+.2%})"
    )
    ax.plot(x, bt["buy_and_hold"], color="#888", label=f"buy & hold ({bt['buy_and_hold_return']:+.2%})")
    ax.axhline(1.0, color="#ccc", lw=0.8)
    ax.set_title(f"Out-of-time equity curve (trade every {horizon} bar{'s' if horizon != 1 else ''})")
    ax.set_ylabel("equity (start = 1)")
    ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    figs["equity"] = _png(fig)
    return figs


def training_report_html(
    y_true,
    y_prob,
    returns,
    importance: Mapping[str, float] | None,
    cost_bps: float = 1.0,
    title: str = "training report",
    *,
    horizon: int = 1,
    threshold: float = 0.5,
    returns_in_percent: bool = True,
    timestamps: Sequence | None = None,
    figures: Mapping[str, str] | None = None,
    metrics: Mapping[str, float] | None = None,
    verdict: Mapping[str, object] | None = None,
) -> str:
    """A self-contained HTML page (no scripts, no network) with the plots and a numbers table.

    ``figures``: the pictures of :func:`training_figures` when already drawn. ``metrics``: the variant's
    training metrics (``val_auc``, ``val_auc_ci_*``, ``oot_auc_ci_*``, ``baseline_*``…): the page then states
    the validation and out-of-time intervals beside the baselines. ``verdict``: for a selected model, the
    selection's verdict (``verdict``, ``val_auc_ci_bonferroni``, ``bonferroni_k``, ``verdict_detail``…), shown
    first; without it the page says the verdict is selection's (it compares the candidates)."""
    s = _summary(y_true, y_prob, returns, cost_bps, horizon, threshold, returns_in_percent)
    figs = (
        dict(figures)
        if figures is not None
        else training_figures(
            y_true, y_prob, returns, importance, cost_bps, horizon, threshold, returns_in_percent, timestamps
        )
    )
    rc = roc_and_confusion(y_true, y_prob, threshold) if len(np.unique(_arr(y_true))) == 2 else None
    esc = html.escape
    rows = [
        ("OOT rows", f"{s['n']}"),
        ("AUC", f"{s['auc']:.4f}"),
        (f"accuracy at p>{threshold:g}", f"{s['accuracy']:.4f}"),
        ("majority-class baseline accuracy", f"{s['majority_baseline_accuracy']:.4f}"),
        ("Brier score (climatology baseline)", f"{s['brier']:.4f} ({s['brier_climatology']:.4f})"),
        ("long/flat return (costs incl.)", f"{s['bt_strategy_return']:+.2%}"),
        ("buy & hold return", f"{s['bt_buy_and_hold_return']:+.2%}"),
        ("long/flat max drawdown", f"{s['bt_strategy_max_drawdown']:.2%}"),
        ("buy & hold max drawdown", f"{s['bt_buy_and_hold_max_drawdown']:.2%}"),
        ("exposure / turnover per trade", f"{s['bt_exposure']:.2f} / {s['bt_turnover']:.2f}"),
        ("trades (non-overlapping)", f"{s['bt_trades']}"),
        ("cost per position change", f"{cost_bps:g} bp"),
    ]
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    cm = ""
    if rc is not None:
        (tn, fp), (fn, tp) = rc["confusion_matrix"]
        cm = (
            "<h2>Confusion matrix</h2><table class='cm'><tr><th></th><th>pred down</th><th>pred up</th></tr>"
            f"<tr><th>actual down</th><td>{tn}</td><td>{fp}</td></tr>"
            f"<tr><th>actual up</th><td>{fn}</td><td>{tp}</td></tr></table>"
        )
    captions = {
        "importance": "Feature importance",
        "roc": "ROC curve",
        "calibration": "Calibration",
        "equity": "Equity curve",
    }
    imgs = "".join(
        f"<figure id='fig-{k}'><img alt='{esc(captions[k])}' src='data:image/png;base64,{v}'/>"
        f"<figcaption>{esc(captions[k])}</figcaption></figure>"
        for k, v in figs.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body{{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:70em;color:#222}}
table{{border-collapse:collapse;margin:.5em 0}} th,td{{border:1px solid #ddd;padding:.25em .6em;text-align:left}}
figure{{display:inline-block;margin:.5em;vertical-align:top}} img{{max-width:100%}}
.note{{color:#555;font-size:.9em}}
.verdict{{border:2px solid #999;padding:.4em .8em;margin:.8em 0;border-radius:4px}}
.verdict.edge{{border-color:#2e7d32;background:#eef7ee}} .verdict.noedge{{border-color:#b26a00;background:#fff6e5}}
</style></head><body>
<h1>{esc(title)}</h1>
<p class="note">Out-of-time sample only. The long/flat strategy trades every {horizon} bar(s) on the next bar
after the signal, pays {cost_bps:g} bp per position change, and is shown next to buy &amp; hold over the same
bars. A short-horizon index direction model near AUC 0.5 is a coin flip: read the baselines.</p>
{verdict_html(metrics, verdict)}
<h2>Numbers</h2><table>{table}</table>{cm}
<h2>Plots</h2>{imgs}
</body></html>"""


def training_report_markdown(
    y_true,
    y_prob,
    returns,
    importance: Mapping[str, float] | None,
    cost_bps: float = 1.0,
    title: str = "training report",
    *,
    horizon: int = 1,
    threshold: float = 0.5,
    returns_in_percent: bool = True,
    top: int = 20,
) -> str:
    """The report's numbers as Markdown (tables only; the KFP Markdown viewer shows no images)."""
    s = _summary(y_true, y_prob, returns, cost_bps, horizon, threshold, returns_in_percent)
    lines = [
        f"## {title}",
        "",
        "| metric | model | baseline |",
        "|---|---|---|",
        f"| AUC (OOT) | {s['auc']:.4f} | 0.5000 (chance) |",
        f"| accuracy at p>{threshold:g} | {s['accuracy']:.4f} | {s['majority_baseline_accuracy']:.4f} (majority) |",
        f"| Brier | {s['brier']:.4f} | {s['brier_climatology']:.4f} (climatology) |",
        f"| total return, costs incl. | {s['bt_strategy_return']:+.2%} | {s['bt_buy_and_hold_return']:+.2%} (buy & hold) |",
        f"| max drawdown | {s['bt_strategy_max_drawdown']:.2%} | {s['bt_buy_and_hold_max_drawdown']:.2%} (buy & hold) |",
        "",
        f"{s['n']} OOT rows, {s['bt_trades']} non-overlapping {horizon}-bar trades, {cost_bps:g} bp per "
        f"position change, exposure {s['bt_exposure']:.2f}.",
        "",
    ]
    ranked = sorted(((str(k), float(v)) for k, v in (importance or {}).items()), key=lambda kv: -abs(kv[1]))[:top]
    if ranked:
        lines += [f"### Feature importance (top {len(ranked)})", "", "| feature | importance |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" for k, v in ranked]
    return "\n".join(lines) + "\n"


def _fmt(x, spec: str = ".4f") -> str:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return "n/a"
    return format(value, spec) if np.isfinite(value) else "n/a"


def _interval(lo, hi) -> str:
    return f"[{_fmt(lo, '.3f')}, {_fmt(hi, '.3f')}]"


def verdict_section(verdict: Mapping[str, object] | None) -> str:
    """``<section id='verdict'>``: the selection's verdict on a chosen model (its ``verdict``, Bonferroni
    validation interval, OOT interval), or, before selection, what the verdict will take."""
    esc = html.escape
    if verdict and verdict.get("verdict"):
        text = str(verdict["verdict"])
        credible = text == "credible edge"
        bonf = list(verdict.get("val_auc_ci_bonferroni") or [None, None])  # type: ignore[call-overload]
        oot = list(verdict.get("oot_auc_ci") or [None, None])  # type: ignore[call-overload]
        return (
            f"<section id='verdict' class='verdict {'edge' if credible else 'noedge'}'>"
            f"<h2>Verdict: <span class='verdict-text'>{esc(text)}</span></h2>"
            f"<p>Selection chose this model on its validation AUC. Validation AUC {_fmt(verdict.get('val_auc'))}, "
            f"Bonferroni-corrected interval (k = {esc(str(verdict.get('bonferroni_k', '?')))} candidates) "
            f"<span class='val-ci-bonferroni'>{_interval(*bonf[:2])}</span>; out-of-time AUC "
            f"{_fmt(verdict.get('oot_auc'))}, 95% interval <span class='oot-ci'>{_interval(*oot[:2])}</span>. "
            + (
                "Both intervals lie above 0.5."
                if credible
                else "A credible edge needs both intervals above 0.5; at least one is not."
            )
            + "</p></section>"
        )
    return (
        "<section id='verdict' class='verdict'><h2>Verdict: <span class='verdict-text'>decided by selection"
        "</span></h2><p>Selection compares the candidates of a horizon and widens the validation interval for "
        "that comparison (Bonferroni); a credible edge needs that interval and the out-of-time one above 0.5. "
        "This variant's own intervals are below.</p></section>"
    )


VERDICT_SECTION = re.compile(r"<section id='verdict'.*?</section>", re.S)


def with_verdict(page: str, verdict: Mapping[str, object]) -> str:
    """A training report page with its verdict section replaced by the selection's verdict."""
    return VERDICT_SECTION.sub(lambda _: verdict_section(verdict), page, count=1)


def verdict_html(metrics: Mapping[str, float] | None, verdict: Mapping[str, object] | None = None) -> str:
    """The page's answer to "is there an edge?": the verdict (:func:`verdict_section`), the validation and
    out-of-time AUCs with their intervals, and the baselines on the same OOT rows."""
    if not metrics:
        return ""
    m = metrics
    esc = html.escape
    rows = [
        (
            "validation AUC [95% CI]",
            f"{_fmt(m.get('val_auc'))} {_interval(m.get('val_auc_ci_low'), m.get('val_auc_ci_high'))}",
        ),
        (
            "out-of-time AUC [95% CI]",
            f"{_fmt(m.get('oot_auc'))} {_interval(m.get('oot_auc_ci_low'), m.get('oot_auc_ci_high'))}",
        ),
        ("walk-forward AUC (mean ± sd)", f"{_fmt(m.get('cv_auc_mean'))} ± {_fmt(m.get('cv_auc_std'))}"),
        ("baseline: majority class, OOT AUC", _fmt(m.get("baseline_majority_auc"))),
        ("baseline: momentum (sign of last return), OOT AUC", _fmt(m.get("baseline_momentum_auc"))),
        ("OOT information coefficient (rank)", f"{_fmt(m.get('oot_ic'))} ({_fmt(m.get('oot_rank_ic'))})"),
        ("backtest Sharpe (buy & hold)", f"{_fmt(m.get('bt_sharpe'), '.2f')} ({_fmt(m.get('bh_sharpe'), '.2f')})"),
    ]
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return verdict_section(verdict) + f"\n<h2>Validation, out of time, baselines</h2><table id='edge'>{table}</table>"
