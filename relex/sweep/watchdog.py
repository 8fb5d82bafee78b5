"""Nothing of a Ray that ``relex sweep`` started itself outlives the sweep's driver.

When the driver dies without ``ray.shutdown()`` (SIGKILL, the OOM killer, a lost terminal), Ray
tears down most of its processes, but its ``DashboardAgent`` and ``RuntimeEnvAgent`` ignore
SIGTERM and stay, orphaned. The driver therefore starts this watchdog (``python -m
relex.sweep.watchdog``) in a session of its own, so that signals to the driver's process group
do not reach it. It polls the driver every :data:`POLL_S` seconds and records the Ray processes
below it (pid and start time, so a recycled pid is never hit); once the driver is gone it kills
every recorded process still alive and every process naming the Ray session directory, removes
the driver's sweep lease when it still holds it, and exits. A driver that ends normally stops
the watchdog with SIGTERM after ``ray.shutdown()``; it then sweeps up whatever is left the
same way.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.5
_RAY_NAMES = ("raylet", "gcs_server")


def _psutil():
    """psutil: installed, or the copy Ray ships in ``ray/thirdparty_files`` (found without
    importing ray, which would cost this small process seconds and a hundred MB)."""
    try:
        import psutil
    except ImportError:
        spec = importlib.util.find_spec("ray")
        if spec is None or not spec.submodule_search_locations:
            raise
        sys.path.append(os.path.join(list(spec.submodule_search_locations)[0], "thirdparty_files"))
        import psutil
    return psutil


def _is_ray_process(proc) -> bool:
    try:
        name = proc.name()
        cmd = " ".join(proc.cmdline())
    except Exception:
        return False
    return (name in _RAY_NAMES or name.startswith("ray::") or cmd.startswith("ray::")
            or f"{os.sep}ray{os.sep}" in cmd)


class Watch:
    """The Ray processes below one driver, tracked while it lives and ended when it dies."""

    def __init__(self, driver_pid: int, session_dir: str | None = None):
        self.psutil = _psutil()
        self.driver_pid = driver_pid
        self.session_dir = session_dir
        self.seen: dict[int, float] = {}  # pid -> create_time
        try:
            self.driver = self.psutil.Process(driver_pid)
        except self.psutil.NoSuchProcess:
            self.driver = None

    def driver_alive(self) -> bool:
        if self.driver is None:
            return False
        try:
            return self.driver.is_running() and self.driver.status() != self.psutil.STATUS_ZOMBIE
        except self.psutil.NoSuchProcess:
            return False

    def record(self) -> None:
        if self.driver is None:
            return
        with contextlib.suppress(self.psutil.Error):
            for child in self.driver.children(recursive=True):
                if child.pid != os.getpid() and _is_ray_process(child):
                    with contextlib.suppress(self.psutil.Error):
                        self.seen[child.pid] = child.create_time()

    def leftovers(self) -> list:
        out = []
        for pid, created in self.seen.items():
            with contextlib.suppress(self.psutil.Error):
                proc = self.psutil.Process(pid)
                if abs(proc.create_time() - created) < 1e-3:
                    out.append(proc)
        if self.session_dir:
            known = {p.pid for p in out}
            for proc in self.psutil.process_iter():
                with contextlib.suppress(self.psutil.Error):
                    if proc.pid not in known and proc.pid != os.getpid() and \
                            self.session_dir in " ".join(proc.cmdline()):
                        out.append(proc)
        return out

    def end_leftovers(self) -> int:
        procs = self.leftovers()
        for proc in procs:
            with contextlib.suppress(self.psutil.Error):
                proc.kill()
        self.psutil.wait_procs(procs, timeout=5)
        return len(procs)


def _drop_lease(path: str | None, token: str | None) -> None:
    if not path or not token:
        return
    with contextlib.suppress(OSError, ValueError):
        if json.loads(Path(path).read_text(encoding="utf-8")).get("token") == token:
            Path(path).unlink()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m relex.sweep.watchdog")
    p.add_argument("--pid", type=int, required=True, help="the driver's pid")
    p.add_argument("--session-dir", help="the Ray session directory the driver started")
    p.add_argument("--lease", help="the driver's lease file, removed when the driver dies")
    p.add_argument("--token", help="the driver's lease token")
    args = p.parse_args(argv)
    watch = Watch(args.pid, args.session_dir)
    stopping = {"by_driver": False}

    def on_term(signum, frame):  # the driver ended normally and stops us
        stopping["by_driver"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for the driver, not for us
    while watch.driver_alive() and not stopping["by_driver"]:
        watch.record()
        time.sleep(POLL_S)
    watch.end_leftovers()
    if not stopping["by_driver"]:
        _drop_lease(args.lease, args.token)
    return 0


class Watchdog:
    """The driver's handle on its watchdog process."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    @classmethod
    def start(cls, session_dir: str | None, lease=None) -> Watchdog:
        cmd = [sys.executable, "-m", "relex.sweep.watchdog", "--pid", str(os.getpid())]
        if session_dir:
            cmd += ["--session-dir", session_dir]
        if lease is not None:
            cmd += ["--lease", str(lease.path), "--token", lease.token]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": _import_path()})
        return cls(proc)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _import_path() -> str:
    """PYTHONPATH under which the watchdog imports this very relex (a source tree on sys.path
    wins over an installed copy)."""
    root = str(Path(__file__).resolve().parents[2])
    rest = os.environ.get("PYTHONPATH")
    return root + (os.pathsep + rest if rest else "")


if __name__ == "__main__":
    sys.exit(main())
