"""The merge form and the merge page in a real headless Chromium: two checkpoints and a
dataset picked in the form, the job followed live, then the interpolation curves drawn
(naive and aligned, loss and accuracy against lambda) with the barrier marked, as the
merge record says."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from _service_nets import digits, mlp, save_net

from tests.web.conftest import WebFiles, upload_file

expect = pytest.importorskip("playwright.sync_api", reason="needs playwright").expect


def _trained(seed: int, path: Path) -> Path:
    """A 64-16-10 MLP fitted to the digits (a second of full-batch Adam): two of them from
    different seeds show a real barrier between them that alignment lowers."""
    x, y, _, _ = digits()
    net = mlp(16, seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(150):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    return save_net(net, path)


def _points(d: str) -> int:
    return len(re.findall(r"[ML]", d))


def test_a_merge_started_in_the_form_draws_both_curves_with_the_barrier(
    page: Any,
    api: httpx.Client,
    web_files: WebFiles,
    tmp_path: Path,
    screenshot: Callable[..., Path],
) -> None:
    a = upload_file(api, _trained(1, tmp_path / "a.safetensors"))
    b = upload_file(api, _trained(2, tmp_path / "b.safetensors"))
    upload_file(api, web_files.net_c)  # a third one in the list, not picked
    dataset = api.post(
        "/v1/datasets",
        files={"file": (web_files.dataset.name, web_files.dataset.read_bytes())},
    )
    assert dataset.status_code == 201, dataset.text

    page.goto(f"/#/merges/new?a={a['id']}&b={b['id']}")
    expect(page.get_by_role("heading", name="New merge")).to_be_visible()
    expect(page.locator("#merge-order")).to_have_text(f"Order: #{a['id']} (reference), #{b['id']}")
    expect(page.get_by_label("Evaluation dataset (optional)")).to_have_value(
        str(dataset.json()["id"])
    )
    # every method /v1/merges accepts is offered
    methods = page.locator("#merge-method option").evaluate_all("os => os.map(o => o.value)")
    assert methods == ["weight", "activation", "ste", "ot", "clafusion"]
    page.get_by_label("Method").select_option("weight")
    screenshot("merge-form")
    page.get_by_role("button", name="Merge", exact=True).click()

    page.wait_for_url(re.compile(r".*#/merges/\d+$"))
    merge_id = int(page.url.rsplit("/", 1)[1])
    merge = api.get(f"/v1/merges/{merge_id}").json()
    assert merge["checkpoints"] == [a["id"], b["id"]]
    curves = merge["result"]["curves"]
    assert merge["result"]["naive_barrier"] > merge["result"]["barrier"]  # trained nets

    loss = page.locator("#merge-loss-chart")
    naive = loss.locator("path.ws-line[data-series^='naive']")
    aligned = loss.locator("path.ws-line[data-series^='aligned']")
    expect(naive).to_have_count(1)
    expect(aligned).to_have_count(1)
    # one vertex per lambda the merge measured, on both paths
    assert _points(naive.get_attribute("d")) == len(curves["naive"]["lambdas"])
    assert _points(aligned.get_attribute("d")) == len(curves["aligned"]["lambdas"])
    # the barrier is marked and labelled with the recorded value (3 significant digits)
    barrier = loss.locator(".ws-marker[data-label^='aligned barrier']")
    expect(barrier).to_have_count(1)
    expect(barrier.locator("text")).to_have_text(re.compile(r"^aligned barrier -?[\d.]+"))
    expect(loss.locator(".ws-marker[data-label^='naive barrier']")).to_have_count(1)
    expect(loss.locator(".ws-legend")).to_contain_text("naive (as uploaded)")
    expect(loss.locator(".ws-legend")).to_contain_text("aligned (permuted to the reference)")
    expect(loss.locator("svg[role='img'] desc")).to_contain_text("Marked: aligned barrier")
    accuracy = page.locator("#merge-accuracy-chart")
    expect(accuracy.locator("path.ws-line")).to_have_count(2)
    expect(page.locator("#merge-download")).to_be_visible()
    expect(page.get_by_role("heading", name="Permutations")).to_be_visible()
    screenshot("merge")
