"""The prediction log: one row per served prediction, owned by neither serving nor monitoring.

* :mod:`.schema` — the columns and the line a server appends per answered instance;
* :mod:`.writer` — :class:`PredictionLog`, the local durable log a server writes *before* its answer leaves,
  and the thread that ships it to the bucket as write-once parquet (``predictions/date=YYYY-MM-DD/…``);
* :mod:`.read` — :func:`read_predictions`, what drift, the hit rate and the canary loop read back.
"""

from spx.components.prediction_log.read import read_predictions
from spx.components.prediction_log.schema import COLUMNS, KEY, OK, encode_rows
from spx.components.prediction_log.writer import LogUnavailable, PredictionLog

__all__ = ["COLUMNS", "KEY", "OK", "LogUnavailable", "PredictionLog", "encode_rows", "read_predictions"]
