"""Inference of checkpoints written the way popular code writes them: torchvision's VGG
(``features``/``avgpool``/``classifier``), the CIFAR VGG of kuangliu/pytorch-cifar
(``features`` then one ``classifier`` Linear), LeNet-5 and the PyTorch MNIST example (named
``conv1..convN``, ``fc1..fcM`` modules used in number order).

torchvision is not installed here: the modules below copy its ``VGG``/``make_layers``,
pytorch-cifar's ``VGG``/``_make_layers`` and the two examples' ``__init__``/``forward``
(same parameter names, same forward)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import graphs
from graphs import MissingArchitectureError
from graphs.safe_io import to_safetensors_bytes

# --- torchvision.models.vgg, as written there ------------------------------------------------

CFGS: dict[str, list[Any]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def make_layers(cfg: list[Any], batch_norm: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        else:
            conv2d = nn.Conv2d(in_channels, v, kernel_size=3, padding=1)
            if batch_norm:
                layers += [conv2d, nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            else:
                layers += [conv2d, nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(
        self,
        features: nn.Module,
        num_classes: int = 1000,
        dropout: float = 0.5,
        hidden: int = 4096,
        channels: int = 512,
    ) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, hidden),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


# --- the PyTorch tutorial's LeNet-5 and the PyTorch MNIST example ---------------------------


class LeNet(nn.Module):
    """pytorch.org "Neural Networks" tutorial: 32x32 input, no padding."""

    def __init__(self, conv1_padding: int = 0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=conv1_padding)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class MnistNet(nn.Module):
    """pytorch/examples mnist/main.py."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


class NamedMlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 32)
        self.fc2 = nn.Linear(32, 16)
        self.fc3 = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


# --- helpers ---------------------------------------------------------------------------------


def _roundtrip(model: nn.Module, x: torch.Tensor, post: Any = None, **settle: Any) -> graphs.Loaded:
    """Save the bare state dict (no architecture), load it with inference, rebuild the module
    from the inferred op graph and compare outputs with the source on ``x``."""
    model.eval()
    loaded = graphs.load_checkpoint(to_safetensors_bytes(model.state_dict()), **settle)
    assert loaded.provenance == "inferred"
    module = graphs.build_module(loaded.architecture).eval()
    module.load_state_dict(loaded.tensors, strict=True)
    with torch.no_grad():
        ours = module(x)
        if post is not None:
            ours = post(ours)
        torch.testing.assert_close(ours, model(x), atol=1e-5, rtol=1e-5)
    _listed(loaded.assumptions, loaded.notes)
    return loaded


def _listed(assumptions: dict[str, Any], notes: tuple[str, ...]) -> None:
    """Every assumption has its one-line note, named by its key."""
    keys = {n.split(":", 1)[0] for n in notes}
    assert set(assumptions) <= keys, (assumptions, notes)
    assert all("\n" not in n for n in notes)


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))
    return model


# --- VGG -------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_norm", [False, True])
def test_small_torchvision_vgg_round_trips(batch_norm: bool) -> None:
    torch.manual_seed(0)
    cfg = [8, "M", 16, "M", 16, 16, "M", 24, "M"]
    model = _randomize(VGG(make_layers(cfg, batch_norm), num_classes=5, hidden=32, channels=24), 1)
    loaded = _roundtrip(model, torch.randn(2, 3, 32, 32))
    ops = [n.op for n in loaded.architecture.nodes]
    assert ops.count("max_pool2d") == 4 and ops.count("dropout") == 2
    assert ops.count("batchnorm2d") == (5 if batch_norm else 0)
    a = loaded.assumptions
    assert a["activation"] == "relu" and a["padding"] == 1 and a["dropout"] == 0.5
    assert a["input_shape"] == [3, None, None]
    # pools where the index gaps are ("M" after the 1st, 2nd, 4th conv), plus the last one
    pools = [2, 5, 10, 13] if not batch_norm else [3, 7, 14, 18]
    assert a["pooling"].startswith("max_pool2d(2) at " + ", ".join(f"features.{i}" for i in pools))
    assert "assumed" in a["pooling"]  # the trailing "M" cannot be seen, and it says so
    # another input size works too (adaptive average pool before the classifier)
    _roundtrip(model, torch.randn(1, 3, 48, 40))


@pytest.mark.parametrize(
    ("cfg", "batch_norm", "params"),
    [
        ("A", False, 132_863_336),  # vgg11
        ("A", True, 132_868_840),  # vgg11_bn
        ("B", False, 133_047_848),  # vgg13
        ("D", True, 138_365_992),  # vgg16_bn
    ],
)
def test_real_torchvision_vgg_names_and_shapes(cfg: str, batch_norm: bool, params: int) -> None:
    """The full-size tensor set (meta tensors: no memory, no values)."""
    with torch.device("meta"):
        model = VGG(make_layers(CFGS[cfg], batch_norm))
    inferred = graphs.infer(model.state_dict())
    arch = inferred.architecture
    assert inferred.layout == "vgg"
    assert sum(p.numel() for p in model.parameters()) == params  # torchvision's own count
    assert arch.num_parameters() == sum(t.numel() for t in model.state_dict().values())
    assert [n.attrs["output_size"] for n in arch.nodes if n.op == "adaptive_avg_pool2d"] == [[7, 7]]
    ops = [n.op for n in arch.nodes]
    assert ops.count("max_pool2d") == 5 and ops.count("linear") == 3
    # what torchvision's own module list says: a MaxPool2d at every "M" index
    want = [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
    assert inferred.assumptions["pooling"].startswith(f"max_pool2d(2) at {', '.join(want)}")
    sized = graphs.infer(model.state_dict(), input_shape=(3, 224, 224)).architecture
    assert sized.shapes[sized.outputs[0]] == (1000,)
    assert (
        "input_shape" not in graphs.infer(model.state_dict(), input_shape=(3, 224, 224)).assumptions
    )


def test_alexnet_features_are_not_read_as_a_vgg() -> None:
    """torchvision's AlexNet has features/classifier too, but 11x11 stride-4 convs and
    3x3 pools the names cannot show: refused, not guessed."""
    with torch.device("meta"):
        tensors = {
            "features.0.weight": torch.empty(64, 3, 11, 11),
            "features.0.bias": torch.empty(64),
            "features.3.weight": torch.empty(192, 64, 5, 5),
            "features.3.bias": torch.empty(192),
            "classifier.1.weight": torch.empty(4096, 192 * 36),
            "classifier.1.bias": torch.empty(4096),
        }
    with pytest.raises(MissingArchitectureError, match="attach one"):
        graphs.infer(tensors)


def test_vgg_whose_classifier_does_not_fit_the_features_is_refused() -> None:
    tensors = VGG(make_layers([4, "M"]), num_classes=2, hidden=8, channels=4).state_dict()
    tensors["classifier.0.weight"] = torch.zeros(8, 4 * 7 * 7 + 1)
    with pytest.raises(MissingArchitectureError, match=r"classifier\.0's 197 inputs"):
        graphs.infer(tensors)


# --- kuangliu/pytorch-cifar models/vgg.py, as written there ---------------------------------

# fmt: off
cfg: dict[str, list[Any]] = {
    "VGG11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "VGG13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "VGG16": [
        64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"
    ],
    "VGG19": [
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ],
}
# fmt: on


class CifarVGG(nn.Module):
    def __init__(self, vgg_name: str) -> None:
        super().__init__()
        self.features = self._make_layers(cfg[vgg_name])
        self.classifier = nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x)
        out = out.view(out.size(0), -1)
        out = self.classifier(out)
        return out

    def _make_layers(self, cfg: list[Any]) -> nn.Sequential:
        layers: list[nn.Module] = []
        in_channels = 3
        for x in cfg:
            if x == "M":
                layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
            else:
                layers += [
                    nn.Conv2d(in_channels, x, kernel_size=3, padding=1),
                    nn.BatchNorm2d(x),
                    nn.ReLU(inplace=True),
                ]
                in_channels = x
        layers += [nn.AvgPool2d(kernel_size=1, stride=1)]
        return nn.Sequential(*layers)


@pytest.mark.parametrize("name", ["VGG11", "VGG16"])
def test_cifar_vgg_round_trips_with_its_conventions_listed(name: str) -> None:
    torch.manual_seed(6)
    model = _randomize(CifarVGG(name), 7)
    loaded = _roundtrip(model, torch.randn(2, 3, 32, 32))
    arch = loaded.architecture
    ops = [n.op for n in arch.nodes]
    convs = sum(1 for v in cfg[name] if v != "M")
    assert ops.count("conv2d") == ops.count("batchnorm2d") == ops.count("relu") == convs
    assert ops.count("max_pool2d") == 5 and ops[-2:] == ["flatten", "linear"]
    assert "adaptive_avg_pool2d" not in ops and "dropout" not in ops
    assert arch.num_parameters() == sum(t.numel() for t in model.state_dict().values())
    a = loaded.assumptions
    assert a["activation"] == "relu" and a["padding"] == 1
    assert a["input_shape"] == [3, 32, 32]  # 512 features = 512 channels x 1x1 after 5 pools
    want = [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
    assert a["pooling"].startswith(f"max_pool2d(2) at {', '.join(want)}")
    assert "dropout" not in a
    pooling = next(n for n in loaded.notes if n.startswith("pooling:"))
    assert "AvgPool2d(kernel_size=1, stride=1)" in pooling  # the identity, left out, said so
    shape = next(n for n in loaded.notes if n.startswith("input_shape:"))
    assert "classifier's 512 inputs" in shape and "input_shape=" in shape


def test_cifar_vgg_input_size_is_settled_by_input_shape() -> None:
    """5 pools round 32..63 down to 1: a 48x48 input gives the same 512 features."""
    torch.manual_seed(8)
    loaded = _roundtrip(
        _randomize(CifarVGG("VGG11"), 9), torch.randn(1, 3, 48, 48), input_shape=(3, 48, 48)
    )
    assert "input_shape" not in loaded.assumptions
    assert list(loaded.architecture.inputs[0].shape) == [3, 48, 48]


@pytest.mark.parametrize("name", ["VGG13", "VGG19"])
def test_cifar_vgg_names_and_shapes(name: str) -> None:
    with torch.device("meta"):
        model = CifarVGG(name)
    inferred = graphs.infer(model.state_dict())
    assert inferred.layout == "vgg"
    arch = inferred.architecture
    assert arch.shapes[arch.outputs[0]] == (10,)
    assert arch.num_parameters() == sum(t.numel() for t in model.state_dict().values())


def test_cifar_vgg_whose_classifier_does_not_fit_the_features_is_refused() -> None:
    with torch.device("meta"):
        tensors = CifarVGG("VGG11").state_dict()
        tensors["classifier.weight"] = torch.empty(10, 513)
    with pytest.raises(MissingArchitectureError, match=r"classifier's 513 inputs"):
        graphs.infer(tensors)


def test_cifar_vgg_with_an_indexed_classifier_too_is_not_guessed() -> None:
    with torch.device("meta"):
        tensors = CifarVGG("VGG11").state_dict()
        tensors["classifier.0.weight"] = torch.empty(10, 512)
    with pytest.raises(MissingArchitectureError, match="attach one"):
        graphs.infer(tensors)


# --- conv1..convN, fc1..fcM ----------------------------------------------------------------


def test_lenet5_round_trips_with_its_conventions_listed() -> None:
    torch.manual_seed(0)
    loaded = _roundtrip(LeNet(), torch.randn(3, 1, 32, 32))
    assert [n.op for n in loaded.architecture.nodes] == [
        "conv2d",
        "relu",
        "max_pool2d",
        "conv2d",
        "relu",
        "max_pool2d",
        "flatten",
        "linear",
        "relu",
        "linear",
        "relu",
        "linear",
    ]
    a = loaded.assumptions
    assert a == {
        "activation": "relu",
        "padding": [0, 0],
        "pooling": "max_pool2d(2) after conv1, conv2",
        "input_shape": [1, 32, 32],
    }
    padding = next(n for n in loaded.notes if n.startswith("padding:"))
    assert "fc1's 400" in padding and "32x32" in padding
    assert "padding [2, 0], pool every on 28x28" in padding  # the other reading, named


def test_lenet5_on_28x28_mnist_is_settled_by_input_shape() -> None:
    """LeNet-5 with conv1 padding 2 on 28x28 has the same tensors: input_shape decides."""
    torch.manual_seed(1)
    loaded = _roundtrip(LeNet(conv1_padding=2), torch.randn(2, 1, 28, 28), input_shape=(1, 28, 28))
    assert loaded.assumptions["padding"] == [2, 0]
    assert "input_shape" not in loaded.assumptions


def test_pytorch_mnist_example_round_trips() -> None:
    torch.manual_seed(2)
    model = MnistNet()
    loaded = _roundtrip(model, torch.randn(2, 1, 28, 28), post=lambda y: F.log_softmax(y, dim=1))
    assert [n.op for n in loaded.architecture.nodes] == [
        "conv2d",
        "relu",
        "conv2d",
        "relu",
        "max_pool2d",
        "flatten",
        "linear",
        "relu",
        "linear",
    ]
    assert loaded.assumptions == {
        "activation": "relu",
        "padding": [0, 0],
        "pooling": "max_pool2d(2) after conv2",
        "input_shape": [1, 28, 28],
    }
    assert any(n.startswith("output:") and "log_softmax" in n for n in loaded.notes)


def test_named_mlp_round_trips_and_says_its_input_is_assumed_flat() -> None:
    torch.manual_seed(3)
    loaded = _roundtrip(NamedMlp(), torch.randn(2, 28 * 28))
    assert loaded.assumptions["input_shape"] == [784]
    settled = _roundtrip(NamedMlp(), torch.randn(2, 1, 28, 28), input_shape=(1, 28, 28))
    assert "input_shape" not in settled.assumptions


class CifarNet(nn.Module):
    """The usual tutorial CIFAR net: padded 3x3 convs with BatchNorm, pool after each."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc1 = nn.Linear(16 * 8 * 8, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def test_named_convs_with_batchnorm_and_padding_round_trip() -> None:
    torch.manual_seed(4)
    loaded = _roundtrip(_randomize(CifarNet(), 5), torch.randn(2, 3, 32, 32))
    a = loaded.assumptions
    assert a["padding"] == [1, 1] and a["input_shape"] == [3, 32, 32]
    assert a["pooling"] == "max_pool2d(2) after conv1, conv2"
    assert a["batchnorm"].startswith("bn1, bn2 right after conv")


def test_named_convs_that_no_convention_fits_are_refused_until_input_shape_says() -> None:
    class Odd(nn.Module):  # 42x42 inputs, no padding, no pool: fc1 takes 4*40*40
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 3)
            self.fc1 = nn.Linear(4 * 40 * 40, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc1(torch.flatten(F.relu(self.conv1(x)), 1))

    tensors = Odd().state_dict()
    with pytest.raises(MissingArchitectureError, match=r"fc1's 6400 inputs.*input_shape="):
        graphs.infer(tensors)
    with pytest.raises(MissingArchitectureError, match="given input_shape"):
        graphs.infer(tensors, input_shape=(1, 41, 41))
    loaded = _roundtrip(Odd(), torch.randn(2, 1, 42, 42), input_shape=(1, 42, 42))
    assert loaded.assumptions["pooling"] == "none"


@pytest.mark.parametrize(
    "tensors",
    [
        {"conv1.weight": torch.zeros(4, 1, 3, 3), "fc2.weight": torch.zeros(3, 36)},  # no fc1
        {"conv1.weight": torch.zeros(4, 1, 3, 3), "fc1.weight": torch.zeros(3, 4 * 35)},  # 35: no
        {"conv2.weight": torch.zeros(4, 1, 3, 3), "fc1.weight": torch.zeros(3, 36)},  # no conv1
        {
            "conv1.weight": torch.zeros(4, 1, 3, 3),
            "fc1.weight": torch.zeros(3, 36),
            "head.weight": torch.zeros(2, 3),
        },  # a name outside the layout
        {  # a 3x5 kernel: one padding per conv cannot say what kernel//2 would be
            "conv1.weight": torch.zeros(4, 1, 3, 5),
            "fc1.weight": torch.zeros(3, 4 * 26 * 24),
        },
        {  # a BatchNorm numbered past the convs (after fc1?): not guessed
            "conv1.weight": torch.zeros(4, 1, 3, 3),
            "fc1.weight": torch.zeros(3, 36),
            "bn2.running_mean": torch.zeros(3),
            "bn2.running_var": torch.ones(3),
        },
    ],
)
def test_named_layouts_that_do_not_fit_say_how_to_attach_one(tensors: dict) -> None:
    with pytest.raises(MissingArchitectureError, match="attach one"):
        graphs.load(to_safetensors_bytes(tensors))
