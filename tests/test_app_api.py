"""The web app's API (issue 24, item 6): class scores as JSON, the pseudo-mask as an indexed PNG,
and ``/figure`` making the view it is told with the method it is given, through gradio_client."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
from helpers import gradient_photo as _photo  # the same test photo in every app test
from PIL import Image

gr = pytest.importorskip("gradio")

from glmix_vis.app import TAB_CLASSES, TAB_SOFT, views  # noqa: E402

CLASSES = ["background", "disk", "square", "star"]  # the classes of the nano_checkpoint fixture (conftest.py)
pytestmark = pytest.mark.usefixtures("checkpoint_dir")  # never the user's real checkpoint folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------ the backend's answers
def test_class_scores_are_json_with_names(backend, nano_checkpoint):
    label = nano_checkpoint.name
    answer = backend.class_scores(_photo(), label, None)
    assert answer["model"] == label and list(answer["scores"]) == CLASSES[1:]
    assert all(isinstance(v, float) and 0 <= v <= 1 for v in answer["scores"].values())
    seen = [n for n, v in answer["scores"].items() if v >= 0.5]  # a sigmoid head: the 0.5 rule
    assert sorted(answer["classes"]) == sorted(seen) and "head_top" not in answer
    assert backend.class_scores(None, label, None) == {"error": "upload an image or pick an example"}
    broken = backend.class_scores(b"not an image", label, None)
    assert list(broken) == ["error"] and "\n" not in broken["error"] and "**" not in broken["error"], broken


def test_mask_is_an_indexed_png_with_its_legend(backend, nano_checkpoint):
    label = nano_checkpoint.name
    img = _photo(80, 120)
    path, legend = backend.mask_file(img, label, None, "cam")
    with Image.open(path) as png:
        assert png.mode == "P" and png.size == (120, 80)
        indices = np.asarray(png)
    expected = views.pseudo_mask(backend.analysis(img, label, None), "cam")
    assert np.array_equal(indices, expected)
    assert legend["method"] == "cam" and legend["crf"] is False and legend["size"] == [120, 80]
    assert legend["classes"] == {str(k): CLASSES[k] for k in np.unique(expected)}
    assert Path(backend.mask_file(img, label, None, "cam", crf=True)[0]).name == "mask_cam_crf.png"
    assert backend.mask_file(img, label, None, "token") == (None, {"error": (
        "evidence method 'token' does not apply to this model; choose one of cam, eigencam, gradcam, gradcam++, "
        "layercam, scorecam, slot-cam, xgradcam")})


# ------------------------------------------------------------------------------ the endpoints
@pytest.fixture(scope="module")
def served(backend):
    """The page on the nano model, served on a free port, and a gradio_client on it."""
    from gradio_client import Client

    from glmix_vis.app import build_app
    from glmix_vis.app.serving import launch_options, queue_options

    demo = build_app(backend=backend)
    backend.notify = None
    demo.queue(**queue_options())
    demo.launch(**launch_options(port=_free_port(), prevent_thread_lock=True, quiet=True))
    client = Client(demo.local_url, verbose=False)
    yield demo, client
    client.close()
    demo.close()


def test_the_api_names_its_endpoints(served):
    _, client = served
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/analyze", "/soft_maps", "/atlas", "/class_scores", "/mask", "/figure"} <= set(named), list(named)
    def parameters(endpoint):
        return [p["parameter_name"] for p in named[endpoint]["parameters"]]

    assert parameters("/class_scores") == ["image", "model", "input_size"]
    assert parameters("/mask") == ["image", "model", "input_size", "method", "crf"]
    assert parameters("/figure") == ["image", "model", "input_size", "blocks", "block", "method", "fmt", "view"]


def test_class_scores_and_mask_through_the_client(served, backend, nano_checkpoint, tmp_path):
    from gradio_client import handle_file

    _, client = served
    photo = tmp_path / "photo.png"
    Image.fromarray(_photo(60, 90)).save(photo)
    label = nano_checkpoint.name
    answer = client.predict(handle_file(str(photo)), label, 128, api_name="/class_scores")
    assert list(answer["scores"]) == CLASSES[1:] and "classes" in answer
    png, legend = client.predict(handle_file(str(photo)), label, 128, "cam", True, api_name="/mask")
    with Image.open(png) as im:
        assert im.mode == "P" and im.size == (90, 60)
    assert legend["method"] == "cam" and legend["crf"] is True


def test_figure_makes_the_view_it_is_told_with_the_method_it_is_given(served, nano_checkpoint, tmp_path,
                                                                      monkeypatch):
    """``/figure`` used to make the slot groups whatever method it was given (its view was the
    page's hidden state): now the view is a parameter, and the class view uses the method."""
    from gradio_client import handle_file

    _, client = served
    photo = tmp_path / "photo.png"
    Image.fromarray(_photo(60, 90)).save(photo)
    asked = []
    real = views.view_figure

    def spy(result, view, blocks, block, method, classes):
        asked.append((view, block, method))
        if view == TAB_CLASSES:  # the class figure's CRF is slow: the soft maps stand in for it
            return real(result, TAB_SOFT, blocks, block, method, classes)[0], f"classes_{method}"
        return real(result, view, blocks, block, method, classes)

    monkeypatch.setattr(views, "view_figure", spy)
    label = nano_checkpoint.name
    path, status = client.predict(handle_file(str(photo)), label, 128, [0, 1], 1, "cam", "PNG", TAB_CLASSES,
                                  api_name="/figure")
    assert asked[-1] == (TAB_CLASSES, 1, "cam") and Path(path).name == "glmix_classes_cam.png", status
    path, status = client.predict(handle_file(str(photo)), label, 128, [0, 1], 1, "gradcam", "PDF", TAB_SOFT,
                                  api_name="/figure")
    assert asked[-1] == (TAB_SOFT, 1, "gradcam") and Path(path).name == "glmix_soft_maps_block1.pdf", status
