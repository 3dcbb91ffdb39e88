"""The page in a real headless Chromium against the real app: what a person sees after
uploading a checkpoint (progress, then its prediction), its parameter-graph picture,
history pages followed to the end, the keyboard path, and the API key field."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from safetensors.torch import save_file

from app.db import create_db_engine, create_session_factory
from app.keys import create_key
from tests.web.conftest import LiveServer, WebFiles, server_settings, upload_file

expect = pytest.importorskip("playwright.sync_api", reason="needs playwright").expect

RECORD_PROGRESS = """() => {
  // what the progress bar showed, every value it took, for the test to read afterwards
  window.__progress = [];
  const watch = () => {
    const bar = document.getElementById('upload-progress');
    if (!bar) return;
    new MutationObserver(() => { if (!bar.hidden) window.__progress.push(bar.value); })
      .observe(bar, { attributes: true });
    const status = document.getElementById('upload-status');
    window.__status = [];
    new MutationObserver(() => window.__status.push(status.textContent))
      .observe(status, { childList: true, characterData: true, subtree: true });
  };
  watch();
}"""

DROP_FILE = """([name, bytes]) => {
  // a person dragging a file from their desktop onto the drop zone
  const file = new File([new Uint8Array(bytes)], name, { type: 'application/octet-stream' });
  const data = new DataTransfer();
  data.items.add(file);
  const zone = document.getElementById('dropzone');
  for (const type of ['dragenter', 'dragover', 'drop']) {
    const event = new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: data });
    zone.dispatchEvent(event);
  }
}"""


def test_upload_by_drop_shows_progress_then_the_prediction(
    page: Any, web_files: WebFiles, screenshot: Callable[..., Path]
) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="Upload a checkpoint")).to_be_visible()
    # the metanetwork list has arrived when its option is there
    expect(page.locator("#upload-ask option[value='tiny-digits']")).to_have_count(1)
    screenshot("upload")
    page.evaluate(RECORD_PROGRESS)
    page.evaluate(DROP_FILE, [web_files.net_a.name, list(web_files.net_a.read_bytes())])

    page.wait_for_url(re.compile(r"#/checkpoints/\d+\?jobs=\d+"))
    checkpoint_id = int(re.search(r"#/checkpoints/(\d+)", page.url).group(1))  # type: ignore[union-attr]
    card = page.locator("article.prediction")
    expect(card).to_have_count(1)
    expect(card.locator(".headline")).to_contain_text("Predicted class:")
    expect(card.locator(".headline")).to_contain_text("with probability")
    bars = card.locator("svg.ws-probabilities .ws-bar")
    expect(bars).to_have_count(10)  # one bar per digit class
    expect(card).to_contain_text("Inside the domain")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Checkpoint #{checkpoint_id} \u00b7 {web_files.net_a.name}"
    )
    # the progress bar showed the upload and reached full; the status said so in words
    progress = page.evaluate("window.__progress")
    assert progress and max(progress) == 1, progress
    statuses = " | ".join(page.evaluate("window.__status"))
    assert "Uploading net1.safetensors" in statuses
    assert "Stored net1.safetensors as checkpoint" in statuses
    # the answer shown is the one the API holds, to 3 significant digits
    with httpx.Client(base_url=page.url.split("#")[0]) as api:
        stored = api.get("/v1/predictions", params={"checkpoint_id": checkpoint_id}).json()
    (prediction,) = stored["items"]
    top = prediction["probabilities"][prediction["label"]]
    expect(card.locator(".headline")).to_contain_text(
        f"Predicted class: {prediction['label']} with probability {100 * top:.3g}"
    )
    page.evaluate("window.scrollTo(0, 0)")
    screenshot("checkpoint", full_page=False)


def test_file_input_upload_and_graph_picture(
    page: Any, web_files: WebFiles, screenshot: Callable[..., Path]
) -> None:
    page.goto("/")
    page.select_option("#upload-ask", "")  # store only
    page.set_input_files("#upload-file", str(web_files.net_b))
    page.wait_for_url(re.compile(r"#/checkpoints/\d+$"))
    expect(page.locator("#upload-progress")).to_have_count(0)  # the home page is gone

    graph = page.locator("#graph svg.ws-graph-full")
    graph.scroll_into_view_if_needed()
    expect(graph).to_be_visible()
    # every neuron of the 64 -> 16 -> 10 MLP is a circle; the weights are drawn as lines
    expect(graph.locator("circle.ws-node")).to_have_count(64 + 16 + 10)
    drawn = graph.evaluate(
        "svg => svg.querySelectorAll('.ws-edges line').length + [...svg.querySelectorAll("
        "'.ws-edges path')].reduce((n, p) => n + (p.getAttribute('d').match(/M/g) || []).length, 0)"
    )
    assert drawn == 64 * 16 + 16 * 10  # every weight: one line each, or one segment each
    expect(page.locator("#graph")).to_contain_text("90 neurons, 1,184 weights")
    # the architecture table and the neuron groups
    ops = page.get_by_role("table").filter(has_text="Output shape")
    expect(ops).to_contain_text("linear")
    expect(ops).to_contain_text("weight 16\u00d764")  # as stored: out x in
    groups = page.get_by_role("table", name=re.compile("^Neuron groups"))
    expect(groups.locator("tbody tr")).to_have_count(3)  # input, the hidden layer, output
    expect(groups.locator("tr", has_text="yes")).to_contain_text("16")  # permutable hidden
    expect(groups.locator("tr", has_text="fixed")).to_have_count(2)
    expect(page.locator("dl.facts").first).to_contain_text("1,210")  # parameters, exact
    screenshot("graph", element=page.locator("#graph"))


def _distinct_checkpoints(directory: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        path = directory / f"plain-{i}.safetensors"
        save_file({"w": torch.full((3,), float(i))}, str(path))
        paths.append(path)
    return paths


def test_history_pages_to_the_end(
    page: Any, api: httpx.Client, tmp_path: Path, screenshot: Callable[..., Path]
) -> None:
    created = [upload_file(api, p)["id"] for p in _distinct_checkpoints(tmp_path, 12)]
    page.goto("/#/checkpoints?limit=5")
    expect(page.get_by_role("heading", level=1)).to_have_text("Checkpoints")
    pages = page.get_by_role("navigation", name="Checkpoints pages")
    next_button = pages.get_by_role("button", name="Next")
    seen: list[int] = []
    for number in (1, 2, 3):
        caption = page.locator("caption", has_text=f"page {number},")
        expect(caption).to_be_visible()
        rows = page.locator(".history tbody tr")
        ids = [int(t.strip("#")) for t in rows.locator("td:first-child").all_inner_texts()]
        assert len(ids) == (5 if number < 3 else 2)
        seen += ids
        if number == 1:
            screenshot("history")
        if number < 3:
            expect(next_button).to_be_enabled()
            next_button.click()
    expect(next_button).to_be_disabled()
    assert sorted(seen) == sorted(created) and len(set(seen)) == len(seen)
    assert seen == sorted(seen, reverse=True)  # newest first, across pages
    # and back again
    pages.get_by_role("button", name="Previous").click()
    expect(page.locator("caption", has_text="page 2,")).to_be_visible()
    expect(page.locator(".history tbody tr").first).to_contain_text(f"#{seen[5]}")


def test_filters_narrow_the_history(page: Any, api: httpx.Client, web_files: WebFiles) -> None:
    upload_file(api, web_files.net_a)
    b = upload_file(api, web_files.net_b)
    page.goto("/#/checkpoints")
    expect(page.locator(".history tbody tr")).to_have_count(2)
    page.get_by_label("sha256 starts with").fill(b["sha256"][:10])
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile(r"sha256_prefix=" + b["sha256"][:10]))
    expect(page.locator(".history tbody tr")).to_have_count(1)
    expect(page.locator(".history tbody")).to_contain_text(f"#{b['id']}")
    page.get_by_role("button", name="Clear").click()
    expect(page.locator(".history tbody tr")).to_have_count(2)
    expect(page.get_by_label("sha256 starts with")).to_have_value("")


def test_keyboard_reaches_nav_and_upload(page: Any) -> None:
    page.goto("/")
    expect(page.locator("#upload-ask option[value='tiny-digits']")).to_have_count(1)
    reached: list[str] = []
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate(
                "() => { const a = document.activeElement;"
                " return a.id || a.getAttribute('href') || a.tagName; }"
            )
        )
        if reached[-1] == "upload-file":
            break
    assert reached[0] == "skip-link", reached  # the skip link comes first
    for target in ("#/", "#/checkpoints", "#/predictions", "#/merges", "#/jobs", "api-key"):
        assert target in reached, (target, reached)
    assert reached[-1] == "upload-file", reached
    # a focused link is visibly outlined
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    # Enter on a nav link opens its page and puts focus on its heading
    page.locator("a[data-nav='jobs']").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Jobs")
    expect(page.get_by_role("heading", level=1)).to_be_focused()
    expect(page).to_have_title("Jobs \u00b7 Weightscope")
    expect(page.locator("a[data-nav='jobs']")).to_have_attribute("aria-current", "page")


def test_unknown_route_says_not_found(page: Any) -> None:
    page.goto("/#/no/such/page")
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")


def test_api_key_field_when_keys_are_required(
    browser: Any,
    tmp_path: Path,
    web_files: WebFiles,
    start_server: Callable[..., LiveServer],
) -> None:
    from tests.web.conftest import open_page

    settings = server_settings(tmp_path, web_files, auth="required")
    engine = create_db_engine(settings.database_url)
    token = create_key(create_session_factory(engine), "browser", "web").token
    engine.dispose()
    server = start_server(settings)
    with server.client(token) as api:
        checkpoint = upload_file(api, web_files.net_c)
        job = api.post(
            "/v1/predictions",
            json={"checkpoint_id": checkpoint["id"], "metanetwork": "tiny-digits"},
        ).json()
    pages = open_page(browser, server.url)
    page = next(pages)
    try:
        page.goto("/#/checkpoints")
        expect(page.get_by_role("alert")).to_contain_text("Error 401")
        expect(page.get_by_role("alert")).to_contain_text("API key")
        page.get_by_label("API key").fill(token)
        page.get_by_role("button", name="Save key").click()
        expect(page.locator("#key-status")).to_have_text("key saved in this browser")
        expect(page.locator(".history tbody")).to_contain_text(f"#{checkpoint['id']}")
        # the key stays for the next visit, and is sent with the job's event stream too
        page.reload()
        expect(page.locator(".history tbody")).to_contain_text(f"#{checkpoint['id']}")
        page.goto(f"/#/jobs/{job['id']}")
        expect(page.locator(".job-live")).to_have_text(f"Job #{job['id']}: succeeded")
        followed = page.evaluate(
            "async (id) => { const { waitJob } = await import('/static/api.js');"
            " const seen = []; const job = await waitJob(id, (j) => seen.push(j.status));"
            " return [job.status, seen]; }",
            job["id"],
        )
        assert followed == ["succeeded", ["succeeded"]]  # read from the stream, with the key
    finally:
        next(pages, None)


def test_job_page_follows_the_job(
    page: Any, api: httpx.Client, web_files: WebFiles, screenshot: Callable[..., Path]
) -> None:
    checkpoint = upload_file(api, web_files.net_a)
    job = api.post(
        "/v1/predictions", json={"checkpoint_id": checkpoint["id"], "metanetwork": "tiny-digits"}
    ).json()
    page.goto(f"/#/jobs/{job['id']}")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Job #{job['id']}")
    status = page.locator(".job-live")
    expect(status).to_have_attribute("aria-live", "polite")
    expect(status).to_have_text(f"Job #{job['id']}: succeeded")
    expect(page.locator("progress")).to_have_js_property("value", 1)
    outcome = page.get_by_role("region", name="Outcome")
    expect(outcome).to_contain_text(f"Answered about checkpoint #{checkpoint['id']} by tiny-digits")
    screenshot("job")
    outcome.get_by_role("link", name=f"checkpoint #{checkpoint['id']}").click()
    expect(page.locator("article.prediction")).to_have_count(1)
    page.get_by_role("link", name="Home", exact=True).click()  # the job, its answer
    expect(page.get_by_role("table", name="Latest predictions")).to_contain_text("tiny-digits: ")
    expect(page.get_by_role("table", name="Latest jobs").locator(".badge")).to_have_text(
        "succeeded"
    )
    screenshot("home")


def test_numbers_to_three_significant_digits(page: Any) -> None:
    page.goto("/")
    shown = page.evaluate(
        """async () => {
          const f = await import('/static/format.js');
          return [f.fmt(0.98361), f.fmt(12345), f.fmt(-0.000123456), f.fmt(2), f.fmt(1e-7),
                  f.fmt(null), f.fmt(NaN), f.fmtPct(0.97314), f.fmtInt(1210), f.fmtBytes(5765)];
        }"""
    )
    assert shown == [
        "0.984",
        "12300",
        "-0.000123",
        "2.00",
        "1.00\u00d710\u207b\u2077",
        "\u2014",
        "\u2014",
        "97.3 %",
        "1,210",
        "5.63 KiB",
    ]


def test_a_predicted_accuracy_is_drawn_with_its_interval(page: Any) -> None:
    """A generalization answer (no regression metanetwork ships with the test files, so
    the record is given to the view as the API would send it)."""
    page.goto("/")
    page.evaluate(
        """async () => {
          const { predictionCard } = await import('/static/predict_view.js');
          const main = document.getElementById('main');
          main.replaceChildren(predictionCard({
            id: 7, job_id: 9, checkpoint_id: 3, metanetwork: 'acc', task: 'generalization',
            metanetwork_version: 'v1', label: null, probabilities: null, value: 0.91234,
            interval_low: 0.8712, interval_high: 0.95, coverage: 0.9, in_domain: false,
            domain_issues: ['12 hidden units; the domain holds 16 to 64'],
            created_at: '2026-12-03T07:00:00Z',
          }));
        }"""
    )
    card = page.locator("article.prediction")
    expect(card.locator(".headline")).to_have_text(
        "Predicted test accuracy: 0.912 (90.0 % interval 0.871 to 0.950)"
    )
    expect(card.locator("svg.ws-interval rect.ws-interval")).to_have_count(1)
    expect(card.locator("svg.ws-interval circle.ws-value")).to_have_count(1)
    expect(card).to_contain_text("Outside the domain")
    expect(card.locator(".verdict-out li")).to_have_text(
        "12 hidden units; the domain holds 16 to 64"
    )


def test_a_file_that_is_no_checkpoint_is_refused_in_words(page: Any, tmp_path: Path) -> None:
    junk = tmp_path / "notes.safetensors"
    junk.write_bytes(b"this is not a checkpoint")
    page.goto("/")
    page.set_input_files("#upload-file", str(junk))
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("notes.safetensors: Error 422")
    expect(page.locator("#upload-status")).to_have_text("Upload of notes.safetensors failed.")
    expect(page).to_have_url(re.compile(r"/$"))  # stayed on the home page, nothing stored
    expect(page.get_by_role("table", name="Latest checkpoints")).to_contain_text(
        "No checkpoints yet."
    )


def test_several_files_at_once_and_a_refusal_said_on_the_checkpoint_page(
    page: Any, web_files: WebFiles, tmp_path: Path, screenshot: Callable[..., Path]
) -> None:
    page.goto("/")
    expect(page.locator("#upload-ask option[value='tiny-digits']")).to_have_count(1)
    page.set_input_files("#upload-file", [str(web_files.net_a), str(web_files.net_b)])
    notice = page.locator(".notice", has_text="Stored 2 of 2 files")
    expect(notice.get_by_role("link")).to_have_count(2)
    # a network outside the tiny metanetwork's domain (3 inputs, not 64): not asked, and why
    torch.manual_seed(0)
    other = tmp_path / "other.safetensors"
    from _service_nets import save_net

    save_net(
        torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)),
        other,
        (3,),
    )
    page.set_input_files("#upload-file", str(other))
    page.wait_for_url(re.compile(r"#/checkpoints/\d+$"))
    refused = page.locator(".notice", has_text="Not asked (1)")
    expect(refused).to_contain_text("tiny-digits: checkpoint")
    expect(refused).to_contain_text("outside the domain")
    expect(page.locator("article.prediction")).to_have_count(0)
    screenshot("refused", full_page=False)


@pytest.fixture
def slow_jobs() -> Iterator[None]:
    """The ``_slow_jobs`` kind for one test: the job-kind registry and the module cache are
    put back after it, so later tests (the OpenAPI's job union) never see the test kind."""
    from app.jobs import kind

    before = set(kind.KINDS)
    imported = "_slow_jobs" in sys.modules
    yield
    if not imported:  # the real kinds registered meanwhile stay: their modules are cached
        for name in set(kind.KINDS) - before:
            if kind.KINDS[name].run.__module__ == "_slow_jobs":
                del kind.KINDS[name]
        sys.modules.pop("_slow_jobs", None)


def test_a_running_job_is_followed_live(
    slow_jobs: None,
    browser: Any,
    tmp_path: Path,
    web_files: WebFiles,
    start_server: Callable[..., LiveServer],
) -> None:
    """A prediction held back for a few seconds (``_slow_jobs``, the fault tests' job kind)
    reports progress while it runs: the job page and the jobs list follow it from its
    event stream, with no reload."""
    from tests.web.conftest import open_page

    server = start_server(server_settings(tmp_path, web_files, extra_job_modules=["_slow_jobs"]))
    with server.client() as api:
        checkpoint = upload_file(api, web_files.net_a)
        job = api.post(
            "/v1/jobs",
            json={
                "kind": "slow_predict",
                "params": {
                    "checkpoint_id": checkpoint["id"],
                    "metanetwork": "tiny-digits",
                    "seconds": 8,
                },
            },
        ).json()
    pages = open_page(browser, server.url)
    page = next(pages)
    try:
        page.goto("/#/jobs")
        badge = page.locator(".history tbody tr", has_text=f"#{job['id']}").locator(".badge")
        expect(badge).to_have_text(re.compile("queued|running"))
        expect(badge).to_have_text("succeeded")  # changed in place, from the stream
        # again on its own page, while it runs: the progress moves, then it ends
        with server.client() as api:
            job = api.post(
                "/v1/jobs",
                json={
                    "kind": "slow_predict",
                    "params": {
                        "checkpoint_id": checkpoint["id"],
                        "metanetwork": "tiny-digits",
                        "seconds": 8,
                    },
                },
            ).json()
        page.goto(f"/#/jobs/{job['id']}")
        live = page.locator(".job-live")
        expect(live).to_have_text(re.compile(rf"Job #{job['id']}: running, [1-9][\d.]* % done"))
        expect(live).to_have_text(f"Job #{job['id']}: succeeded")
        expect(page.get_by_role("region", name="Outcome")).to_contain_text("Answered about")
        # a long one, canceled from its page
        with server.client() as api:
            job = api.post(
                "/v1/jobs",
                json={
                    "kind": "slow_predict",
                    "params": {
                        "checkpoint_id": checkpoint["id"],
                        "metanetwork": "tiny-digits",
                        "seconds": 60,
                    },
                },
            ).json()
        page.goto(f"/#/jobs/{job['id']}")
        expect(live).to_have_text(re.compile(rf"Job #{job['id']}: running"))
        page.get_by_role("button", name="Cancel job").click()
        expect(live).to_have_text(f"Job #{job['id']}: canceled")
        expect(page.get_by_role("region", name="Outcome")).to_contain_text("The job canceled")
    finally:
        next(pages, None)


def test_zoo_list_and_its_items_paged(page: Any, api: httpx.Client, tmp_path: Path) -> None:
    from tests.web.test_training_page import _tiny_zoo

    zoo = _tiny_zoo(api, tmp_path / "zoo")
    page.goto("/#/zoos")
    page.get_by_role("link", name=zoo["name"]).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Zoo #{zoo['id']} \u00b7 scales")
    expect(page.locator("dl.facts")).to_contain_text("small, large")
    positions: list[int] = []
    for number in (1, 2):
        expect(page.locator("caption", has_text=f"page {number},")).to_be_visible()
        cells = page.locator(".history tbody tr td:first-child").all_inner_texts()
        positions += [int(c) for c in cells]
        if number == 1:
            page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("button", name="Next")).to_be_disabled()
    assert sorted(positions) == list(range(zoo["size"]))


def test_event_stream_parsing_across_chunks(page: Any) -> None:
    """The job stream is read with fetch (EventSource cannot send the key), so the page
    parses text/event-stream itself: events split across reads, comments, CRLF lines and
    multi-line data come out whole."""
    page.goto("/")
    events = page.evaluate(
        """async () => {
          const { parseSse } = await import('/static/api.js');
          const chunks = ['retry: 1000\\n\\n: keep-alive\\n\\nevent: job\\nid: 1\\ndata: {"a"',
                          ': 1}\\n\\nevent: job\\r\\ndata: line one\\r',
                          '\\ndata: line two\\r\\n\\r\\n',
                          'event: deleted\\ndata: {}\\n\\nevent: job\\ndata: unfinished'];
          let buffer = '';
          const out = [];
          for (const chunk of chunks) {
            const parsed = parseSse(buffer + chunk);
            buffer = parsed.rest;
            out.push(...parsed.events);
          }
          return [out, buffer];
        }"""
    )
    assert events == [
        [
            {"event": "job", "id": "1", "data": '{"a": 1}'},
            {"event": "job", "id": None, "data": "line one\nline two"},
            {"event": "deleted", "id": None, "data": "{}"},
        ],
        "event: job\ndata: unfinished",
    ]


def test_a_checkpoint_without_architecture_says_how_to_attach_one(
    page: Any, api: httpx.Client, tmp_path: Path
) -> None:
    (path,) = _distinct_checkpoints(tmp_path, 1)
    checkpoint = upload_file(api, path)
    page.goto(f"/#/checkpoints/{checkpoint['id']}")
    expect(page.locator(".notice").first).to_contain_text("No architecture")
    expect(page.locator(".notice").first).to_contain_text("graphs.save")
    expect(page.locator("#graph svg")).to_have_count(0)
    expect(page.locator("dl.facts").first).to_contain_text("plain-0.safetensors")
