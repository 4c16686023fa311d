"""Offline data: MNIST-1D generated locally, scikit-learn digits, CIFAR-10 from tiny files written here."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from normgrad.data import load_cifar10, load_digits, load_mnist1d


def test_mnist1d_shapes_splits_and_determinism():
    data = load_mnist1d()
    assert data["X_train"].shape == (3500, 40) and data["X_val"].shape == (500, 40)
    assert data["X_test"].shape == (1000, 40)
    assert data["X_train"].dtype == np.float32 and data["y_train"].dtype == np.int64
    assert set(np.unique(data["y_train"])) == set(range(10))
    assert abs(data["X_train"].mean()) < 1e-3 and abs(data["X_train"].std() - 1) < 1e-2  # standardized
    again = load_mnist1d()
    np.testing.assert_array_equal(again["X_val"], data["X_val"])
    other = load_mnist1d(seed=1)
    assert not np.array_equal(other["X_train"][:10], data["X_train"][:10])


def test_digits_shapes():
    data = load_digits()
    assert data["X_train"].shape[1] == 64 and data["X_test"].shape == (297, 64)
    assert len(data["X_train"]) + len(data["X_val"]) + len(data["X_test"]) == 1797
    assert set(np.unique(data["y_test"])) <= set(range(10))


def _write_batches(root, rng, n=6, protocol=2, as_array=True):
    """Tiny files in the CIFAR-10 python format: dict of data (n, 3072) uint8 and labels."""
    root.mkdir(exist_ok=True)
    written = {}
    for name in ("data_batch_1", "data_batch_2", "test_batch"):
        pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(k) for k in rng.integers(10, size=n)]
        batch = {b"batch_label": name.encode(), b"labels": labels,
                 b"data": pixels if as_array else pixels.tobytes(), b"filenames": [b"a.png"] * n}
        with open(root / name, "wb") as f:
            pickle.dump(batch, f, protocol=protocol)
        written[name] = (pixels, labels)
    return written


@pytest.mark.parametrize("protocol,as_array", [(2, True), (4, True), (2, False)])
def test_cifar10_reads_batch_files(tmp_path, rng, protocol, as_array):
    written = _write_batches(tmp_path, rng, protocol=protocol, as_array=as_array)
    data = load_cifar10(tmp_path, num_val=3, subtract_mean=False)
    assert data["X_train"].shape == (9, 3, 32, 32) and data["X_val"].shape == (3, 3, 32, 32)
    pixels, labels = written["data_batch_1"]
    np.testing.assert_array_equal(data["X_train"][0], pixels[0].reshape(3, 32, 32).astype(np.float32))
    assert data["y_train"][:6].tolist() == labels
    np.testing.assert_array_equal(data["y_test"], written["test_batch"][1])
    centred = load_cifar10(tmp_path, num_val=3)
    assert abs(centred["X_train"].mean()) < 1e-3


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar10_refuses_a_malicious_pickle_and_runs_nothing(tmp_path, rng):
    _write_batches(tmp_path, rng)
    marker = tmp_path / "pwned"
    with open(tmp_path / "data_batch_2", "wb") as f:
        pickle.dump({b"data": _Evil(marker), b"labels": [1]}, f, protocol=2)
    with pytest.raises(ValueError, match="refusing to load"):
        load_cifar10(tmp_path)
    assert not marker.exists()


def test_cifar10_refuses_other_numpy_functions(tmp_path, rng):
    _write_batches(tmp_path, rng)
    payload = b"\x80\x02cnumpy\nload\nq\x00X\x03\x00\x00\x00/x\x85R."  # numpy.load('/x')
    (tmp_path / "test_batch").write_bytes(payload)
    with pytest.raises(ValueError, match="refusing to load numpy.load"):
        load_cifar10(tmp_path)


@pytest.mark.parametrize("batch,message", [
    ([1, 2, 3], "expected a dict"),
    ({b"data": "text", b"labels": [1]}, "'data'"),
    ({b"data": np.zeros((1, 3072), np.uint8), b"labels": ["cat"]}, "'labels'"),
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}, "3x32x32"),
    ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [12]}, "3x32x32"),
])
def test_cifar10_refuses_malformed_batches(tmp_path, rng, batch, message):
    _write_batches(tmp_path, rng)
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    with pytest.raises(ValueError, match=message):
        load_cifar10(tmp_path)


def test_cifar10_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_batch"):
        load_cifar10(tmp_path)
    (tmp_path / "test_batch").write_bytes(b"\x80\x02.")
    (tmp_path / "data_batch_1").write_bytes(b"")
    with pytest.raises(ValueError, match="not a plain CIFAR-10 batch"):
        load_cifar10(tmp_path)


@pytest.mark.parametrize("payload,what", [
    (b"\x80\x04}\x94(C\x04data\x94\x8e" + (2**62).to_bytes(8, "little") + b"abc", "bytes8"),
    (b"\x80\x04\x8d" + (2**62).to_bytes(8, "little") + b"abc", "unicodestring8"),
    (b"\x80\x05\x96" + (2**62).to_bytes(8, "little") + b"abc", "bytearray8"),
    (b"\x80\x04\x95" + (2**62).to_bytes(8, "little") + b"abc", "frame at byte 2 declares 4611686018427387904 bytes"),
], ids=["bytes8", "unicode8", "bytearray8", "frame"])
def test_cifar10_names_a_length_the_file_cannot_hold(tmp_path, rng, payload, what):
    """A header declaring 2**62 bytes: a ValueError naming the lie, not a bare MemoryError."""
    _write_batches(tmp_path, rng)
    (tmp_path / "data_batch_2").write_bytes(payload)
    with pytest.raises(ValueError, match=rf"data_batch_2: not a plain CIFAR-10 batch \(.*{what}.*"
                                         rf"the file has {len(payload)}"):
        load_cifar10(tmp_path)
