"""Feast definitions for the Feast CLI (`feast apply` in this directory).

The feature views are generated from a gold run's manifest, so they always match the table the
champion was trained on: set ``SPX_GOLD_URI`` (``s3://…/gold/{run_id}/features.parquet``) and
``SPX_MANIFEST_URI`` (``…/manifest.json``), plus the S3 variables (``SPX_S3_ENDPOINT``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``). The pipeline does the same through the
``feast_materialize`` component (components/serving/component.py), without the CLI.

Objects: entity ``instrument``; feature views ``market_features`` and, when the manifest lists
``news_*`` columns, ``news_features``; both over the gold parquet (labels excluded).
"""

from spx.components.feature_store.store import definitions
from spx.core.settings import settings
from spx.core.storage import ObjectStore

_serving = settings().serving
_gold_uri, _manifest_uri = _serving.gold_uri, _serving.manifest_uri
if not _gold_uri or not _manifest_uri:
    raise RuntimeError("set SPX_GOLD_URI and SPX_MANIFEST_URI to the gold run to serve")

_defs = definitions(ObjectStore().get_json(_manifest_uri), _gold_uri)
instrument = _defs.entity
market_features = _defs.views[0]
news_features = _defs.views[1] if len(_defs.views) > 1 else None
