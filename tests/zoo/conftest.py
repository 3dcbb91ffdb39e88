"""Zoo tests train real (tiny) zoos: few steps and small groups keep them to seconds."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import zoo
from zoo import families

sys.path.insert(0, str(Path(__file__).parent))  # test_recipes reuses test_train's helpers

SEED = 1
GROUP = 4
SIZE = 12


@pytest.fixture(scope="session")
def fast_settings() -> Iterator[None]:
    """Shorter training (3-10 steps, 30 INR steps): the machinery is tested, not the accuracy."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(families, "STEPS_RANGE", (3, 10))
        mp.setattr(families, "INR_STEPS", 30)
        mp.setattr(families, "INR_PSNR_FLOOR_DB", 0.0)
        yield


@pytest.fixture(scope="session")
def cnn_zoo(fast_settings: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cnn")
    return zoo.build("digits-cnn", SIZE, SEED, d, "cpu", group_size=GROUP)
