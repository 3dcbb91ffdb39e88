"""The files people actually save: bare state dicts, training checkpoints, wrapper prefixes,
whole pickled modules. Every file here is written by torch.save or safetensors to disk."""

from __future__ import annotations

import argparse
import io
import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import graphs
from graphs.errors import CheckpointError
from graphs.layouts import NEST_KEYS, PREFIXES, find_state_dict, split_prefix, strip_prefix
from graphs.safe_io import read_checkpoint, to_safetensors_bytes

MODULE_ADVICE = (
    "not a state dict, and pickled code is never run: save its weights with "
    "torch.save(model.state_dict(), path) or graphs.save(model, path, example_input)"
)


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def training_extras(model: nn.Module) -> dict[str, object]:
    """What training scripts save next to the weights (torchvision/timm/Lightning style)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()  # momentum buffers: the optimizer state holds tensors too
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3)
    return {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": 12,
        "best_acc1": torch.tensor(0.75),
        "args": argparse.Namespace(lr=0.1, arch="mlp"),
        "hyper_parameters": {"hidden": 8},
    }


def save_pt(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


def assert_same(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(actual[name], tensor), name


def assert_one_line(message: str) -> None:
    assert message and "\n" not in message and "\x1b" not in message


# --- accepted layouts --------------------------------------------------------------------


def test_bare_state_dict(tmp_path: Path) -> None:
    model = net()
    loaded = graphs.load_checkpoint(save_pt(model.state_dict(), tmp_path / "bare.pt"))
    assert_same(loaded.tensors, state(model))
    assert (loaded.nested_under, loaded.ignored_keys, loaded.prefix_stripped) == ((), (), "")
    assert loaded.format == "pytorch"


@pytest.mark.parametrize("key", NEST_KEYS)
def test_training_checkpoint_nested_under_a_common_key(key: str, tmp_path: Path) -> None:
    model = net()
    extras = training_extras(model)
    path = save_pt({key: model.state_dict(), **extras}, tmp_path / "ckpt.pth")
    loaded = graphs.load_checkpoint(path)
    assert_same(loaded.tensors, state(model))
    assert loaded.nested_under == (key,)
    assert loaded.ignored_keys == tuple(extras)
    assert loaded.provenance == "inferred"


def test_model_and_ema_prefers_the_model_and_reports_the_ema(tmp_path: Path) -> None:
    model, ema = net(), net()
    with torch.no_grad():
        for p in ema.parameters():
            p.mul_(0.5)
    path = save_pt({"ema": ema.state_dict(), "model": model.state_dict(), "epoch": 1},
                   tmp_path / "ckpt.pt")
    raw = read_checkpoint(path)
    assert_same(raw.tensors, state(model))
    assert raw.nested_under == ("model",)
    assert raw.ignored_keys == ("ema", "epoch")


def test_lightning_checkpoint_nested_and_prefixed(tmp_path: Path) -> None:
    """Lightning: ``{"state_dict": {"model.0.weight": ...}, "epoch", "global_step", ...}``."""

    class LitModule(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = net()

    lit = LitModule()
    path = save_pt({"state_dict": lit.state_dict(), "epoch": 3, "global_step": 300,
                    "pytorch-lightning_version": "2.4.0", "loops": {"fit_loop": {}}},
                   tmp_path / "last.ckpt")
    loaded = graphs.load_checkpoint(path)
    assert_same(loaded.tensors, state(lit.model))
    assert loaded.prefix_stripped == "model."
    assert loaded.nested_under == ("state_dict",)
    assert set(loaded.ignored_keys) == {"epoch", "global_step", "pytorch-lightning_version",
                                        "loops"}


def test_data_parallel_prefix_is_stripped(tmp_path: Path) -> None:
    model = net()
    wrapped = nn.DataParallel(model)  # on CPU it only wraps: keys gain "module."
    assert next(iter(wrapped.state_dict())).startswith("module.")
    loaded = graphs.load_checkpoint(save_pt(wrapped.state_dict(), tmp_path / "dp.pt"))
    assert_same(loaded.tensors, state(model))
    assert loaded.prefix_stripped == "module."


def test_torch_compile_prefix_is_stripped(tmp_path: Path) -> None:
    model = net()
    compiled = torch.compile(model)  # compiles lazily: nothing runs until called
    assert next(iter(compiled.state_dict())).startswith("_orig_mod.")
    loaded = graphs.load_checkpoint(save_pt({"model": compiled.state_dict()}, tmp_path / "c.pt"))
    assert_same(loaded.tensors, state(model))
    assert loaded.prefix_stripped == "_orig_mod."


def test_stacked_prefixes_in_a_safetensors_file(tmp_path: Path) -> None:
    model = net()
    tensors = {f"module._orig_mod.{k}": v for k, v in state(model).items()}
    path = tmp_path / "ddp_compiled.safetensors"
    path.write_bytes(to_safetensors_bytes(tensors))
    loaded = graphs.load_checkpoint(path)
    assert_same(loaded.tensors, state(model))
    assert (loaded.prefix_stripped, loaded.format) == ("module._orig_mod.", "safetensors")


def test_declared_architecture_keeps_a_prefix_it_names(tmp_path: Path) -> None:
    """A traced wrapper names its tensors ``model.*``: they fit as they are, nothing stripped."""

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = net()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)

    wrapper = Wrapper()
    graphs.save(wrapper, tmp_path / "w.safetensors", torch.randn(2, 4))
    loaded = graphs.load_checkpoint(tmp_path / "w.safetensors")
    assert loaded.prefix_stripped == ""
    assert_same(loaded.tensors, state(wrapper))
    assert loaded.provenance == "traced"


def test_declared_architecture_strips_a_prefix_it_does_not_name(tmp_path: Path) -> None:
    model = net()
    arch = graphs.describe(model, torch.randn(2, 4))
    path = save_pt(nn.DataParallel(model).state_dict(), tmp_path / "dp.pt")
    loaded = graphs.load_checkpoint(path, arch=arch.to_json())
    assert loaded.prefix_stripped == "module."
    assert loaded.provenance == "declared"
    assert_same(loaded.tensors, state(model))


def test_scalars_beside_a_flat_state_dict_are_ignored(tmp_path: Path) -> None:
    model = net()
    path = save_pt({**model.state_dict(), "epoch": 4, "note": "fine-tuned"}, tmp_path / "x.pt")
    raw = read_checkpoint(path)
    assert_same(raw.tensors, state(model))
    assert raw.ignored_keys == ("epoch", "note")


def test_pickled_extras_never_run_their_code(tmp_path: Path) -> None:
    """Extras of classes weights_only does not allow are inert placeholders: not even their
    ``__setstate__`` runs."""
    marker = tmp_path / "ran"
    path = save_pt({"model": net().state_dict(), "config": SetsAMarker(str(marker))},
                   tmp_path / "x.pt")
    raw = read_checkpoint(path)
    assert raw.ignored_keys == ("config",)
    assert not marker.exists()


class SetsAMarker:
    """Unpickling this with a full unpickler would create a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __setstate__(self, state: dict[str, str]) -> None:
        Path(state["path"]).touch()


# --- refusals, each with its exact one-line message -----------------------------------------


def test_whole_module_pickle_is_refused_with_how_to_save(tmp_path: Path) -> None:
    path = save_pt(net(), tmp_path / "model.pt")
    with pytest.raises(CheckpointError) as excinfo:
        graphs.load_checkpoint(path)
    message = str(excinfo.value)
    assert message == ("file holds a whole pickled module (torch.nn.modules.container."
                       f"Sequential), {MODULE_ADVICE}")
    assert_one_line(message)


class UserNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)


@pytest.mark.parametrize("wrap", [lambda m: m, lambda m: {"model": m, "epoch": 3}],
                         ids=["bare", "under-model"])
def test_user_module_pickle_is_refused_naming_its_class(wrap, tmp_path: Path) -> None:
    path = save_pt(wrap(UserNet()), tmp_path / "model.pt")
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(path)
    message = str(excinfo.value)
    assert re.fullmatch(r"file holds a whole pickled module \([\w.]*UserNet\), "
                        + re.escape(MODULE_ADVICE), message), message
    assert_one_line(message)


@pytest.mark.parametrize(
    "obj, message",
    [
        ({}, "PyTorch file holds no tensors (keys: none); save the model's state_dict()"),
        ({"args": argparse.Namespace(lr=1.0), "epoch": 2},
         "PyTorch file holds no tensors (keys: args, epoch); save the model's state_dict()"),
        ({"model": {}}, "PyTorch file holds no tensors (keys: model); save the model's "
                        "state_dict()"),
        (torch.ones(3), "PyTorch file holds a Tensor, expected a dict of tensors"),
        ([torch.ones(3)], "PyTorch file holds a list, expected a dict of tensors"),
        ({"weights": {"fc.weight": torch.ones(2, 2)}, "epoch": 1},
         "state dict entry 'weights' is a dict, expected a tensor (the dict must be flat); a "
         f"nested state dict is read only under one of: {', '.join(NEST_KEYS)}"),
        (argparse.Namespace(lr=1.0), "file holds a pickled argparse.Namespace object, not a "
                                     "state dict; save only tensors: torch.save("
                                     "model.state_dict(), path)"),
    ],
    ids=["empty-dict", "extras-only", "empty-model", "tensor", "list", "unknown-key",
         "namespace"],
)
def test_files_without_a_state_dict_are_refused(obj: object, message: str,
                                                tmp_path: Path) -> None:
    path = save_pt(obj, tmp_path / "x.pt")
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(path)
    assert str(excinfo.value) == message
    assert_one_line(message)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript_archive_is_refused_with_how_to_save(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(net()), path)
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(path)
    assert str(excinfo.value) == (
        "file is a TorchScript archive (torch.jit.save), which holds code; save the model's "
        "weights with torch.save(model.state_dict(), path) or "
        "graphs.save(model, path, example_input)")


def test_extras_only_a_full_unpickler_could_rebuild_are_refused_by_name(tmp_path: Path) -> None:
    """torch's weights_only loader fills only real dicts and lists, so a defaultdict among
    the extras cannot become a placeholder: the file is refused, saying what to save."""
    from collections import defaultdict

    history: defaultdict[str, list[float]] = defaultdict(list, loss=[1.0, 0.5])
    path = save_pt({"model": net().state_dict(), "history": history}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(path)
    assert str(excinfo.value) == (
        "PyTorch file rejected by the safe loader: it pickles objects only full unpickling "
        "could rebuild (collections.defaultdict); save the state dict alone: "
        "torch.save(model.state_dict(), path)")


def test_pickle_that_runs_code_gets_torchs_cause_without_its_advice(tmp_path: Path) -> None:
    import os

    class RunsShell:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    path = save_pt({"model": net().state_dict(), "x": RunsShell()}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(path)
    assert str(excinfo.value) == ("PyTorch file rejected by the safe loader: Trying to load "
                                  "unsupported GLOBAL posix.system whose module posix is "
                                  "blocked.")
    assert not (tmp_path / "ran").exists()


def test_safetensors_without_tensors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.safetensors"
    path.write_bytes(to_safetensors_bytes({}, {"note": "nothing here"}))
    with pytest.raises(CheckpointError) as excinfo:
        graphs.load_checkpoint(path)
    assert str(excinfo.value) == (
        "safetensors file holds no tensors; save the model's state_dict() "
        "(or graphs.save(model, path, example_input))")


# --- the parser, as properties ---------------------------------------------------------------

NAMES = st.lists(
    st.from_regex(r"(layer[0-9]|[0-9]|fc|conv[0-9])\.(weight|bias)", fullmatch=True),
    min_size=1, max_size=6, unique=True)
EXTRA_KEYS = st.sampled_from(["optimizer", "epoch", "scheduler", "args", "step", "config",
                              "best_acc", "amp"])
EXTRA_VALUES = st.one_of(st.integers(), st.text(max_size=5), st.none(),
                         st.just({"state": {0: {"momentum_buffer": torch.ones(2)}}}))


@st.composite
def checkpoints(draw: st.DrawFn) -> tuple[object, dict[str, torch.Tensor], tuple[str, ...],
                                         str, list[str]]:
    """A state dict, wrapped in a random prefix and a random chain of nesting keys with
    training extras beside each level; returns (object, tensors, path, prefix, ignored)."""
    names = draw(NAMES)
    tensors = {n: torch.full((2,), float(i)) for i, n in enumerate(names)}
    prefix = "".join(draw(st.lists(st.sampled_from(PREFIXES), max_size=2)))
    obj: object = {prefix + n: t for n, t in tensors.items()}
    path = draw(st.lists(st.sampled_from(NEST_KEYS), max_size=3))
    ignored: list[str] = []
    for depth in reversed(range(len(path))):
        extras = draw(st.dictionaries(EXTRA_KEYS, EXTRA_VALUES, max_size=3))
        obj = {path[depth]: obj, **extras}
        ignored[:0] = [".".join([*path[:depth], k]) for k in extras]
    return obj, tensors, tuple(path), prefix, ignored


@settings(max_examples=150, deadline=None)
@given(checkpoints())
def test_any_nesting_and_prefix_find_the_same_tensors(case) -> None:
    obj, tensors, path, prefix, ignored = case
    found, layout = find_state_dict(obj)
    assert layout.nested_under == path
    assert list(layout.ignored_keys) == ignored
    assert split_prefix(found) == prefix
    assert_same(strip_prefix(found, prefix), tensors)  # type: ignore[arg-type]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(checkpoints())
def test_any_nesting_and_prefix_round_trip_through_torch_save(case) -> None:
    obj, tensors, path, prefix, _ = case
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    raw = read_checkpoint(buffer.getvalue())
    assert raw.nested_under == path
    assert split_prefix(raw.tensors) == prefix
    assert_same(strip_prefix(raw.tensors, prefix), tensors)


@given(st.lists(st.sampled_from(PREFIXES), min_size=1, max_size=3))
def test_a_prefix_only_some_names_carry_is_not_stripped(prefixes: list[str]) -> None:
    prefix = "".join(prefixes)
    names = [prefix + "0.weight", "head.weight"]
    assert split_prefix(names) == ""
    assert split_prefix([prefix + "weight"]) == prefix
    assert split_prefix(["module."]) == ""  # a name is never stripped to nothing


LEAVES = st.one_of(st.integers(), st.text(max_size=4), st.none(), st.just(torch.ones(2)))
KEYS = st.one_of(st.sampled_from([*NEST_KEYS, "optimizer", "epoch", "0.weight", "fc.bias"]),
                 st.text(max_size=6), st.integers())
OBJECTS = st.recursive(LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=4)), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(OBJECTS)
def test_any_object_gives_tensors_or_a_one_line_checkpoint_error(obj: object) -> None:
    try:
        found, layout = find_state_dict(obj)
    except CheckpointError as exc:
        assert_one_line(str(exc))
        return
    assert found and all(isinstance(v, torch.Tensor) for v in found.values())
    assert len(layout.nested_under) <= 3
