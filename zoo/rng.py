"""Per-model randomness that depends only on (seed, model index), never on grouping.

Models are trained many at a time, in groups whose composition changes with --size and with
resumption. So nothing may come from a shared random stream: initial weights and the fixed
per-model choices (hyperparameters, training subset, label noise) come from a numpy
generator keyed by (seed, stream, index), and per-step randomness (minibatch indices,
dropout masks) from a counter-based integer hash of (model seed, step, position), which is
also identical on CPU and GPU.
"""

import numpy as np
import torch

_M32 = 0xFFFFFFFF

# Named streams so that e.g. the split of model k never shares bits with its init.
STREAM_HPARAMS = 1
STREAM_INIT = 2
STREAM_DATA = 3
STREAM_SPLIT = 4
STREAM_STEPS = 5
STREAM_POISON = 6


def model_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """A numpy generator for one (seed, stream, model index); independent across all three."""
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(stream, index)))
    )


def model_torch_generator(seed: int, stream: int, index: int) -> torch.Generator:
    """A CPU torch generator seeded from ``model_rng`` (for weight init)."""
    g = torch.Generator()
    g.manual_seed(int(model_rng(seed, stream, index).integers(0, 2**62)))
    return g


def step_seed(seed: int, index: int) -> int:
    """The 32-bit key of model ``index``'s per-step hash stream."""
    return int(model_rng(seed, STREAM_STEPS, index).integers(0, 2**32))


def _mix(x: torch.Tensor) -> torch.Tensor:
    # 32-bit integer finalizer carried in int64 (products stay below 2**63).
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x45D9F3B) & _M32
    x = x ^ (x >> 16)
    x = (x * 0x45D9F3B) & _M32
    return x ^ (x >> 16)


def hash_uniform(keys: torch.Tensor, step: int, salt: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Uniform [0, 1) floats of shape (len(keys), *shape), a pure function of the arguments.

    ``keys`` holds one int64 per model (``step_seed``); ``salt`` separates uses (batch
    indices, each dropout site). Element (i, j, ...) hashes its multi-index with a fixed
    stride of 2**16 per axis, so a value never depends on the size of the other axes (a
    model's dropout mask is the same whatever width its group is padded to).
    """
    counter = torch.zeros((1,) * len(shape), dtype=torch.int64, device=keys.device)
    for axis, n in enumerate(shape):
        view = [1] * len(shape)
        view[axis] = n
        index = torch.arange(n, device=keys.device, dtype=torch.int64).view(view)
        counter = counter * (1 << 16) + index
    counter = counter.unsqueeze(0)
    base = _mix(_mix(keys.to(torch.int64) + salt * 0x9E3779B) + step)
    base = base.view(-1, *([1] * len(shape)))
    h = _mix(base ^ _mix(counter + 0x3C6EF372))
    return (h >> 8).to(torch.float32) / float(1 << 24)
