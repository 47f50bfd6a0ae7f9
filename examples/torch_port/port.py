"""A PyTorch port of the cats-vs-dogs fixture model (tests/fixtures/keras/cats_dogs.k3.keras), to show how
``npcnn verify`` checks a port layer by layer. ``build()`` is correct; ``build_naive()`` has the classic
porting bug: it flattens NCHW feature maps where Keras flattens NHWC.

    python tools/dump_torch.py examples/torch_port/x.npy --module examples/torch_port/port.py:build_naive \\
        --map examples/torch_port/names.json -o dump.npz
    npcnn verify tests/fixtures/keras/cats_dogs.k3.keras --inputs examples/torch_port/x.npy --reference dump.npz
"""
import os

import numpy as np
import torch
from torch import nn

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "keras", "cats_dogs.ref.npz")


class Flatten(nn.Module):
    """Flatten as Keras does on channels_last maps (permute NCHW -> NHWC first), or naively."""

    def __init__(self, keras_order=True):
        super().__init__()
        self.keras_order = keras_order

    def forward(self, x):
        return (x.permute(0, 2, 3, 1) if self.keras_order else x).reshape(x.shape[0], -1)


def _net(keras_order):
    net = nn.Sequential()
    for i, (cin, cout) in enumerate([(3, 16), (16, 32), (32, 64)], 1):
        net.add_module(f"conv{i}", nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()))
        net.add_module(f"pool{i}", nn.MaxPool2d(2))
    net.add_module("flatten", Flatten(keras_order))
    net.add_module("fc", nn.Sequential(nn.Linear(4 * 4 * 64, 16), nn.ReLU()))
    net.add_module("logit", nn.Linear(16, 1))
    ref = np.load(FIXTURE)
    w = [torch.tensor(ref[f"weights/{i}"]) for i in range(10)]
    with torch.no_grad():
        for k, conv in enumerate([net.conv1[0], net.conv2[0], net.conv3[0]]):
            conv.weight.copy_(w[2 * k].permute(3, 2, 0, 1))  # Keras (kh, kw, in, out) -> torch (out, in, kh, kw)
            conv.bias.copy_(w[2 * k + 1])
        net.fc[0].weight.copy_(w[6].T)
        net.fc[0].bias.copy_(w[7])
        net.logit.weight.copy_(w[8].T)
        net.logit.bias.copy_(w[9])
    return net.eval()


def build():
    return _net(keras_order=True)


def build_naive():
    return _net(keras_order=False)
