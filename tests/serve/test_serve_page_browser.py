"""The page of `transferkit serve` in headless Chromium: pick a file with the keyboard-reachable input,
see bars whose top label is the API's answer, and the image as the model saw it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright import sync_api as playwright

if TYPE_CHECKING:
    from conftest import LiveServer  # the fixture's type; pytest provides the value

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs headless Chromium: apt-get install chromium (Debian package 'chromium')"
)


def test_a_picked_image_shows_the_apis_top_label(server: LiveServer, problem_folder: Path) -> None:
    image = sorted(problem_folder.glob("test/cat/*.png"))[0]
    with server.client() as client:
        expected = client.post("/predict", files=[("images", (image.name, image.read_bytes()))]).json()
    answer = expected["results"][0]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page()
            page.goto(server.url + "/")
            # The server has a key: the page asks for it, then shows the model card.
            page.get_by_label("API key").fill(server.api_key)
            page.get_by_role("button", name="Use key").click()
            page.wait_for_function("document.getElementById('card').textContent.length > 0")
            assert "test_efficientnet fine-tuned on animals" in page.locator("#model-name").inner_text()
            assert page.locator("#metrics td").first.inner_text() == "accuracy"

            chooser = page.get_by_label("Choose images to classify")
            chooser.focus()  # reachable by keyboard, named by its label
            assert page.evaluate("document.activeElement.id") == "files"
            chooser.set_input_files(str(image))
            page.locator(".bar").first.wait_for()

            labels = page.locator(".bar .label").all_inner_texts()
            assert labels[0] == answer["label"]
            assert labels == [entry["label"] for entry in answer["top"]]
            shown = page.locator(".bar .value").first.inner_text()
            assert shown == f"{100 * answer['probability']:.1f} %"
            preview = page.locator(".result img")
            assert preview.get_attribute("src").startswith("data:image/png;base64,")
            assert page.evaluate("document.querySelector('.result img').naturalWidth") == 32
            assert page.locator("#status").get_attribute("aria-live") == "polite"
            assert "1 image(s) classified" in page.locator("#status").inner_text()
        finally:
            browser.close()


def test_the_page_loads_no_external_asset(server: LiveServer) -> None:
    with server.client() as client:
        page = client.get("/").text
    assert "http://" not in page and "https://" not in page and "//cdn" not in page
    assert 'src="' not in page.split("<script>")[0]  # no script or image fetched from elsewhere
