"""The course's ``data_utils``: CIFAR-10 from the python batch files you have on disk,
Tiny ImageNet, pretrained models and the ImageNet validation sample, under the course's
names and arguments. Every pickle is read with normgrad's safe unpickler
(``normgrad.data.cifar10``): a file that would run code when unpickled is refused with a
``ValueError`` and nothing runs. Data sets are found where the course keeps them:
``cs231n/datasets/`` under the assignment folder the notebooks run in."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

from ..data.cifar10 import load_batch, PlainUnpickler, read_cifar10

DATASETS = Path("cs231n") / "datasets"  # from the assignment folder, where the notebooks run
DEFAULT_DIR = DATASETS / "cifar-10-batches-py"


def load_pickle(f):
    """The object pickled in the open binary file ``f`` (the course's ``load_pickle``), plain
    data only: containers, strings, numbers and arrays."""
    try:
        return PlainUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise ValueError(f"{getattr(f, 'name', 'the file')}: not a plain-data pickle ({err})") from None


def load_CIFAR_batch(filename):
    """(X (n, 32, 32, 3) float64, y (n,)) from one batch file, as the course's."""
    X, y = load_batch(Path(filename))
    return X.transpose(0, 2, 3, 1).astype(np.float64), y


def load_CIFAR10(ROOT):
    """(Xtr, Ytr, Xte, Yte): all training batches and the test batch, images (n, 32, 32, 3) float64."""
    X, y, X_test, y_test = read_cifar10(ROOT)
    return X.transpose(0, 2, 3, 1).astype(np.float64), y, X_test.transpose(0, 2, 3, 1).astype(np.float64), y_test


def get_CIFAR10_data(num_training=49000, num_validation=1000, num_test=1000, subtract_mean=True, cifar10_dir=None):
    """The course's splits: the first ``num_training`` training images, the next
    ``num_validation`` for validation, the first ``num_test`` test images; the training
    mean image subtracted; images (n, 3, 32, 32) float32 (the course's are float64:
    half the memory, the same values to float32 precision).

    ``cifar10_dir``: default ``$CIFAR10_DIR``, else ``cs231n/datasets/cifar-10-batches-py``
    under the working directory (where the notebooks run).
    """
    root = Path(cifar10_dir or os.environ.get("CIFAR10_DIR") or DEFAULT_DIR)
    X, y, X_test, y_test = read_cifar10(root)
    if num_training + num_validation > len(X) or num_test > len(X_test):
        raise ValueError(f"{root} holds {len(X)} training and {len(X_test)} test images; asked for "
                         f"{num_training} + {num_validation} and {num_test}")
    data = {"X_train": X[:num_training], "y_train": y[:num_training],
            "X_val": X[num_training:num_training + num_validation],
            "y_val": y[num_training:num_training + num_validation],
            "X_test": X_test[:num_test], "y_test": y_test[:num_test]}
    if subtract_mean:
        mean = data["X_train"].mean(axis=0)
        for key in ("X_train", "X_val", "X_test"):
            data[key] = data[key] - mean
    return data


def _image(path: Path, dtype) -> np.ndarray:
    """One image as (3, H, W), via Pillow; a grayscale one is repeated on the three channels, as
    the course's assignment of (1, H, W) into a (3, H, W) block broadcasts it."""
    from PIL import Image

    with Image.open(path) as img:
        arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.broadcast_to(arr.transpose(2, 0, 1), (3, *arr.shape[:2])).astype(dtype)


def load_tiny_imagenet(path, dtype=np.float32, subtract_mean=True):
    """Tiny ImageNet (or a subset laid out like it) as the course loads it: a dict with
    class_names (list of lists of words per class), X_train (N_tr, 3, 64, 64), y_train,
    X_val, y_val, X_test, y_test (None when the test annotations are absent) and
    mean_image, the training mean subtracted from every split when ``subtract_mean``."""
    path = Path(path)
    wnids = [w.strip() for w in (path / "wnids.txt").read_text().splitlines() if w.strip()]
    label = {w: i for i, w in enumerate(wnids)}
    words = {}
    for line in (path / "words.txt").read_text().splitlines():
        wnid, _, text = line.partition("\t")
        words[wnid] = [w.strip() for w in text.split(",")]
    class_names = [words[w] for w in wnids]
    X_train, y_train = [], []
    for wnid in wnids:
        boxes = path / "train" / wnid / f"{wnid}_boxes.txt"
        names = [line.split("\t")[0] for line in boxes.read_text().splitlines() if line.strip()]
        X_train += [_image(path / "train" / wnid / "images" / n, dtype) for n in names]
        y_train += [label[wnid]] * len(names)
    val = [line.split("\t")[:2] for line in (path / "val" / "val_annotations.txt").read_text().splitlines()
           if line.strip()]
    X_val = np.stack([_image(path / "val" / "images" / n, dtype) for n, _ in val])
    y_val = np.array([label[w] for _, w in val], dtype=np.int64)
    test_names = sorted(os.listdir(path / "test" / "images"))
    X_test = np.stack([_image(path / "test" / "images" / n, dtype) for n in test_names])
    y_test = None
    annotations = path / "test" / "test_annotations.txt"
    if annotations.exists():
        found = dict(line.split("\t")[:2] for line in annotations.read_text().splitlines() if line.strip())
        y_test = np.array([label[found[n]] for n in test_names], dtype=np.int64)
    X_train, y_train = np.stack(X_train), np.array(y_train, dtype=np.int64)
    mean_image = X_train.mean(axis=0)
    if subtract_mean:
        X_train, X_val, X_test = X_train - mean_image[None], X_val - mean_image[None], X_test - mean_image[None]
    return {"class_names": class_names, "X_train": X_train, "y_train": y_train, "X_val": X_val, "y_val": y_val,
            "X_test": X_test, "y_test": y_test, "mean_image": mean_image}


def load_models(models_dir):
    """{file name: model} for every pickled ``{"model": ...}`` in ``models_dir``; files that are
    not plain-data pickles are skipped, as the course skips files it cannot unpickle."""
    models = {}
    for name in sorted(os.listdir(models_dir)):
        with open(Path(models_dir) / name, "rb") as f:
            try:
                models[name] = load_pickle(f)["model"]
            except (ValueError, KeyError, TypeError):
                continue
    return models


def _plain_npy(raw) -> object:
    """The array in a .npy stream whose data may be an object array (a pickled dict, say),
    read with the safe unpickler instead of ``allow_pickle=True``."""
    version = np.lib.format.read_magic(raw)
    shape, _, dtype = (np.lib.format.read_array_header_1_0(raw) if version == (1, 0)
                       else np.lib.format.read_array_header_2_0(raw))
    if dtype.hasobject:
        return load_pickle(raw)
    return np.frombuffer(raw.read(), dtype=dtype).reshape(shape)


def load_imagenet_val(num=None):
    """(X, y, class_names) from ``cs231n/datasets/imagenet_val_25.npz``: the first ``num``
    images (all 25 by default) and the label map, as the course's."""
    fn = DATASETS / "imagenet_val_25.npz"
    if not fn.exists():
        raise FileNotFoundError(f"file {fn} not found; run: cd cs231n/datasets && bash get_imagenet_val.sh")
    with np.load(fn, allow_pickle=False) as f:
        X, y = f["X"], f["y"]
    with zipfile.ZipFile(fn) as z, z.open("label_map.npy") as raw:
        label_map = _plain_npy(raw)
    class_names = label_map.item() if isinstance(label_map, np.ndarray) else label_map
    if num is not None:
        X, y = X[:num], y[:num]
    return X, y, class_names


__all__ = ["get_CIFAR10_data", "load_CIFAR10", "load_CIFAR_batch", "load_pickle", "load_tiny_imagenet",
           "load_models", "load_imagenet_val"]
