"""Parallel (batched group) vs sequential training of the same digits-cnn models.

Prints models/s for: the group trainer on all N models at once; the same trainer run one
model at a time; and a plain PyTorch loop (module + torch.optim.AdamW) one model at a time,
all with the same architectures, hyperparameters and step count, on the same device.
Sequential rates are measured on the first --seq-models models (cost is linear in models).

    .venv/bin/python bench/zoo_train.py --models 128 --steps 100 --seq-models 8
"""

import argparse
import dataclasses
import time

import torch
import torch.nn.functional as F

import zoo
from zoo.classifiers import init_classifier, train_classifiers, training_data
from zoo.data import digits_split
from zoo.families import build_module, group_key
from zoo.rng import STREAM_INIT, model_torch_generator


def _specs(n: int, steps: int, seed: int) -> list[zoo.ModelSpec]:
    """The first n digits-cnn models of one group key, all trained for ``steps`` steps."""
    fam = zoo.get_family("digits-cnn")
    specs, k = [], 0
    while len(specs) < n:
        s = fam.spec(seed, k)
        if group_key(s.arch) == ("cnn", 3):
            specs.append(dataclasses.replace(s, hparams={**s.hparams, "steps": steps}))
        k += 1
    return specs


def _group(seed: int, specs: list[zoo.ModelSpec], device: torch.device) -> float:
    digits = digits_split()
    t = time.perf_counter()
    for _ in train_classifiers(seed, specs, digits, device):
        pass
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def _plain(seed: int, specs: list[zoo.ModelSpec], device: torch.device) -> float:
    """One nn.Module + torch.optim.AdamW per model, batches drawn with torch.randint."""
    digits = digits_split().to(device)
    t = time.perf_counter()
    for spec in specs:
        h = spec.hparams
        model = build_module(spec.arch, h["dropout"])
        init_classifier(
            model, h["init_scale"], model_torch_generator(seed, STREAM_INIT, spec.index)
        )
        model.to(device).train()
        perm, n_used, labels = training_data(seed, spec, digits.y_train.cpu())
        idx = torch.from_numpy(perm[:n_used]).to(device)
        y_all = torch.from_numpy(labels).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=h["lr"], weight_decay=h["weight_decay"])
        gen = torch.Generator(device=device).manual_seed(spec.index)
        for _ in range(h["steps"]):
            b = idx[torch.randint(0, n_used, (h["batch_size"],), device=device, generator=gen)]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(digits.x_train[b]), y_all[b]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            model(digits.x_test).argmax(1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seq-models", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = torch.device(args.device) if args.device else zoo.default_device()
    specs = _specs(args.models, args.steps, args.seed)
    _group(args.seed, specs[:2], device)  # warm-up (allocator/oneDNN caches)
    parallel = _group(args.seed, specs, device)
    seq = specs[: args.seq_models]
    one_by_one = sum(_group(args.seed, [s], device) for s in seq)
    plain = _plain(args.seed, seq, device)
    rates = {
        f"parallel (batched group of {len(specs)})": len(specs) / parallel,
        "sequential, same trainer, groups of 1": len(seq) / one_by_one,
        "sequential, plain nn.Module + AdamW": len(seq) / plain,
    }
    print(
        f"device={device} threads={torch.get_num_threads()} steps={args.steps} "
        f"arch=3-layer digits-cnn (4-16 channels) batch=32"
    )
    for name, rate in rates.items():
        print(f"{name:42s} {rate:8.2f} models/s")
    values = list(rates.values())
    print(f"ratio parallel / sequential (same trainer): {values[0] / values[1]:.1f}x")
    print(f"ratio parallel / sequential (plain loop):   {values[0] / values[2]:.1f}x")


if __name__ == "__main__":
    main()
