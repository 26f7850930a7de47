"""Files that are either the old version or the new one, never half of either.

Everything the course writes to keep (checkpoints, manifests, metrics, plots) goes through
:func:`atomic_open`: the bytes go to a temporary file in the same directory, are flushed
to disk (``fsync``), and only then replace the target with one ``os.replace``, which is
atomic on POSIX and Windows. A crash or a KeyboardInterrupt in the middle leaves the
previous file untouched and no temporary file behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_open", "write_atomic", "write_json_atomic"]


@contextlib.contextmanager
def atomic_open(path, mode: str = "wb"):
    """``with atomic_open(path, "w") as f: ...``: ``path`` appears only if the block succeeds."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)


def write_atomic(path, data) -> None:
    """Write ``data`` (``str`` or ``bytes``) to ``path`` atomically."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def write_json_atomic(path, data) -> None:
    """``data`` as indented JSON (plus a final newline), written atomically."""
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; POSIX only (Windows cannot open a directory).
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
