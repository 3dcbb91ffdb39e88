"""Fixtures for the browser tests: the app served by uvicorn on a loopback port (SQLite in
the test's folder, the worker in the API process), small self-describing networks and a
tiny metanetwork (made once per session), a headless Chromium driven by Playwright
(started once per test module; a fresh context per test), and ``screenshot(name)``.

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it). Where it or the
``playwright`` package is missing the tests skip and say which. Playwright never downloads
a browser here: it drives ``/usr/bin/chromium`` (or ``$WEIGHTSCOPE_CHROMIUM``).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "service"))

from _service_nets import digits, mlp, save_dataset, save_net, save_tiny_metanetwork

from app.migrate import upgrade
from app.settings import Settings
from tests.app.conftest import make_settings

torch.set_num_threads(1)

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1280, "height": 900}
EXPECT_TIMEOUT_MS = 30_000  # a loaded CI machine: generous waits, never a timing assert


def chromium_path() -> str | None:
    configured = os.environ.get("WEIGHTSCOPE_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass(frozen=True)
class WebFiles:
    net_a: Path  # the tiny metanetwork's domain: 64 -> 16 -> 10 MLPs
    net_b: Path
    net_c: Path
    dataset: Path  # digits test images, for merges evaluated on data
    metanetworks: Path  # holds the tiny-digits classifier


@pytest.fixture(scope="session")
def web_files(tmp_path_factory: pytest.TempPathFactory) -> WebFiles:
    root = tmp_path_factory.mktemp("web-files")
    nets = [save_net(mlp(16, seed), root / f"net{seed}.safetensors") for seed in (1, 2, 3)]
    metanetworks = root / "metanetworks"
    save_tiny_metanetwork(metanetworks, nets)
    _, _, x_test, y_test = digits()
    return WebFiles(*nets, save_dataset(root / "digits.safetensors", x_test, y_test), metanetworks)


@pytest.fixture
def web_settings(tmp_path: Path, web_files: WebFiles) -> Settings:
    """Open mode on loopback with the worker in the API process; a test that needs other
    settings overrides this fixture (or uses ``start_server``)."""
    return server_settings(tmp_path, web_files)


def server_settings(tmp_path: Path, web_files: WebFiles, **overrides: object) -> Settings:
    settings = make_settings(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        metanetwork_dir=web_files.metanetworks,
        max_wait_ms=0.0,
        rate_limit="",
        **overrides,
    )
    upgrade(settings.database_url)
    return settings


class LiveServer:
    """The app on a loopback port in a thread; ``url`` and ``client`` (httpx, same
    headers the page would send) for setting up data through the API."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        from app.main import create_app

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"
        self.settings = settings

    def start(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            assert self._thread.is_alive(), "server thread died while starting"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        return self

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(20)


@pytest.fixture
def start_server() -> Iterator[Callable[[Settings], LiveServer]]:
    started: list[LiveServer] = []

    def start(settings: Settings) -> LiveServer:
        server = LiveServer(settings).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def live_server(
    web_settings: Settings, start_server: Callable[[Settings], LiveServer]
) -> LiveServer:
    return start_server(web_settings)


@pytest.fixture
def api(live_server: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client on the live server (open mode: no key)."""
    with live_server.client() as client:
        yield client


def upload_file(client: httpx.Client, path: Path) -> dict[str, Any]:
    response = client.post("/v1/checkpoints", files={"file": (path.name, path.read_bytes())})
    assert response.status_code in (200, 201), response.text
    return response.json()


# --- the browser --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module. Not per session: Playwright's sync API keeps an event
    loop running on this thread while it is open, which the async tests elsewhere in the
    suite (anyio) cannot share."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need the playwright package (pip install playwright)")
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "browser tests need Chromium: apt-get install chromium (or set "
            "WEIGHTSCOPE_CHROMIUM to its executable)"
        )
    with sync_playwright() as playwright:
        try:
            instance = playwright.chromium.launch(
                executable_path=executable, headless=True, args=CHROMIUM_FLAGS
            )
        except Exception as exc:  # a Chromium Playwright cannot drive: say so, skip
            pytest.skip(f"Chromium at {executable} did not start under Playwright: {exc}")
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, live_server: LiveServer) -> Iterator[Any]:
    """A fresh browser context on the live server. Script errors on the page fail the
    test: a module that does not load is a broken page, whatever the assertions saw."""
    yield from open_page(browser, live_server.url)


def open_page(browser: Any, base_url: str) -> Iterator[Any]:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    context = browser.new_context(base_url=base_url, viewport=VIEWPORT, locale="en-US")
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not _expected_console_error(msg.text)
            else None
        ),
    )
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"script errors on the page: {errors}"


def _expected_console_error(text: str) -> bool:
    """The browser logs a failed request (a 401 or 404 the page then explains) as a
    console error; those are answers, not script errors."""
    return text.startswith("Failed to load resource")


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("WEIGHTSCOPE_SCREENSHOTS")
    directory = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def screenshot(page: Any, screenshot_dir: Path) -> Callable[..., Path]:
    """``screenshot(name)`` saves the page (whole length, or ``full_page=False``, or an
    ``element=`` locator) as ``NAME.png``; returns the path.
    ``$WEIGHTSCOPE_SCREENSHOTS`` keeps them (the README's come from there)."""

    def take(name: str, *, full_page: bool = True, element: Any = None) -> Path:
        """The whole page, the window only (``full_page=False``), or one element."""
        path = screenshot_dir / f"{name}.png"
        if element is not None:
            element.screenshot(path=str(path))
        else:
            page.screenshot(path=str(path), full_page=full_page)
        return path

    return take
