"""What ``spx run`` changes in KFP's local runner (kfp 2.17, ``kfp.local``) while it runs, and why.

KFP's local runner has no hooks for either of these, so :func:`local_runner_patches` swaps three of its
module functions for the duration of one run and puts them back afterwards (``kfp>=2.17,<2.18`` is pinned;
:func:`check_kfp_local` fails loudly if the functions moved):

1. **Independent tasks side by side.** ``enhanced_dag_orchestrator.run_enhanced_dag`` runs a DAG's tasks
   one after another in topological order; its only concurrency is a ``dsl.ParallelFor``'s iterations, two
   at a time. :func:`run_dag_concurrently` runs the *top-level* DAG with a ready-set scheduler instead:
   every task whose upstream tasks are done starts, up to ``workers`` at once (the news chain beside the
   market chain, the three silver families side by side, the Feast materialisation beside the training
   loop). Each task still runs through KFP's own ``execute_task`` (inputs, cache, outputs, its sub-DAGs,
   its loop), and the semantics are KFP's: a task whose upstream failed is skipped, a ``dsl.If`` whose
   condition is false is skipped, independent tasks go on after a failure, and the run fails at the end.
   Nested DAGs (the loop body, a condition's body), any DAG with an exit handler, and a pipeline without
   control flow (KFP runs those with its simpler ``dag_orchestrator``, which stops at the first failure)
   keep KFP's sequential orchestration.
2. **The task's Python.** ``subprocess_task_handler.environment`` yields ``sys.executable`` for a task;
   with a warm interpreter (``spx.pipelines.warm``) it yields that interpreter's client, so the task process
   is a fork of an interpreter that imported the libraries once. The command line KFP runs is unchanged.
3. **Logging.** KFP's per-task ``local_logger_context`` (clears and refills the root logger's handlers) and
   ``indented_print`` (swaps ``builtins.print``) are process-global: with tasks overlapping, one task's
   restore drops or doubles another's lines. ``spx run`` already routes the root logger and stdout to its
   per-task log files (``TaskLogRouter``), so both become no-ops.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)


def check_kfp_local() -> None:
    """Fail with one clear line when the installed kfp lacks what :func:`local_runner_patches` replaces."""
    from kfp.local import logging_utils, subprocess_task_handler
    from kfp.local.orchestrator import enhanced_dag_orchestrator as eo

    missing = [
        f"{module.__name__}.{name}"
        for module, names in (
            (eo, ("run_enhanced_dag", "execute_task", "_run_parallel_for_task", "ParallelExecutor", "TaskKind")),
            (eo, ("ConditionEvaluator", "_has_valid_iterator", "_has_task_final_status_input")),
            (subprocess_task_handler, ("environment",)),
            (logging_utils, ("local_logger_context", "indented_print")),
        )
        for name in names
        if not hasattr(module, name)
    ]
    if missing:
        raise RuntimeError(f"this kfp has no {', '.join(missing)}: spx run's local runner needs kfp 2.17")


@contextlib.contextmanager
def _nothing(*_args: Any, **_kwargs: Any) -> Iterator[None]:
    yield


@contextlib.contextmanager
def local_runner_patches(
    *, workers: int, python: str | None, before_task: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Run KFP's local runner with top-level tasks ``workers`` at a time (1: KFP's own orchestrator) and each
    task's ``python -m …`` run by ``python`` (None: KFP's, ``sys.executable``). ``before_task(name)`` runs in
    a top-level task's worker before the task (e.g. to wait for something only some tasks need)."""
    from kfp.local import logging_utils, subprocess_task_handler
    from kfp.local.orchestrator import enhanced_dag_orchestrator as eo

    check_kfp_local()
    original_dag = eo.run_enhanced_dag
    original_env = subprocess_task_handler.environment
    saved = {
        (eo, "run_enhanced_dag"): original_dag,
        (subprocess_task_handler, "environment"): original_env,
        (logging_utils, "local_logger_context"): logging_utils.local_logger_context,
        (logging_utils, "indented_print"): logging_utils.indented_print,
    }

    def run_dag(**kwargs: Any):
        if workers > 1 and kwargs.get("parent_io_store") is None:
            return run_dag_concurrently(workers=workers, sequential=original_dag, before_task=before_task, **kwargs)
        return original_dag(**kwargs)

    @contextlib.contextmanager
    def environment(use_venv: bool, runner_config: Any = None, has_pip_install: bool = False) -> Iterator[str]:
        if python is None or use_venv or has_pip_install:
            with original_env(use_venv=use_venv, runner_config=runner_config, has_pip_install=has_pip_install) as exe:
                yield exe
        else:
            yield python

    eo.run_enhanced_dag = run_dag
    subprocess_task_handler.environment = environment
    logging_utils.local_logger_context = _nothing
    logging_utils.indented_print = _nothing
    try:
        yield
    finally:
        for (module, name), value in saved.items():
            setattr(module, name, value)


def priority_order(upstream: dict[str, set[str]], kfp_order: list[str]) -> list[str]:
    """The order ready tasks start in when workers are short: the longest chain of tasks still to come first
    (a task that gates many others, like the run id, goes before a leaf), then the most tasks downstream,
    then KFP's own order. Durations are unknown before a run, so a chain counts its tasks."""
    downstream: dict[str, set[str]] = {name: set() for name in upstream}
    for name, ups in upstream.items():
        for up in ups:
            downstream[up].add(name)
    depth: dict[str, int] = {}
    below: dict[str, set[str]] = {}
    for name in reversed(kfp_order):  # sinks first: everything downstream of a task comes later in KFP's order
        depth[name] = 1 + max((depth[d] for d in downstream[name]), default=0)
        below[name] = set().union(*(below[d] | {d} for d in downstream[name]))
    index = {name: i for i, name in enumerate(kfp_order)}
    return sorted(kfp_order, key=lambda n: (-depth[n], -len(below[n]), index[n]))


def run_dag_concurrently(
    *,
    workers: int,
    sequential: Callable[..., Any],
    pipeline_resource_name: str,
    dag_component_spec: Any,
    executors: dict,
    components: dict,
    dag_arguments: dict,
    pipeline_root: str,
    runner: Any,
    unique_pipeline_id: str,
    fail_stack: list[str],
    parent_io_store: Any = None,
    before_task: Callable[[str], None] | None = None,
) -> tuple[dict, Any]:
    """KFP's ``run_enhanced_dag`` for a top-level DAG, with independent tasks ``workers`` at a time."""
    from kfp.local import graph_utils, io, status
    from kfp.local.orchestrator import enhanced_dag_orchestrator as eo
    from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils
    from kfp.pipeline_spec import pipeline_spec_pb2

    common = dict(
        pipeline_resource_name=pipeline_resource_name,
        components=components,
        executors=executors,
        pipeline_root=pipeline_root,
        runner=runner,
        unique_pipeline_id=unique_pipeline_id,
        fail_stack=fail_stack,
    )
    tasks = dict(dag_component_spec.dag.tasks.items())
    every_completed = pipeline_spec_pb2.PipelineTaskSpec.TriggerPolicy.TriggerStrategy.ALL_UPSTREAM_TASKS_COMPLETED
    if any(
        t.trigger_policy.strategy == every_completed and eo._has_task_final_status_input(t) for t in tasks.values()
    ):  # an exit handler: KFP's own orchestrator (runs it after the body)
        return sequential(dag_component_spec=dag_component_spec, dag_arguments=dag_arguments, **common)

    io_store = io.IOStore(parent=parent_io_store)
    arguments = OrchestratorUtils.join_user_inputs_and_defaults(
        dag_arguments=dag_arguments, dag_inputs_spec=dag_component_spec.input_definitions
    )
    for key, value in arguments.items():
        io_store.put_parent_input(key, value)

    def kind(spec: Any) -> str:
        if spec.trigger_policy.condition:
            return "condition"
        if spec.WhichOneof("iterator") and eo._has_valid_iterator(spec):
            return "loop"
        return "task"

    kinds = {name: kind(spec) for name, spec in tasks.items()}
    upstream = {name: set(spec.dependent_tasks) & tasks.keys() for name, spec in tasks.items()}
    order = priority_order(upstream, list(reversed(graph_utils.topological_sort_tasks(tasks))))

    def run(name: str) -> tuple[dict, Any]:
        if before_task is not None:
            before_task(name)
        if kinds[name] == "loop":
            failed = eo._run_parallel_for_task(
                task_name=name,
                task_spec=tasks[name],
                io_store=io_store,
                parallel_executor=eo.ParallelExecutor(),
                **common,
            )  # writes the loop's collected outputs into io_store itself
            return {}, status.Status.FAILURE if failed else status.Status.SUCCESS
        return eo.execute_task(task_name=name, task_spec=tasks[name], io_store=io_store, **common)

    finished: set[str] = set()
    failed: set[str] = set()
    started: set[str] = set()
    running: dict[concurrent.futures.Future, str] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kfp-local-task") as pool:
        while True:
            progressed = True
            while progressed:  # skipping a task can make others ready: scan until nothing changes
                progressed = False
                for name in order:
                    if name in started or not upstream[name] <= finished | failed:
                        continue
                    if len(running) >= workers:
                        break
                    started.add(name)
                    spec = tasks[name]
                    bad = upstream[name] & failed
                    if bad and spec.trigger_policy.strategy != every_completed:
                        logging.info(f"Skipping task {name}: upstream task(s) {sorted(bad)} failed.")
                        io_store.put_task_status(name, "FAILED")
                        failed.add(name)
                        progressed = True
                    elif kinds[name] == "condition" and not eo.ConditionEvaluator.evaluate_condition(
                        spec.trigger_policy.condition, io_store
                    ):
                        logging.info(f"Skipping conditional task {name} (condition evaluated to False)")
                        finished.add(name)
                        progressed = True
                    else:
                        running[pool.submit(run, name)] = name
            if not running:
                break
            done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                try:
                    outputs, task_status = future.result()
                except Exception as exc:  # noqa: BLE001 - KFP's ParallelExecutor treats it the same way
                    logging.error(f"Task {name} failed with exception: {exc}")
                    outputs, task_status = {}, status.Status.FAILURE
                if task_status == status.Status.SUCCESS:
                    if kinds[name] != "loop":
                        io_store.put_task_status(name, "SUCCEEDED")
                        for key, output in outputs.items():
                            io_store.put_task_output(name, key, output)
                    finished.add(name)
                else:
                    io_store.put_task_status(name, "FAILED")
                    if kinds[name] != "loop":
                        fail_stack.append(name)
                    failed.add(name)
    if failed:
        return {}, status.Status.FAILURE
    outputs = OrchestratorUtils.get_dag_outputs(dag_outputs_spec=dag_component_spec.dag.outputs, io_store=io_store)
    return outputs, status.Status.SUCCESS
