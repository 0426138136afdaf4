"""RNNPoolLayer learns the paper's synthetic "lines" task (facts file, section 5).

Like the paper's one-step pooling probe, a single RNNPool summarises the whole 32x32 image
(patch = stride = 32) and a linear classifier reads its 4*h2 outputs (batch norm in between
puts them on one scale). About 12 s on 2 cores.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnpool_nas.data.synthetic import LINE_CLASSES, make_lines
from rnnpool_nas.ops import RNNPoolLayer


def _tensor(images):
    return (torch.from_numpy(images).float().div(255)[:, None] - 0.15) / 0.2


def test_rnnpool_learns_lines():
    torch.manual_seed(0)
    x_train, y_train = make_lines(4000, seed=1)
    x_test, y_test = make_lines(1000, seed=2)
    x_train, x_test = _tensor(x_train), _tensor(x_test)
    y_train, y_test = torch.from_numpy(y_train), torch.from_numpy(y_test)
    model = nn.Sequential(
        RNNPoolLayer(1, patch_size=32, stride=32, h1=16, h2=16),
        nn.Flatten(),
        nn.BatchNorm1d(64),
        nn.Linear(64, LINE_CLASSES),
    )
    epochs, batch = 8, 64
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-2, total_steps=epochs * -(-len(x_train) // batch))
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x_train)).split(batch):
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy >= 0.95, f"test accuracy {accuracy:.3f}"
