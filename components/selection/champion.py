"""Find the model to serve in the MLflow registry and fetch its native file.

The training/selection stages register ``$SPX_REGISTERED_MODEL`` with the alias ``champion``;
each version carries the tags listed in docs/ARCHITECTURE.md. The serving runtime never loads
an MLflow flavour: it loads the same native file (``model.json`` for XGBoost, ``model.bst``
LightGBM text) that the cluster's KServe predictor gets from ``storageUri`` = ``native_uri``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from spx.core.layout import MODEL_INFO_FILE, NATIVE_FILES  # noqa: F401 - the served directory's files (also serving's)

log = logging.getLogger(__name__)

CHAMPION_ALIAS = "champion"


@dataclass
class ChampionInfo:
    name: str
    version: str
    model_format: str
    native_uri: str
    feature_columns: list[str]
    variant: str = ""
    task: str = "classification"
    horizon: str = ""
    run_id: str = ""
    tags: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "model_format": self.model_format,
            "native_uri": self.native_uri,
            "feature_columns": self.feature_columns,
            "variant": self.variant,
            "task": self.task,
            "horizon": self.horizon,
            "run_id": self.run_id,
        }


def resolve(version: int | str | None = None, name: str | None = None, tracking_uri: str | None = None) -> ChampionInfo:
    """The ``champion`` alias (or an explicit version) of the registered model, with its tags."""
    from mlflow import MlflowClient

    from spx.core.settings import settings

    cfg = settings()
    name = name or cfg.registered_model
    client = MlflowClient(tracking_uri=tracking_uri or cfg.mlflow_tracking_uri)
    if version is None:
        mv = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    else:
        mv = client.get_model_version(name, str(version))
    tags = dict(mv.tags or {})
    missing = [t for t in ("model_format", "native_uri", "feature_columns") if not tags.get(t)]
    if missing:
        raise ValueError(
            f"model {name} version {mv.version} lacks the tags {missing} that serving needs (see docs/ARCHITECTURE.md)"
        )
    fmt = tags["model_format"].lower()
    if fmt not in NATIVE_FILES:
        raise ValueError(f"model_format {fmt!r} is not servable; expected one of {sorted(NATIVE_FILES)}")
    return ChampionInfo(
        name=name,
        version=str(mv.version),
        model_format=fmt,
        native_uri=tags["native_uri"].rstrip("/"),
        feature_columns=list(json.loads(tags["feature_columns"])),
        variant=tags.get("variant", ""),
        task=tags.get("task", "classification"),
        horizon=str(tags.get("horizon", "")),
        run_id=tags.get("run_id", ""),
        tags=tags,
    )


def download(info: ChampionInfo, dest: Path, store=None) -> Path:
    """Copy the native model file(s) under ``native_uri`` to ``dest`` (what KServe's storage
    initializer does with ``storageUri``) and write ``spx-model.json`` beside them."""
    from spx.core.storage import ObjectStore

    store = store or ObjectStore()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    prefix = info.native_uri
    # native_uri is a prefix; tolerate it naming the file itself
    if prefix.endswith(NATIVE_FILES[info.model_format]):
        candidates = [prefix]
    else:
        candidates = [f"{prefix}/{f}" for f in NATIVE_FILES[info.model_format]]
    for uri in candidates:
        if store.exists(uri):
            store.download_file(uri, dest / uri.rsplit("/", 1)[1])
            break
    else:
        raise FileNotFoundError(f"no {' / '.join(NATIVE_FILES[info.model_format])} under {prefix}")
    (dest / MODEL_INFO_FILE).write_text(json.dumps(info.to_json(), indent=2))
    return dest
