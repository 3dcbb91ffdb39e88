"""Checkpoint resources as the API shows them; ``InspectResult`` is the ``inspect`` job's
result."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.jobs.schemas import register_result


class CheckpointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="checkpoint id")
    sha256: str = Field(description="sha256 of the uploaded bytes (the deduplication key)")
    size: int = Field(description="uploaded size in bytes")
    format: str = Field(description="format as uploaded: safetensors or pytorch")
    filename: str | None = Field(description="file name given at upload")
    blob_sha256: str = Field(description="sha256 of the stored safetensors file")
    blob_size: int = Field(description="size of the stored safetensors file in bytes")
    tensor_count: int = Field(description="tensors in the state dict")
    parameter_count: int = Field(description="elements in all tensors")
    dtype_summary: dict[str, int] = Field(description="dtype -> number of elements")
    architecture: dict[str, Any] | None = Field(
        description="architecture op graph, or null when none is attached or inferable"
    )
    lineage: dict[str, Any] | None = Field(
        default=None,
        description="for merged checkpoints, the lineage the file carries: parents (sha256),"
        " method, lam, BatchNorm statistics",
    )
    reading: dict[str, Any] | None = Field(
        default=None,
        description="what reading the file decided: provenance of the architecture "
        "(declared, traced or inferred; null when there is none), assumptions inference "
        "made (e.g. activation, input_shape) with notes (without an architecture, the notes "
        "say why none was found and how to attach one), what the upload settled (settled), "
        "training extras "
        "ignored (ignored_keys), the key the state dict was nested under and the wrapper "
        "prefix stripped",
    )
    created_at: dt.datetime = Field(description="when it was first uploaded (UTC)")


class TensorStatistics(BaseModel):
    name: str = Field(description="the tensor's name in the state dict")
    dtype: str = Field(description="its dtype, e.g. float32")
    shape: list[int] = Field(description="its shape")
    numel: int = Field(description="its number of elements")
    mean: float | None = Field(description="mean (null for an empty tensor)")
    std: float | None = Field(description="standard deviation (population)")
    min: float | None = Field(description="smallest element")
    max: float | None = Field(description="largest element")
    abs_max: float | None = Field(description="largest magnitude")
    frac_zero: float | None = Field(description="fraction of elements that are exactly 0")


class InspectResult(BaseModel):
    """Per-tensor statistics of a stored checkpoint (the ``inspect`` job's result)."""

    checkpoint_id: int = Field(description="the checkpoint inspected")
    tensor_count: int = Field(description="tensors in the state dict")
    parameter_count: int = Field(description="elements in all tensors")
    tensors: list[TensorStatistics] = Field(description="one entry per tensor, by name")


register_result("inspect", InspectResult)


class GraphColumn(BaseModel):
    """One column of the full drawing: the neurons at one depth of the parameter graph."""

    index: int = Field(description="depth in the parameter graph (inputs 0)")
    size: int = Field(description="neurons in this column")
    types: list[str] = Field(
        description="node-set types in it: input, linear, conv, batchnorm, layernorm, add, "
        "attn_q, attn_k, attn_v, attn_out"
    )
    groups: list[str] = Field(description="the neuron groups (neuron map ids) it holds")


class GraphNeuron(BaseModel):
    id: int = Field(description="the neuron's index in the parameter graph (edges name it)")
    layer: int = Field(description="its column (depth in the parameter graph, inputs 0)")
    position: int = Field(description="its position from the top of its column, from 0")
    kind: Literal["input", "hidden", "output", "norm", "join"] = Field(
        description="input feature, hidden or output neuron, a normalization neuron (its "
        "scale and shift are per-neuron, like a bias), or the join of a residual add"
    )
    type: str = Field(description="its node-set type (see GraphColumn.types)")
    group: str = Field(description="the neuron group (permutation) it belongs to")
    label: str = Field(description="a short name: group[index within the group]")
    bias: float = Field(description="its bias (0 where the layer has none)")


class GraphWeight(BaseModel):
    source: int = Field(description="id of the neuron the weight reads")
    target: int = Field(description="id of the neuron it writes")
    weight: float = Field(
        description="the weight; for a kernel edge (conv, linear after a flatten) the mean "
        "of its kernel entries; 1 for identity edges (residual, norm)"
    )
    type: str = Field(
        description="edge type: linear, conv, flatten_linear, residual, norm, attn_q, "
        "attn_k, attn_v, attn_out, attn_pair"
    )


class GraphLayerParameter(BaseModel):
    role: str = Field(description="its role in the op: weight, bias, running_mean ...")
    name: str = Field(description="the tensor's name in the state dict")
    shape: list[int] = Field(description="its shape")
    count: int = Field(description="its number of elements")


class GraphLayer(BaseModel):
    id: str = Field(description="the input's or op's name in the architecture")
    op: str = Field(description="the op (linear, conv2d, relu ...), or input")
    shape: list[int | None] = Field(
        description="per-sample output shape (no batch dimension; null: any size)"
    )
    parameter_count: int = Field(description="elements of its parameters")
    parameters: list[GraphLayerParameter] = Field(description="its parameter tensors")


class GraphLink(BaseModel):
    source: str = Field(description="the layer whose output is read")
    target: str = Field(description="the layer reading it")
    weight_count: int = Field(description="weights of the target layer (0: none)")
    weight_norm: float | None = Field(
        description="Frobenius norm of those weights (null when there are none)"
    )


class GraphView(BaseModel):
    """A picture of a checkpoint's parameter graph: every neuron and weight (``full``) or
    one box per layer (``layers``), whichever the network's size allows."""

    checkpoint_id: int = Field(description="the checkpoint drawn")
    detail: Literal["full", "layers"] = Field(
        description="full: columns, nodes and edges are set; layers: layers and links are"
    )
    reason: str = Field(description="why this level of detail, in words")
    neuron_count: int = Field(description="neurons of the whole parameter graph")
    weight_count: int = Field(description="edges (weights) of the whole parameter graph")
    parameter_count: int = Field(description="parameters of the architecture")
    max_nodes: int = Field(description="most neurons drawn one by one under detail=auto")
    max_edges: int = Field(description="most weights drawn one by one under detail=auto")
    outputs: list[str] = Field(description="names of the architecture's outputs")
    columns: list[GraphColumn] = Field(description="full detail: the columns, by depth")
    nodes: list[GraphNeuron] = Field(description="full detail: every neuron, by id")
    edges: list[GraphWeight] = Field(description="full detail: every weight")
    layers: list[GraphLayer] = Field(description="layer view: inputs, then ops in order")
    links: list[GraphLink] = Field(description="layer view: the wires between layers")
