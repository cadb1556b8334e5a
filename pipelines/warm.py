"""A warm interpreter for ``spx run``'s task processes: import the libraries once, fork a task from it.

KFP's local ``SubprocessRunner`` starts every task as a fresh ``python -m kfp.dsl.executor_main …``. Each one
imports what its stage needs before doing any work: pandas, pyarrow, boto3, and for a training variant
scikit-learn, XGBoost, LightGBM, matplotlib and MLflow with its SQL store — measured 5-7 s of CPU for each of
the six variants and 1-2 s for the small tasks, about half of the default run's CPU on two cores.

Here one server process (``serve``) imports those libraries once, and every task process is a ``fork`` of it
(copy-on-write: the imported modules are shared, not copied). The task itself is unchanged: KFP still runs
its shell command, which still runs ``<python> -m kfp.dsl.executor_main <args>``; only ``<python>`` is this
module's client (``client``, started with ``-I -S``: ~20 ms). The client passes its argv, environment,
working directory and its stdin/stdout/stderr (``SCM_RIGHTS`` over a Unix socket in a private 0700
directory) to the server; the server forks, the child takes them over, becomes ``python -m <module> <args>``
(``runpy``, as ``-m`` does) and exits through the interpreter's normal shutdown (``atexit`` handlers, thread
joins, flushed streams), so its exit code, output and side effects are those of a fresh interpreter's. The
client waits for that exit code, returns it, and prints one line with the child's CPU time (a forked child is
the server's, not the runner's, child: the runner cannot measure it otherwise).

What a fork keeps that a fresh interpreter would not: the modules imported by the server (the same modules
the task imports itself, with the same environment: the server starts with the runner's environment and
``_KFP_RUNTIME=true``, as the task's shell sets it) and the hash seed; NumPy's legacy global generator is
reseeded in the child, as a fresh interpreter seeds it. The server imports nothing that starts Python threads
and refuses to fork when one is running (then the client runs a fresh interpreter). When the server is gone,
busy importing for too long or the command is not ``-m <module>``, the client ``exec``s the real
interpreter instead: the task runs exactly as before, only slower.

The client and the server are stdlib only (the client runs with ``-I -S``: no site-packages);
:func:`warm_interpreter` starts the server as a :class:`~spx.core.processes.ManagedProcess`.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from typing import Iterator

PREFIX = "[spx warm start]"
_HEADER = struct.Struct("!I")
_CONNECT_TIMEOUT_S = 120.0  # the server imports between requests: one import (MLflow's SQL store) is ~1-6 s


# ------------------------------------------------------------------------------------------------ protocol


def _send(sock: socket.socket, payload: dict, fds: tuple[int, ...] = ()) -> None:
    data = json.dumps(payload).encode()
    message = _HEADER.pack(len(data)) + data
    sent = 0
    if fds:  # the descriptors travel with the first bytes
        sent = sock.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    sock.sendall(message[sent:])


def _recv(sock: socket.socket, max_fds: int = 0) -> tuple[dict | None, list[int]]:
    """The one message a connection's peer sends, and the file descriptors sent with it; ``(None, [])`` when
    the peer closed. (Bytes past the message are dropped: for a peer that sends several, see :func:`_read`.)"""
    fds: list[int] = []
    chunks = b""
    need = _HEADER.size
    length = None
    while len(chunks) < need:
        if max_fds and not fds:
            data, ancdata, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(max_fds * array.array("i").itemsize))
            for level, kind, blob in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    got = array.array("i")
                    got.frombytes(blob[: len(blob) - (len(blob) % got.itemsize)])
                    fds.extend(got)
        else:
            data = sock.recv(65536)
        if not data:
            for fd in fds:
                os.close(fd)
            return None, []
        chunks += data
        if length is None and len(chunks) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(chunks)
            need = _HEADER.size + length
    return json.loads(chunks[_HEADER.size : need]), fds


def _read(reader) -> dict | None:
    """The next message from a buffered reader over a socket (the server's several to a client); None when
    the peer closed."""
    header = reader.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (length,) = _HEADER.unpack(header)
    body = reader.read(length)
    return json.loads(body) if len(body) == length else None


# ------------------------------------------------------------------------------------------------ client


def client(socket_path: str, python: str, argv: list[str]) -> int:
    """Run ``python argv…`` as a fork of the warm server at ``socket_path``; exec ``python`` when it cannot."""
    if len(argv) < 2 or argv[0] != "-m":
        return _fallback(python, argv, "not a `-m module` command")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(_CONNECT_TIMEOUT_S)
        sock.connect(socket_path)
        _send(
            sock,
            {"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()},  # noqa: TID251 - relayed, not read
            (0, 1, 2),
        )
        reader = sock.makefile("rb")  # the pid and the exit may arrive in one read: buffered
        started = _read(reader)  # the child's pid, or a refusal
    except OSError as exc:
        sock.close()
        return _fallback(python, argv, f"no warm interpreter ({exc.__class__.__name__}: {exc})")
    if not started or "pid" not in started:
        sock.close()
        return _fallback(python, argv, (started or {}).get("refused", "the warm interpreter closed"))
    pid = int(started["pid"])

    def forward(signum, _frame):  # Ctrl-C / a terminated runner: the task gets the signal, as a child would
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    sock.settimeout(None)
    ended = _read(reader)
    reader.close()
    sock.close()
    if ended is None:
        print(f"{PREFIX} the warm interpreter went away while task process {pid} ran", file=sys.stderr)
        return 1
    try:
        sys.stdout.write(
            f"{PREFIX} task process {pid} was forked from the warm interpreter "
            f"({ended.get('preloaded', 0)} modules preloaded): {ended['cpu']:.2f} s CPU\n"
        )
        sys.stdout.flush()
    except OSError:  # the reader is gone (e.g. `| head`): the exit code still counts
        pass
    status = int(ended["status"])
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        return 128 + sig
    return os.waitstatus_to_exitcode(status)


def _fallback(python: str, argv: list[str], why: str) -> int:
    print(f"{PREFIX} {why}: running a fresh interpreter", file=sys.stderr)
    sys.stderr.flush()
    os.execv(python, [python, *argv])
    return 127  # not reached


# ------------------------------------------------------------------------------------------------ server


class _Server:
    """Accept task requests, fork a child per request, report its exit; import ``preload`` while idle, from
    the first request on. A ``module:function`` entry also calls that function (a cache to fill once)."""

    def __init__(self, socket_path: str, preload: list[str], log, eager: int = 0) -> None:
        self.log = log
        self.pending = list(preload)
        self.eager = eager  # how many of ``preload`` to import before any task asks
        self.preloaded = 0
        self.children: dict[int, tuple[socket.socket, float]] = {}  # pid -> connection, start time
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(socket_path)
        self.listener.listen(64)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select() through the wakeup fd
        self.stopping = False
        self.asked = False  # the rest waits for the first task: a fully cached run imports only the first few
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the tasks; the runner stops us after them
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")

    def _stop(self, *_):
        self.stopping = True

    def serve(self) -> dict | None:
        """The server loop. Returns only in a forked child: the request it is to run."""
        while not self.stopping or self.children:
            if self.stopping:
                for pid in self.children:
                    _kill(pid, signal.SIGTERM)
            idle = bool(self.pending) and (self.asked or self.preloaded < self.eager) and not self.stopping
            for key, _ in self.selector.select(0 if idle else 1.0):
                if key.data == "accept":
                    job = self._accept()
                    if job is not None:
                        return job
                elif key.data == "wake":
                    try:
                        os.read(self.wake_r, 4096)
                    except BlockingIOError:
                        pass
                else:  # a client connection became readable: it closed (its task's runner went away)
                    self.selector.unregister(key.fileobj)
                    self.log(f"the client of task process {key.data} went away: terminating it")
                    _kill(key.data, signal.SIGTERM)
            self._reap()
            if idle and not self.selector.select(0):
                self._import_next()
        self.listener.close()
        return None

    def _import_next(self) -> None:
        import importlib
        import threading

        name = self.pending.pop(0)
        started = time.perf_counter()
        try:
            module_name, _, function = name.partition(":")
            module = importlib.import_module(module_name)
            if function:  # a cache a task would otherwise fill itself, e.g. the installed packages' map
                getattr(module, function)()
            self.preloaded += 1
            self.log(f"preloaded {name} in {time.perf_counter() - started:.2f} s")
        except Exception as exc:  # noqa: BLE001 - a task that needs it imports it itself (and reports)
            self.log(f"could not preload {name}: {exc.__class__.__name__}: {exc}")
        if threading.active_count() > 1:  # never fork with Python threads running: stop preloading
            self.log(f"{name} started a thread: no further preloading, and tasks run in fresh interpreters")
            self.pending.clear()
        if not self.pending:
            self.log(f"preloading done: {self.preloaded} modules")

    def _accept(self) -> dict | None:
        import gc
        import threading

        conn, _ = self.listener.accept()
        self.asked = True
        conn.settimeout(10)
        try:
            request, fds = _recv(conn, max_fds=3)
        except OSError as exc:
            self.log(f"bad request: {exc}")
            conn.close()
            return None
        if request is None or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            conn.close()
            return None
        if threading.active_count() > 1:
            for fd in fds:
                os.close(fd)
            _send(conn, {"refused": "the warm interpreter runs threads (fork would not be safe)"})
            conn.close()
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        gc.freeze()  # the preloaded objects stay out of the children's collections (and their pages shared)
        pid = os.fork()
        if pid == 0:
            self._become_child(conn, fds)
            return request
        for fd in fds:
            os.close(fd)
        self.children[pid] = (conn, time.perf_counter())
        self.selector.register(conn, selectors.EVENT_READ, pid)
        _send(conn, {"pid": pid})
        return None

    def _become_child(self, conn: socket.socket, fds: list[int]) -> None:
        signal.set_wakeup_fd(-1)
        for signum, handler in (
            (signal.SIGCHLD, signal.SIG_DFL),
            (signal.SIGTERM, signal.SIG_DFL),
            (signal.SIGINT, signal.default_int_handler),
        ):
            signal.signal(signum, handler)
        self.selector.close()
        for other, _ in self.children.values():
            other.close()
        self.children.clear()
        self.listener.close()
        conn.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn, started = self.children.pop(pid)
            try:
                self.selector.unregister(conn)
            except (KeyError, ValueError):
                pass
            cpu = usage.ru_utime + usage.ru_stime
            self.log(
                f"task process {pid} ended ({_describe(status)}) after {time.perf_counter() - started:.1f} s, "
                f"{cpu:.2f} s CPU"
            )
            try:
                _send(conn, {"status": status, "cpu": cpu, "preloaded": self.preloaded})
            except OSError:
                pass
            conn.close()


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _describe(status: int) -> str:
    return f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"


def _run_child(request: dict) -> None:
    """Become ``python -m <module> <args>`` with the client's environment and working directory."""
    import runpy

    os.chdir(request["cwd"])
    os.environ.clear()  # noqa: TID251 - the task's own environment, as the runner passed it
    os.environ.update(request["env"])  # noqa: TID251
    sys.path[0] = request["cwd"]  # what `python -m` puts first
    numpy = sys.modules.get("numpy")
    if numpy is not None:  # a fresh interpreter seeds NumPy's legacy global generator from the OS
        numpy.random.seed()
    module, args = request["argv"][1], request["argv"][2:]
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def serve(socket_path: str, preload: list[str], eager: int = 0) -> None:
    """The server (its log: stderr). Returns only in a forked child, after running its task."""

    def log(message: str) -> None:
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} warm[{os.getpid()}] {message}\n")
        sys.stderr.flush()

    server = _Server(socket_path, preload, log, eager)
    log(f"serving on {socket_path}; preloading {len(preload)} modules while idle")
    job = server.serve()
    if job is None:
        own = os.times()
        log(f"stopped; {server.preloaded} preloaded, own CPU {own.user + own.system:.2f} s")
        # nothing else of the server's to flush or finalize: skip tearing down the preloaded modules (~0.4 s)
        os._exit(0)
    _run_child(job)  # the forked child: runs the task, then exits as any interpreter does


@contextlib.contextmanager
def warm_interpreter(preload: list[str], env: dict[str, str], log_path: str, eager: int = 0) -> Iterator[str | None]:
    """Start a warm server with environment ``env`` that preloads ``preload`` in that order, between requests:
    the first ``eager`` at once, the rest from the first request on; yield the path of an executable that runs
    ``-m module args…`` as a fork of it (None, with a warning, when the server does not start: the tasks then
    run in fresh interpreters). The server is a :class:`~spx.core.processes.ManagedProcess` (its own process
    group, log ``log_path``): stopped with its running tasks on exit, its private directory removed."""
    import logging
    import shlex
    import shutil
    import tempfile
    from pathlib import Path

    from spx.core.errors import ServiceError
    from spx.core.processes import ManagedProcess, NotReady

    folder = tempfile.mkdtemp(prefix="spx-warm-")  # mode 0700: only this user reaches the socket
    sock = os.path.join(folder, "sock")
    python = os.path.join(folder, "python")
    with open(python, "w", encoding="utf-8") as shim:
        shim.write(
            "#!/bin/sh\n"
            f"exec {shlex.quote(sys.executable)} -I -S {shlex.quote(os.path.abspath(__file__))} client "
            f'{shlex.quote(sock)} {shlex.quote(sys.executable)} "$@"\n'
        )
    os.chmod(python, 0o700)

    def listening() -> None:
        if not os.path.exists(sock):
            raise NotReady(f"no socket {sock} yet")

    server = ManagedProcess(
        "warm interpreter",
        [sys.executable, "-m", "spx.pipelines.warm", "serve", sock, str(eager), *preload],
        log_path=Path(log_path),
        env={**env, "_KFP_RUNTIME": "true"},  # as the task's shell sets it: kfp imports its runtime half
        ready=listening,
        ready_timeout=30,
    )
    try:
        try:
            server.start()
        except ServiceError as exc:
            logging.getLogger(__name__).warning("no warm interpreter, tasks start fresh interpreters: %s", exc)
            yield None
        else:
            yield python
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> None:
    if argv[:1] == ["client"]:
        sys.exit(client(argv[1], argv[2], argv[3:]))
    if argv[:1] == ["serve"]:
        serve(argv[1], argv[3:], int(argv[2]))
        return
    raise SystemExit("usage: warm.py client SOCKET PYTHON ARGS… | serve SOCKET EAGER MODULE…")


if __name__ == "__main__":
    main(sys.argv[1:])
