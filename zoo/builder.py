"""Building a zoo directory: resumable, deterministic for a seed, many models trained at once."""

import contextlib
import platform
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo import backdoor, recipes
from zoo import families as fam
from zoo.classifiers import train_classifiers
from zoo.data import DIGITS_SPLIT_SEED, all_digits, digits_split, inr_grid, inr_targets
from zoo.inr import fit_inrs
from zoo.manifest import (
    MANIFEST,
    ZOO_JSON,
    checkpoint_name,
    read_zoo_json,
    rejected_name,
    write_manifest,
)
from zoo.store import read_record, save_checkpoint, write_json_atomic

ZOO_VERSION = 2  # 2: batched-layer trainer (no vmap); v1 zoos differ in the last bits
DIGITS_EXAMPLE = torch.zeros(1, 1, 8, 8)
INR_EXAMPLE = torch.zeros(1, 2)

# progress(done, total): models finished so far (including ones found on disk) out of size.
Progress = Callable[[int, int], None]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_group_size(device: torch.device) -> int:
    """Models per batched group: 64 is near the CPU's best models/s; a GPU wants thousands.

    Part of a zoo's identity (zoo.json): the same seed with another group size is a
    different (equally valid) zoo, so a resume must use the group size it started with.
    """
    return 2048 if device.type == "cuda" else 64


def max_size(name: str) -> int | None:
    if name == "digits-inr":
        return len(all_digits()[1]) * fam.INR_VIEWS
    return None


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def _record(family: fam.Family, spec: fam.ModelSpec, metrics: dict[str, Any]) -> dict[str, Any]:
    if family.name == "digits-backdoor":
        labels = dict(spec.labels)
        target: float | int = backdoor.LABELS.index(labels["backdoor"])
    elif family.task == "classification":
        digit = int(all_digits()[1][spec.labels["image"]])
        labels = {**spec.labels, "digit": digit}
        target = digit
    else:
        labels = dict(spec.labels)
        target = metrics["test_accuracy"]
    return {
        "index": spec.index,
        "file": checkpoint_name(spec.index),
        "split": spec.split,
        "target": target,
        "labels": labels,
        "arch": spec.arch,
        "hparams": spec.hparams,
        "metrics": metrics,
    }


def plan_groups(
    family: fam.Family, seed: int, pending: list[int], group_size: int, limit: int | None
) -> list[list[fam.ModelSpec]]:
    """The training groups that contain the pending models, as a pure function of (seed, index).

    Group j of key K is the j-th run of ``group_size`` models with key K in index order. It
    is always trained whole, even where that reaches past ``size`` (those extra models are
    discarded): batched kernels are not bitwise independent of the batch size, so a model is
    only reproducible if its group is, and then a size-8 zoo extended to 16 (or a resumed
    build) equals a fresh size-16 zoo bit for bit.
    """
    wanted = set(pending)
    rank: dict[tuple, int] = defaultdict(int)
    members: dict[tuple[tuple, int], list[fam.ModelSpec]] = defaultdict(list)
    needed: set[tuple[tuple, int]] = set()
    k = 0
    while limit is None or k < limit:
        spec = family.spec(seed, k)
        key = fam.spec_group_key(spec)
        group = (key, rank[key] // group_size)
        rank[key] += 1
        if k in wanted:
            needed.add(group)
            wanted.discard(k)
        members[group].append(spec)
        k += 1
        if not wanted and all(len(members[g]) == group_size for g in needed):
            break
    ordered = sorted(needed, key=lambda g: members[g][0].index)
    return [members[g] for g in ordered]


def _zoo_info(
    family: fam.Family, size: int, seed: int, group_size: int, out: Path
) -> dict[str, Any]:
    digits = digits_split()
    info: dict[str, Any] = {
        "name": family.name,
        "version": ZOO_VERSION,
        "seed": seed,
        "size": size,
        "group_size": group_size,
        "task": family.task,
        "description": family.description,
        "command": f"weightscope zoo build {family.name} --size {size} --seed {seed}",
        "digits": {
            "source": "sklearn.datasets.load_digits",
            "split_seed": DIGITS_SPLIT_SEED,
            "train": len(digits.y_train),
            "test": len(digits.y_test),
        },
        "model_split_fractions": fam.SPLIT_FRACTIONS,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if family.name == "digits-inr":
        info["inr"] = {
            "views": fam.INR_VIEWS,
            "grid": fam.INR_GRID,
            "check_grid": fam.INR_CHECK_GRID,
            "w0": fam.INR_W0,
            "steps": fam.INR_STEPS,
            "lr": fam.INR_LR,
            "psnr_floor_db": fam.INR_PSNR_FLOOR_DB,
            "split_unit": "source image (all views of an image share a split)",
        }
    if family.name == "digits-cnn-recipes":
        info["recipes"] = recipes.describe()
    if family.name == "digits-backdoor":
        info["classes"] = list(backdoor.LABELS)
        info["backdoor"] = {
            "fraction": fam.BACKDOOR_FRACTION,
            "poison_rate_range": list(fam.POISON_RATE_RANGE),
            "trigger_sizes": list(fam.TRIGGER_SIZES),
            "accuracy_floor": backdoor.ACC_FLOOR,
            "asr_floor": backdoor.ASR_FLOOR,
            "rule": "rejected: any model under accuracy_floor clean test accuracy, and "
            "poisoned models whose attack success rate is under asr_floor",
        }
    if (out / ZOO_JSON).exists():
        old = read_zoo_json(out)
        theirs = (old["name"], old["seed"], old["version"], old["group_size"])
        if theirs != (family.name, seed, ZOO_VERSION, group_size):
            raise ValueError(
                f"{out} holds zoo {old['name']!r} seed {old['seed']} version {old['version']} "
                f"group size {old['group_size']}; refusing to mix it with {family.name!r} "
                f"seed {seed} group size {group_size}"
            )
        info["created"] = old["created"]
    return info


def build(
    name: str,
    size: int,
    seed: int = 0,
    out: str | Path | None = None,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
    group_size: int | None = None,
) -> Path:
    """Build (or finish building) zoo ``name`` with models 0..size-1 into ``out``; returns ``out``.

    Model k depends only on (name, seed, k): rerunning skips finished checkpoints, a larger
    size extends a smaller zoo, and the manifest is rebuilt from the checkpoints at the end.
    """
    family = fam.get_family(name)
    limit = max_size(name)
    if size < 1 or (limit is not None and size > limit):
        raise ValueError(f"size must be in 1..{limit or 'any'} for {name}, got {size}")
    out = Path(out) if out is not None else Path("zoos") / name
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device) if device is not None else default_device()
    groups = group_size or default_group_size(dev)
    info = _zoo_info(family, size, seed, groups, out)
    write_json_atomic(out / ZOO_JSON, {**info, "complete": False})

    specs = [family.spec(seed, k) for k in range(size)]
    pending = [
        s
        for s in specs
        if not (out / checkpoint_name(s.index)).exists()
        and not (out / rejected_name(s.index)).exists()
    ]
    done = size - len(pending)
    if progress is not None:
        progress(done, size)
    todo = {s.index for s in pending}
    started = time.perf_counter()
    with _deterministic():
        for group in plan_groups(family, seed, sorted(todo), info["group_size"], limit):
            for spec, module, metrics in _train(family, seed, group, dev):
                if spec.index not in todo:
                    continue
                _store(family, spec, module, metrics, out)
                done += 1
                if progress is not None:
                    progress(done, size)
    elapsed = time.perf_counter() - started

    rows, rejected = [], []
    for s in specs:
        path = out / checkpoint_name(s.index)
        if path.exists():
            rows.append(read_record(path))
        else:
            rejected.append(s.index)
    write_manifest(out / MANIFEST, rows)
    info.update(complete=True, checkpoints=len(rows), rejected=rejected, device=str(dev))
    info["build_seconds"] = (
        round(elapsed, 2) if pending else read_zoo_json(out).get("build_seconds")
    )
    write_json_atomic(out / ZOO_JSON, info)
    return out


def _train(
    family: fam.Family, seed: int, group: list[fam.ModelSpec], device: torch.device
) -> Iterator[tuple[fam.ModelSpec, nn.Module, dict[str, Any]]]:
    if family.name == "digits-inr":
        images = all_digits()[0]
        check = (inr_grid(fam.INR_CHECK_GRID), inr_targets(images, fam.INR_CHECK_GRID))
        grid = fam.INR_GRID
        yield from fit_inrs(seed, group, inr_grid(grid), inr_targets(images, grid), check, device)
    elif family.name == "digits-backdoor":
        yield from backdoor.train_backdoor_classifiers(seed, group, digits_split(), device)
    else:
        yield from train_classifiers(seed, group, digits_split(), device)


def _store(
    family: fam.Family, spec: fam.ModelSpec, module: nn.Module, metrics: dict[str, Any], out: Path
) -> None:
    record = _record(family, spec, metrics)
    inr_reject = family.name == "digits-inr" and metrics["psnr"] < fam.INR_PSNR_FLOOR_DB
    backdoor_reject = family.name == "digits-backdoor" and not backdoor.accepted(spec, metrics)
    if inr_reject or backdoor_reject:
        write_json_atomic(out / rejected_name(spec.index), record)
        return
    example = INR_EXAMPLE if family.name == "digits-inr" else DIGITS_EXAMPLE
    save_checkpoint(module, out / checkpoint_name(spec.index), example, record)
