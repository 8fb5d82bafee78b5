"""Crash-safe writes: the target is either the old or the new content, never partial."""

from __future__ import annotations

import pytest

from relex.io_utils import atomic_path, atomic_write_text, sha256_file


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "out" / "r.json"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [x.name for x in p.parent.iterdir()] == ["r.json"]


def test_failure_keeps_old_file(tmp_path):
    p = tmp_path / "r.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert p.read_text() == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["r.txt"]


def test_atomic_directory_replace(tmp_path):
    d = tmp_path / "ckpt"
    with atomic_path(d, is_dir=True) as tmp:
        (tmp / "a").write_text("1")
    with atomic_path(d, is_dir=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(x.name for x in d.iterdir()) == ["b"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["ckpt"]


def test_sha256_file(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_atomic_writes_get_ordinary_modes(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    os.umask(mask)
    p = tmp_path / "r.txt"
    atomic_write_text(p, "x")
    ordinary = tmp_path / "o.txt"
    ordinary.write_text("x")
    assert stat.S_IMODE(p.stat().st_mode) == stat.S_IMODE(ordinary.stat().st_mode)
    with atomic_path(tmp_path / "d", is_dir=True) as tmp:
        (tmp / "a").write_text("1")
    (tmp_path / "od").mkdir()
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == stat.S_IMODE((tmp_path / "od").stat().st_mode)


def test_a_compaction_is_due_on_a_doubling_schedule_and_deletes_what_it_absorbed(tmp_path):
    """n changes journaled one file each are compacted about log2(n) times, not n times."""
    from relex.io_utils import Compaction

    c = Compaction()
    compactions = []
    for i in range(100):
        f = tmp_path / f"change-{i}.json"
        f.write_text("{}")
        c.wrote(f)
        if c.due():
            c.absorbed(i + 1)
            compactions.append(i + 1)
    assert compactions == [1, 3, 7, 15, 31, 63]  # each when the journal outgrew the file
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"change-{i}.json" for i in range(63, 100)]
    c.wrote(tmp_path / "change-63.json")  # written again before the next compaction: one file
    assert len(c.journal) == 37 and not c.due()
