"""The core helpers every layer relies on: managed processes, the local-run task log, the bucket layout."""

from __future__ import annotations

import sys
import textwrap
import time

import pytest

from spx.core import layout
from spx.core.errors import ServiceError
from spx.core.processes import ManagedProcess, free_port, http_ok
from spx.core.services import weed_binary
from spx.pipelines.local import TaskLogRouter


def _http_server(port: int, delay: float = 0.0) -> list[str]:
    code = textwrap.dedent(f"""
        import http.server, time
        time.sleep({delay})
        http.server.ThreadingHTTPServer(("127.0.0.1", {port}), http.server.SimpleHTTPRequestHandler).serve_forever()
    """)
    return [sys.executable, "-c", code]


def test_managed_process_waits_until_ready_and_stops_the_whole_group(tmp_path):
    port = free_port()
    proc = ManagedProcess(
        "web",
        _http_server(port, delay=1.0),
        log_path=tmp_path / "web.log",
        cwd=tmp_path,
        ready=http_ok(f"http://127.0.0.1:{port}/"),
        ready_timeout=30,
    )
    with proc:
        assert proc.alive()
        http_ok(f"http://127.0.0.1:{port}/")()  # answered: ready really means ready
        pid = proc.pid
    assert not proc.alive() and proc.returncode is not None
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)


def test_a_process_that_dies_before_ready_fails_fast_naming_its_log(tmp_path):
    log = tmp_path / "bad.log"
    proc = ManagedProcess(
        "bad",
        [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"],
        log_path=log,
        ready=http_ok(f"http://127.0.0.1:{free_port()}/"),
        ready_timeout=60,
    )
    started = time.monotonic()
    with pytest.raises(ServiceError, match=f"bad exited before it was ready.*{log.name}"):
        proc.start()
    assert time.monotonic() - started < 30  # did not wait for the whole timeout
    assert "boom" in log.read_text()


def test_readiness_timeout_is_a_service_error(tmp_path):
    proc = ManagedProcess(
        "sleeper",
        [sys.executable, "-c", "import time; time.sleep(60)"],
        log_path=tmp_path / "s.log",
        ready=http_ok(f"http://127.0.0.1:{free_port()}/"),
        ready_timeout=1.5,
    )
    with pytest.raises(ServiceError, match="not ready after"):
        proc.start()
    assert not proc.alive()


def test_task_log_router_files_each_task_and_reports_start_and_end(tmp_path):
    events = []
    router = TaskLogRouter(tmp_path / "run", on_event=lambda e: events.append((e.task, e.status)))
    # what KFP's local runner prints (colours included), split across writes as print() does
    router.write("16:00:00.000 - INFO - Executing task \x1b[96m'bronze-market'\x1b[0m\n")
    router.write('    [KFP Executor] bronze: 31757 bars\n    executor input {"inputs"')
    router.write(
        ": {}}\n16:00:01.000 - INFO - Task \x1b[96m'bronze-market'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m\n"
    )
    router.write("16:00:02.000 - INFO - Executing task 'gold-features'\nTraceback: boom\n")
    router.write("16:00:03.000 - ERROR - Task 'gold-features' finished with status FAILURE\n")
    assert events == [
        ("bronze-market", "RUNNING"),
        ("bronze-market", "SUCCESS"),
        ("gold-features", "RUNNING"),
        ("gold-features", "FAILURE"),
    ]
    bronze_log = (tmp_path / "run" / "bronze-market.log").read_text()
    assert "31757 bars" in bronze_log and '{"inputs": {}}' in bronze_log and "\x1b" not in bronze_log
    assert router.failed().task == "gold-features"
    assert "Traceback: boom" in router.last_lines("gold-features")


def test_weed_is_found_next_to_the_interpreter_without_path(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert weed_binary().endswith("/weed")


def test_layout_keys_and_variants():
    assert layout.gold_features_key("r1") == "gold/r1/features.parquet"
    assert layout.model_key("r1", "xgb_base", "metrics.json") == "models/r1/xgb_base/metrics.json"
    keys = [
        "models/r1/xgb_base/metrics.json",
        "models/r1/lgbm_all/model.bst",
        "models/r10/x/metrics.json",
        "models/r1/README",
    ]
    assert layout.variants_in(keys, "r1") == ["lgbm_all", "xgb_base"]
