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
