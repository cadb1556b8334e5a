"""spx run's changes to KFP's local runner (spx.pipelines.local_runner), on small real pipelines run by
``kfp.local.SubprocessRunner``: independent top-level tasks run side by side, the DAG's semantics stay
KFP's (outputs flow downstream, a false ``dsl.If`` is skipped, a failed task skips what depends on it while
independent tasks go on and the run fails), and tasks run as forks of the warm interpreter.

What this cannot catch: the real pipeline's task graph (the e2e test runs it) and timing: whether overlap
pays on a given machine is bench/pipeline.py's question.
"""

import pytest
from kfp import dsl, local

from spx.core.settings import process_env
from spx.pipelines.local_runner import local_runner_patches
from spx.pipelines.warm import PREFIX, warm_interpreter

pytestmark = pytest.mark.integration  # runs KFP task subprocesses

component = dsl.component(base_image="python:3.11-slim", install_kfp_package=False)


@component
def meet(name: str, other: str, log: str) -> str:
    """Says it started, then waits for ``other`` to say so: only two tasks running at once both finish."""
    import time
    from pathlib import Path

    path = Path(log)
    with path.open("a") as f:
        f.write(f"{name} started\n")
    deadline = time.monotonic() + 90
    while f"{other} started" not in path.read_text():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: {other} never ran beside me")
        time.sleep(0.05)
    return name


@component
def join(a: str, b: str) -> str:
    return f"{a}+{b}"


@component
def note(name: str, log: str) -> str:
    with open(log, "a") as f:
        f.write(f"{name} ran\n")
    return name


@component
def explode(message: str) -> str:
    raise RuntimeError(message)


@dsl.pipeline
def side_by_side(log: str, flag: bool = False) -> str:
    a = meet(name="a", other="b", log=log)
    b = meet(name="b", other="a", log=log)
    joined = join(a=a.output, b=b.output)
    with dsl.If(flag == True):  # noqa: E712 - KFP condition
        note(name="conditional", log=log)
    return joined.output


@dsl.pipeline
def one_fails(log: str, flag: bool = True) -> str:
    bad = explode(message="asked to fail")
    join(a=bad.output, b="x")  # downstream of the failure: skipped
    with dsl.If(flag == True):  # noqa: E712 - control flow: KFP's enhanced orchestrator, as for spx-training
        note(name="independent", log=log)
    return bad.output


@pytest.fixture()
def kfp_local(tmp_path):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))


def test_independent_tasks_run_side_by_side_and_outputs_flow_on(kfp_local, tmp_path):
    log = tmp_path / "events.log"
    log.touch()
    with local_runner_patches(workers=2, python=None):
        task = side_by_side(log=str(log))
    assert task.output == "a+b"  # (one at a time, `a` would wait for `b` until it times out)
    assert list((tmp_path / "root").rglob("join"))
    assert "conditional" not in log.read_text()  # dsl.If(false): skipped


def test_a_failure_skips_its_downstream_runs_the_rest_and_fails_the_run(kfp_local, tmp_path):
    log = tmp_path / "events.log"
    log.touch()
    with local_runner_patches(workers=2, python=None), pytest.raises(RuntimeError, match="explode"):
        one_fails(log=str(log))
    assert "independent ran" in log.read_text()
    root = tmp_path / "root"
    assert not list(root.rglob("join"))  # downstream of the failed task: skipped


def test_tasks_run_as_forks_of_the_warm_interpreter(kfp_local, tmp_path, capsys):
    log = tmp_path / "events.log"
    log.touch()
    with (
        warm_interpreter(["kfp.dsl.executor"], process_env(), str(tmp_path / "warm.log")) as python,
        local_runner_patches(workers=2, python=python),
    ):
        task = side_by_side(log=str(log), flag=True)
    assert task.output == "a+b" and "conditional ran" in log.read_text()
    assert capsys.readouterr().out.count(f"{PREFIX} task process") == 4  # a, b, join, the conditional note
    assert (tmp_path / "warm.log").read_text().count("(exit 0)") == 4


def test_the_patches_are_undone(kfp_local):
    from kfp.local import logging_utils, subprocess_task_handler
    from kfp.local.orchestrator import enhanced_dag_orchestrator

    before = (
        enhanced_dag_orchestrator.run_enhanced_dag,
        subprocess_task_handler.environment,
        logging_utils.local_logger_context,
        logging_utils.indented_print,
    )
    with pytest.raises(KeyError), local_runner_patches(workers=3, python="/nonexistent"):
        raise KeyError("interrupted")
    after = (
        enhanced_dag_orchestrator.run_enhanced_dag,
        subprocess_task_handler.environment,
        logging_utils.local_logger_context,
        logging_utils.indented_print,
    )
    assert after == before


def test_mlflow_is_prepared_beside_the_first_tasks_and_holds_only_mlflow_tasks(tmp_path, monkeypatch):
    """A new local MLflow database is created in a process of its own; the training loop and the selection wait
    for it, other tasks do not; if creating it fails, the task that needs it fails with the reason."""
    from spx.core.settings import settings
    from spx.pipelines.local import _mlflow_prepared

    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    with _mlflow_prepared(settings(), "spx", None, tmp_path / "prepare.log") as before:
        before("bronze-market")  # returns at once
        before("for-loop-1")  # waits for the database
        assert db.exists()
    with _mlflow_prepared(settings(), "spx", None, tmp_path / "again.log") as before:  # exists: nothing to do
        before("select-champion")
    assert not (tmp_path / "again.log").exists()

    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'file' / 'mlflow.db'}")
    with _mlflow_prepared(settings(), "spx", None, tmp_path / "broken.log") as before:
        before("news-gold")
        with pytest.raises(RuntimeError, match="creating the MLflow database failed"):
            before("select-champion")
