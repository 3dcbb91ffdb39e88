"""Training from the page in a real headless Chromium: a tiny zoo made through the API, a
training job started from the metanetwork form, its live curve followed (points appear as
epochs end, while the job still runs) until it ends with a link to the metanetwork."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.metanetworks._zoo import CLASSES, save_nets
from tests.web.conftest import upload_file

expect = pytest.importorskip("playwright.sync_api", reason="needs playwright").expect

EPOCHS = 3

RECORD_CURVE = """
  // every state of the training-loss chart from the page's first render: points drawn,
  // and the job's status then (installed before the form is sent, so nothing is missed)
  window.__curve = [];
  new MutationObserver(() => {
    const box = document.getElementById('train-loss-chart');
    if (!box) return;
    const series = box.querySelector('.ws-series');
    const status = (document.querySelector('.job-status') || { dataset: {} }).dataset.status;
    const state = [series ? Number(series.dataset.points) : 0, status];
    const last = window.__curve[window.__curve.length - 1];
    if (!last || last[0] !== state[0] || last[1] !== state[1]) window.__curve.push(state);
  }).observe(document, { childList: true, subtree: true, attributes: true });
"""


def _tiny_zoo(api: httpx.Client, directory: Path) -> dict[str, Any]:
    nets = save_nets(directory)
    ids = [upload_file(api, path)["id"] for path, _, _ in nets]
    response = api.post("/v1/zoos", json={
        "name": "scales", "task": "classification", "classes": CLASSES,
        "split_fractions": {"train": 0.6, "val": 0.2, "test": 0.2},
        "items": [{"checkpoint_id": i, "label": label}
                  for i, (_, label, _) in zip(ids, nets, strict=True)],
    })  # fmt: skip
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_training_started_from_the_page_draws_its_curve_live(
    page: Any, api: httpx.Client, tmp_path: Path, screenshot: Callable[..., Path]
) -> None:
    zoo = _tiny_zoo(api, tmp_path / "zoo")

    page.goto("/#/metanetworks")
    expect(page.get_by_role("heading", name="Train a metanetwork")).to_be_visible()
    form = page.locator("#train-form")
    expect(form.locator(f"#train-zoo option[value='{zoo['id']}']")).to_have_count(1)
    form.get_by_label("Name").fill("scales-net")
    form.get_by_label("Zoo").select_option(str(zoo["id"]))
    form.get_by_label("Epochs (at most)").fill(str(EPOCHS))
    form.get_by_text("Size and seed (optional)").click()
    form.get_by_label("Node feature width").fill("8")
    form.get_by_label("Message-passing layers").fill("1")
    form.get_by_label("Networks per step").fill("8")
    page.evaluate(f"() => {{{RECORD_CURVE}}}")  # the same document: hash routing
    form.get_by_role("button", name="Train").click()

    page.wait_for_url(re.compile(r".*#/training/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    expect(page.get_by_role("heading", name="Training scales-net")).to_be_visible()

    outcome = page.locator("#training-outcome")
    expect(
        outcome.get_by_role("link", name=re.compile(r"Open metanetwork scales-net@1"))
    ).to_be_visible(timeout=180_000)
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job
    config = job["params"]["config"]
    assert (config["hidden"], config["layers"], config["batch_size"]) == (8, 1, 8)
    epochs_run = job["result"]["epochs_run"]

    seen = page.evaluate("window.__curve")
    # the curve grew while the job was still running: points came with the epochs
    assert any(points >= 1 and status == "running" for points, status in seen), seen
    counts = [points for points, _ in seen]
    assert counts == sorted(counts), seen  # points only ever added
    loss = page.locator("#train-loss-chart .ws-series[data-series='training loss']")
    expect(loss).to_have_attribute("data-points", str(epochs_run))
    val = page.locator("#val-metric-chart .ws-series")
    expect(val).to_have_attribute("data-points", str(epochs_run))
    expect(page.locator("#val-metric-chart .ws-marker")).to_have_count(1)  # the epoch kept
    expect(page.locator("#training-epoch")).to_contain_text(f"Epoch {epochs_run} of {EPOCHS}")
    expect(page.locator("#training-cancel")).to_be_disabled()
    expect(page.locator("#training-metrics svg[role='img']")).to_have_count(1)
    screenshot("training")

    outcome.get_by_role("link", name=re.compile("Open metanetwork")).click()
    expect(page.get_by_role("heading", name="Metanetwork scales-net@1")).to_be_visible()
    expect(page.locator(".ws-chart-bar")).to_have_count(1)  # metrics beside the baseline
    expect(page.locator(".ws-chart-bar .ws-legend")).to_contain_text("baseline")
    screenshot("metanetwork")
