"""Two Evidently 0.7 metrics of our own, written with Evidently's metric API (``SingleValueMetric`` +
``SingleValueCalculation``, ``MetricContainer``), for the monitoring snapshots.

* :class:`SpxFigure` — one number of a monitoring run that is measured outside Evidently (the live hit
  rate and its floor, the canary's error rate and p95 latency from ``spx.components.deploy.health``, the
  champion's intervals from the selection). The run puts these numbers into a one-row table (one column per
  figure); the metric reads its column. Stored as an ordinary ``SingleValue``, so the dashboard plots it over
  time like any Evidently metric, and ``evidently ui`` needs none of our code to read it.
* :class:`PredictionDrift` — the drift of the served probability against the champion's out-of-time
  probabilities: the same ``ValueDrift`` value Evidently computes, rendered with the data-drift table, which
  plots the current values against the dataset's timestamp column. Evidently's own ``ValueDrift`` widget
  ignores the timestamp (``ValueDriftCalculation`` passes ``date=None``) and its x-axis reads
  "Index binned".
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

from evidently.core.container import MetricContainer, MetricOrContainer
from evidently.core.datasets import Dataset
from evidently.core.metric_types import MetricId, SingleValue, SingleValueCalculation, SingleValueMetric
from evidently.core.report import Context, _default_input_data_generator
from evidently.legacy.metrics import DataDriftTable
from evidently.legacy.model.widget import BaseWidgetInfo
from evidently.legacy.renderers.html_widgets import CounterData, WidgetSize, counter
from evidently.metrics import ValueDrift

# label and number format of every figure a monitoring run records (the column names of its one-row table)
FIGURES: dict[str, tuple[str, str]] = {
    "live_hit_rate": ("live hit rate", "{:.3f}"),
    "live_majority_baseline": ("majority-class hit rate, same bars", "{:.3f}"),
    "hit_rate_floor": ("hit-rate floor (retrain below)", "{:.3f}"),
    "n_labeled": ("served predictions with a realized label", "{:.0f}"),
    "n_served": ("served predictions in the window", "{:.0f}"),
    "drift_share": ("drift share (max of served, gold)", "{:.3f}"),
    "drift_threshold": ("drift-share threshold (retrain at)", "{:.3f}"),
    "feature_drift_threshold": ("per-feature drift threshold", "{:.3f}"),
    "retrain": ("retrain decided (1 = yes)", "{:.0f}"),
    "canary_error_rate": ("canary error rate", "{:.4f}"),
    "canary_p95_latency_ms": ("canary p95 latency (ms)", "{:.1f}"),
    "canary_requests": ("canary requests", "{:.0f}"),
    "stable_error_rate": ("stable error rate", "{:.4f}"),
    "stable_p95_latency_ms": ("stable p95 latency (ms)", "{:.1f}"),
    "stable_requests": ("stable requests", "{:.0f}"),
    "max_error_rate": ("error-rate limit (roll back above)", "{:.4f}"),
    "max_p95_latency_ms": ("p95 latency limit in ms (roll back above)", "{:.1f}"),
    "val_auc": ("champion validation AUC", "{:.4f}"),
    "val_auc_ci_low": ("validation AUC interval, low (Bonferroni)", "{:.4f}"),
    "val_auc_ci_high": ("validation AUC interval, high (Bonferroni)", "{:.4f}"),
    "oot_auc": ("champion out-of-time AUC", "{:.4f}"),
    "oot_auc_ci_low": ("out-of-time AUC 95% interval, low", "{:.4f}"),
    "oot_auc_ci_high": ("out-of-time AUC 95% interval, high", "{:.4f}"),
    "baseline_majority_auc": ("baseline AUC: majority class", "{:.4f}"),
    "baseline_momentum_auc": ("baseline AUC: momentum", "{:.4f}"),
    "credible_edge": ("credible edge (1 = yes)", "{:.0f}"),
    "news_sentiment_gold": ("news sentiment, newest gold bars in the window", "{:.3f}"),
    "news_sentiment_served": ("news sentiment the model received", "{:.3f}"),
    "news_bars_with_articles": ("share of bars with news", "{:.3f}"),
    "last_served_probability": ("latest served P(up)", "{:.3f}"),
    "last_served_confidence": ("its confidence, max(p, 1-p)", "{:.3f}"),
    "mean_served_confidence": ("mean confidence of the served predictions", "{:.3f}"),
}


class SpxFigure(SingleValueMetric):
    """A number of the monitoring run, read from column ``column`` of a one-row table (see the module doc)."""

    column: str

    def label(self) -> str:
        return FIGURES.get(self.column, (self.column, ""))[0]


class SpxFigureCalculation(SingleValueCalculation[SpxFigure]):
    def calculate(self, context: Context, current_data: Dataset, reference_data: Optional[Dataset]) -> SingleValue:
        data = current_data.column(self.metric.column).data.dropna()
        if len(data) != 1:
            raise ValueError(f"figure {self.metric.column!r}: expected one value, the table holds {len(data)}")
        value = float(data.iloc[0])
        if not math.isfinite(value):
            raise ValueError(f"figure {self.metric.column!r} is not finite: {value}")
        result = self.result(value)
        fmt = FIGURES.get(self.metric.column, ("", "{:.4g}"))[1] or "{:.4g}"
        result.widget = [counter(counters=[CounterData(self.display_name(), fmt.format(value))], size=WidgetSize.HALF)]
        return result

    def display_name(self) -> str:
        return self.metric.label()


class PredictionDrift(MetricContainer):
    """``ValueDrift`` of the prediction column, rendered against the timestamp (see the module doc)."""

    column: str
    method: Optional[str] = None
    threshold: Optional[float] = None

    def __init__(self, column: str, method: Optional[str] = None, threshold: Optional[float] = None):
        self.column = column
        self.method = method
        self.threshold = threshold
        super().__init__(include_tests=False)

    def generate_metrics(self, context: Context) -> Sequence[MetricOrContainer]:
        return [ValueDrift(column=self.column, method=self.method, threshold=self.threshold)]

    def render(
        self,
        context: Context,
        child_widgets: Optional[List[Tuple[Optional[MetricId], List[BaseWidgetInfo]]]] = None,
    ) -> List[BaseWidgetInfo]:
        # the data-drift table of this one column: it plots against the data definition's timestamp
        # (the same call DataDriftPreset.render makes for its columns)
        table = DataDriftTable(columns=[self.column], stattest=self.method, stattest_threshold=self.threshold)
        return context.get_legacy_metric(table, _default_input_data_generator, None)[1]


__all__ = ["FIGURES", "PredictionDrift", "SpxFigure", "SpxFigureCalculation"]
