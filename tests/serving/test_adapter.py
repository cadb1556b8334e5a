"""The serving adapter (components/serving/server.py) is written against exact KServe and uvicorn releases: this
fails as soon as an install differs from the pins in pyproject.toml, or the upstream code the adapter relies on
changes (a source hash per function: re-read the function, adapt server.py, then update the hash here)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata as md
import inspect
import re
import tomllib

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.unit

# what server.py calls, subclasses or configures, and the upstream code that decides how those behave
UPSTREAM = {
    "kserve.model_server.ModelServer.__init__": "1029569ff98894af",
    "kserve.model_server.ModelServer.register_model": "f7fa368c3e802d7a",
    "kserve.model_server.ModelServer.setup_event_loop": "7f1f9b173b0b122b",
    "kserve.protocol.rest.server.RESTServer.__init__": "c85b4ca79cab7f7c",  # we set .config.host/.app/.http
    "kserve.protocol.rest.server.RESTServer.create_application": "f821f63b402457eb",  # KServe's routes after ours
    "kserve.protocol.rest.server.RESTServer.start": "5889df83b6d57baa",
    "kserve.protocol.dataplane.DataPlane.model_ready": "6c7910fbb1c9d6b7",
    "kserve.protocol.dataplane.DataPlane.infer": "c2d45f0682235cdc",
    "kserve.protocol.dataplane.DataPlane.encode": "f8e942ffcbc6abc8",
    "kserve.protocol.dataplane.DataPlane.metadata": "4b733ff13089fe78",
    "kserve.protocol.infer_type.InferRequest.from_bytes": "5e8eda9b7377df70",
    "kserve.protocol.infer_type.InferRequest.from_inference_request": "ea0ef57d24c079c8",
    # the protocol subclass overrides these and reads self.cycle / cycle.response_complete / self.loop
    "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol.connection_made": "6efb565ff3d36b91",
    "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol.data_received": "010a7ae59a5d3b1a",
    "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol.on_message_begin": "96d377fdc7c2baef",
    "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol.on_url": "37be44e962b04ca8",
    "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol.on_header": "1e86ebb6cea0458c",
    "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol.on_headers_complete": "1ea8589acfad92d8",
    "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol.send_400_response": "ae5a4a3782b646fd",
    "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol.connection_lost": "c91a4c9bf2e29c55",
}


def _resolve(name: str):
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(name)


def test_installed_kserve_and_uvicorn_are_the_pinned_releases():
    serve = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["serve"]
    pins = dict(re.fullmatch(r"([a-z]+)(?:\[\w+\])?==([\d.]+)", r).groups() for r in serve if "==" in r)
    assert set(pins) == {"kserve", "uvicorn"}, pins
    for dist, version in pins.items():
        assert md.version(dist) == version, (
            f"{dist} {md.version(dist)} is installed, the adapter is written for {version}"
        )


def test_the_upstream_code_the_adapter_relies_on_is_unchanged():
    changed = {
        name: digest
        for name, digest in UPSTREAM.items()
        if hashlib.sha256(inspect.getsource(_resolve(name)).encode()).hexdigest()[:16] != digest
    }
    assert not changed, (
        f"upstream changed {sorted(changed)}: re-read them, adapt components/serving/server.py, update UPSTREAM"
    )


def test_kserve_still_binds_every_address_and_uvicorn_has_no_header_limit_for_httptools():
    """The two reasons the adapter exists: if upstream grows these settings, use them and drop the subclass."""
    import uvicorn

    source = inspect.getsource(_resolve("kserve.protocol.rest.server.RESTServer.__init__"))
    assert 'host="0.0.0.0"' in source
    params = inspect.signature(uvicorn.Config).parameters
    assert "h11_max_incomplete_event_size" in params
    assert not [p for p in params if "header" in p and ("timeout" in p or "max" in p)], list(params)
