"""Linear, ReLU, Dropout, Conv2d, MaxPool2d, Sequential against torch.nn, state dicts both ways."""

from __future__ import annotations

import numpy as np
import pytest

from normgrad import nn

torch = pytest.importorskip("torch")


def _conv_net(dtype=np.float64):
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, dtype=dtype, seed=1), nn.BatchNorm2d(4, dtype=dtype), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 5, dtype=dtype, seed=2),
        nn.LayerNorm(5, dtype=dtype), nn.Dropout(0.0),
    )


def _torch_conv_net():
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(4 * 3 * 3, 5),
        torch.nn.LayerNorm(5), torch.nn.Dropout(0.0),
    ).double()


def test_sequential_matches_torch_forward_backward_and_state(rng):
    ours, theirs = _conv_net(), _torch_conv_net()
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for step in range(3):
        x = rng.standard_normal((3, 2, 6, 6)) + 1.5
        dout = rng.standard_normal((3, 5))
        y = ours.forward(x)
        tx = torch.tensor(x, requires_grad=True)
        ty = theirs(tx)
        ty.backward(torch.tensor(dout))
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
        dx = ours.backward(dout)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
        grads = dict(ours.named_grads())
        for name, p in theirs.named_parameters():
            np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
            p.grad = None
    # running statistics after three training steps, then evaluation mode
    for k, v in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[k], v.numpy(), rtol=1e-12, err_msg=k)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((2, 2, 6, 6))
    np.testing.assert_allclose(ours.forward(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-10, atol=1e-12)


def test_state_dict_loads_from_torch(rng):
    theirs = _torch_conv_net()
    ours = _conv_net()
    ours.load_state_dict(theirs.state_dict())
    x = rng.standard_normal((2, 2, 6, 6))
    np.testing.assert_allclose(ours.forward(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-10, atol=1e-12)


def test_linear_layout_and_init_follow_torch():
    layer = nn.Linear(20, 3, seed=0)
    assert layer.params["weight"].shape == (3, 20) and layer.params["bias"].shape == (3,)
    bound = 1 / np.sqrt(20)
    assert np.abs(layer.params["weight"]).max() <= bound and layer.params["weight"].std() > bound / 3
    assert layer.params["weight"].dtype == np.float32
    assert "bias" not in nn.Linear(4, 2, bias=False).params
    np.testing.assert_array_equal(nn.Linear(5, 5, seed=7).params["weight"], nn.Linear(5, 5, seed=7).params["weight"])


def test_dropout_module_drops_with_torch_probability(rng):
    drop = nn.Dropout(0.25, seed=0)
    x = np.ones((200, 200))
    y = drop.forward(x)
    assert abs((y == 0).mean() - 0.25) < 0.01
    np.testing.assert_allclose(y[y != 0], 1 / 0.75)
    dout = rng.standard_normal(x.shape)
    np.testing.assert_allclose(drop.backward(dout), dout * (y != 0) / 0.75, rtol=1e-15)
    assert not np.array_equal(drop.forward(x), y)  # a new mask every call
    drop.eval()
    np.testing.assert_array_equal(drop.forward(x), x)


@pytest.mark.parametrize("make,message", [
    (lambda: nn.Linear(0, 3), "in_features"),
    (lambda: nn.Linear(3, 2.5), "out_features"),
    (lambda: nn.Conv2d(3, 4, (3, 3, 3)), "kernel_size"),
    (lambda: nn.Conv2d(3, 4, 3, padding=-1), "padding"),
    (lambda: nn.Dropout(1.0), "dropout probability"),
    (lambda: nn.Sequential(nn.ReLU(), lambda x: x), "Modules"),
    (lambda: nn.Linear(3, 2).forward(np.ones((4, 5))), r"\(N, 3\)"),
    (lambda: nn.Linear(3, 2).backward(np.ones((4, 2))), "before forward"),
    (lambda: nn.Conv2d(3, 4, 3).forward(np.ones((1, 2, 5, 5))), "do not fit"),
])
def test_bad_arguments(make, message):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=message):
        make()
