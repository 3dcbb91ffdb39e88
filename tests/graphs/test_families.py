"""Module styles of popular code, each written the way its source writes it (_families):
file round trip, rebuilt module, symmetry (function, planted permutation, metanetwork),
parameter-graph round trip, and the symmetry the neuron map derives for the style."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _families import FAMILY_NAMES, build
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch_geometric.data import Batch, Data

import graphs
import merging
from merging.interpolation import lerp_tensors
from models import GraphMetanet, MetanetConfig
from models.data import GRAPH_KEYS

KERNEL = 49  # ConvNeXt's depthwise 7×7


@functools.cache
def _family(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor, graphs.Checkpoint]:
    model, x = build(name, seed)
    return model, x, graphs.from_module(model, x)


def _first(out: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def _run(ckpt: graphs.Checkpoint, x: torch.Tensor) -> torch.Tensor:
    module = graphs.build_module(ckpt.architecture)
    module.load_state_dict(ckpt.tensors, strict=True)
    with torch.no_grad():
        return _first(module(x))


def _expected(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return _first(model(x))


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_save_load_round_trip_is_exact(name: str, tmp_path: Path) -> None:
    model, x, ckpt = _family(name)
    arch = graphs.save(model, tmp_path / "net.safetensors", x)
    loaded = graphs.load(tmp_path / "net.safetensors")
    assert loaded.architecture == arch == ckpt.architecture
    assert set(loaded.tensors) == set(ckpt.tensors)
    for k, t in ckpt.tensors.items():
        assert torch.equal(loaded.tensors[k], t), k


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_rebuilt_module_reproduces_outputs(name: str) -> None:
    model, x, ckpt = _family(name)
    torch.testing.assert_close(_run(ckpt, x), _expected(model, x), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", FAMILY_NAMES)
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_random_permutation_keeps_the_function(name: str, seed: int) -> None:
    model, x, ckpt = _family(name)
    permuted = graphs.random_permutation(ckpt, torch.Generator().manual_seed(seed))
    assert any(not torch.equal(t, permuted.tensors[k]) for k, t in ckpt.tensors.items())
    torch.testing.assert_close(_run(permuted, x), _expected(model, x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_weight_matching_recovers_a_planted_permutation(name: str) -> None:
    _, _, a = _family(name)
    nmap = graphs.neuron_map(a.architecture)
    q = graphs.sample_permutations(nmap, torch.Generator().manual_seed(11))
    b = graphs.apply_permutation(a, q)
    result = merging.weight_matching(a, b, device="cpu")
    for gid, p in q.items():  # b[i] = a[q[i]]: the alignment is q's inverse
        assert torch.equal(result.perms[gid], torch.argsort(p)), gid
    aligned = result.apply(b)
    for k, t in a.tensors.items():
        assert torch.equal(aligned.tensors[k], t), k


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_parameter_graph_round_trip_is_exact(name: str) -> None:
    _, _, ckpt = _family(name)
    g = graphs.to_graph(ckpt, max_kernel=KERNEL)
    back = graphs.from_graph(g, ckpt)
    for k, t in ckpt.tensors.items():
        assert torch.equal(back.tensors[k], t), k
    assert g.edge_index.shape[1] == g.edge_attr.shape[0] and g.num_nodes == g.x.shape[0]


@functools.cache
def _metanet() -> GraphMetanet:
    torch.manual_seed(0)
    model = GraphMetanet(MetanetConfig(task="generalization", num_outputs=1, hidden=16,
                                       edge_hidden=8, layers=2, fourier=4,
                                       max_kernel=KERNEL))
    model.fit_normalization([_graph(_family(n)[2]) for n in FAMILY_NAMES])
    return model.eval()


def _graph(ckpt: graphs.Checkpoint) -> Data:
    g = graphs.to_graph(ckpt, max_kernel=KERNEL)
    return Data(**{k: g[k] for k in GRAPH_KEYS}, num_nodes=g.num_nodes)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_metanetwork_output_is_invariant(name: str) -> None:
    _, _, ckpt = _family(name)
    permuted = graphs.random_permutation(ckpt, torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = _metanet()(Batch.from_data_list([_graph(ckpt), _graph(permuted)]))
    torch.testing.assert_close(out[0], out[1], atol=1e-4, rtol=0)


# --- the symmetry each style has --------------------------------------------------------


def _axes(ckpt: graphs.Checkpoint, view: str) -> tuple[str | None, ...]:
    return graphs.neuron_map(ckpt.architecture).axes[view]


def test_reference_siren_is_the_sine_op_graph() -> None:
    """``torch.sin(omega_0 * linear(x))`` folds into ``sine(w0)``: the same graph as a
    ``Sine`` module, so the INR metanetworks read reference SIRENs as they read the zoo's."""
    _, _, ckpt = _family("siren")
    arch = ckpt.architecture
    assert [n.op for n in arch.nodes] == ["linear", "sine"] * 3 + ["linear"]
    assert {n.attrs["w0"] for n in arch.nodes if n.op == "sine"} == {30.0}
    assert len(arch.outputs) == 2  # (output, coords)
    assert graphs.to_graph(ckpt).node_act.unique().tolist() == [
        0, graphs.ACTIVATION_IDS["sine"]]


def test_nanogpt_ties_the_embedding_and_attends_causally(tmp_path: Path) -> None:
    model, x, ckpt = _family("nanogpt")
    arch = ckpt.architecture
    assert arch.ties == {"lm_head.weight": "transformer.wte.weight"}
    graphs.save(model, tmp_path / "gpt.safetensors", x)
    assert "lm_head.weight" not in graphs.load(tmp_path / "gpt.safetensors").tensors
    attn = [n for n in arch.nodes if n.op == "attention"]
    assert len(attn) == 2 and all(n.attrs["causal"] and n.attrs["packed"] for n in attn)
    nmap = graphs.neuron_map(arch)
    vocab, embed = _axes(ckpt, "transformer.wte.weight")
    assert _axes(ckpt, "lm_head.weight") == (vocab, embed)
    assert not nmap.groups[vocab].permutable and nmap.groups[embed].permutable
    assert _axes(ckpt, "transformer.wpe.weight")[1] == embed  # position rows fixed
    rebuilt = graphs.build_module(arch)
    assert rebuilt.lm_head.weight is rebuilt.transformer.wte.weight


def test_nanogpt_explicit_causal_softmax_is_the_same_attention() -> None:
    """nanoGPT without flash: masked_fill with its tril buffer, softmax, @ v."""
    _, _, ckpt = _family("nanogpt_slow")
    attn = [n for n in ckpt.architecture.nodes if n.op == "attention"]
    assert all(n.attrs["causal"] for n in attn)
    assert attn[0].attrs["ignored"] == ["transformer.h.0.attn.bias"]  # the mask buffer
    assert "transformer.h.0.attn.bias" not in ckpt.tensors
    flash = _family("nanogpt")[2].architecture
    assert [(n.op, n.params) for n in ckpt.architecture.nodes] == [
        (n.op, n.params) for n in flash.nodes]


def test_vit_tokens_and_attention_forms() -> None:
    """Class token, position embedding, patch projection and layer scale share the
    residual stream's group; fused and explicit-softmax attention give one op graph."""
    _, _, ckpt = _family("vit")
    stream = _axes(ckpt, "patch_embed.proj.weight")[0]
    assert _axes(ckpt, "cls_token@rows")[1] == stream
    assert _axes(ckpt, "pos_embed@rows")[1] == stream
    assert _axes(ckpt, "blocks.0.ls1.gamma@rows")[1] == stream
    assert _axes(ckpt, "blocks.1.attn.proj.weight")[0] == stream
    qk = _axes(ckpt, "blocks.0.attn.qkv.weight#q")[0]
    nmap = graphs.neuron_map(ckpt.architecture)
    assert nmap.groups[qk].blocks == (2, 4)
    def content(arch: graphs.Architecture) -> list[tuple]:  # node names are fx's counters
        return [(n.op, n.attrs, n.params) for n in arch.nodes]

    assert content(_family("vit_softmax")[2].architecture) == content(ckpt.architecture)


def test_mobilenet_depthwise_and_squeeze_excitation_tie_groups() -> None:
    _, _, ckpt = _family("mobilenet_v2")
    expand = _axes(ckpt, "features.2.conv.0.0.weight")[0]
    assert _axes(ckpt, "features.2.conv.1.0.weight") == (expand, None, None, None)  # depthwise
    assert _axes(ckpt, "features.2.conv.2.fc2.weight")[0] == expand  # the gate's product
    assert _axes(ckpt, "features.2.conv.2.fc1.weight")[1] == expand
    ops = {n.op for n in ckpt.architecture.nodes}
    assert {"relu6", "hardsigmoid", "hardswish", "mul"} <= ops


def test_densenet_concatenation_keeps_each_input_group() -> None:
    _, _, ckpt = _family("densenet")
    init = _axes(ckpt, "features.conv0.weight")[0]
    new = _axes(ckpt, "features.denseblock1.denselayer1.conv2.weight")[0]
    w = "features.denseblock1.denselayer2.conv1.weight"
    assert _axes(ckpt, f"{w}#cat0")[1] == init and _axes(ckpt, f"{w}#cat1")[1] == new
    bn = "features.denseblock1.denselayer2.norm1.running_mean"
    assert (_axes(ckpt, f"{bn}#cat0"), _axes(ckpt, f"{bn}#cat1")) == ((init,), (new,))


def test_convnext_channels_last_block_keeps_the_stream() -> None:
    _, _, ckpt = _family("convnext")
    stream = _axes(ckpt, "stem.weight")[0]
    assert _axes(ckpt, "stages.0.dwconv.weight") == (stream, None, None, None)
    assert _axes(ckpt, "stages.0.norm.weight") == (stream,)
    assert _axes(ckpt, "stages.0.pwconv1.weight")[1] == stream
    assert _axes(ckpt, "stages.1.pwconv2.weight")[0] == stream
    assert _axes(ckpt, "stages.1.gamma@rows")[1] == stream


def test_pre_ln_transformer_encoder_keeps_its_function() -> None:
    model, x, ckpt = _family("transformer_encoder", 1)  # odd seeds build norm_first=True
    assert model.encoder.layers[0].norm_first
    permuted = graphs.random_permutation(ckpt, torch.Generator().manual_seed(3))
    for c in (ckpt, permuted):
        torch.testing.assert_close(_run(c, x), _expected(model, x), atol=1e-5, rtol=1e-4)


def test_transformer_encoder_traces_through_its_guards() -> None:
    _, _, ckpt = _family("transformer_encoder")
    ops = [n.op for n in ckpt.architecture.nodes]
    assert ops.count("self_attention") == 2 and ops.count("layernorm") == 5
    assert _axes(ckpt, "encoder.layers.0.linear2.weight")[0] == \
        _axes(ckpt, "embed.weight")[0]


def test_bert_separate_projections_are_one_attention_op() -> None:
    _, _, ckpt = _family("bert")
    (attn, *_) = [n for n in ckpt.architecture.nodes if n.op == "attention"]
    assert not attn.attrs["packed"] and not attn.attrs["causal"]
    assert attn.params["q_weight"] == "layer.0.self.query.weight"
    assert attn.params["out_weight"] == "layer.0.dense.weight"
    qk = _axes(ckpt, "layer.0.self.query.weight")[0]
    assert _axes(ckpt, "layer.0.self.key.weight")[0] == qk
    assert _axes(ckpt, "layer.0.dense.weight")[1] == _axes(ckpt, "layer.0.self.value.weight")[0]


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular")),
         r"^0: Conv2d with padding_mode='circular' .*'zeros'"),
        (nn.Sequential(nn.Linear(4, 4), nn.PReLU()), r"^1: module type PReLU .*arch="),
    ],
)
def test_unsupported_styles_name_the_module_and_what_to_do(module: nn.Module,
                                                           message: str) -> None:
    x = torch.randn(2, 4, 5, 5) if isinstance(module[0], nn.Conv2d) else torch.randn(2, 4)
    with pytest.raises(graphs.UnsupportedOpError, match=message):
        graphs.describe(module, x)


@pytest.mark.parametrize("name", ["convnext", "mobilenet_v2", "densenet", "resnext",
                                  "grouped_conv", "convnext_stages", "vit", "vit_softmax",
                                  "bert", "nanogpt", "local_attention"])
def test_activation_matching_reads_features_where_the_neuron_map_puts_them(name: str) -> None:
    """Channels-last blocks (``permute``), gates and concatenations move a value's feature axis;
    activation matching must correlate along it, so a planted permutation is recovered.
    Attention heads (and grouped-conv blocks) are matched as blocks, then within blocks, on
    the q/k/v projections of each network."""
    _, x, a = _family(name)
    gen = torch.Generator().manual_seed(5)
    data = torch.randint(0, int(x.max()) + 1, (64, *x.shape[1:]), generator=gen) \
        if not x.is_floating_point() else torch.randn(64, *x.shape[1:], generator=gen)
    nmap = graphs.neuron_map(a.architecture)
    q = graphs.sample_permutations(nmap, torch.Generator().manual_seed(12))
    b = graphs.apply_permutation(a, q)
    result = merging.activation_matching(a, b, data, device="cpu")
    for gid, p in q.items():  # b[i] = a[q[i]]: the alignment is q's inverse, exactly
        assert torch.equal(result.perms[gid], torch.argsort(p)), gid
    aligned = result.apply(b)
    for k, t in a.tensors.items():
        assert torch.equal(aligned.tensors[k], t), k


def test_convnext_channels_first_layernorm_is_the_layernorm_op() -> None:
    """The reference ConvNeXt ``LayerNorm(data_format="channels_first")`` (mean/pow/sqrt)
    traces as one ``layernorm`` over the channels, its vectors in the channels' group."""
    _, _, ckpt = _family("convnext_stages")
    arch = ckpt.architecture
    first = [n for n in arch.nodes if n.op == "layernorm" and n.attrs.get("channels_first")]
    assert [n.name for n in first] == ["downsample_layers.0.1", "downsample_layers.1.0"]
    assert first[0].params == {"weight": "downsample_layers.0.1.weight",
                               "bias": "downsample_layers.0.1.bias"}
    stem = _axes(ckpt, "downsample_layers.0.0.weight")[0]
    assert _axes(ckpt, "downsample_layers.0.1.weight") == (stem,)
    assert _axes(ckpt, "stages.0.0.dwconv.weight")[0] == stem
    assert _axes(ckpt, "downsample_layers.1.0.bias") == (stem,)
    assert _axes(ckpt, "downsample_layers.1.1.weight")[1] == stem
    # old graphs keep their bytes: a channels-last layernorm writes no new attribute
    assert "channels_first" not in arch.node("stages.0.0.norm").attrs


class _NotChannelNorm(nn.Module):
    """weight/bias and mean/pow/sqrt, but over the spatial axis: not a channel LayerNorm."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.eps = 1e-6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(2, keepdim=True)
        s = (x - u).pow(2).mean(2, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def test_a_norm_over_another_axis_is_not_read_as_a_channel_layernorm() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), _NotChannelNorm(4))
    with pytest.raises(graphs.GraphsError):
        graphs.describe(model, torch.randn(2, 3, 5, 5))


# --- attention masks that are constants of the model -------------------------------------


def test_a_fixed_local_window_mask_is_stored_with_the_checkpoint(tmp_path: Path) -> None:
    """A non-causal mask buffer (``attn_mask=`` of SDPA, or ``masked_fill(bias == 0, -inf)``)
    is named by the attention node and saved with the tensors; it is not a neuron axis."""
    model, x, ckpt = _family("local_attention")
    (attn, _) = [n for n in ckpt.architecture.nodes if n.op == "attention"]
    assert attn.params["mask"] == "attn.0.local_mask"
    assert (attn.attrs["mask"], attn.attrs["mask_shape"], attn.attrs["causal"]) == (
        "keep", [1, 1, 9, 9], False)
    assert _axes(ckpt, "attn.0.local_mask") == (None, None, None, None)
    graphs.save(model, tmp_path / "local.safetensors", x)
    loaded = graphs.load(tmp_path / "local.safetensors")
    assert loaded.tensors["attn.0.local_mask"].dtype == torch.bool
    slow = _family("local_attention_slow")[2].architecture
    (slow_attn, _) = [n for n in slow.nodes if n.op == "attention"]
    assert slow_attn.params["mask"] == "attn.0.bias" and slow_attn.attrs["mask"] == "keep"
    # the rebuilt module slices the stored mask to any length up to the buffer's
    longer = torch.randn(2, 9, 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(_run(ckpt, longer), _expected(model, longer), atol=1e-6,
                               rtol=1e-5)


class _MaskedAttention(nn.Module):
    """One attention written with a fixed mask buffer in one of several ways."""

    def __init__(self, form: str) -> None:
        super().__init__()
        self.qkv, self.proj, self.form = nn.Linear(8, 24), nn.Linear(8, 8), form
        i = torch.arange(6)
        pad = (i >= 4)[None, :].expand(6, 6)  # the last two keys are padding
        if form == "drop":  # True = masked out
            self.register_buffer("pad", pad.clone())
        elif form == "add":  # an additive distance penalty, -inf on padding
            bias = -0.5 * (i[:, None] - i[None, :]).abs().float()
            self.register_buffer("pad", bias.masked_fill(pad, float("-inf")))
        else:
            self.register_buffer("pad", torch.tril(torch.ones(6, 6)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.qkv(x).split(8, dim=2)
        q, k, v = (t.view(B, T, 2, 4).transpose(1, 2) for t in (q, k, v))
        if self.form == "add":
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=self.pad)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(4))
            if self.form == "drop":
                att = att.masked_fill(self.pad, float("-inf"))
            else:
                att = att.masked_fill(self.pad[:T, :T] == 0, float("-inf"))
            y = F.softmax(att, dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


@pytest.mark.parametrize(("form", "kind"), [("drop", "drop"), ("add", "add"),
                                            ("causal", None)])
def test_mask_forms_are_read_as_the_source_applies_them(form: str, kind: str | None) -> None:
    torch.manual_seed(0)
    model = _MaskedAttention(form).eval()
    x = torch.randn(2, 6, 8)
    ckpt = graphs.from_module(model, x)
    (attn,) = [n for n in ckpt.architecture.nodes if n.op == "attention"]
    assert attn.attrs.get("mask") == kind
    assert attn.attrs["causal"] == (kind is None)  # a tril buffer is the causal flag
    assert ("pad" in ckpt.tensors) == (kind is not None)
    permuted = graphs.random_permutation(ckpt, torch.Generator().manual_seed(2))
    for c in (ckpt, permuted):
        torch.testing.assert_close(_run(c, x), _expected(model, x), atol=1e-5, rtol=1e-4)
    # interpolating two networks keeps their common mask (-inf entries included)
    mid = lerp_tensors(ckpt.tensors, permuted.tensors, 0.5)
    if kind is not None:
        assert torch.equal(mid["pad"], ckpt.tensors["pad"])


class _ArgumentMask(nn.Module):
    def __init__(self, default: bool) -> None:
        super().__init__()
        self.qkv, self.proj, self.default = nn.Linear(8, 24), nn.Linear(8, 8), default

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.qkv(x).split(8, dim=2)
        q, k, v = (t.view(B, T, 2, 4).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_padding_mask)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class _InputMask(_ArgumentMask):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x, (x.abs().sum(-1) > 0.5)[:, None, None, :])


@pytest.mark.parametrize("module", [_ArgumentMask(False), _InputMask(False)])
def test_a_per_batch_mask_is_refused_saying_what_to_do(module: nn.Module) -> None:
    with pytest.raises(graphs.UnsupportedOpError, match=r"per.batch.*register_buffer.*arch="):
        graphs.describe(module, torch.randn(2, 6, 8))
