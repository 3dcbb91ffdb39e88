"""A plain state dict of a conv net that pools globally does not fix its input size; a
metanetwork whose parameter graph does not depend on it answers, and says what was assumed."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

import graphs
from models import OutOfDomainError, load_metanetwork


def _cnn_file(pooled: bool) -> bytes:
    torch.manual_seed(0)
    layers: list[nn.Module] = [
        nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
    ]
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)] if pooled else [
        nn.Flatten(), nn.Linear(8 * 4 * 4, 10)]
    buffer = io.BytesIO()
    torch.save(nn.Sequential(*layers, *head).state_dict(), buffer)
    return buffer.getvalue()


def test_an_unknown_spatial_size_fits_a_domain_that_cannot_see_it() -> None:
    ckpt = graphs.load(_cnn_file(pooled=True))
    assert ckpt.architecture.summary()["inputs"] == {"x": [1, None, None]}
    (answer,) = load_metanetwork("digits-cnn-generalization").predict([ckpt])
    assert answer.in_domain and 0.0 <= answer.value <= 1.0
    assert answer.assumptions["input_shape"] == [1, None, None]
    assert answer.assumptions["activation"] == "relu"


def test_a_known_wrong_input_size_is_still_out_of_domain() -> None:
    ckpt = graphs.load(_cnn_file(pooled=False))  # the linear's fan-in fixes a size
    (shape,) = ckpt.architecture.summary()["inputs"].values()
    assert None not in shape and shape != [1, 8, 8]
    with pytest.raises(OutOfDomainError, match="input/output shapes"):
        load_metanetwork("digits-cnn-generalization").predict([ckpt])


@pytest.mark.parametrize(
    ("inputs", "fits"),
    [([1, None, None], True), ([1, 8, 8], True), ([1, 16, 16], False), ([3, None, None], False),
     ([1, None], False)],
)
def test_io_fits_treats_unknown_sizes_as_wildcards(inputs: list, fits: bool) -> None:
    summary = {"inputs": {"x": inputs}, "outputs": {"y": [10]}}
    known = graphs.io_signature({"inputs": {"x": [1, 8, 8]}, "outputs": {"y": [10]}})
    assert graphs.io_fits(summary, [known]) is fits
