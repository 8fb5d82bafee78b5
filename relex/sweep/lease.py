"""One driver per sweep: a lease file in the sweep directory.

A running ``relex sweep`` holds ``<sweep_dir>/driver.lease``, a small JSON file naming it (host,
pid, start time, command) with a heartbeat it refreshes every :data:`HEARTBEAT_S` seconds. A
second driver of the same sweep — plain, ``--resume`` or ``--overwrite`` — finds the file and
refuses with one line naming the holder.

``flock``/``fcntl`` locks are not used: on NFS/EFS they are advisory at best and vanish with a
client's mount. Everything here is plain file operations that shared file systems make atomic:

* the lease is created with ``O_CREAT | O_EXCL`` (exclusive create is atomic on NFSv3+ and EFS);
* the heartbeat rewrites it through a temporary file and ``rename``;
* a stale lease is taken over under a second exclusive-create file (``driver.lease.break``), so
  two drivers that both find it stale cannot both take it.

A lease is stale when its holder is on this host and its pid is gone, or when its heartbeat is
older than the stale timeout (:data:`STALE_AFTER_S`, ``RELEX_LEASE_TIMEOUT_S`` overrides it): a
driver on another host that died, or whose host lost the shared mount, is taken over after that.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from relex.errors import RelexError
from relex.io_utils import atomic_write_text
from relex.sweep.layout import LEASE_FILE, SweepDir
BREAK_SUFFIX = ".break"
HEARTBEAT_S = 10.0
STALE_AFTER_S = 120.0


def stale_after_s() -> float:
    """The heartbeat age after which a lease held from another host counts as abandoned."""
    raw = os.environ.get("RELEX_LEASE_TIMEOUT_S")
    if not raw:
        return STALE_AFTER_S
    try:
        value = float(raw)
    except ValueError:
        raise RelexError(f"RELEX_LEASE_TIMEOUT_S={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise RelexError(f"RELEX_LEASE_TIMEOUT_S={raw!r} must be positive")
    return value


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def read_lease(path: Path) -> dict[str, Any] | None:
    """The lease's contents; None when there is none. A half-visible or unreadable file (a
    create racing this read) reads as a lease with no heartbeat yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        return data if isinstance(data, dict) else {}
    except ValueError:
        return {}


def why_stale(lease: dict[str, Any], now: float | None = None) -> str | None:
    """Why a lease no longer protects anyone (None: its holder may still be running)."""
    now = time.time() if now is None else now
    host, pid = lease.get("host"), lease.get("pid")
    if host == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid):
        return f"its driver (pid {pid}) is gone"
    beat = lease.get("heartbeat_at")
    if not isinstance(beat, (int, float)):
        beat = lease.get("_mtime")
    if isinstance(beat, (int, float)) and now - beat > stale_after_s():
        return f"no heartbeat for {now - beat:.0f} s"
    return None


def describe(lease: dict[str, Any]) -> str:
    started = lease.get("started_at")
    since = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
             if isinstance(started, (int, float)) else "an unknown time")
    return f"pid {lease.get('pid', '?')} on {lease.get('host', '?')}, running since {since}"


class Lease:
    """The lease of one sweep directory, held by this process from :meth:`acquire` to
    :meth:`release`; a daemon thread refreshes its heartbeat meanwhile."""

    def __init__(self, sweep_dir: str | os.PathLike, *, heartbeat_s: float = HEARTBEAT_S):
        self.dir = Path(sweep_dir)
        self.path = SweepDir(self.dir).lease_file
        self.heartbeat_s = heartbeat_s
        self.token = uuid.uuid4().hex
        self.record = {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
                       "started_at": time.time(), "command": " ".join(sys.argv)}
        self.lost: str | None = None  # set when another driver took the lease over
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.took_over: str | None = None  # why the earlier holder's lease was stale

    # ---------------------------------------------------------------- acquire
    def _payload(self) -> str:
        return json.dumps({**self.record, "heartbeat_at": time.time()}, sort_keys=True)

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(self._payload())
            fh.flush()
            os.fsync(fh.fileno())
        return True

    def _current(self) -> dict[str, Any] | None:
        lease = read_lease(self.path)
        if lease is not None and "heartbeat_at" not in lease:
            with contextlib.suppress(FileNotFoundError):
                lease["_mtime"] = self.path.stat().st_mtime
        return lease

    def _break_stale(self, lease: dict[str, Any]) -> bool:
        """Remove a stale lease, under the break file so that one driver alone does it."""
        breaker = self.path.with_name(LEASE_FILE + BREAK_SUFFIX)
        try:
            fd = os.open(breaker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            # another driver is taking it over right now; one that died doing so left the
            # break file behind, which is itself stale after the heartbeat period
            with contextlib.suppress(FileNotFoundError):
                if time.time() - breaker.stat().st_mtime > 3 * self.heartbeat_s:
                    breaker.unlink()
            return False
        os.close(fd)
        try:
            again = self._current()
            if again is None:
                return True
            if again.get("token") != lease.get("token") or why_stale(again) is None:
                return False  # it changed hands or came back to life while we looked
            self.path.unlink()
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                breaker.unlink()

    def acquire(self) -> Lease:
        """Take the lease or raise a one-line RelexError naming its holder."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for _ in range(20):
            if self._create():
                self._start_heartbeat()
                return self
            lease = self._current()
            if lease is None:
                continue  # released between our create and our read
            reason = why_stale(lease)
            if reason is None:
                raise RelexError(
                    f"{self.dir} is in use by another relex sweep ({describe(lease)}); wait for "
                    f"it to end, or stop it (a lease left by a driver on another host is taken "
                    f"over {stale_after_s():.0f} s after its last heartbeat)")
            if self._break_stale(lease):
                self.took_over = f"{describe(lease)}: {reason}"
            else:
                time.sleep(0.2)
        raise RelexError(f"{self.dir}: could not take the sweep's lease ({self.path}); "
                         "another driver keeps taking it")

    # -------------------------------------------------------------- heartbeat
    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="relex-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self.refresh()

    def refresh(self) -> bool:
        """Rewrite the heartbeat; False (and ``lost`` set) when the lease is no longer ours."""
        current = read_lease(self.path)
        if current is None or current.get("token") != self.token:
            if current is not None or not self._stop.is_set():
                holder = describe(current) if current else "nobody"
                self.lost = f"the sweep's lease was taken over (now held by {holder})"
            return False
        try:
            atomic_write_text(self.path, self._payload())
        except OSError:
            return True  # a shared mount hiccup: the next beat tries again
        return True

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        current = read_lease(self.path)
        if current is not None and current.get("token") == self.token:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
