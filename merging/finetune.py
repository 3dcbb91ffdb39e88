"""Fine-tuning a fused network: the short training run that OT fusion's paper follows with.

A one-shot fusion of networks of different widths or depths is a good initialization, not a
finished model (Singh & Jaggi 2020, §5: "fusion + fine-tuning" recovers and exceeds the
parents after a fraction of their training). :class:`FinetuneRecipe` is that run's settings
as data, so a service can store it with a merge and run it later; :func:`finetune` runs it:
Adam on cross-entropy over the checkpoint's rebuilt module, BatchNorm in train mode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from graphs import Checkpoint
from merging.assignment import best_device
from merging.errors import MergeInputError
from merging.forward import load_module

__all__ = ["FinetuneRecipe", "finetune"]


@dataclass(frozen=True)
class FinetuneRecipe:
    """Adam, ``steps`` minibatches of ``batch_size``, learning rate ``lr``, ``seed``."""

    steps: int = 300
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    seed: int = 0

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def run(self, checkpoint: Checkpoint, data: tuple[torch.Tensor, torch.Tensor],
            device: torch.device | str | None = None) -> Checkpoint:
        return finetune(checkpoint, data, self, device=device)


def finetune(checkpoint: Checkpoint, data: tuple[torch.Tensor, torch.Tensor],
             recipe: FinetuneRecipe | None = None,
             device: torch.device | str | None = None) -> Checkpoint:
    """The checkpoint after ``recipe`` on ``(x, y)`` (same architecture and metadata)."""
    recipe = recipe or FinetuneRecipe()
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise MergeInputError("fine-tuning needs labelled data (x, y)")
    if recipe.steps < 0 or recipe.lr <= 0 or recipe.batch_size < 1:
        raise MergeInputError(f"invalid fine-tuning recipe {recipe}")
    dev = torch.device(device) if device is not None else best_device()
    x, y = data
    module = load_module(checkpoint, dev).train()
    opt = torch.optim.Adam(module.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    g = torch.Generator().manual_seed(recipe.seed)
    for _ in range(recipe.steps):
        idx = torch.randint(len(y), (recipe.batch_size,), generator=g)
        out = module(x[idx].to(dev))
        if out.dim() > 2:
            out = out.flatten(1, -2).mean(1)
        loss = F.cross_entropy(out, y[idx].to(dev))
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()
    state = module.state_dict()
    tensors = {k: state[k].detach().to("cpu", v.dtype).clone()
               for k, v in checkpoint.tensors.items()}
    return Checkpoint(tensors, checkpoint.architecture, dict(checkpoint.metadata))
