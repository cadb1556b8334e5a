"""spx run's view of KFP's local runner: per-task logs of concurrent tasks, cache hits, the run key."""

from __future__ import annotations

import threading

import pytest

from spx.pipelines.local import TaskLogRouter, code_fingerprint, run_key


def test_two_concurrent_tasks_keep_their_own_logs_and_cache_hits_are_reported(tmp_path):
    """The training variants run two at a time (a dsl.ParallelFor): lines are filed by the thread that wrote
    them; a cache hit (logged by KFP outside any task) is an event of its own; repeated names stay apart."""
    events = []
    router = TaskLogRouter(tmp_path / "run", on_event=lambda e: events.append((e.task, e.status, e.detail)))
    router.write("16:00:00.000 - INFO - Task silver-technical cache hit (key=0123456789ab); skipping execution.\n")
    started = threading.Barrier(2)
    finish = threading.Barrier(2)

    def task(variant: str) -> None:
        router.write("16:00:01.000 - INFO - Executing task \x1b[96m'train-variant'\x1b[0m\n")
        started.wait()
        router.write(f'    "variant": "{variant}",\n')  # the executor input, as KFP prints it
        router.write(f"    [{variant}] fold 1/5: AUC 0.5")  # a line split across writes, interleaved
        finish.wait()
        router.write(" (done)\n")
        router.write("16:00:09.000 - INFO - Task 'train-variant' finished with status \x1b[92mSUCCESS\x1b[0m\n")

    threads = [threading.Thread(target=task, args=(v,)) for v in ("xgb_all", "lgbm_all")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    done = {(name, detail) for name, status, detail in events if status == "SUCCESS"}
    assert done == {("train-variant", "xgb_all"), ("train-variant-2", "lgbm_all")} or done == {
        ("train-variant", "lgbm_all"),
        ("train-variant-2", "xgb_all"),
    }
    assert ("silver-technical", "CACHED", "") in events and router.cached() == ["silver-technical"]
    for name in ("train-variant", "train-variant-2"):
        text = (tmp_path / "run" / f"{name}.log").read_text()
        variant = router.tasks[name].detail
        other = ({"xgb_all", "lgbm_all"} - {variant}).pop()
        assert f"[{variant}] fold 1/5: AUC 0.5 (done)" in text and other not in text
        assert router.tasks[name].cpu_seconds is None  # the two shared the machine: no per-task CPU
    assert "reused from KFP's local cache" in (tmp_path / "run" / "silver-technical.log").read_text()
    assert router.failed() is None


def test_run_key_changes_with_any_parameter_or_input_file_and_never_reuses_a_live_source(tmp_path, monkeypatch):
    monkeypatch.setenv("SPX_HOME", str(tmp_path / "home"))
    news = tmp_path / "news.parquet"
    news.write_bytes(b"one")
    params = {"source": "bundled", "dataset": "spy_m1_2011q1", "n_boot": 500, "news_source": "file"}
    base = run_key({**params, "news_path": str(news)})
    assert base == run_key({**params, "news_path": str(news)})  # same inputs, same key: a rerun is reused
    assert base != run_key({**params, "news_path": str(news), "n_boot": 200})
    news.write_bytes(b"two!")  # the news file changed (size and time)
    changed = run_key({**params, "news_path": str(news)})
    assert base != changed
    monkeypatch.setenv("SPX_REGISTERED_MODEL", "another-model")  # selection would register elsewhere
    assert run_key({**params, "news_path": str(news)}) != changed
    live = [run_key({**params, "source": "oanda"}) for _ in range(2)]
    assert live[0] != live[1] and live[0].startswith("live-")
    assert run_key({**params, "news_source": "gdelt"}).startswith("live-")


def test_code_fingerprint_is_stable_and_covers_the_stage_code():
    assert code_fingerprint() == code_fingerprint()
    assert len(code_fingerprint()) == 64


@pytest.mark.parametrize("threads", ["", "3"])
def test_task_threads_are_the_cores_shared_by_the_two_concurrent_trainings(threads, monkeypatch):
    from spx.core.settings import settings
    from spx.pipelines.local import _thread_env

    if threads:
        monkeypatch.setenv("SPX_THREADS", threads)
    else:
        monkeypatch.delenv("SPX_THREADS", raising=False)
    env = _thread_env(settings())
    if threads:
        assert env == {}  # a setting given by the user is kept
    else:
        assert int(env["SPX_THREADS"]) >= 1


def test_a_task_forked_from_the_warm_interpreter_reports_its_cpu_even_beside_another(tmp_path):
    """CPU per task comes from this process's children's CPU, which two overlapping tasks share; a fork of the
    warm interpreter is not this process's child, and its client prints the task's CPU instead."""
    from spx.pipelines.warm import PREFIX

    router = TaskLogRouter(tmp_path / "run")
    threads_started = threading.Barrier(2)

    def task(name: str, line: str) -> None:
        router.write(f"16:00:01.000 - INFO - Executing task '{name}'\n")
        threads_started.wait()
        router.write(line)
        router.write(f"16:00:09.000 - INFO - Task '{name}' finished with status SUCCESS\n")

    warm = f"{PREFIX} task process 4242 was forked from the warm interpreter (36 modules preloaded): 2.50 s CPU\n"
    threads = [
        threading.Thread(target=task, args=("news-silver", warm)),
        threading.Thread(target=task, args=("silver-technical", "fresh interpreter output\n")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert router.tasks["news-silver"].cpu_seconds == pytest.approx(2.5, abs=0.01)
    assert router.tasks["silver-technical"].cpu_seconds is None  # shared the machine, not a fork: unknown


def test_the_tasks_held_for_mlflow_are_the_pipelines_mlflow_tasks():
    """spx run prepares MLflow beside the first tasks and holds only the top-level tasks that use it: every
    top-level task whose component (or sub-DAG) runs train-variant or select-champion, and no other."""
    from spx.pipelines.local import needs_mlflow
    from spx.pipelines.options import CompileOptions
    from spx.pipelines.training import build_training_pipeline

    spec = build_training_pipeline(CompileOptions(local=True)).pipeline_spec
    components = dict(spec.components.items())

    def runs(component: str) -> set[str]:
        inner = components[component]
        if inner.WhichOneof("implementation") != "dag":
            return {component}
        return set().union(*(runs(t.component_ref.name) for t in inner.dag.tasks.values()))

    mlflow_components = {"comp-train-variant", "comp-select-champion"}
    for name, task in spec.root.dag.tasks.items():
        assert needs_mlflow(name) == bool(runs(task.component_ref.name) & mlflow_components), name


def test_ready_tasks_start_longest_chain_first_then_the_one_gating_most():
    """Two workers, three tasks ready at once: the run id (it gates almost everything) and the head of the
    longest chain (the news chain) go first; a leaf goes last, whatever order KFP's sort happened to give."""
    from spx.pipelines.local_runner import priority_order

    upstream = {
        "leaf": set(),
        "bronze": set(),
        "news-bronze": set(),
        "run-id": set(),
        "news-silver": {"news-bronze", "run-id"},
        "news-gold": {"news-silver", "run-id"},
        "silver": {"bronze", "run-id"},
        "gold": {"silver", "news-gold", "run-id"},
        "train": {"gold", "run-id"},
    }
    kfp_order = ["leaf", "bronze", "news-bronze", "run-id", "silver", "news-silver", "news-gold", "gold", "train"]
    order = priority_order(upstream, kfp_order)
    assert order[:3] == ["run-id", "news-bronze", "bronze"] and order.index("leaf") > order.index("gold")
    assert order.index("news-silver") < order.index("silver")  # on the longer chain
    assert sorted(order) == sorted(kfp_order)
