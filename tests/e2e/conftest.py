"""A real browser against a real server: ``streamlit run app.py`` on a free port, driven by
Playwright through Debian's Chromium (browsers cannot be downloaded here).

Fixtures
--------
``app_url``
    The base URL of a ``streamlit run app.py`` server started for the test session.
``browser``
    Headless Chromium (``/usr/bin/chromium``, flags in :data:`CHROMIUM_ARGS`).
``page``
    A fresh page (new browser context, so a new Streamlit session) per test.
``journey``
    One page shared by every test of a module, for an ordered journey in which a dataset or a
    trained model carries over from one step to the next. Its tests run in file order; once a
    step fails, the later steps of that module are skipped (they would fail for the same reason),
    and a screenshot of the failing state is saved as ``FAILED_<test name>.png``.

Helpers: :func:`screenshot`, :func:`view_screenshot`, :func:`wait_idle`.

Opening a page URL directly starts a *new* Streamlit session; to keep the session, navigate
by clicking the sidebar links (see ``go_to`` in ``test_browser.py``).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
#: Flags for a closed network (see the machine notes): no background connections, no sandbox as root.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
#: Milliseconds a step may wait for the app (the first run imports torch and loads the sample).
TIMEOUT_MS = 90_000
#: Milliseconds an ``expect(...)`` assertion waits for what it expects to become visible.
EXPECT_TIMEOUT_MS = 30_000
VIEWPORT = {"width": 1400, "height": 1000}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited early with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("streamlit did not become healthy in time")


@pytest.fixture(scope="session")
def server_log(tmp_path_factory) -> Path:
    """Where the Streamlit server writes its output (printed when a journey step fails)."""
    return tmp_path_factory.mktemp("streamlit") / "server.log"


@pytest.fixture(scope="session")
def app_url(server_log):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); .ci/run installs it")
    port = _free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.headless", "true",
               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    with open(server_log, "wb") as output:
        process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        if process.returncode not in (0, -15, None):
            print(server_log.read_text(errors="replace")[-3000:])


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _new_page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    #: Uncaught JavaScript errors of the page (a broken frontend), checked by the journey.
    page.js_errors = []
    page.on("pageerror", lambda error: page.js_errors.append(str(error)))
    return context, page


@pytest.fixture
def page(browser):
    context, page = _new_page(browser)
    yield page
    context.close()


@pytest.fixture(scope="module")
def journey(browser, app_url):
    """One page (one Streamlit session) for every step of a module's journey, opened on the home page."""
    for stale in SCREENSHOTS.glob("FAILED_*.png"):
        stale.unlink()
    context, page = _new_page(browser)
    page.goto(app_url)
    wait_idle(page)
    yield page
    context.close()


# ---------------------------------------------------------------------- ordered journeys
def pytest_runtest_setup(item):
    if "journey" in getattr(item, "fixturenames", ()):
        failed = item.module.__dict__.get("_journey_failed_step")
        if failed:
            pytest.skip(f"an earlier step of the journey failed ({failed})")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and "journey" in getattr(item, "fixturenames", ()):
        item.module._journey_failed_step = item.name
        page = getattr(item, "funcargs", {}).get("journey")
        if page is not None:
            try:
                screenshot(page, f"FAILED_{item.name}")
            except Exception as error:  # noqa: BLE001 - a screenshot must not hide the real failure
                report.sections.append(("screenshot", f"could not save a screenshot: {error}"))
        log = getattr(item, "funcargs", {}).get("server_log")
        if log is not None and log.exists():
            report.sections.append(("streamlit server log (tail)", log.read_text(errors="replace")[-4000:]))
    return report


# ---------------------------------------------------------------------- helpers
def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/screenshots/ (kept for people to look at).

    Streamlit scrolls inside its own main container, so the viewport is first made as tall as
    the page's content for the screenshot (then restored), otherwise only the top is captured.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.mouse.move(0, 0)   # no hover effects (Plotly's toolbar) in the picture
    height = page.evaluate(
        "() => Math.max(...['[data-testid=\"stMain\"]', '[data-testid=\"stMainBlockContainer\"]',"
        " '[data-testid=\"stSidebarContent\"]'].map(s => document.querySelector(s))"
        ".filter(Boolean).map(e => e.scrollHeight), document.body.scrollHeight)")
    original = page.viewport_size or VIEWPORT
    tall = min(max(int(height) + 40, original["height"]), 12_000)
    if tall != original["height"]:
        page.set_viewport_size({"width": original["width"], "height": tall})
        page.wait_for_timeout(400)   # let charts re-layout to the new size
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        if tall != original["height"]:
            page.set_viewport_size(original)
    return path


def view_screenshot(page, name: str, anchor=None) -> Path:
    """Save what a person sees in the window (1400 px wide), scrolled so that ``anchor`` is at the top.

    These are the pictures for the README (``readme_*.png``): one screen, not the whole page, so
    they stay small and readable. ``anchor`` is a Playwright locator (a heading, a chart).
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.mouse.move(0, 0)
    if anchor is not None:
        # Streamlit scrolls inside its main container; leave room for its top bar above the anchor.
        anchor.evaluate("element => { element.scrollIntoView({block: 'start'});"
                        " const main = document.querySelector('[data-testid=\"stMain\"]');"
                        " if (main) main.scrollBy(0, -70); }")
        page.wait_for_timeout(400)
    page.screenshot(path=str(path), full_page=False)
    if anchor is not None:
        page.evaluate("() => { const main = document.querySelector('[data-testid=\"stMain\"]');"
                      " if (main) main.scrollTo(0, 0); }")
    return path


def wait_idle(page, timeout: float = TIMEOUT_MS) -> None:
    """Wait until Streamlit is connected and has finished running the script.

    Uses the attributes Streamlit's own end-to-end tests rely on
    (``data-test-connection-state`` and ``data-test-script-state`` on ``stApp``) plus the
    status widget's running icon. A click starts a rerun only a moment later, so after an
    action wait for the specific text it should produce, not only for this.
    """
    page.wait_for_selector("[data-testid='stApp'][data-test-connection-state='CONNECTED']", timeout=timeout)
    page.wait_for_function(
        "() => { const app = document.querySelector('[data-testid=\"stApp\"]');"
        " const state = app && app.getAttribute('data-test-script-state');"
        " return state && state !== 'running' && state !== 'rerunRequested' && state !== 'initial'"
        " && !document.querySelector('[data-testid=\"stStatusWidgetRunningIcon\"]'); }",
        timeout=timeout)
    page.wait_for_timeout(300)
