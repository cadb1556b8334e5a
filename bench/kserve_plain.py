"""A plain KServe model server on the champion's XGBoost file: the peer bench/serve.py measures ours against.

The model is KServe's own xgbserver model (``kserve/python/xgbserver/xgbserver/model.py``, not on PyPI): load
``xgb.Booster(model_file=…)``, ``predict`` = ``get_predict_input`` -> ``xgb.DMatrix`` -> ``booster.predict`` ->
``get_predict_response``, served by ``kserve.ModelServer().start([model])`` as it ships. Two changes, both
outside the request path: the listening address is loopback (KServe hard-codes 0.0.0.0; a bench binds
loopback), and the log lines per request (KServe's latency and timing lines, uvicorn's access line) are off, as
in ours. One change in
``predict``: ``validate_features=False``, because the champion's file carries its feature names and the DMatrix
built from a V2 tensor has none (xgbserver's own call then refuses the request).

    python bench/kserve_plain.py --model_dir DIR --model_name NAME --http_port PORT
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import kserve
import uvicorn
import xgboost as xgb
from kserve import InferRequest, Model
from kserve.utils.utils import get_predict_input, get_predict_response


class XGBoostModel(Model):  # as kserve's xgbserver
    def __init__(self, name: str, model_dir: str, nthread: int = 1):
        super().__init__(name)
        self.model_dir, self.nthread = model_dir, nthread

    def load(self) -> bool:
        path = next(
            p for p in (Path(self.model_dir) / n for n in ("model.bst", "model.json", "model.ubj")) if p.exists()
        )
        self._booster = xgb.Booster(params={"nthread": self.nthread}, model_file=str(path))
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None):
        dmatrix = xgb.DMatrix(get_predict_input(payload), nthread=self.nthread)
        return get_predict_response(payload, self._booster.predict(dmatrix, validate_features=False), self.name)


class _LoopbackConfig(uvicorn.Config):
    def __init__(self, *args, **kwargs):
        kwargs["host"] = "127.0.0.1"
        super().__init__(*args, **kwargs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True)
    args, _ = parser.parse_known_args()
    uvicorn.Config = _LoopbackConfig  # read by kserve's RESTServer when it starts
    model = XGBoostModel(args.model_name, args.model_dir)
    model.load()
    server = kserve.ModelServer(http_port=args.http_port, enable_grpc=False, enable_latency_logging=False)
    for name in ("uvicorn.access", "kserve.trace"):  # after ModelServer() has configured logging
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([model])
