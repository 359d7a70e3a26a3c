"""End to end in a real browser: headless Chromium uploads an image to the launched app, waits for
the slot overlays and saves a screenshot (``$GLMIX_APP_SCREENSHOT`` to keep a copy); then walks
the tabs as a newcomer would (what the model knows, the soft-map scale, a figure that leaves
with its tab)."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
                       reason=f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)"),
]

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1440,1400", "--hide-scrollbars")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _checkpoint(tmp_path: Path) -> Path:
    """The bundled demo model when it is installed, else a small random one."""
    from glmix_vis.assets import default_checkpoint

    try:
        return default_checkpoint()
    except FileNotFoundError:
        import torch

        from glmix_vis.models.checkpoints import save_safetensors
        from glmix_vis.models.factory import create_model

        torch.manual_seed(0)
        path = tmp_path / "nano_random.safetensors"
        save_safetensors(create_model("glnet_nano", num_classes=3).state_dict(), path,
                         meta={"model": "glnet_nano", "classes": ["background", "a", "b", "c"],
                               "input_size": [160, 160]})
        return path


def _upload_image(tmp_path: Path) -> Path:
    from glmix_vis.app import example_files

    examples = example_files()
    source = examples.get("astronaut") or next(iter(examples.values()), None)
    path = tmp_path / "upload.png"
    if source is not None:
        Image.open(source).convert("RGB").save(path)
    else:
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (384, 512, 3), dtype=np.uint8)).save(path)
    return path


def test_upload_shows_slot_overlays_in_chromium(tmp_path, monkeypatch):
    selenium = pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from glmix_vis.app import launch

    assert selenium
    monkeypatch.setenv("GLMIX_CHECKPOINT_DIR", str(tmp_path / "no_checkpoints"))
    checkpoint = _checkpoint(tmp_path)
    image = _upload_image(tmp_path)
    demo = launch(checkpoint, port=_free_port(), device="cpu", prevent_thread_lock=True, quiet=True)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(demo.local_url)
        wait = WebDriverWait(driver, 120)
        upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#input-image input[type=file]")))
        upload.send_keys(str(image))
        num_blocks = len(demo.slot_app.model_settings(demo.slot_app.default_label)["blocks"])

        def overlays_loaded(d) -> bool:
            return d.execute_script(
                "const imgs = [...document.querySelectorAll('#overlays img')];"
                "return imgs.length >= arguments[0] && imgs.every(i => i.complete && i.naturalWidth > 0);",
                num_blocks)

        wait.until(overlays_loaded)
        wait.until(lambda d: "px image" in d.find_element(By.ID, "status").text)
        status = driver.find_element(By.ID, "status").text
        assert "Error" not in status, status
        # let the follow-up steps (soft maps) finish so the page is at rest for the screenshot
        wait.until(lambda d: d.execute_script("return document.querySelectorAll('.progress-text').length === 0"))
        shot = tmp_path / "app_screenshot.png"
        assert driver.save_screenshot(str(shot))
        with Image.open(shot) as im:
            assert im.size[0] >= 1000 and im.size[1] >= 600
        keep = os.environ.get("GLMIX_APP_SCREENSHOT")
        if keep:
            Path(keep).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, keep)
    finally:
        driver.quit()
        demo.close()


def _chromium(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def test_newcomer_walk_through_the_tabs_in_chromium(tmp_path, monkeypatch):
    pytest.importorskip("selenium")
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from glmix_vis.app import DEMO_LABEL, launch

    monkeypatch.setenv("GLMIX_CHECKPOINT_DIR", str(tmp_path / "no_checkpoints"))
    demo = launch(_checkpoint(tmp_path), port=_free_port(), device="cpu", prevent_thread_lock=True, quiet=True)
    is_demo = demo.slot_app.default_label == DEMO_LABEL
    driver = _chromium(tmp_path)

    def settled(read):  # gradio re-renders components as values arrive: read again if one went stale
        for _ in range(5):
            try:
                return read()
            except StaleElementReferenceException:
                continue
        return read()

    def text(elem_id: str) -> str:
        return settled(lambda: "".join(e.text for e in driver.find_elements(By.ID, elem_id)[:1]))

    def shown(elem_id: str) -> bool:
        return settled(lambda: any(e.is_displayed() for e in driver.find_elements(By.ID, elem_id)))

    def open_tab(name: str) -> None:
        tab = next(b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if name in b.text)
        tab.click()

    try:
        driver.get(demo.local_url)
        wait = WebDriverWait(driver, 180, ignored_exceptions=(StaleElementReferenceException,))
        upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#input-image input[type=file]")))
        upload.send_keys(str(_upload_image(tmp_path)))
        wait.until(lambda d: "px image" in text("status"))
        # what the model knows, before any tab is opened
        notice = text("model-notice")
        assert ("Demo model" in notice and "generated scenes" in notice) if is_demo else "knows" in notice, notice
        assert "block 0 (stage 1)" in text("overlays") and "stages." not in text("overlays")
        assert "block 0 (stage 1) = stages." in text("block-picker")  # the module path, once, in the picker
        # soft maps: each caption gives its slot's peak, and a colour bar says what the ends mean
        open_tab("Soft maps")
        wait.until(lambda d: "peak" in text("soft-maps"))
        assert shown("soft-legend") and "the slot's peak weight" in text("soft-legend")
        # classes: the demo model warns; a figure of this view follows the method, and leaves with the tab
        open_tab("Classes")
        wait.until(lambda d: "Evidence method" in text("class-status"))
        assert ("knows only" in text("class-status")) is is_demo
        make = next(b for b in driver.find_elements(By.TAG_NAME, "button") if "Make a figure" in b.text)
        make.click()
        wait.until(lambda d: "Figure ready" in text("figure-status"))
        assert "glmix_classes_slot-cam" in text("figure-status") and shown("figure-file")
        open_tab("Slot groups")
        wait.until(lambda d: not shown("figure-file") and not text("figure-status"))
    finally:
        driver.quit()
        demo.close()


def test_each_upload_runs_the_analysis_once_in_chromium(tmp_path, monkeypatch):
    """gradio's image fired ``change`` twice for every upload after the first: two identical runs
    and two identical warnings. Three uploads, three analyses; a broken one keeps the overlays."""
    pytest.importorskip("selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from glmix_vis.app import launch

    monkeypatch.setenv("GLMIX_CHECKPOINT_DIR", str(tmp_path / "no_checkpoints"))
    demo = launch(_checkpoint(tmp_path), port=_free_port(), device="cpu", prevent_thread_lock=True, quiet=True)
    app, runs = demo.slot_app, []
    real = app.slot_overlays

    def counted(image, *args, **kwargs):
        runs.append(image)
        return real(image, *args, **kwargs)

    monkeypatch.setattr(app, "slot_overlays", counted)
    driver = _chromium(tmp_path)
    try:
        driver.get(demo.local_url)
        wait = WebDriverWait(driver, 120)
        for i in range(3):
            path = tmp_path / f"upload_{i}.png"
            Image.fromarray(np.random.default_rng(i).integers(0, 256, (120 + i, 160, 3), dtype=np.uint8)).save(path)
            upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#input-image input[type=file]")))
            upload.send_keys(str(path))
            size = f"160×{120 + i} px"
            wait.until(lambda d, n=i + 1, size=size: len(runs) >= n and size in d.find_element(By.ID, "status").text)
            wait.until(lambda d: d.execute_script("return document.querySelectorAll('.progress-text').length === 0"))
        assert len(runs) == 3, runs
        overlays = driver.execute_script("return document.querySelectorAll('#overlays img').length")
        broken = tmp_path / "broken.png"
        broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#input-image input[type=file]"))).send_keys(
            str(broken))
        wait.until(lambda d: "still show the last image" in d.find_element(By.ID, "status").text)
        assert driver.execute_script("return document.querySelectorAll('#overlays img').length") == overlays > 0
    finally:
        driver.quit()
        demo.close()


def test_a_bad_upload_leaves_the_page_on_the_last_good_image_in_chromium(tmp_path, monkeypatch):
    """After an upload that cannot be read the image box showed the browser's broken-image icon
    beside the pictures of the image before it, and a tab never opened before showed nothing: the
    box gets the last good image back (without a second analysis), every tab shows that image, and
    the error stays one line under it. On a fresh page a bad first upload leaves the box empty."""
    pytest.importorskip("selenium")
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from glmix_vis.app import launch, messages

    monkeypatch.setenv("GLMIX_CHECKPOINT_DIR", str(tmp_path / "no_checkpoints"))
    demo = launch(_checkpoint(tmp_path), port=_free_port(), device="cpu", prevent_thread_lock=True, quiet=True)
    app, runs, forwards = demo.slot_app, [], []
    real_overlays, real_forward = app.slot_overlays, app.forward
    monkeypatch.setattr(app, "slot_overlays", lambda image, *a, **k: runs.append(image) or real_overlays(image, *a, **k))
    monkeypatch.setattr(app, "forward", lambda *a, **k: forwards.append(a) or real_forward(*a, **k))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    driver = _chromium(tmp_path)

    def text(elem_id: str) -> str:
        return "".join(e.text for e in driver.find_elements(By.ID, elem_id)[:1])

    def box() -> list | None:  # the image box's picture: its address and whether it shows
        return driver.execute_script("const i = document.querySelector('#input-image img');"
                                     "return i ? [i.src, i.complete && i.naturalWidth > 0] : null;")

    def pictures(elem_id: str) -> int:  # how many of a gallery's pictures have loaded
        return driver.execute_script(f"return [...document.querySelectorAll('#{elem_id} img')]"
                                     ".filter(i => i.complete && i.naturalWidth > 0).length;")

    def upload(path: Path) -> None:
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#input-image input[type=file]"))).send_keys(
            str(path))

    def at_rest() -> None:
        wait.until(lambda d: d.execute_script("return document.querySelectorAll('.progress-text').length === 0"))

    def open_tab(name: str) -> None:
        next(b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if name in b.text).click()

    try:
        driver.get(demo.local_url)
        wait = WebDriverWait(driver, 180, ignored_exceptions=(StaleElementReferenceException,))
        upload(_upload_image(tmp_path))
        wait.until(lambda d: "px image" in text("status") and pictures("overlays") > 0 and (box() or [0, 0])[1])
        at_rest()
        good, overlays = box()[0], pictures("overlays")
        upload(broken)
        wait.until(lambda d: messages.KEPT_PREVIOUS in text("status"))
        wait.until(lambda d: box() == [good, True])  # the last good image, not the broken upload
        at_rest()
        status = text("status")
        assert status.startswith("Error: broken.png") and status.count(messages.KEPT_PREVIOUS) == 1, status
        assert pictures("overlays") == overlays
        # tabs never opened before show the last good image's pictures
        open_tab("Soft maps")
        wait.until(lambda d: "peak" in text("soft-maps") and pictures("soft-maps") > 0)
        open_tab("Classes")
        wait.until(lambda d: "Evidence method" in text("class-status") and pictures("evidence") > 0)
        at_rest()
        shot = tmp_path / "after_a_bad_upload.png"
        assert driver.save_screenshot(str(shot))
        assert box() == [good, True] and text("status") == status
        assert len(runs) == 2 and "broken.png" in runs[1] and len(forwards) == 1, (runs, forwards)  # no second run
        # a fresh page: a bad first upload leaves the box empty and claims no kept pictures
        driver.get(demo.local_url)
        upload(broken)
        wait.until(lambda d: text("status").startswith("Error: broken.png"))
        wait.until(lambda d: box() is None)
        at_rest()
        assert messages.KEPT_PREVIOUS not in text("status") and len(runs) == 3, runs  # no analysis of the empty box
    finally:
        driver.quit()
        demo.close()
