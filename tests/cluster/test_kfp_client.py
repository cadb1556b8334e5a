"""submit/schedule through the real kfp.Client against a loopback KFP API peer."""

import json

import pytest
from kfp import compiler, dsl

from spx.pipelines.schedule import ScheduleError, create_or_update_schedule, to_kfp_cron
from spx.pipelines.submit import kfp_client, submit


@dsl.component(base_image="registry.local/spx-component:test", install_kfp_package=False)
def _echo(msg: str) -> str:
    return msg


@dsl.pipeline(name="spx-training")
def _tiny_pipeline(msg: str = "hi"):
    _echo(msg=msg)


@pytest.fixture()
def package(tmp_path) -> str:
    path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(_tiny_pipeline, str(path))
    return str(path)


@pytest.mark.parametrize(
    "user, kfp",
    [
        ("0 2 * * *", "0 0 2 * * *"),
        ("*/15 9-16 * * 1-5", "0 */15 9-16 * * 1-5"),
        ("30 0 2 * * *", "30 0 2 * * *"),
    ],
)
def test_cron_conversion(user, kfp):
    assert to_kfp_cron(user) == kfp


@pytest.mark.parametrize("bad", ["", "0 2 * *", "0 0 0 2 * * *", "@daily", "0 2 * * * ;rm"])
def test_cron_rejects_bad_input(bad):
    with pytest.raises(ScheduleError):
        to_kfp_cron(bad)


def test_submit_uploads_pipeline_then_version_and_starts_a_run(kfp_api, package, monkeypatch):
    monkeypatch.delenv("SPX_PIPELINE_ROOT", raising=False)
    monkeypatch.setenv("SPX_BUCKET", "spx")
    client = kfp_client(kfp_api.url)
    result = submit(
        client, pipeline_name="spx-training", package_path=package, params={"msg": "x"}, service_account="spx-pipeline"
    )
    assert result.uploaded and result.run_id
    posts = [c for c in kfp_api.calls if c.method == "POST"]
    assert [c.path for c in posts] == [
        "/apis/v2beta1/pipelines/upload",
        "/apis/v2beta1/pipelines/upload_version",
        "/apis/v2beta1/experiments",
        "/apis/v2beta1/runs",
    ]
    assert posts[1].query["name"] == [result.version_name]
    assert posts[1].query["pipelineid"] == [result.pipeline_id]
    assert result.version_name.startswith("spx-training-") and len(result.version_name) == len("spx-training-") + 12
    uploaded = kfp_api.uploads[-1]["bytes"].decode()
    assert "registry.local/spx-component:test" in uploaded
    run = posts[3].body
    assert run["pipeline_version_reference"] == {
        "pipeline_id": result.pipeline_id,
        "pipeline_version_id": result.version_id,
    }
    assert run["runtime_config"]["parameters"] == {"msg": "x"}
    assert run["runtime_config"]["pipeline_root"] == "s3://spx/pipeline-root"  # artifacts in the S3 store
    assert run["service_account"] == "spx-pipeline"
    assert run["experiment_id"] == posts[2].body.get("experiment_id", run["experiment_id"])


def test_submit_same_package_reuses_the_version(kfp_api, package):
    client = kfp_client(kfp_api.url)
    first = submit(client, package_path=package, start_run=False)
    second = submit(client, package_path=package)
    assert not second.uploaded and second.version_id == first.version_id
    upload_posts = [c for c in kfp_api.calls if c.method == "POST" and "upload" in c.path]
    assert len(upload_posts) == 2  # pipeline + first version only
    assert sum(c.path == "/apis/v2beta1/runs" for c in kfp_api.calls if c.method == "POST") == 1


def test_schedule_creates_recurring_run_with_exact_body(kfp_api, package, monkeypatch):
    monkeypatch.delenv("SPX_PIPELINE_ROOT", raising=False)
    monkeypatch.setenv("SPX_BUCKET", "spx")
    client = kfp_client(kfp_api.url)
    sub = submit(client, package_path=package, start_run=False)
    result = create_or_update_schedule(
        client,
        cron="0 2 * * *",
        pipeline_name="spx-training",
        job_name="nightly",
        params={"msg": "n"},
        service_account="spx-pipeline",
    )
    assert result.action == "created" and result.cron == "0 0 2 * * *"
    (post,) = [c for c in kfp_api.calls if c.method == "POST" and c.path == "/apis/v2beta1/recurringruns"]
    body = post.body
    assert body["display_name"] == "nightly"
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 2 * * *"}}
    assert body["max_concurrency"] == 1
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["pipeline_version_reference"] == {"pipeline_id": sub.pipeline_id, "pipeline_version_id": sub.version_id}
    assert body["runtime_config"] == {"parameters": {"msg": "n"}, "pipeline_root": "s3://spx/pipeline-root"}
    assert body["service_account"] == "spx-pipeline"


def test_schedule_is_idempotent_and_updates_by_replacing(kfp_api, package):
    client = kfp_client(kfp_api.url)
    submit(client, package_path=package, start_run=False)
    first = create_or_update_schedule(client, cron="0 2 * * *", pipeline_name="spx-training", job_name="nightly")
    again = create_or_update_schedule(client, cron="0 0 2 * * *", pipeline_name="spx-training", job_name="nightly")
    assert again.action == "unchanged" and again.recurring_run_id == first.recurring_run_id
    assert sum(c.method == "POST" and c.path.endswith("recurringruns") for c in kfp_api.calls) == 1
    changed = create_or_update_schedule(client, cron="30 6 * * 1-5", pipeline_name="spx-training", job_name="nightly")
    assert changed.action == "updated" and changed.replaced_id == first.recurring_run_id
    deletes = [c for c in kfp_api.calls if c.method == "DELETE"]
    assert [c.path for c in deletes] == [f"/apis/v2beta1/recurringruns/{first.recurring_run_id}"]
    # create-before-delete: a failure in between never leaves the pipeline unscheduled
    methods = [(c.method, c.path) for c in kfp_api.calls if c.method in ("POST", "DELETE")]
    assert methods.index(("DELETE", deletes[0].path)) > len(methods) - 2
    assert list(kfp_api.recurring) == [changed.recurring_run_id]
    assert kfp_api.recurring[changed.recurring_run_id]["trigger"]["cron_schedule"]["cron"] == "0 30 6 * * 1-5"


def test_schedule_without_pipeline_is_a_clear_error(kfp_api):
    with pytest.raises(ScheduleError, match="spx submit"):
        create_or_update_schedule(
            kfp_client(kfp_api.url), cron="0 2 * * *", pipeline_name="missing", job_name="nightly"
        )
    assert not [c for c in kfp_api.calls if c.method == "POST"]


def test_cli_schedule_and_submit(kfp_api, package):
    from typer.testing import CliRunner

    from spx.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["submit", "--host", kfp_api.url, "--package", package, "--param", 'msg="cli"'])
    assert out.exit_code == 0, out.output
    submitted = json.loads(out.output.strip().splitlines()[-1])
    assert submitted["run_id"]
    out = runner.invoke(app, ["schedule", "--cron", "0 2 * * *", "--host", kfp_api.url])
    assert out.exit_code == 0, out.output
    scheduled = json.loads(out.output.strip().splitlines()[-1])
    assert scheduled["action"] == "created" and scheduled["cron"] == "0 0 2 * * *"
    rr = kfp_api.recurring[scheduled["recurring_run_id"]]
    assert rr["max_concurrency"] == 1 and rr["no_catchup"] is True
    bad = runner.invoke(app, ["schedule", "--cron", "0 2 * *", "--host", kfp_api.url])
    assert bad.exit_code == 2 and "5 fields" in bad.output
