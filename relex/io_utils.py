"""Crash-safe file writing, reading relex's own JSON files, and the cache location.

Everything relex writes (results, checkpoints, caches) goes to a temporary name in the target's
directory and is renamed into place, so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from relex.errors import RelexError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _current_umask()


def cache_root() -> Path:
    """Where features and built backbones are cached: $RELEX_CACHE, else ~/.cache/relex."""
    env = os.environ.get("RELEX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "relex"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    For directories an existing target is replaced whole. On an exception the temporary is
    removed and the target is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    # mkstemp/mkdtemp make owner-only entries; give them the modes an ordinary write would
    # (umask applied), so results on shared storage stay readable by the team
    os.chmod(tmp, (0o777 if is_dir else 0o666) & ~UMASK)
    try:
        yield tmp
        if is_dir:
            old = None
            if target.exists():
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                os.replace(target, old)
            os.replace(tmp, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise


def check_output(path: str | os.PathLike, flag: str, *, is_dir: bool = False,
                 create_parents: bool = True) -> Path:
    """Pre-flight of an output path, before any work: one :class:`RelexError` naming the path
    and the reason when it cannot be written (a file where a directory is expected, or the
    reverse; no permission; a read-only file system; with ``create_parents`` False, a missing
    parent). Missing directories above it are created later by the write itself (and only
    then): the check writes and removes one empty probe file in the nearest existing directory.
    """
    target = Path(path).expanduser()
    shown = f"{flag} {path}"
    try:
        return _check_output(target, shown, is_dir, create_parents)
    except OSError as e:  # a directory above it that cannot even be looked into
        raise RelexError(f"{shown}: cannot write in {e.filename or target.parent} "
                         f"({e.strerror or e})") from None


def _check_output(target: Path, shown: str, is_dir: bool, create_parents: bool) -> Path:
    if target.exists() and target.is_dir() != is_dir:
        raise RelexError(f"{shown}: is a {'file' if is_dir else 'directory'}; "
                         f"give a {'directory' if is_dir else 'file name'}")
    where = target if is_dir and target.is_dir() else target.parent
    if not create_parents and not where.exists():
        raise RelexError(f"{shown}: {where} does not exist (relex creates {target.name}, not the "
                         "directories above it; is a file system not mounted?)")
    existing = where
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise RelexError(f"{shown}: {existing} is a file, not a directory")
    probe_write(existing)
    return target


def probe_write(directory: str | os.PathLike) -> None:
    """Write and remove one empty file in ``directory``: the OSError (its filename the
    directory) when that fails. Asking the file system is the only check that holds for ACLs,
    read-only mounts and root alike."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".relex-probe.", dir=directory)
    except OSError as e:
        e.filename = str(directory)
        raise
    os.close(fd)
    os.unlink(probe)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    atomic_write_bytes(path, text.encode(encoding))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def json_default(o):
    """``json.dumps(default=...)`` for what relex writes: numpy/torch scalars and arrays
    (``.tolist()``) and paths; anything else is a bug and raises TypeError."""
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file's content, or one :class:`RelexError` naming the file and what is wrong."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RelexError(f"{p}: cannot read ({e})") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise RelexError(f"{p}: not valid JSON ({e})") from None


class Compaction:
    """A journal of small files folded now and then into one compacted file.

    A writer that changes a little at a time (a trial's results, an ASHA decision) writes each
    change as its own small file (by rename) and folds them into the compacted file when they
    outnumber the records it holds, and at the end: a doubling schedule, so n changes cost O(n)
    bytes in all instead of a whole rewrite per change. The compacted file is written whole
    before the files it absorbed are deleted; a crash in between leaves files that repeat
    compacted records, which readers take as they are (or skip).
    """

    def __init__(self, compacted: int = 0, journal: Iterable[Path] = ()):
        self.compacted = compacted  # records the compacted file holds
        self.journal: set[Path] = set(journal)  # files written since

    def wrote(self, path: Path) -> None:
        self.journal.add(path)

    def due(self) -> bool:
        """The journal outnumbers the compacted file (or that holds nothing yet)."""
        return len(self.journal) > self.compacted

    def absorbed(self, records: int) -> None:
        """The compacted file, written whole, now holds ``records``: delete the journal."""
        for path in self.journal:
            path.unlink(missing_ok=True)
        self.journal.clear()
        self.compacted = records
