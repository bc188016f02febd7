"""Fixtures of the browser tests: the console of the session's local runtime (as ``batch-classifier serve`` serves
it, tests/conftest.py), that runtime as the CLI's commands find a running ``serve``, the system's Chromium driven
headless by Playwright (which never downloads a browser here), and where screenshots go.

Chromium is ``$BATCH_CLASSIFIER_CHROMIUM`` or ``chromium`` on PATH (``make test`` installs Debian's). Where there is
none, a test marked ``browser`` fails and says so, unless ``BATCH_CLASSIFIER_SKIP_BROWSER=1`` asks to skip it.
Screenshots go to a temporary folder pytest removes (it keeps the last three runs' folders), or to the folder
``$BATCH_CLASSIFIER_SCREENSHOTS`` names, which is kept; the session's summary says where they are.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from workflow_helpers import as_served

from batch_classifier_cli import runtimes
from batch_classifier_local.console import ConsoleServer
from batch_classifier_local.runtime import LocalRuntime

CHROMIUM = "BATCH_CLASSIFIER_CHROMIUM"
SKIP_BROWSER = "BATCH_CLASSIFIER_SKIP_BROWSER"
SCREENSHOTS = "BATCH_CLASSIFIER_SCREENSHOTS"
# Seconds any one browser action or check may wait (a page to load, an element to show) before the test fails.
ACTION_SECONDS = 20
_saved: list[Path] = []


def chromium_path() -> str | None:
    """The Chromium to drive: ``$BATCH_CLASSIFIER_CHROMIUM``, else ``chromium`` (or ``chromium-browser``) on PATH."""
    given = os.environ.get(CHROMIUM, "").strip()
    if given:
        return given if Path(given).is_file() and os.access(given, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A browser test fails, before the runtime starts, where there is no Chromium (skipped if asked)."""
    if item.get_closest_marker("browser") is None or chromium_path() is not None:
        return
    if os.environ.get(SKIP_BROWSER, "").strip().lower() in {"1", "true", "yes"}:
        pytest.skip(f"no Chromium found ({SKIP_BROWSER} is set)")
    where = f"${CHROMIUM} ({os.environ[CHROMIUM]}) is not an executable" if os.environ.get(CHROMIUM) else ""
    pytest.fail(
        "the browser tests need Chromium, and "
        + (where or "there is no `chromium` on PATH")
        + ": `make test` installs Debian's (apt-get install chromium), or set "
        f"{CHROMIUM} to a Chromium or Chrome binary, or {SKIP_BROWSER}=1 to skip these tests.",
        pytrace=False,
    )


@pytest.fixture(scope="module")
def console(runtime: LocalRuntime) -> Iterator[ConsoleServer]:
    """The console over the session's runtime, as `serve` starts it."""
    assert runtime.stack is not None
    with ConsoleServer(runtime.client, runtime.stack.outputs) as server:
        yield server


@pytest.fixture(scope="module")
def served(runtime: LocalRuntime, console: ConsoleServer) -> Iterator[LocalRuntime]:
    """The session's runtime as the CLI's commands (`faults`, `redrive`) find a running `serve`."""
    remote = as_served(runtime, console.url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runtimes, "running_server", lambda: remote)
        yield runtime


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (the system's), driven by Playwright."""
    try:
        from playwright.sync_api import expect, sync_playwright  # noqa: PLC0415
    except ImportError:
        pytest.fail("the browser tests need Playwright: `make dev` installs it (the dev extra).", pytrace=False)
    executable = chromium_path()
    assert executable is not None  # pytest_runtest_setup said so otherwise
    expect.set_options(timeout=ACTION_SECONDS * 1000)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (its own context) whose dialogs (the Redrive button's confirm) are accepted."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(ACTION_SECONDS * 1000)
    opened = context.new_page()
    opened.on("dialog", lambda dialog: dialog.accept())
    try:
        yield opened
    finally:
        context.close()


@pytest.fixture(scope="session")
def screenshot_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``$BATCH_CLASSIFIER_SCREENSHOTS`` (kept), else a temporary folder of the session (removed by pytest)."""
    named = os.environ.get(SCREENSHOTS, "").strip()
    if named:
        folder = Path(named).expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def shoot(screenshot_folder: Path, request: pytest.FixtureRequest) -> Callable[[Any, str], Path]:
    """``shoot(page, "what")`` saves the whole page as ``<test>-<NN>-<what>.png`` in the screenshot folder."""
    test = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")
    taken = 0

    def save(shown: Any, what: str) -> Path:
        nonlocal taken
        taken += 1
        path = screenshot_folder / f"{test}-{taken:02d}-{re.sub(r'[^A-Za-z0-9_-]+', '-', what)}.png"
        shown.screenshot(path=str(path), full_page=True)
        _saved.append(path)
        return path

    return save


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _saved:
        folder = _saved[0].parent
        kept = (
            "kept"
            if os.environ.get(SCREENSHOTS, "").strip()
            else f"pytest removes them later; {SCREENSHOTS}=<folder> keeps them"
        )
        terminalreporter.write_line(f"browser screenshots: {len(_saved)} in {folder} ({kept})")
