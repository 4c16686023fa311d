"""Atomic writes: the old file survives a failed write, no temporary files are left, normal permissions."""

from __future__ import annotations

import os
import stat

import pytest

from normgrad._io import atomic_write


def test_writes_and_replaces(tmp_path):
    path = tmp_path / "sub" / "report.txt"
    atomic_write(path, lambda tmp: tmp.write_text("one"))
    atomic_write(path, lambda tmp: tmp.write_text("two"))
    assert path.read_text() == "two"
    assert os.listdir(path.parent) == ["report.txt"]


def test_failure_keeps_the_old_file_and_cleans_up(tmp_path):
    path = tmp_path / "ck.npz"
    path.write_text("precious")

    def half_then_fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "precious"
    assert os.listdir(tmp_path) == ["ck.npz"]


def test_new_files_get_ordinary_permissions_and_old_ones_keep_theirs(tmp_path):
    mask = os.umask(0o022)
    try:
        fresh = atomic_write(tmp_path / "a.html", lambda tmp: tmp.write_text("x"))
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        private = tmp_path / "b.txt"
        private.write_text("x")
        private.chmod(0o600)
        atomic_write(private, lambda tmp: tmp.write_text("y"))
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    finally:
        os.umask(mask)


def _killed_mid_write(path, payload: bytes):
    """A process that writes ``payload`` to ``path`` with atomic_write and is SIGKILLed
    half-way through: it leaves the temporary file behind."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import os, signal
        from normgrad._io import atomic_write
        def dying(tmp):
            with open(tmp, "wb") as f:
                f.write({payload!r}[: {len(payload) // 2}])
                f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        atomic_write({str(path)!r}, dying)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()


def test_the_next_write_removes_what_a_killed_writer_left(tmp_path):
    path = tmp_path / "ck.npz"
    path.write_bytes(b"previous")
    _killed_mid_write(path, b"0123456789" * 1000)
    left = [p.name for p in tmp_path.iterdir() if p != path]
    assert len(left) == 1 and left[0].startswith(".ck.npz.") and left[0].endswith(".npz")  # the leftover
    assert path.read_bytes() == b"previous"  # intact
    (tmp_path / ".ck.npz.notes.txt").write_text("mine")  # look-alikes that are not temporary files stay
    (tmp_path / ".other.npz.abcd1234.npz").write_text("another file's")
    atomic_write(path, lambda tmp: tmp.write_bytes(b"next"))
    assert path.read_bytes() == b"next"
    assert sorted(os.listdir(tmp_path)) == [".ck.npz.notes.txt", ".other.npz.abcd1234.npz", "ck.npz"]


def test_a_temporary_file_still_being_written_is_left_alone(tmp_path):
    """Two writers to one path: the one that starts second must not delete the first one's
    temporary file (it is locked while its writer lives)."""
    from normgrad._io import remove_leftovers

    path = tmp_path / "report.txt"
    seen = []

    def outer(tmp):
        tmp.write_text("outer")
        seen.append(remove_leftovers(path))  # what a second writer does first
        atomic_write(path, lambda inner: inner.write_text("inner"))
        assert tmp.exists()

    atomic_write(path, outer)
    assert seen == [[]] and path.read_text() == "outer"
    assert os.listdir(tmp_path) == ["report.txt"]
