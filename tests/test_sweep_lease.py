"""One driver per sweep: the lease file (create, refuse, heartbeat, stale takeover, release)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from relex.errors import RelexError
from relex.sweep.lease import LEASE_FILE, Lease, read_lease, why_stale


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _write(path, **fields):
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": "x",
                                "started_at": time.time(), "heartbeat_at": time.time(), **fields}))


def test_second_holder_is_refused_with_one_line_naming_the_first(tmp_path):
    with Lease(tmp_path / "sw") as first:
        held = read_lease(tmp_path / "sw" / LEASE_FILE)
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        assert held["token"] == first.token
        with pytest.raises(RelexError) as e:
            Lease(tmp_path / "sw").acquire()
        msg = str(e.value)
        assert "\n" not in msg and f"pid {os.getpid()} on {socket.gethostname()}" in msg
    # released: the file is gone and the next driver gets it at once
    assert not (tmp_path / "sw" / LEASE_FILE).exists()
    with Lease(tmp_path / "sw") as again:
        assert again.took_over is None


def test_heartbeat_is_refreshed_while_held(tmp_path):
    lease = Lease(tmp_path, heartbeat_s=0.05).acquire()
    try:
        first = read_lease(lease.path)["heartbeat_at"]
        deadline = time.time() + 10
        while read_lease(lease.path)["heartbeat_at"] == first and time.time() < deadline:
            time.sleep(0.02)
        assert read_lease(lease.path)["heartbeat_at"] > first
        assert read_lease(lease.path)["started_at"] == lease.record["started_at"]
    finally:
        lease.release()


def test_dead_pid_on_this_host_is_taken_over(tmp_path):
    pid = _dead_pid()
    _write(tmp_path / LEASE_FILE, pid=pid)
    assert "is gone" in why_stale(read_lease(tmp_path / LEASE_FILE))
    with Lease(tmp_path) as lease:
        assert f"pid {pid}" in lease.took_over and "is gone" in lease.took_over
        assert read_lease(lease.path)["token"] == lease.token


def test_other_host_waits_for_the_heartbeat_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv("RELEX_LEASE_TIMEOUT_S", "60")
    # a live-looking lease from another host: its pid cannot be checked from here
    _write(tmp_path / LEASE_FILE, host="elsewhere", pid=_dead_pid(), heartbeat_at=time.time() - 30)
    with pytest.raises(RelexError, match="in use by another relex sweep .*on elsewhere"):
        Lease(tmp_path).acquire()
    _write(tmp_path / LEASE_FILE, host="elsewhere", heartbeat_at=time.time() - 61)
    with Lease(tmp_path) as lease:
        assert "no heartbeat for 61 s" in lease.took_over


def test_two_drivers_racing_for_a_stale_lease_one_wins(tmp_path):
    _write(tmp_path / LEASE_FILE, pid=_dead_pid())
    won, lost = [], []
    start = threading.Barrier(4)

    def contend():
        lease = Lease(tmp_path)
        start.wait()
        try:
            lease.acquire()
            won.append(lease)
        except RelexError as e:
            lost.append(str(e))

    threads = [threading.Thread(target=contend) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 3
    assert read_lease(tmp_path / LEASE_FILE)["token"] == won[0].token
    won[0].release()


def test_a_lease_taken_over_is_not_removed_by_its_old_holder(tmp_path):
    old = Lease(tmp_path).acquire()
    old._stop.set()  # the old holder hangs: no heartbeat
    _write(tmp_path / LEASE_FILE, token="new-holder", pid=os.getpid())
    assert not old.refresh() and "taken over" in old.lost
    old.release()
    assert read_lease(tmp_path / LEASE_FILE)["token"] == "new-holder"


def test_bad_timeout_setting_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("RELEX_LEASE_TIMEOUT_S", "soon")
    _write(tmp_path / LEASE_FILE, host="elsewhere")
    with pytest.raises(RelexError, match="RELEX_LEASE_TIMEOUT_S"):
        Lease(tmp_path).acquire()
