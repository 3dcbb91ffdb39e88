"""The web page as the server delivers it: public at ``/``, assets at ``/static`` with
JavaScript media types, nothing fetched from outside (offline), every module import
resolvable, and outside the OpenAPI. The page in a browser: tests/web."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import httpx
import pytest

from app.db import create_db_engine, create_session_factory
from app.keys import create_key
from app.main import create_app
from app.migrate import upgrade
from app.settings import Settings
from app.web.routes import STATIC_DIR
from tests.app.conftest import make_settings

pytestmark = pytest.mark.anyio

ASSETS = sorted(p for p in STATIC_DIR.rglob("*") if p.suffix in {".js", ".css", ".html"})
EXTERNAL = re.compile(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)
# ES module specifiers: static `import ... from '...'`, `import '...'`, dynamic `import('...')`
IMPORT = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*)['"]([^'"]+)['"]""")
HTML_SINKS = re.compile(r"\.(?:inner|outer)HTML\s*=|insertAdjacentHTML|document\.write")
SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # a name, never fetched


def test_assets_exist() -> None:
    names = {p.relative_to(STATIC_DIR).as_posix() for p in ASSETS}
    assert {"index.html", "app.js", "api.js", "format.js", "style.css"} <= names
    assert {f"pages/{n}.js" for n in ("home", "checkpoint", "checkpoints", "job")} <= names


@pytest.mark.parametrize("path", ASSETS, ids=lambda p: p.relative_to(STATIC_DIR).as_posix())
def test_nothing_is_loaded_from_outside(path: Path) -> None:
    text = path.read_text().replace(SVG_NAMESPACE, "")
    assert not EXTERNAL.findall(text), f"{path.name} refers to another host"
    assert not HTML_SINKS.findall(text), f"{path.name}: build DOM nodes, never parse API data"


@pytest.mark.parametrize("path", [p for p in ASSETS if p.suffix == ".js"], ids=lambda p: p.name)
def test_module_imports_resolve(path: Path) -> None:
    """Every relative import names a file that ships (a missing module breaks the page);
    a dynamic ``./pages/${name}.js`` is checked against the router's table."""
    for spec in IMPORT.findall(path.read_text()):
        assert spec.startswith("."), f"{path.name} imports {spec!r}: not a relative module"
        if "${" in spec:
            continue
        assert (path.parent / spec).resolve().is_file(), f"{path.name}: {spec} is missing"


def test_every_route_has_its_page() -> None:
    router = (STATIC_DIR / "app.js").read_text()
    pages = re.findall(r"\['/[^']*', '(\w+)', '[^']*'\]", router)
    assert len(pages) >= 15
    missing = [p for p in pages if not (STATIC_DIR / "pages" / f"{p}.js").is_file()]
    assert not missing, f"routes without a page module: {missing}"


async def test_page_and_assets_served(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/app.js">' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert (await client.head("/")).status_code == 200
    for name, media_type in [
        ("app.js", "text/javascript"),
        ("pages/home.js", "text/javascript"),
        ("style.css", "text/css"),
    ]:
        asset = await client.get(f"/static/{name}")
        assert asset.status_code == 200, name
        assert asset.headers["content-type"].split(";")[0] == media_type
        assert asset.text == (STATIC_DIR / name).read_text()
    etag = (await client.get("/static/app.js")).headers["etag"]
    again = await client.get("/static/app.js", headers={"If-None-Match": etag})
    assert again.status_code == 304
    missing = await client.get("/static/nope.js")
    assert missing.status_code == 404
    escape = await client.get("/static/../main.py")
    assert escape.status_code == 404


async def test_page_is_not_in_the_openapi(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/" not in paths
    assert not any(p.startswith("/static") for p in paths)


async def test_page_is_public_and_the_api_keeps_its_keys(tmp_path: Path) -> None:
    settings: Settings = make_settings(
        tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}", auth="required"
    )
    upgrade(settings.database_url)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        engine = create_db_engine(settings.database_url)
        key = create_key(create_session_factory(engine), "web-test", "web")
        engine.dispose()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://weightscope") as web:
            assert (await web.get("/")).status_code == 200
            assert (await web.get("/static/api.js")).status_code == 200
            anonymous = await web.get("/v1/checkpoints")
            assert anonymous.status_code == 401
            keyed = await web.get(
                "/v1/checkpoints", headers={"Authorization": f"Bearer {key.token}"}
            )
            assert keyed.status_code == 200, keyed.text


def test_every_asset_ships_in_the_package() -> None:
    """pyproject's package-data for ``app.web`` covers every file the page serves (an
    installed, non-editable copy would otherwise 404 on it)."""
    import tomllib

    root = Path(__file__).parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["app.web"]
    web = STATIC_DIR.parent
    unshipped = [
        p.relative_to(web).as_posix()
        for p in STATIC_DIR.rglob("*")
        if p.is_file() and not any(_glob(p.relative_to(web).as_posix(), pat) for pat in patterns)
    ]
    assert not unshipped, f"add these to [tool.setuptools.package-data] app.web: {unshipped}"


def _glob(path: str, pattern: str) -> bool:
    """setuptools' glob: ``*`` stays within one folder."""
    parts, wanted = path.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(
        fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=True)
    )
