"""The wheel carries what the embedded default needs: the demo checkpoint and example images."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_package_data(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("glmix_vis-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "glmix_vis/assets/glnet_nano_scenes.safetensors" in names
    assert any(n.startswith("glmix_vis/assets/examples/") and n.endswith(".jpg") for n in names)
    assert "glmix_vis/app/__init__.py" in names and "glmix_vis/models/glnet.py" in names
    assert not [n for n in names if n.endswith(".pyi")]  # gradio writes stubs beside page.py
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "glmix-wsss = glmix_vis.cli.wsss:main" in text and "glmix-vis = glmix_vis.cli.vis:main" in text


def test_bundled_default_loads():
    from glmix_vis.assets import default_checkpoint, example_images
    from glmix_vis.predictor import SlotPredictor

    predictor = SlotPredictor.from_checkpoint(default_checkpoint(), device="cpu")
    image = next(iter(example_images().values()))
    out = predictor.set_image(image)
    assert predictor.info.class_names[0] == "background" and len(out.maps) == 4
    assert predictor.hard_slots(0).shape == predictor.image_size
