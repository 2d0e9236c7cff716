"""The labelling page in headless Chromium against a live `transferkit label` server process.

Keyboard only: label by number and by initial, undo, then kill the server (SIGKILL, no shutdown code
runs) and start it again: labels.csv must hold every answer and the page must resume at the next image.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright import sync_api as playwright

from transferkit.testing import make_image_folder
from transferkit.testing.servers import free_port, start_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs headless Chromium: apt-get install chromium (Debian package 'chromium')"
)


def _start(pool: Path, out: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "transferkit", "label", str(pool), "--classes", "cat,dog,fox"]
    command += ["--port", str(port), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return start_server(command, f"http://127.0.0.1:{port}/", out.parent / "label.log", 60, env=env)


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "pool", per_class=2, size=24)


@pytest.fixture
def browser() -> Iterator[playwright.Browser]:
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


def _rows(out: Path) -> dict[str, str]:
    with open(out, newline="") as handle:
        return {row["path"]: row["label"] for row in csv.DictReader(handle)}


def _wait_for_image(page: playwright.Page, index: int) -> None:
    page.wait_for_function(f"document.body.dataset.current === '{index}'", timeout=10_000)


def _first_round(page: playwright.Page) -> None:
    """Labels by number and initial, skips one, undoes twice (Backspace, Ctrl+Z), relabels."""
    assert page.locator("#classes button").all_inner_texts() == ["cat 1 c", "dog 2 d", "fox 3 f"]
    _wait_for_image(page, 0)
    assert page.evaluate("document.getElementById('image').naturalWidth") > 0, "the image is shown"
    for key, shown_next in (("1", 1), ("d", 2), ("Space", 3), ("3", 4), ("Backspace", 3), ("f", 4)):
        page.keyboard.press(key)
        _wait_for_image(page, shown_next)
    for key, shown_next in (("Control+z", 3), ("2", 4)):
        page.keyboard.press(key)
        _wait_for_image(page, shown_next)
    assert page.locator("#progress").inner_text() == "3 of 6 labelled, 1 skipped"


def _second_round(page: playwright.Page) -> None:
    """After the restart: the skipped image comes back first; labelled ones never do."""
    _wait_for_image(page, 2)
    assert page.locator("#progress").inner_text() == "3 of 6 labelled"
    for key, shown_next in (("c", 4), ("1", 5)):
        page.keyboard.press(key)
        _wait_for_image(page, shown_next)
    page.keyboard.press("1")
    page.wait_for_selector("#done:not([hidden])")


def _session(
    browser: playwright.Browser, pool: Path, out: Path, steps: Callable[[playwright.Page], None]
) -> None:
    """A fresh server process and page; the server is killed with SIGKILL afterwards, so nothing can be
    flushed at shutdown: what is on disk is what every answer wrote."""
    port = free_port()
    server = _start(pool, out, port)
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("body[data-ready='1']")
        steps(page)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)


def test_label_by_keyboard_undo_kill_and_resume(
    pool: Path, tmp_path: Path, browser: playwright.Browser
) -> None:
    images = [path.relative_to(tmp_path).as_posix() for path in sorted(pool.rglob("*.png"))]  # page order
    out = tmp_path / "labels.csv"
    _session(browser, pool, out, _first_round)
    assert _rows(out) == {images[0]: "cat", images[1]: "dog", images[3]: "dog"}, "undone answers are gone"
    _session(browser, pool, out, _second_round)
    assert _rows(out) == {
        images[0]: "cat",
        images[1]: "dog",
        images[3]: "dog",
        images[2]: "cat",
        images[4]: "cat",
        images[5]: "cat",
    }
    assert list(_rows(out)) == [images[i] for i in (0, 1, 3, 2, 4, 5)], "rows in the order answered"
