"""CIFAR-10 from the standard python batch files a user already has on disk.

The files (``data_batch_1`` .. ``data_batch_5``, ``test_batch``) are pickles, and
unpickling can call any function the file names. They are read with an unpickler
that allows exactly the three names a NumPy array needs to be rebuilt
(``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``) and
the latin-1 encoding Python 3 uses for bytes in protocol 2, and refuses every
other global, so only plain containers, strings, bytes, numbers and
plain (non-object) arrays come back. A malicious pickle raises a ``ValueError``
and runs nothing.
"""

from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path

import numpy as np

TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILE = "test_batch"


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
    ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): lambda text, encoding="utf-8": _latin1(text, encoding),  # bytes, as Python 3 pickles them for protocol 2
}


def _latin1(text, encoding):
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("refusing _codecs.encode other than str -> latin1 bytes")
    return text.encode("latin1")


class PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: CIFAR batches hold only plain data")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent ids")


def _oversized(path: Path) -> str:
    """Why unpickling ``path`` asked for more memory than there is: the first length the
    pickle declares beyond the bytes that follow it (``pickletools`` reads lengths without
    allocating them), or, failing that, the file's size."""
    raw = path.read_bytes()  # as large as the file, which is what its lengths must fit in
    try:
        for opcode, length, pos in pickletools.genops(io.BytesIO(raw)):
            if opcode.name == "FRAME" and length > len(raw) - pos - 9:
                return f"a frame at byte {pos} declares {length} bytes; the file has {len(raw)}"
    except ValueError as err:  # e.g. "expected 4611686018427387904 bytes in a bytes8, but only 3 remain"
        return f"it declares more data than it holds: {err}; the file has {len(raw)} bytes"
    return f"it asks for more memory than there is, while the file has only {len(raw)} bytes"


def load_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, 3, 32, 32) float32, y (n,) int64) from one batch file."""
    try:
        with open(path, "rb") as f:
            batch = PlainUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise ValueError(f"{path}: not a plain CIFAR-10 batch ({err})") from None
    except (MemoryError, OverflowError, SystemError):
        # A length field (bytes8, unicode8, bytearray8, frame) read as given: the
        # unpickler allocates it before reading. Name the lie instead of a bare MemoryError.
        raise ValueError(f"{path}: not a plain CIFAR-10 batch ({_oversized(path)})") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a dict, got {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if isinstance(data, np.ndarray) and data.dtype == np.uint8:
        raw = data.reshape(-1)
    elif isinstance(data, (bytes, bytearray)):
        raw = np.frombuffer(bytes(data), dtype=np.uint8)
    else:
        raise ValueError(f"{path}: 'data' must be a uint8 array or bytes, got {type(data).__name__}")
    if isinstance(labels, np.ndarray) and np.issubdtype(labels.dtype, np.integer):
        y = labels.astype(np.int64).reshape(-1)
    elif isinstance(labels, list) and all(isinstance(k, int) and not isinstance(k, bool) for k in labels):
        y = np.asarray(labels, dtype=np.int64)
    else:
        raise ValueError(f"{path}: 'labels' must be a list of integers")
    if raw.size != len(y) * 3072 or (y.size and (y.min() < 0 or y.max() > 9)):
        raise ValueError(f"{path}: {raw.size} pixel bytes and {len(y)} labels (0-9) do not make 3x32x32 images")
    return raw.reshape(len(y), 3, 32, 32).astype(np.float32), y


def read_cifar10(root) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, X_test, y_test) from the batch files in ``root``: every training batch that
    exists (at least one) and ``test_batch``; images (n, 3, 32, 32) float32, labels int64."""
    root = Path(root)
    train = [root / name for name in TRAIN_FILES if (root / name).exists()]
    if not train or not (root / TEST_FILE).exists():
        raise FileNotFoundError(f"{root} needs data_batch_1..5 (at least one) and test_batch")
    parts = [load_batch(p) for p in train]
    X_test, y_test = load_batch(root / TEST_FILE)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), X_test, y_test


def load_cifar10(root, num_val: int = 1000, subtract_mean: bool = True):
    """Train (minus ``num_val`` held out, the last ones), validation and test splits from ``root``.

    Only the batch files that exist are read, but at least one training batch and
    ``test_batch`` are required. Images are (N, 3, 32, 32) float32, mean-subtracted
    with the training mean if ``subtract_mean``.
    """
    X, y, X_test, y_test = read_cifar10(root)
    if not 0 <= num_val < len(X):
        raise ValueError(f"num_val must lie in [0, {len(X)}), got {num_val}")
    X_train, y_train, X_val, y_val = X[: len(X) - num_val], y[: len(y) - num_val], X[len(X) - num_val:], \
        y[len(y) - num_val:]
    if subtract_mean:
        mean = X_train.mean(axis=0)
        X_train, X_val, X_test = X_train - mean, X_val - mean, X_test - mean
    return {"X_train": X_train, "y_train": y_train, "X_val": X_val, "y_val": y_val,
            "X_test": X_test, "y_test": y_test}
