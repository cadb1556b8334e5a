"""The chart's KFP Job schedules both pipelines with commands the spx CLI really accepts."""

import shlex

from typer.testing import CliRunner

from spx.cli import app
from tests.cluster.support import render


def _job_script(objects) -> str:
    job = next(o for o in objects if o["kind"] == "Job" and "kfp-upload" in o["metadata"]["name"])
    return job["spec"]["template"]["spec"]["containers"][0]["args"][0]


def test_monitoring_recurring_run_is_scheduled_by_the_kfp_job(helm_bin):
    script = _job_script(render(helm_bin, []))
    assert "spx compile --pipeline monitoring" in script
    assert "--pipeline-name spx-monitoring" in script and "--max-concurrency 1 --no-catchup" in script
    # the runs act on this release's InferenceService: deploy on, namespace/name/mode from the release
    assert "--param deploy=true" in script
    assert script.count('isvc_name="\\"$SPX_INFERENCE_SERVICE\\""') == 2
    assert 'isvc_namespace="\\"$RELEASE_NAMESPACE\\""' in script
    job = next(o for o in render(helm_bin, []) if o["kind"] == "Job" and "kfp-upload" in o["metadata"]["name"])
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RELEASE_NAMESPACE"] == "spx"
    off = _job_script(render(helm_bin, ["--set", "kfp.monitoring.enabled=false"]))
    assert "spx-monitoring" not in off and "spx schedule" in off


def test_every_spx_command_in_the_job_parses(helm_bin):
    """Each `spx …` line of the Job's script, with its env vars filled in, is accepted by the CLI parser."""
    script = _job_script(render(helm_bin, []))
    commands, current = [], ""
    for line in script.splitlines():
        current += " " + line.rstrip("\\").strip()
        if not line.rstrip().endswith("\\"):
            if current.strip().startswith("spx "):
                commands.append(current.strip())
            current = ""
    assert [c.split()[1] for c in commands] == ["submit", "schedule", "compile", "submit", "schedule"]
    runner = CliRunner()
    for cmd in commands:
        argv = shlex.split(cmd.replace("$", "X"))[1:]
        result = runner.invoke(app, argv + ["--help"])
        assert result.exit_code == 0, (cmd, result.output)
        unknown = [a for a in argv if a.startswith("--") and a.split("=")[0] not in result.output]
        assert not unknown, (cmd, unknown)
