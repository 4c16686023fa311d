"""normgrad.cs231n as the course's package: what the assignment-2 notebooks do, replayed
(written from the notebooks' documented behaviour; no course file is copied here)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest

from normgrad.cs231n import shim
from normgrad.cs231n.classifiers.cnn import ThreeLayerConvNet
from normgrad.cs231n.classifiers.fc_net import FullyConnectedNet
from normgrad.cs231n.gradient_check import eval_numerical_gradient, eval_numerical_gradient_array
from normgrad.cs231n.solver import Solver
from normgrad.gradcheck import rel_error
from tests.test_data import _write_batches

COURSE_NAMES = {
    "layers": ["affine_forward", "affine_backward", "relu_forward", "relu_backward", "softmax_loss",
               "batchnorm_forward", "batchnorm_backward", "batchnorm_backward_alt", "layernorm_forward",
               "layernorm_backward", "dropout_forward", "dropout_backward", "conv_forward_naive",
               "conv_backward_naive", "max_pool_forward_naive", "max_pool_backward_naive",
               "spatial_batchnorm_forward", "spatial_batchnorm_backward", "spatial_groupnorm_forward",
               "spatial_groupnorm_backward"],
    "layer_utils": ["affine_relu_forward", "affine_relu_backward", "conv_relu_forward", "conv_relu_backward",
                    "conv_bn_relu_forward", "conv_bn_relu_backward", "conv_relu_pool_forward",
                    "conv_relu_pool_backward"],
    "fast_layers": ["conv_forward_fast", "conv_backward_fast", "conv_forward_im2col", "conv_backward_im2col",
                    "conv_forward_strides", "conv_backward_strides", "max_pool_forward_fast",
                    "max_pool_backward_fast", "max_pool_forward_reshape", "max_pool_backward_reshape",
                    "max_pool_forward_im2col", "max_pool_backward_im2col"],
    "gradient_check": ["eval_numerical_gradient", "eval_numerical_gradient_array", "eval_numerical_gradient_blobs",
                       "eval_numerical_gradient_net", "grad_check_sparse"],
    "optim": ["sgd", "sgd_momentum", "rmsprop", "adam"],
    "solver": ["Solver"],
    "data_utils": ["get_CIFAR10_data", "load_CIFAR10", "load_CIFAR_batch", "load_pickle", "load_tiny_imagenet",
                   "load_models", "load_imagenet_val"],
    "vis_utils": ["visualize_grid", "vis_grid", "vis_nn"],
    "classifiers.fc_net": ["FullyConnectedNet", "dropout_forward", "affine_relu_forward"],  # and layers' names
    "classifiers.cnn": ["ThreeLayerConvNet", "conv_relu_pool_forward"],
}


@pytest.mark.parametrize("module", sorted(COURSE_NAMES))
def test_every_name_of_the_course_layout_is_importable(module):
    mod = importlib.import_module(f"normgrad.cs231n.{module}")
    namespace = {}
    exec(f"from normgrad.cs231n.{module} import *", namespace)  # as the notebooks import them
    for name in COURSE_NAMES[module]:
        assert callable(getattr(mod, name)) and name in namespace, (module, name)


def test_integer_parameters_are_promoted_as_numpy_would():
    from normgrad.cs231n.layers import affine_forward, conv_forward_naive, spatial_batchnorm_forward

    np.random.seed(231)
    x = 4 * np.random.randn(2, 3, 4, 5) + 10
    gamma, beta = np.asarray([3, 4, 5]), np.asarray([6, 7, 8])  # ints, as the notebook has them
    out, _ = spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), beta, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), gamma, rtol=1e-5)
    w, b = np.zeros((2, 3, 3, 3)), np.array([0, 128])
    w[0, 1, 1, 1] = 1.0
    out, _ = conv_forward_naive(np.ones((1, 3, 4, 4)), w, b, {"stride": 1, "pad": 1})
    assert out.dtype == np.float64 and np.all(out[0, 1] == 128) and np.all(out[0, 0] == 1)
    out32, _ = affine_forward(np.ones((2, 3), np.float32), np.ones((3, 2), int), np.array([1, 2]))
    assert out32.dtype == np.float32 and out32.tolist() == [[4, 5], [4, 5]]
    with pytest.raises(TypeError, match="x must be a float32 or float64 array"):
        spatial_batchnorm_forward(x.astype(int), gamma, beta, {"mode": "train"})  # integer *data* stays an error


def test_initial_losses_are_the_course_notebooks_to_the_last_digit():
    """Weights drawn with np.random.randn in layer order, after np.random.seed(231), as the course does."""
    N, D, H1, H2, C = 2, 15, 20, 30, 10
    expected = {(None, 0): 2.300479089768492, (None, 3.14): 7.052114776533016,
                ("batchnorm", 0): 2.2611955101340957, ("batchnorm", 3.14): 6.996533220108303}
    for normalization in (None, "batchnorm"):
        np.random.seed(231)
        X, y = np.random.randn(N, D), np.random.randint(C, size=(N,))
        for reg in (0, 3.14):
            model = FullyConnectedNet([H1, H2], input_dim=D, num_classes=C, reg=reg, weight_scale=5e-2,
                                      dtype=np.float64, normalization=normalization)
            assert model.loss(X, y)[0] == pytest.approx(expected[(normalization, reg)], rel=1e-13)


@pytest.mark.parametrize("keep_ratio", [0.75, 0.5])
def test_dropout_gradient_check_with_seed(keep_ratio):
    """FullyConnectedNet(..., seed=123): the same dropout mask on every forward, so the
    numeric gradient agrees with the analytic one, as the Dropout notebook checks."""
    np.random.seed(231)
    N, D, H1, H2, C = 2, 15, 20, 30, 10
    X, y = np.random.randn(N, D), np.random.randint(C, size=(N,))
    model = FullyConnectedNet([H1, H2], input_dim=D, num_classes=C, weight_scale=5e-2, dtype=np.float64,
                              dropout_keep_ratio=keep_ratio, seed=123)
    loss, grads = model.loss(X, y)
    for name in sorted(grads):
        numeric = eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params[name], verbose=False, h=1e-5)
        assert rel_error(numeric, grads[name]) <= 1e-5, (keep_ratio, name)


def _small_data(n=40, d=12, classes=4):
    X = np.random.randn(n, d)
    return {"X_train": X, "y_train": np.random.randint(classes, size=n), "X_val": X[:10],
            "y_val": np.random.randint(classes, size=10)}


def _training_run():
    np.random.seed(231)
    data = _small_data()
    model = FullyConnectedNet([16, 16], input_dim=12, num_classes=4, weight_scale=5e-2, normalization="batchnorm",
                              dropout_keep_ratio=0.8)
    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-2}, batch_size=10,
                    num_epochs=3, verbose=False)
    solver.train()
    return model, solver


def test_np_random_seed_reproduces_models_and_training():
    (m1, s1), (m2, s2) = _training_run(), _training_run()
    assert s1.loss_history == s2.loss_history and s1.train_acc_history == s2.train_acc_history
    for k in m1.params:
        np.testing.assert_array_equal(m1.params[k], m2.params[k])
    np.random.seed(0)  # another seed: another run
    assert _training_run()[1].loss_history == s1.loss_history  # _training_run seeds itself
    np.random.seed(5)
    other = FullyConnectedNet([16, 16], input_dim=12, num_classes=4, weight_scale=5e-2)
    assert not np.array_equal(other.params["W1"], m1.params["W1"])


def test_course_solver_histories_printing_and_arguments(capsys):
    np.random.seed(1)
    data = _small_data()
    model = FullyConnectedNet([8], input_dim=12, num_classes=4, weight_scale=5e-2, dtype=np.float64)
    solver = Solver(model, data, update_rule="sgd_momentum", optim_config={"learning_rate": 1e-2}, batch_size=10,
                    num_epochs=3, print_every=2)
    solver.train()
    assert len(solver.train_acc_history) == len(solver.val_acc_history) == 3 + 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("(Iteration 1 / 12) loss: ") and lines[1].startswith("(Epoch 0 / 3) train acc: ")
    assert "(Iteration 3 / 12) loss: " in lines[2] and lines[-1].startswith("(Epoch 3 / 3) train acc: ")
    with pytest.raises(ValueError, match='Unrecognized arguments "momentum", "lr"'):
        Solver(model, data, momentum=0.9, lr=1)
    with pytest.raises(ValueError, match='Invalid update_rule "adagrad"'):
        Solver(model, data, update_rule="adagrad")


def test_course_solver_keeps_going_when_a_run_diverges():
    """The weight-scale sweep of the BatchNormalization notebook trains nets that blow up;
    the course's Solver records their losses and goes on."""
    np.random.seed(2)
    data = _small_data()
    model = FullyConnectedNet([10], input_dim=12, num_classes=4, weight_scale=1.0)
    solver = Solver(model, data, update_rule="sgd", optim_config={"learning_rate": 1e30}, batch_size=10,
                    num_epochs=2, verbose=False)
    solver.train()
    assert np.isnan(solver.loss_history).any() and len(solver.train_acc_history) == 3
    assert all(np.isfinite(w).all() for w in model.params.values())


def test_three_layer_convnet_gradients_and_overfitting():
    np.random.seed(231)
    num_inputs, input_dim = 2, (3, 16, 16)
    X, y = np.random.randn(num_inputs, *input_dim), np.random.randint(10, size=num_inputs)
    model = ThreeLayerConvNet(num_filters=3, filter_size=3, input_dim=input_dim, hidden_dim=7, dtype=np.float64)
    model.reg = 0.5  # set after construction, as the notebook does
    loss, grads = model.loss(X, y)
    for name in sorted(model.params):
        numeric = eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params[name], verbose=False, h=1e-6)
        assert rel_error(numeric, grads[name]) <= 1e-2, name
    np.random.seed(231)
    Xs, ys = np.random.randn(100, 3, 32, 32), np.random.randint(10, size=100)
    model = ThreeLayerConvNet(weight_scale=1e-2)
    solver = Solver(model, {"X_train": Xs, "y_train": ys, "X_val": Xs[:50], "y_val": ys[:50]}, num_epochs=15,
                    batch_size=50, update_rule="adam", optim_config={"learning_rate": 1e-3}, verbose=False)
    solver.train()
    assert solver.train_acc_history[-1] >= 0.9 and len(solver.train_acc_history) == 16


def test_fast_layers_match_the_naive_ones():
    from normgrad.cs231n import fast_layers as fast
    from normgrad.cs231n import layers as naive

    np.random.seed(231)
    x, w, b = np.random.randn(10, 3, 11, 11), np.random.randn(5, 3, 3, 3), np.random.randn(5)
    param = {"stride": 2, "pad": 1}
    out_naive, cache_naive = naive.conv_forward_naive(x, w, b, param)
    out_fast, cache_fast = fast.conv_forward_fast(x, w, b, param)
    dout = np.random.randn(*out_fast.shape)
    assert rel_error(out_naive, out_fast) < 1e-12
    for a, c in zip(naive.conv_backward_naive(dout, cache_naive), fast.conv_backward_fast(dout, cache_fast)):
        assert rel_error(a, c) < 1e-12
    x = np.random.randn(4, 3, 8, 8)
    pool = {"pool_height": 2, "pool_width": 2, "stride": 2}
    out, cache = fast.max_pool_forward_fast(x, pool)
    dx_num = eval_numerical_gradient_array(lambda a: naive.max_pool_forward_naive(a, pool)[0], x, out * 0 + 1)
    assert rel_error(fast.max_pool_backward_fast(out * 0 + 1, cache), dx_num) < 1e-8


def test_sandwich_layers_gradients():
    from normgrad.cs231n.layer_utils import conv_bn_relu_backward, conv_bn_relu_forward

    np.random.seed(231)
    x, w, b = np.random.randn(2, 3, 6, 6), np.random.randn(4, 3, 3, 3), np.random.randn(4)
    gamma, beta = np.random.randn(4), np.random.randn(4)
    conv_param, bn_param = {"stride": 1, "pad": 1}, {"mode": "train"}
    out, cache = conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param)
    dout = np.random.randn(*out.shape)
    dx, dw, db, dgamma, dbeta = conv_bn_relu_backward(dout, cache)
    dx_num = eval_numerical_gradient_array(
        lambda a: conv_bn_relu_forward(a, w, b, gamma, beta, conv_param, {"mode": "train"})[0], x, dout)
    dgamma_num = eval_numerical_gradient_array(
        lambda g: conv_bn_relu_forward(x, w, b, g, beta, conv_param, {"mode": "train"})[0], gamma, dout)
    assert rel_error(dx, dx_num) < 1e-6 and rel_error(dgamma, dgamma_num) < 1e-7


def test_get_cifar10_data_splits_like_the_course(tmp_path, monkeypatch):
    from normgrad.cs231n.data_utils import get_CIFAR10_data, load_CIFAR10

    rng = np.random.default_rng(0)
    written = _write_batches(tmp_path / "cifar", rng, n=6)
    data = get_CIFAR10_data(9, 2, 4, True, cifar10_dir=tmp_path / "cifar")  # the course's order of arguments
    assert {k: v.shape for k, v in data.items()} == {"X_train": (9, 3, 32, 32), "y_train": (9,),
                                                     "X_val": (2, 3, 32, 32), "y_val": (2,),
                                                     "X_test": (4, 3, 32, 32), "y_test": (4,)}
    raw = np.concatenate([written["data_batch_1"][0], written["data_batch_2"][0]]).reshape(-1, 3, 32, 32)
    mean = raw[:9].mean(axis=0)
    np.testing.assert_allclose(data["X_val"], raw[9:11] - mean, rtol=0, atol=1e-4)  # float32 of 0..255
    Xtr, Ytr, Xte, Yte = load_CIFAR10(tmp_path / "cifar")
    assert Xtr.shape == (12, 32, 32, 3) and Xte.shape == (6, 32, 32, 3) and Xtr.dtype == np.float64
    monkeypatch.chdir(tmp_path)  # the default place, relative to the assignment folder
    (tmp_path / "cs231n" / "datasets").mkdir(parents=True)
    (tmp_path / "cifar").rename(tmp_path / "cs231n" / "datasets" / "cifar-10-batches-py")
    assert get_CIFAR10_data(num_training=10, num_validation=2, num_test=6)["X_train"].shape == (10, 3, 32, 32)
    with pytest.raises(ValueError, match="holds 12 training and 6 test images"):
        get_CIFAR10_data(num_training=49000)
    kept = get_CIFAR10_data(10, 2, 6, False)  # subtract_mean=False: the raw values
    assert kept["X_train"].min() >= 0 and kept["X_train"].max() > 100


def test_get_cifar10_data_takes_the_course_arguments_in_the_course_order():
    import inspect

    from normgrad.cs231n.data_utils import get_CIFAR10_data

    params = list(inspect.signature(get_CIFAR10_data).parameters.values())
    assert [(p.name, p.default) for p in params[:4]] == [("num_training", 49000), ("num_validation", 1000),
                                                          ("num_test", 1000), ("subtract_mean", True)]


def test_course_pickles_models_and_imagenet_val_load_as_plain_data(tmp_path, monkeypatch):
    import io
    import os
    import pickle

    from normgrad.cs231n.data_utils import load_imagenet_val, load_models, load_pickle

    class Exploit:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    models = tmp_path / "models"
    models.mkdir()
    (models / "good.p").write_bytes(pickle.dumps({"model": {"W1": np.arange(3.0)}}, protocol=2))
    (models / "evil.p").write_bytes(pickle.dumps({"model": Exploit()}))
    loaded = load_models(models)
    assert list(loaded) == ["good.p"] and loaded["good.p"]["W1"].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="not a plain-data pickle"):
        load_pickle(io.BytesIO(pickle.dumps(Exploit())))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="get_imagenet_val.sh"):
        load_imagenet_val()
    (tmp_path / "cs231n" / "datasets").mkdir(parents=True)
    np.savez(tmp_path / "cs231n" / "datasets" / "imagenet_val_25.npz", X=np.arange(25 * 12).reshape(25, 2, 2, 3),
             y=np.arange(25), label_map=np.array({0: "tench", 1: "goldfish"}, dtype=object))
    X, y, names = load_imagenet_val(num=4)
    assert X.shape == (4, 2, 2, 3) and y.tolist() == [0, 1, 2, 3] and names == {0: "tench", 1: "goldfish"}
    assert not (tmp_path / "pwned").exists()


def test_tiny_imagenet_loads_as_the_course_lays_it_out(tmp_path):
    from PIL import Image

    from normgrad.cs231n.data_utils import load_tiny_imagenet

    rng = np.random.default_rng(0)
    root = tmp_path / "tiny"
    wnids = ["n01", "n02"]
    (root / "val" / "images").mkdir(parents=True)
    (root / "test" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("n00\tother\nn01\tgoldfish, Carassius auratus\nn02\ttench\n")

    def image(path, gray=False):
        shape = (8, 8) if gray else (8, 8, 3)
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(path)

    for w in wnids:
        (root / "train" / w / "images").mkdir(parents=True)
        for i in range(2):
            image(root / "train" / w / "images" / f"{w}_{i}.png", gray=(w == "n02" and i == 1))
        (root / "train" / w / f"{w}_boxes.txt").write_text("".join(f"{w}_{i}.png\t0\t0\t7\t7\n" for i in range(2)))
    image(root / "val" / "images" / "val_0.png")
    (root / "val" / "val_annotations.txt").write_text("val_0.png\tn02\t0\t0\t7\t7\n")
    image(root / "test" / "images" / "test_0.png")
    data = load_tiny_imagenet(root)
    assert data["class_names"] == [["goldfish", "Carassius auratus"], ["tench"]]
    assert data["X_train"].shape == (4, 3, 8, 8) and data["X_train"].dtype == np.float32
    assert data["y_train"].tolist() == [0, 0, 1, 1] and data["y_val"].tolist() == [1] and data["y_test"] is None
    np.testing.assert_allclose(data["X_train"].mean(axis=0), 0, atol=1e-4)
    raw = load_tiny_imagenet(root, subtract_mean=False)
    np.testing.assert_allclose(raw["X_val"] - raw["mean_image"], data["X_val"], atol=1e-4)


def test_shim_writes_a_cs231n_package_that_re_exports_normgrad(tmp_path):
    course = tmp_path / "assignment2" / "cs231n"
    (course / "datasets").mkdir(parents=True)
    (course / "layers.py").write_text("def batchnorm_forward(*a):\n    return 'the course stub'\n")
    (course / "datasets" / "keep.txt").write_text("data")
    out = subprocess.run([sys.executable, "-m", "normgrad.cs231n", "shim", str(tmp_path / "assignment2")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    script = ("from cs231n.layers import batchnorm_forward\n"
              "from cs231n.classifiers.fc_net import *\n"
              "from cs231n.solver import Solver\n"
              "print(batchnorm_forward.__module__, FullyConnectedNet.__module__, Solver.__module__, "
              "dropout_forward.__module__)")
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path / "assignment2", capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["normgrad.functional.batchnorm", "normgrad.classifiers.fc_net",
                                  "normgrad.cs231n.solver", "normgrad.functional.layers"]
    assert "the course stub" in (course / "layers.py.orig").read_text()  # the learner's file is kept
    assert (course / "datasets" / "keep.txt").read_text() == "data"
    shim.write(tmp_path / "assignment2")  # again: the first backup stays the course's file
    assert "the course stub" in (course / "layers.py.orig").read_text()
    shim.undo(tmp_path / "assignment2")
    assert "the course stub" in (course / "layers.py").read_text() and not (course / "solver.py").exists()


def test_shim_refuses_a_folder_that_is_not_there_and_creates_nothing(tmp_path, capsys):
    from normgrad.cs231n.__main__ import main

    for action in ("shim", "unshim"):
        assert main([action, str(tmp_path / "asignment2")]) == 2  # a typo
        assert "asignment2 does not exist: give the assignment folder" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("x")
    assert main(["shim", str(tmp_path / "notes.txt")]) == 2
    assert "notes.txt is a file" in capsys.readouterr().err
    (tmp_path / "a2").mkdir()
    (tmp_path / "a2" / "cs231n").write_text("not a package")  # a file where the package goes
    with pytest.raises(ValueError, match=r"cs231n is a file where the shim needs a folder; nothing was written"):
        shim.write(tmp_path / "a2")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a2", "cs231n", "notes.txt"]
