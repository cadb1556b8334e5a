"""The rollout step refuses to canary a champion without a credible edge unless explicitly overridden."""

import json

import pytest

from spx.components.deploy.component import deploy_op


def _selection(store, verdict):
    champion = {
        "variant": "xgb_all",
        "native_uri": "s3://spx/models/r/xgb_all/",
        "model_format": "xgboost",
        "model_uri": "models:/m/1",
        "horizon": 30,
        "registered_model": "spx-direction",
        "model_version": "1",
    }
    if verdict is not None:
        champion["verdict"] = verdict
    return store.put_json(
        f"selection/{verdict or 'none'}/best_model_selection.json",
        {"run_id": "r", "champion": champion, "verdict": verdict},
    ).uri


@pytest.mark.parametrize("verdict", ["no credible edge", None])
def test_no_credible_edge_is_refused_without_the_override(store, verdict):
    out = json.loads(deploy_op.python_func(selection_uri=_selection(store, verdict), namespace="spx"))
    assert out["verb"] == "refuse" and "no credible edge" in out["reason"] and "allow_no_edge" in out["reason"]
    assert out["body"] is None


def test_the_override_lets_it_through_to_the_rollout(store, monkeypatch):
    import spx.components.deploy.canary as canary

    class Reached(Exception):
        pass

    def no_cluster(*a, **k):  # the step goes on to the Kubernetes API: stop right there
        raise Reached()

    monkeypatch.setattr(canary, "custom_objects_api", no_cluster)
    with pytest.raises(Reached):
        deploy_op.python_func(selection_uri=_selection(store, "no credible edge"), namespace="spx", allow_no_edge=True)


def test_spx_deploy_refuses_a_selection_without_a_credible_edge(store):
    """The same guard on the command line, before any call to the Kubernetes API."""
    from typer.testing import CliRunner

    from spx.cli import app

    result = CliRunner().invoke(
        app, ["deploy", "--selection-uri", _selection(store, "no credible edge"), "--api-server", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 2
    assert "verdict 'no credible edge'" in result.output and "Traceback" not in result.output
