"""Which torch device a worker computes on.

Only worker code calls :func:`worker_device`. The API process imports torch (the graphs
library validates uploads with it) but never loads a model and never initialises CUDA, so
an embedded worker thread inside it always computes on the CPU (``create_app`` calls
:func:`mark_api_process`); a worker process (``weightscope worker``, or the embedded
worker process that ``serve`` starts) uses the GPU that ``CUDA_VISIBLE_DEVICES`` gives it
when ``Settings.device`` is ``auto`` or ``gpu``.
"""

from __future__ import annotations

import torch

from app.settings import Settings

_api_process = False


def mark_api_process() -> None:
    global _api_process
    _api_process = True


def worker_device(settings: Settings) -> torch.device:
    if _api_process or settings.device == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if settings.device == "gpu":
        raise RuntimeError("WEIGHTSCOPE_DEVICE=gpu but no CUDA device is visible")
    return torch.device("cpu")


def worker_queues(settings: Settings) -> list[str]:
    """The procrastinate queues a worker process serves: cpu, plus gpu on a GPU."""
    return ["cpu", "gpu"] if worker_device(settings).type == "cuda" else ["cpu"]


def torch_threads(settings: Settings, embedded: bool) -> int:
    """The torch thread count a computing process uses (0: leave torch's default)."""
    if settings.torch_threads is not None:
        return settings.torch_threads
    return 0 if embedded else 1


def configure_torch(settings: Settings, embedded: bool) -> None:
    """Apply :func:`torch_threads` and keep freed memory for reuse
    (:func:`models.runtime.keep_freed_memory`) in a process that computes: a worker
    process, or the API process with its embedded worker thread (``embedded``)."""
    from models.runtime import keep_freed_memory  # not at import: the API loads no models

    keep_freed_memory()
    threads = torch_threads(settings, embedded)
    # Set even when it is torch's default: left implicit, the embedded worker thread's
    # forward passes cost measurably more CPU (bench/service).
    torch.set_num_threads(threads if threads > 0 else torch.get_num_threads())
