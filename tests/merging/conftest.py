"""Shared fixtures: reference models (``_merging_models``) and small trained digits pairs."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

import _merging_models as M


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny nets on shared cores: extra torch threads only contend (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits_flat():
    return M.digits(flat=True)


@pytest.fixture(scope="session")
def digits_img():
    return M.digits(flat=False)


def _pair(make, data, steps):
    (train, test) = data
    a = M.checkpoint(M.train(make(), train, seed=1, steps=steps), test[0][:2])
    b = M.checkpoint(M.train(make(), train, seed=2, steps=steps), test[0][:2])
    return a, b


@pytest.fixture(scope="session")
def mlp_pair(digits_flat):
    return _pair(lambda: M.mlp([64, 64, 64, 10]), digits_flat, 300)


@pytest.fixture(scope="session")
def cnn_pair(digits_img):
    return _pair(lambda: M.cnn(8, 16), digits_img, 300)


@pytest.fixture(scope="session")
def cnn_bn_pair(digits_img):
    return _pair(lambda: M.cnn_bn(8, 16), digits_img, 300)
