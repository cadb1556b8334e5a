"""KFP ``Dataset`` artifacts that stand for tables in the bucket.

A medallion stage writes its table where the object layout says (``spx.core.layout``: ``bronze/…``,
``silver/{run_id}/…``, ``gold/{run_id}/…``), because Feast, monitoring, serving and ``spx report`` read it
there. Its typed KFP output (``Output[Dataset]``) is a small JSON *manifest* of that table — its ``s3://``
URI, size, SHA-256 (or, for a bronze prefix, a digest of every object under it) and what the stage knows
(rows, columns) — written to the artifact's own path, so KFP stores it under the pipeline root (the same
bucket) and its UI draws the lineage bronze → silver → gold → model with these facts on each node. The same
facts go into the artifact's metadata. The next stage takes the artifact as its input and reads the table
from :func:`table_uri`. The table is not copied into the pipeline root: a gold table of 1.7M minute bars is
about a gigabyte, and every reader would then have two copies to choose from.

Artifacts are duck-typed here (anything with ``path``, ``uri`` and ``metadata``): this module needs no KFP.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

MANIFEST_KIND = "spx.table-manifest/v1"


def describe_object(store, uri: str) -> dict[str, Any]:
    """``uri``, ``bytes`` and ``sha256`` of one object (the digest ``ObjectStore.put_bytes`` stored with it,
    else its ETag)."""
    head = store.head(uri)
    return {
        "uri": uri,
        "bytes": int(head.get("ContentLength", 0)),
        "sha256": (head.get("Metadata") or {}).get("sha256") or str(head.get("ETag", "")).strip('"'),
    }


def describe_prefix(store, uri: str) -> dict[str, Any]:
    """``uri``, ``objects``, ``bytes`` and a ``sha256`` over every (key, ETag) under a prefix: the content of a
    write-once bronze prefix, which grows by whole objects. One listing request per 1000 objects."""
    from spx.core.storage import parse_uri

    bucket, prefix = parse_uri(uri) if uri.startswith("s3://") else (store.bucket, uri)
    digest = hashlib.sha256()
    objects = total = 0
    for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in sorted(page.get("Contents", []), key=lambda o: o["Key"]):
            objects += 1
            total += int(obj.get("Size", 0))
            digest.update(f"{obj['Key']}\0{str(obj.get('ETag', '')).strip(chr(34))}\n".encode())
    return {"uri": uri, "objects": objects, "bytes": total, "sha256": digest.hexdigest()}


def write_manifest(artifact, facts: dict[str, Any]) -> dict[str, Any]:
    """Record ``facts`` (must hold ``uri``; ``""`` means "no table", e.g. a run without news) as the artifact's
    metadata and as its JSON content."""
    if "uri" not in facts:
        raise ValueError("a table manifest needs the table's uri")
    clean = {k: _plain(v) for k, v in facts.items()}
    artifact.metadata.update(clean)
    path = Path(artifact.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"kind": MANIFEST_KIND, **clean}, indent=2, sort_keys=True, default=str))
    return clean


def table_uri(artifact, key: str = "uri") -> str:
    """The table an input Dataset artifact stands for (metadata first, else the manifest file)."""
    meta = getattr(artifact, "metadata", None) or {}
    if key in meta:
        return str(meta[key] or "")
    path = Path(artifact.path)
    if path.is_file():
        return str(json.loads(path.read_text()).get(key) or "")
    raise FileNotFoundError(f"artifact {getattr(artifact, 'uri', artifact)!r} has no {key!r}: not a table manifest")


def _plain(value: Any) -> Any:
    """JSON-safe metadata (KFP stores it as a protobuf Struct: numbers, strings, lists, dicts)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)
