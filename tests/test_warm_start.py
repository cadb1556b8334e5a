"""spx run's warm interpreter (spx.pipelines.warm): a task process forked from it behaves as the fresh
``python -m module args`` KFP's SubprocessRunner would start — argv, environment, working directory, output,
exit code, traceback — and never outlives the runner that asked for it.

What this cannot catch: a library whose import-time state differs between the server and a fresh process
for reasons other than the environment (the e2e run compares the figures of a warm run with KFP's own).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from spx.core.settings import process_env
from spx.pipelines.warm import PREFIX, warm_interpreter

pytestmark = pytest.mark.integration  # starts a server process and forks tasks from it

PROBE = """\
import json, os, sys
preloaded = "numpy" in sys.modules
import numpy
print(json.dumps({
    "argv": sys.argv[1:],
    "cwd": os.getcwd(),
    "flavour": os.environ.get("PROBE_FLAVOUR"),
    "kfp_runtime": os.environ.get("_KFP_RUNTIME"),
    "numpy_preloaded": preloaded,
    "parent": os.getppid(),
    "draw": numpy.random.random(),
}))
print("to stderr", file=sys.stderr)
if "--sleep" in sys.argv:
    open(sys.argv[-1], "w").write(str(os.getpid()))
    import time; time.sleep(60)
if "--fail" in sys.argv:
    raise ValueError("probe failed as asked")
sys.exit(int(sys.argv[1]))
"""


def _probe_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "mods"
    folder.mkdir()
    (folder / "probe.py").write_text(PROBE)
    return folder


def _run(python: str, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", "-c", f'{python} -m probe "$@"', "sh", *args],  # as KFP runs it: through a shell
        cwd=cwd,
        env=process_env(PROBE_FLAVOUR="salty", **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _payload(proc: subprocess.CompletedProcess) -> dict:
    import json

    return json.loads(proc.stdout.splitlines()[0])


def test_a_forked_task_gets_its_argv_env_cwd_output_and_exit_code(tmp_path):
    mods = _probe_dir(tmp_path)
    with warm_interpreter(["csv", "numpy"], process_env(), str(tmp_path / "warm.log"), eager=1) as python:
        _wait_for("preloaded csv", tmp_path / "warm.log")  # the eager part, before any task
        time.sleep(0.3)
        assert "numpy" not in (tmp_path / "warm.log").read_text()  # the rest waits for a task to ask
        early = _run(python, ["0"], mods)
        _wait_for("preloading done: 2 modules", tmp_path / "warm.log")
        ok = _run(python, ["0", "a b"], mods)
        again = _run(python, ["0"], mods)
        code = _run(python, ["7"], mods)
        failed = _run(python, ["0", "--fail"], mods)
    first = _payload(ok)
    assert ok.returncode == 0 and first["argv"] == ["0", "a b"] and first["cwd"] == str(mods)
    assert first["flavour"] == "salty"  # the client's environment, not the server's
    assert first["kfp_runtime"] is None  # the server's own _KFP_RUNTIME=true does not leak into a task
    assert first["numpy_preloaded"] and not _payload(early)["numpy_preloaded"]  # forks of the server, which
    # imported numpy after the first task had asked
    assert first["parent"] != os.getpid()  # the server's child, not the shell's
    assert first["draw"] != _payload(again)["draw"]  # NumPy reseeded per task, as in a fresh interpreter
    assert "to stderr" in ok.stderr and f"{PREFIX} task process" in ok.stdout and "s CPU" in ok.stdout
    assert code.returncode == 7
    assert failed.returncode == 1 and "ValueError: probe failed as asked" in failed.stderr
    log = (tmp_path / "warm.log").read_text()
    assert "preloaded numpy" in log and "(exit 7)" in log and "stopped; 2 preloaded" in log


def test_without_a_server_the_task_runs_in_a_fresh_interpreter(tmp_path):
    mods = _probe_dir(tmp_path)
    with warm_interpreter([], process_env(), str(tmp_path / "warm.log")) as python:
        sock = Path(python).parent / "sock"
        sock.unlink()  # the server can no longer be reached
        gone = _run(python, ["3", "x"], mods)
        command = subprocess.run([python, "-c", "print(6 * 7)"], capture_output=True, text=True, timeout=60)
    assert gone.returncode == 3 and _payload(gone)["argv"] == ["3", "x"]
    assert not _payload(gone)["numpy_preloaded"]  # a fresh interpreter: nothing imported before the probe
    assert "running a fresh interpreter" in gone.stderr and PREFIX + " task process" not in gone.stdout
    assert command.returncode == 0 and command.stdout.strip() == "42"  # not `-m module`: the real interpreter


def test_a_task_does_not_outlive_its_client(tmp_path):
    mods = _probe_dir(tmp_path)
    pid_file = tmp_path / "task.pid"
    with warm_interpreter([], process_env(), str(tmp_path / "warm.log")) as python:
        client = subprocess.Popen([python, "-m", "probe", "0", "--sleep", str(pid_file)], cwd=mods, env=process_env())
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the forked task never started"
            time.sleep(0.05)
        task = int(pid_file.read_text())
        client.send_signal(signal.SIGKILL)  # the runner's side goes away without a word
        client.wait()
        deadline = time.monotonic() + 20
        while _alive(task):
            assert time.monotonic() < deadline, "the task outlived its client"
            time.sleep(0.05)
    assert "went away" in (tmp_path / "warm.log").read_text()


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for the server to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _wait_for(text: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while text not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, f"the warm interpreter's log never said {text!r}"
        time.sleep(0.05)


def test_the_pid_and_the_exit_arriving_in_one_read_are_both_delivered():
    """A task that ends before its client reads the pid: the server's two messages reach the client in one
    read, and the second is not lost (the client would say the server went away and fail the task)."""
    import socket

    from spx.pipelines.warm import _read, _send

    server, client = socket.socketpair()
    with server, client:
        _send(server, {"pid": 4242})
        _send(server, {"status": 0, "cpu": 0.25, "preloaded": 3})
        server.shutdown(socket.SHUT_WR)
        time.sleep(0.1)  # both are in the client's buffer before it reads
        reader = client.makefile("rb")
        assert _read(reader) == {"pid": 4242}
        assert _read(reader) == {"status": 0, "cpu": 0.25, "preloaded": 3}
        assert _read(reader) is None  # then the server closed
        reader.close()
