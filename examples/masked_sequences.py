"""Batch norm on padded variable-length sequences: torch's BatchNorm1d against normgrad's
masked BatchNorm1d in the same small 1-D conv net.

The signals (N, 1, 96) hold 24 to 96 real samples each, the rest zero padding. torch's
batch norm counts the padding in its statistics; normgrad's, given the padding mask,
counts only the real samples. Printed: the first batch-norm layer's running statistics
against the true statistics of the real samples, what one signal's output in training
mode does when the same signal is padded further, and test accuracy.

    .venv/bin/python examples/masked_sequences.py
"""

import numpy as np
import torch
from torch import nn

import normgrad.torch as nt

L, CH, EPOCHS = 96, 16, 6
rng = np.random.default_rng(0)


def make_signals(n):
    """Class 0: slow sine, class 1: fast sine, both around a level of 2; random lengths."""
    labels = rng.integers(0, 2, n)
    lengths = rng.integers(L // 4, L + 1, n)
    t = np.arange(L)
    freq = np.where(labels == 1, 0.35, 0.12)[:, None]
    x = 2.0 + np.sin(freq * t + rng.uniform(0, 6.3, (n, 1))) + 0.3 * rng.normal(size=(n, L))
    mask = t[None, :] < lengths[:, None]
    return torch.tensor(x * mask, dtype=torch.float32)[:, None], torch.tensor(mask), torch.tensor(labels)


class Net(nn.Module):
    """conv - batch norm - relu, twice, then a mean over the real samples and a linear head."""

    def __init__(self, masked: bool):
        super().__init__()
        self.masked = masked
        self.conv1, self.conv2 = nn.Conv1d(1, CH, 5, padding=2), nn.Conv1d(CH, CH, 5, padding=2)
        make = nt.BatchNorm1d if masked else nn.BatchNorm1d
        self.bn1, self.bn2, self.head = make(CH), make(CH), nn.Linear(CH, 2)

    def norm(self, bn, h, mask):
        return bn(h, mask) if self.masked else bn(h)

    def forward(self, x, mask):
        h = torch.relu(self.norm(self.bn1, self.conv1(x), mask))
        h = torch.relu(self.norm(self.bn2, self.conv2(h * mask[:, None]), mask)) * mask[:, None]
        return self.head(h.sum(-1) / mask.sum(-1, keepdim=True))


def train(masked, data):
    torch.manual_seed(0)
    net = Net(masked)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, mask, y = data
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(y), generator=torch.Generator().manual_seed(1)).split(64):
            loss = nn.functional.cross_entropy(net(x[idx], mask[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net


train_data, (x_test, m_test, y_test) = make_signals(2048), make_signals(1024)
x, mask, _ = train_data
for masked in (False, True):
    net = train(masked, train_data)
    with torch.no_grad():  # the true statistics of bn1's input: the real samples only
        h = net.conv1(x).transpose(1, 2)[mask]
        true_mean, true_var = h.mean(0), h.var(0)
        bn = net.bn1
        err_mean = ((bn.running_mean - true_mean).abs() / true_var.sqrt()).max().item()
        err_var = ((bn.running_var / true_var) - 1).abs().max().item()
        net.eval()
        accuracy = (net(x_test, m_test).argmax(1) == y_test).float().mean().item()
        net.train()  # a batch of 8 signals in training mode, then the same batch padded to twice the length
        xb, mb = x[:8], mask[:8]
        xl, ml = torch.cat([xb, torch.zeros_like(xb)], -1), torch.cat([mb, torch.zeros_like(mb)], -1)
        y1 = net.norm(net.bn1, net.conv1(xb), mb)
        y2 = net.norm(net.bn1, net.conv1(xl), ml)[..., :L]
        drift = ((y1 - y2).abs() * mb[:, None]).max().item()
    name = "normgrad BatchNorm1d, masked" if masked else "torch BatchNorm1d"
    print(f"{name:30s} running mean off by {err_mean:.3f} std, running var off by {100 * err_var:.1f}%, "
          f"training output moves by {drift:.3f} when padded further, test accuracy {accuracy:.3f}")
