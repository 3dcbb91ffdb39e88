"""The parameter-graph picture on the checkpoint page, in a real headless Chromium: a large
network as a layer diagram (one box per layer, as the API lists them), and a small one
read with the keyboard and the mouse (neuron and weight values), with its colour scale
switched between the whole network and each layer."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from torch import nn

import graphs
from tests.web.conftest import WebFiles, upload_file

expect = pytest.importorskip("playwright.sync_api", reason="needs playwright").expect


def test_a_large_network_is_a_layer_diagram(
    page: Any, api: httpx.Client, tmp_path: Path, screenshot: Callable[..., Path]
) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
        nn.Conv2d(128, 256, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(256, 10),
    ).eval()  # fmt: skip
    path = tmp_path / "cnn.safetensors"
    graphs.save(net, path, torch.zeros(1, 3, 8, 8))
    checkpoint = upload_file(api, path)
    view = api.get(f"/v1/checkpoints/{checkpoint['id']}/graph").json()
    assert view["detail"] == "layers"

    page.goto(f"/#/checkpoints/{checkpoint['id']}")
    picture = page.locator("figure.ws-graph-layers")
    expect(picture).to_be_visible()
    expect(picture.locator(".ws-layer")).to_have_count(len(view["layers"]))
    weighted = [link for link in view["links"] if link["weight_count"]]
    expect(picture.locator(".ws-link text")).to_have_count(len(weighted))
    first = weighted[0]
    label = picture.locator(f".ws-link[data-target='{first['target']}'] text")
    expect(label).to_have_text(
        re.compile(rf"^{first['weight_count']:,} w \u00b7 \u2016w\u2016 [\d.]+$")
    )
    shown = float(label.text_content().rsplit(" ", 1)[1])  # 3 significant digits
    assert shown == pytest.approx(first["weight_norm"], rel=5e-3)
    expect(picture.locator("table.ws-graph-data tbody tr")).to_have_count(len(view["layers"]))
    picture.locator(f".ws-layer[data-layer='{first['target']}']").hover()
    expect(picture.locator(".ws-graph-info")).to_contain_text(f"{first['target']}: conv2d")
    screenshot("graph-layers")


def test_a_small_network_is_read_with_keyboard_and_mouse(
    page: Any, api: httpx.Client, web_files: WebFiles, screenshot: Callable[..., Path]
) -> None:
    checkpoint = upload_file(api, web_files.net_a)  # 64 -> 16 -> 10
    view = api.get(f"/v1/checkpoints/{checkpoint['id']}/graph").json()
    page.goto(f"/#/checkpoints/{checkpoint['id']}")
    picture = page.locator("figure.ws-graph-full")
    expect(picture.locator("circle.ws-node")).to_have_count(len(view["nodes"]))
    expect(picture.locator("line.ws-edge")).to_have_count(len(view["edges"]))
    info = picture.locator(".ws-graph-info")

    drawing = picture.locator("svg.ws-graph-svg")
    drawing.focus()
    expect(info).to_contain_text("(input feature, input, column 0, position 0)")
    drawing.press("ArrowRight")
    hidden = next(n for n in view["nodes"] if n["layer"] == 1 and n["position"] == 0)
    expect(info).to_contain_text(f"{hidden['label']} (hidden neuron")
    expect(info).to_contain_text("64 weights in")
    drawing.press("ArrowDown")
    below = next(n for n in view["nodes"] if n["layer"] == 1 and n["position"] == 1)
    expect(info).to_contain_text(re.compile(rf"^{re.escape(below['label'])} .*bias "))

    edge = picture.locator("line.ws-edge").last  # drawn last: the largest magnitude
    edge.dispatch_event("mouseover")
    expect(info).to_contain_text(re.compile(r"^weight .* \u2192 .*: -?[\d.]+"))

    legend = picture.locator(".ws-graph-legend-scale")
    expect(legend).to_contain_text("98th percentile of all weights")
    picture.get_by_label("Weight colours:").select_option("layer")
    expect(page.locator(".ws-graph-legend-scale")).to_contain_text("into the same layer")
    screenshot("graph-full")
