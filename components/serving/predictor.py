"""KServe V2 predictor for the champion's native XGBoost / LightGBM file.

Loads the model directory the way KServe's ``kserve-xgbserver`` / ``kserve-lgbserver`` runtimes do
(``xgb.Booster(model_file=…)`` on ``model.json``/``.ubj``/``.bst``; ``lgb.Booster(model_file=…)`` on
the LightGBM text file), on the KServe SDK model server. Those two runtime packages are not on
PyPI, so this module is the runtime: the cluster's ServingRuntime runs our serving image with
``spx-predictor --model_dir /mnt/models`` (the storage initializer puts ``storageUri`` = the version's
``native_uri`` there).

Input: one tensor (any name) of datatype FP32 or FP64 and shape ``[n, n_features]`` in the
champion's feature order; no NaN/inf. Output ``probability`` (shape ``[n]``): P(up), exactly what
the booster (and the scikit-learn wrapper's ``predict_proba(X)[:, 1]``) returns.

With ``SPX_PREDICTION_LOG=true`` (an InferenceService without a transformer: the chart and the deploy step set
it on the one server that answers clients) each answered row is written to the prediction log before the answer
leaves (:mod:`spx.components.prediction_log`).

Run: ``spx-predictor --model_dir DIR [--model_name spx-direction] [--model_version N] [--http_port 8080]
[--nthread 1] [--speedups booster,infer]``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from kserve import InferRequest, InferResponse, Model
from kserve.protocol.infer_type import InferOutput

from spx.components.prediction_log import LogUnavailable, PredictionLog, encode_rows
from spx.components.serving.server import ServingError, parser, serve
from spx.core.layout import MODEL_INFO_FILE, NATIVE_FILES
from spx.core.settings import settings

log = logging.getLogger(__name__)

ACCEPTED_DATATYPES = {"FP32": np.float32, "FP64": np.float64}
OUTPUT_NAME = "probability"
MAX_ROWS = 100_000


def find_model_file(model_dir: Path, model_format: str | None = None) -> tuple[Path, str]:
    """(model file, format) in ``model_dir``. As in KServe's runtimes exactly one model file is
    allowed. ``model.bst`` is XGBoost binary or LightGBM text; LightGBM text starts with ``tree``."""
    model_dir = Path(model_dir)
    names = NATIVE_FILES[model_format] if model_format else ("model.json", "model.ubj", "model.bst", "model.txt")
    present = [model_dir / n for n in names if (model_dir / n).is_file()]
    if not present:
        raise FileNotFoundError(f"no model file ({', '.join(names)}) in {model_dir}")
    if len(present) > 1:
        raise RuntimeError(f"more than one model file in {model_dir}: {[p.name for p in present]}; only one is allowed")
    path = present[0]
    if model_format:
        return path, model_format
    if path.suffix in (".json", ".ubj"):
        return path, "xgboost"
    if path.suffix == ".txt" or path.read_bytes()[:4] == b"tree":
        return path, "lightgbm"
    return path, "xgboost"


class BoosterModel(Model):
    """A gradient-boosted binary classifier served on the V2 protocol."""

    def __init__(
        self,
        name: str,
        model_dir: str,
        model_format: str | None = None,
        model_version: str | None = None,
        nthread: int = 1,
        direct_booster: bool = True,
        prediction_log: PredictionLog | None = None,
    ):
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self.model_format = model_format
        self.model_version = model_version
        self.nthread = nthread
        self.direct_booster = direct_booster
        self.log = prediction_log
        cluster = settings().cluster  # read once: settings() parses the environment (milliseconds)
        self.logged_as = {"inference_service": cluster.inference_service, "namespace": cluster.namespace}
        self.feature_names: list[str] = []
        self.info: dict[str, Any] = {}
        self._booster = None
        self._xgb_predict = None

    # -- loading ---------------------------------------------------------------------
    def load(self) -> bool:
        info_path = self.model_dir / MODEL_INFO_FILE
        self.info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        path, fmt = find_model_file(self.model_dir, self.model_format or self.info.get("model_format"))
        self.model_format = fmt
        if fmt == "xgboost":
            import xgboost as xgb

            self._booster = xgb.Booster(params={"nthread": self.nthread}, model_file=str(path))
            self._xgb_predict = _dense_predictor(self._booster) if self.direct_booster else None
            names = list(self._booster.feature_names or [])
            n_features = self._booster.num_features()
        else:
            import lightgbm as lgb

            self._booster = lgb.Booster(params={"num_threads": self.nthread}, model_file=str(path))
            names = list(self._booster.feature_name())
            n_features = self._booster.num_feature()
        tagged = list(self.info.get("feature_columns") or [])
        if tagged and len(tagged) != n_features:
            raise ValueError(
                f"{MODEL_INFO_FILE} lists {len(tagged)} feature columns but the model has {n_features} features"
            )
        if tagged and names and not names[0].startswith(("f0", "Column_0")) and tagged != names:
            raise ValueError(f"feature_columns tag disagrees with the names stored in {path.name}")
        self.feature_names = tagged or names or [f"f{i}" for i in range(n_features)]
        self.n_features = n_features
        self.model_version = str(self.model_version or self.info.get("version") or "")
        self.ready = True
        log.info("loaded %s model %s (%d features) version %s", fmt, path, n_features, self.model_version or "?")
        return self.ready

    # -- metadata ----------------------------------------------------------------------
    def get_input_types(self) -> list[dict]:
        return [{"name": "features", "datatype": "FP32", "shape": [-1, self.n_features]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": OUTPUT_NAME, "datatype": "FP32" if self.model_format == "xgboost" else "FP64", "shape": [-1]}]

    def metadata(self) -> dict:
        return {
            "name": self.name,
            "versions": [self.model_version] if self.model_version else [],
            "platform": f"{self.model_format}_booster",
            "inputs": self.get_input_types(),
            "outputs": self.get_output_types(),
            "parameters": {
                "feature_names": self.feature_names,
                "feature_count": self.n_features,
                "model_format": self.model_format,
                "model_version": self.model_version,
                "input_datatypes": sorted(ACCEPTED_DATATYPES),
                "output": "P(up): probability that the close rises over the horizon",
                **{k: self.info[k] for k in ("variant", "horizon", "run_id", "task") if self.info.get(k)},
            },
        }

    # -- inference ---------------------------------------------------------------------
    def matrix(self, payload: InferRequest | dict) -> np.ndarray:
        """Validate the V2 request and return the [n, n_features] matrix (or raise 4xx)."""
        if isinstance(payload, dict):
            raise ServingError("this server speaks the V2 protocol: POST /v2/models/{name}/infer")
        inputs = payload.inputs or []
        if len(inputs) != 1:
            raise ServingError(f"expected exactly 1 input tensor of shape [n, {self.n_features}], got {len(inputs)}")
        tensor = inputs[0]
        dtype = ACCEPTED_DATATYPES.get(str(tensor.datatype).upper())
        if dtype is None:
            raise ServingError(f"input {tensor.name!r} has datatype {tensor.datatype}; expected FP32 or FP64")
        shape = list(tensor.shape or [])
        if len(shape) != 2 or shape[1] != self.n_features or shape[0] < 1:
            raise ServingError(
                f"input {tensor.name!r} has shape {shape}; expected [n, {self.n_features}] "
                f"(n >= 1 rows of the {self.n_features} features "
                f"{self.feature_names[:3]}…)"
            )
        if shape[0] > MAX_ROWS:
            raise ServingError(f"{shape[0]} rows exceed the limit of {MAX_ROWS} per request", status=413)
        try:
            data = tensor.data
            if isinstance(data, np.ndarray):
                arr = data.astype(dtype, copy=False)
            else:
                arr = np.asarray(_flatten(data), dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise ServingError(f"input {tensor.name!r} data is not numeric: {exc}") from None
        expected = shape[0] * shape[1]
        if arr.size != expected:
            raise ServingError(f"input {tensor.name!r} holds {arr.size} values but shape {shape} needs {expected}")
        arr = arr.reshape(shape)
        if not np.isfinite(arr).all():
            rows, cols = np.nonzero(~np.isfinite(arr))
            bad = sorted({self.feature_names[c] for c in cols[:20]})
            raise ServingError(
                f"input {tensor.name!r} contains NaN or infinite values (row {int(rows[0])}, features {bad})"
            )
        return arr

    def predict_proba(self, arr: np.ndarray) -> np.ndarray:
        if self.model_format == "xgboost":
            if self._xgb_predict is not None:
                return self._xgb_predict(arr)
            return self._booster.inplace_predict(arr, validate_features=False)
        return self._booster.predict(arr, num_threads=self.nthread)

    def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        arrived = time.time()
        arr = self.matrix(payload)
        proba = np.asarray(self.predict_proba(arr))
        if proba.ndim != 1:
            raise ServingError(f"model returned shape {list(proba.shape)}; a binary classifier is expected", status=500)
        if self.log is not None:
            self._log(payload.id or (headers or {}).get("x-request-id") or str(uuid.uuid4()), arrived, arr, proba)
        out = InferOutput(
            name=OUTPUT_NAME, shape=[int(proba.shape[0])], datatype="FP32" if proba.dtype == np.float32 else "FP64"
        )
        out.set_data_from_numpy(proba, binary_data=payload.use_binary_outputs)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            model_version=self.model_version or None,
            infer_outputs=[out],
            use_binary_outputs=payload.use_binary_outputs,
        )

    def _log(self, request_id: str, arrived: float, arr: np.ndarray, proba: np.ndarray) -> None:
        """The rows of this answer in the prediction log, before it leaves (else a 503: never unlogged)."""
        p = proba.astype(float).tolist()
        lines = encode_rows(
            request_id=request_id,
            arrived=arrived,
            model_name=self.name,
            model_version=self.model_version,
            **self.logged_as,
            inputs=[dict(zip(self.feature_names, row)) for row in arr.tolist()],
            outputs=[{OUTPUT_NAME: x} for x in p],
            probabilities=p,
            predictions=[float(x >= 0.5) for x in p],
            latency_ms=(time.time() - arrived) * 1000.0,
        )
        try:
            self.log.write(lines, len(p))
        except LogUnavailable as exc:
            raise ServingError(str(exc), 503) from None


def _dense_predictor(booster):
    """``booster.inplace_predict(arr, validate_features=False)`` for a C-contiguous FP32/FP64 matrix,
    as the one C call it makes (``XGBoosterPredictFromDense``, the same arguments), without the
    Python dispatch around it (data-frame checks, JSON encoding of the arguments, ...): about a
    third of the time for one row. None when this xgboost lacks the entry point (then
    ``inplace_predict`` is used)."""
    import ctypes

    try:
        from xgboost.core import _LIB, _check_call, c_bst_ulong, make_jcargs

        entry = _LIB.XGBoosterPredictFromDense
    except (ImportError, AttributeError):
        return None
    args = make_jcargs(
        type=0,
        training=False,
        iteration_begin=0,
        iteration_end=0,
        missing=float("nan"),
        strict_shape=False,
        cache_id=0,
    )

    def predict(arr: np.ndarray) -> np.ndarray:
        arr = np.ascontiguousarray(arr)
        if arr.dtype not in (np.float32, np.float64) or arr.ndim != 2:
            return booster.inplace_predict(arr, validate_features=False)
        interface = orjson.dumps(arr.__array_interface__)  # what inplace_predict sends (there via json.dumps)
        preds, shape, dims = ctypes.POINTER(ctypes.c_float)(), ctypes.POINTER(c_bst_ulong)(), c_bst_ulong()
        _check_call(
            entry(booster.handle, interface, args, None, ctypes.byref(shape), ctypes.byref(dims), ctypes.byref(preds))
        )
        out_shape = tuple(int(shape[i]) for i in range(dims.value))
        return np.ctypeslib.as_array(preds, shape=out_shape).copy()

    return predict


def _flatten(data: Any) -> list:
    if data and isinstance(data[0], list):
        out: list = []
        stack = [data]
        while stack:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(reversed(item))
            else:
                out.append(item)
        return out
    return data


def main(argv: list[str] | None = None) -> None:
    cfg = settings().serving
    p = parser(__doc__)
    p.add_argument("--model_dir", default=str(cfg.model_dir))
    p.add_argument("--model_format", choices=sorted(NATIVE_FILES), default=None)
    p.add_argument("--model_version", default=cfg.model_version or None)
    p.add_argument("--nthread", type=int, default=cfg.predictor_nthread)
    args, _ = p.parse_known_args(argv)
    prediction_log = PredictionLog.from_settings()
    model = BoosterModel(
        args.model_name,
        args.model_dir,
        args.model_format,
        args.model_version,
        args.nthread,
        direct_booster="booster" in args.speedups,
        prediction_log=prediction_log,
    )
    model.load()
    serve([model], args, on_shutdown=(prediction_log.close,) if prediction_log else ())


if __name__ == "__main__":
    main()
