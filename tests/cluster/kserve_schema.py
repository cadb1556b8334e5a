"""A strict JSON Schema for KServe objects, built from the kserve SDK's models.

The kserve SDK ships no CRD schema, and its ``ApiClient.deserialize`` silently drops unknown fields,
so a typo such as ``canaryTrafficPercentage`` would pass a plain round-trip. Here every model class
(KServe's and the Kubernetes ones it references) becomes a JSON Schema object with
``additionalProperties: false``, properties named by the model's ``attribute_map`` and typed from its
``openapi_types``; required fields are the ones whose setters reject ``None`` under client-side
validation.

A few types the SDK names have no model class in ``kubernetes<36`` (a handful of newer pod fields,
Knative status types). Those are listed in :data:`UNVERIFIED` and accept any JSON value; the tests
assert that no rendered object uses them, so nothing we ship goes unchecked.
"""

from __future__ import annotations

import inspect
import re
from functools import lru_cache

import kserve.models as kserve_models
import kubernetes.client as k8s_models

PRIMITIVES = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "object": {},  # IntOrString and friends
    "datetime": {"type": "string"},
    "date": {"type": "string"},
}
# quantities are strings or numbers in YAML ("100m", 1)
SPECIAL = {
    "ResourceQuantity": {"type": ["string", "number"]},
    "V1Time": {"type": "string"},
    "KnativeURL": {"type": "string"},
}
UNVERIFIED: set[str] = set()


def _model(name: str):
    return getattr(kserve_models, name, None) or getattr(k8s_models, name, None)


def _required(cls) -> list[str]:
    out = []
    for attr, json_name in cls.attribute_map.items():
        prop = getattr(cls, attr, None)
        if isinstance(prop, property) and prop.fset is not None:
            try:
                src = inspect.getsource(prop.fset)
            except (OSError, TypeError):
                continue
            if "must not be `None`" in src:
                out.append(json_name)
    return sorted(out)


def _ref(name: str) -> str:
    return f"#/$defs/{name}"


def _type_schema(t: str, defs: dict) -> dict:
    t = t.strip()
    m = re.fullmatch(r"list\[(.*)\]", t)
    if m:
        return {"type": "array", "items": _type_schema(m.group(1), defs)}
    m = re.fullmatch(r"dict\(([^,]+),\s*(.*)\)", t)
    if m:
        return {"type": "object", "additionalProperties": _type_schema(m.group(2), defs)}
    if t in PRIMITIVES:
        return dict(PRIMITIVES[t])
    if t in SPECIAL:
        return dict(SPECIAL[t])
    cls = _model(t)
    if cls is None:
        UNVERIFIED.add(t)
        defs.setdefault(t, {"description": f"{t}: no model class in the installed SDKs (unverified)"})
        return {"$ref": _ref(t)}
    if t not in defs:
        defs[t] = {}  # placeholder against recursion (JSONSchemaProps-like cycles)
        props = {cls.attribute_map[a]: _type_schema(ot, defs) for a, ot in cls.openapi_types.items()}
        schema = {"type": "object", "properties": props, "additionalProperties": False}
        required = _required(cls)
        if required:
            schema["required"] = required
        defs[t] = schema
    return {"$ref": _ref(t)}


@lru_cache(maxsize=None)
def schema_for(model_name: str, api_version: str, kind: str) -> dict:
    defs: dict = {}
    root = _type_schema(model_name, defs)
    top = dict(defs[model_name])
    top["properties"] = dict(top["properties"])
    top["properties"]["apiVersion"] = {"const": api_version}
    top["properties"]["kind"] = {"const": kind}
    top["required"] = sorted(set(top.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    defs[model_name + "Root"] = top
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": defs,
        "$ref": _ref(model_name + "Root"),
        "title": kind,
        "x-root": root,
    }


KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "V1alpha1ClusterServingRuntime",
}


def schema_for_object(obj: dict) -> dict | None:
    key = (obj.get("apiVersion"), obj.get("kind"))
    model = KINDS.get(key)
    return schema_for(model, *key) if model else None


def unverified_paths(obj, schema: dict, path: str = "$") -> list[str]:
    """JSON paths in ``obj`` whose schema is one of the unverified (unknown-model) types."""
    defs = schema["$defs"]
    found: list[str] = []

    def walk(value, sch, p):
        if "$ref" in sch:
            name = sch["$ref"].rsplit("/", 1)[1]
            if name in UNVERIFIED:
                found.append(f"{p} ({name})")
                return
            sch = defs[name]
        if isinstance(value, dict) and sch.get("type") == "object":
            props = sch.get("properties")
            for k, v in value.items():
                if props is not None and k in props:
                    walk(v, props[k], f"{p}.{k}")
                elif isinstance(sch.get("additionalProperties"), dict):
                    walk(v, sch["additionalProperties"], f"{p}.{k}")
        elif isinstance(value, list) and "items" in sch:
            for i, v in enumerate(value):
                walk(v, sch["items"], f"{p}[{i}]")

    walk(obj, schema, path)
    return found
