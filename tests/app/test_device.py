"""Torch threads per computing process: one per scale-out worker, all cores for the embedded
worker (the only process computing there), or what ``WEIGHTSCOPE_TORCH_THREADS`` says."""

import pytest
import torch

from app.device import configure_torch, torch_threads
from app.settings import Settings


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("value", "embedded", "expected"),
    [(None, False, 1), (None, True, 0), (3, False, 3), (3, True, 3), (0, False, 0)],
)
def test_thread_count_by_process_kind(value, embedded: bool, expected: int) -> None:
    settings = Settings(_env_file=None, torch_threads=value)
    assert torch_threads(settings, embedded) == expected


def test_environment_sets_it(monkeypatch) -> None:
    monkeypatch.setenv("WEIGHTSCOPE_TORCH_THREADS", "2")
    assert torch_threads(Settings(_env_file=None), embedded=True) == 2


def test_configure_applies_it_and_leaves_torch_default_alone(restore_threads) -> None:
    torch.set_num_threads(2)
    configure_torch(Settings(_env_file=None), embedded=True)
    assert torch.get_num_threads() == 2
    configure_torch(Settings(_env_file=None), embedded=False)
    assert torch.get_num_threads() == 1


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="torch_threads"):
        Settings(_env_file=None, torch_threads=-1)
