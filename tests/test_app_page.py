"""The web page (:mod:`glmix_vis.app.page`) through its :data:`TABS` table: every tab builds with
named outputs and is wired by name, a new tab is one function and one entry, the page follows the
model and takes a figure away with its view; one-line start-up errors; and the launched server
through gradio_client."""

from __future__ import annotations

import inspect
import socket
from pathlib import Path

import numpy as np
import pytest
from helpers import gradient_photo as _photo  # the same test photo in every app test
from PIL import Image

gr = pytest.importorskip("gradio")

from glmix_vis import app as webapp  # noqa: E402
from glmix_vis.app import TAB_CLASSES, TAB_SLOTS, TAB_SOFT, ModelCache, SlotApp  # noqa: E402
from glmix_vis.app.page import TABS, Shown  # noqa: E402
from glmix_vis.app.settings import TAB_ATLAS  # noqa: E402

pytestmark = pytest.mark.usefixtures("checkpoint_dir")  # never the user's real checkpoint folder


def _listening_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _page(app):
    """The page on ``app``, leaving ``app`` without gradio's pop-ups (no request to show them in)."""
    from glmix_vis.app import build_app

    try:
        return build_app(backend=app)
    finally:
        app.notify = None


# ------------------------------------------------------------------------------ start-up errors
def test_address_problem_names_the_port_and_the_option():
    from glmix_vis.app.serving import address_problem

    with _listening_port() as sock:
        port = sock.getsockname()[1]
        assert address_problem("127.0.0.1", port) == f"port {port} is in use; choose another with --port"
    assert address_problem("127.0.0.1", _free_port()) is None
    assert "--host" in address_problem("no-such-host.invalid", 7860)


def test_app_on_a_port_in_use_is_one_line_and_exit_2(capsys):
    from glmix_vis.cli.vis import main

    with _listening_port() as sock:
        port = sock.getsockname()[1]
        assert main(["app", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err == f"glmix-vis app: error: port {port} is in use; choose another with --port\n"


def test_app_on_an_unusable_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    from glmix_vis.cli.vis import main

    bad = tmp_path / "random.pth"
    bad.write_text("not a checkpoint\n")
    assert main(["app", "--checkpoint", str(bad), "--port", str(_free_port()), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err == (f"glmix-vis app: error: {bad.resolve()} is a text file, not a checkpoint "
                   "(starts with b'not a checkpoint')\n"), err  # the operator's file by its full path
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(bytes(range(200, 256)) * 4)
    assert main(["app", "--checkpoint", str(garbage), "--port", str(_free_port()), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"glmix-vis app: error: {garbage.resolve()} is not a checkpoint") and err.count("\n") == 1, err


def test_port_taken_after_the_check_is_still_one_line(nano_checkpoint, monkeypatch):
    """gradio's own "Cannot find empty port ... GRADIO_SERVER_PORT" becomes the --port message."""
    from glmix_vis.app import ServeError, page, serving

    calls = []

    def first_free_then_real(host, port):
        calls.append(port)
        return None if len(calls) == 1 else serving.address_problem(host, port)

    monkeypatch.setattr(page, "address_problem", first_free_then_real)
    with _listening_port() as sock:
        port = sock.getsockname()[1]
        with pytest.raises(ServeError) as info:
            page.launch(nano_checkpoint, port=port, device="cpu", prevent_thread_lock=True, quiet=True)
    assert str(info.value) == f"port {port} is in use; choose another with --port"
    assert "GRADIO" not in str(info.value) and len(calls) == 2


# ------------------------------------------------------------------------------ the tabs, through TABS
@pytest.fixture(scope="module")
def page(backend):
    """The page on the nano model and its parts by name (``demo.page_parts``)."""
    demo = _page(backend)
    return demo, demo.page_parts


def _empty(value) -> bool:
    return value is None or (not isinstance(value, np.ndarray) and value in ("", [], {}))


def test_every_tab_builds_with_named_outputs_that_exist(page):
    demo, parts = page
    assert list(parts.tabs) == [tab.id for tab in TABS]
    names = [name for view in parts.tabs.values() for name in view.outputs]
    assert len(names) == len(set(names))  # one name per widget across the tabs
    figure_parameters = inspect.signature(SlotApp.figure).parameters
    for tab in TABS:
        view = parts.tabs[tab.id]
        widgets = list(view.outputs.values())
        assert widgets and all(demo.blocks.get(w._id) is w for w in widgets), tab.id
        for step in view.refresh:
            assert step.outputs and all(w in widgets for w in step.outputs), tab.id
        if view.figure_option is not None:
            name, widget = view.figure_option
            assert name in figure_parameters and widget in widgets, tab.id
    galleries = [v.analysis_gallery for v in parts.tabs.values() if v.analysis_gallery is not None]
    assert galleries == [parts.tabs[TAB_SLOTS].outputs["overlays"]]  # the analysis fills one tab's gallery


def test_each_refresh_fills_its_named_outputs_and_only_while_its_tab_is_open(page, nano_checkpoint):
    _, parts = page
    c = parts.controls
    values = {c.image: _photo(), c.model: nano_checkpoint.name, c.size: None, c.blocks: [0, 1]}
    values.update({w: w.value for view in parts.tabs.values() for w in view.outputs.values()})
    for tab in TABS:
        for step in parts.tabs[tab.id].refresh:
            for current in (tab.id, "another tab"):
                out = step.fn(*[{**values, c.view: current}[w] for w in step.inputs])
                assert set(out) == set(step.outputs), (tab.id, step.fn.__name__)
                if current == tab.id:
                    assert not all(_empty(v) for v in out.values()), (tab.id, step.fn.__name__)
                else:
                    assert all(_empty(v) for v in out.values()), (tab.id, step.fn.__name__)


def test_the_analysis_fills_the_slot_groups_and_keeps_the_block_choice(page, nano_checkpoint):
    _, parts = page
    c, figure, step = parts.controls, parts.figure, parts.analysis
    overlays, layer = parts.tabs[TAB_SLOTS].outputs["overlays"], parts.tabs[TAB_SOFT].outputs["layer"]
    # the order of /analyze's inputs and outputs (gradio_client, eval/*_app.py) is unchanged
    api = parts.api["analyze"]
    assert api.inputs == [c.image, c.model, c.size, c.blocks, layer]
    assert api.outputs == [c.status, overlays, layer, figure.file, figure.status]
    # the page's own analysis also keeps what the pictures show and counts refused uploads
    assert step.inputs == [*api.inputs, c.shown, c.refusals] and step.outputs == [*api.outputs, c.shown, c.refusals]
    out = step.fn(_photo(), nano_checkpoint.name, None, [2, 0], 1, Shown(), 0)
    assert set(out) == set(step.outputs) and "px image" in out[c.status] and len(out[overlays]) == 2
    assert out[layer] == 2 and out[figure.file]["visible"] is False and out[figure.status] == ""
    assert step.fn(_photo(), nano_checkpoint.name, None, [0, 2], 0, Shown(), 0)[layer] == 0  # still chosen: kept


def test_page_shows_the_notice_and_follows_the_model(page, backend, nano_checkpoint):
    _, parts = page
    c, label = parts.controls, nano_checkpoint.name
    assert c.model_note.value == backend.model_notice(label) and c.model_note.elem_id == "model-notice"
    out = parts.model_change.fn(label)
    assert set(out) == set(parts.model_change.outputs) and out[c.model_note] == backend.model_notice(label)
    method = parts.tabs[TAB_CLASSES].outputs["method"]
    assert out[method]["value"] == "slot-cam" and out[parts.tabs[TAB_SOFT].outputs["layer"]]["value"] == 3
    assert parts.model_change.fn("no such model") == gr.skip()  # a message, and the page stays as it was


def test_a_figure_is_of_the_open_view_and_leaves_with_it(page, nano_checkpoint):
    _, parts = page
    c, figure, step = parts.controls, parts.figure, parts.make_figure
    layer, method = parts.tabs[TAB_SOFT].outputs["layer"], parts.tabs[TAB_CLASSES].outputs["method"]
    assert step.inputs == [c.image, c.model, c.size, c.blocks, layer, method, c.view, figure.fmt]  # /figure's order
    out = step.fn(_photo(), nano_checkpoint.name, None, [0, 1], 1, "slot-cam", TAB_SOFT, "PNG")
    assert out[figure.file]["visible"] is True and out[figure.status] == "Figure ready: glmix_soft_maps_block1.png"
    for tab in TABS:  # opening any tab takes the figure away
        opened = parts.open_tab(tab.id).fn()
        assert opened[c.view] == tab.id and opened[figure.file]["visible"] is False and opened[figure.status] == ""
    assert [v.figure_option[0] for v in parts.tabs.values() if v.figure_option] == ["block", "method"]


def test_a_new_tab_is_one_function_and_one_entry(backend, nano_checkpoint, monkeypatch):
    from glmix_vis.app import page as page_module

    def picture_tab(c):
        picture = gr.Image(elem_id="picture")

        def on_open(img, label, input_size, current):
            return {picture: c.app.analysis(img, label, input_size).shown if current == "picture" else None}

        return page_module.TabView(outputs={"picture": picture},
                                   refresh=(page_module.Step(on_open, [*c.common, c.view], [picture]),))

    monkeypatch.setattr(page_module, "TABS", (*page_module.TABS,
                                              page_module.Tab("picture", "Picture", "tab-picture", picture_tab)))
    demo = _page(backend)
    parts = demo.page_parts
    assert list(parts.tabs) == [TAB_SLOTS, TAB_SOFT, TAB_CLASSES, TAB_ATLAS, "picture"]
    assert any(isinstance(b, gr.Tab) and b.elem_id == "tab-picture" for b in demo.blocks.values())
    picture = parts.tabs["picture"].outputs["picture"]
    out = parts.tabs["picture"].refresh[0].fn(_photo(), nano_checkpoint.name, None, "picture")
    assert out[picture].ndim == 3
    assert parts.analysis.outputs[:2] == [parts.controls.status, parts.tabs[TAB_SLOTS].outputs["overlays"]]


def test_soft_maps_tab_shows_what_the_colours_mean(page):
    demo, _ = page
    html = [b.value for b in demo.blocks.values() if "colorbar-legend" in str(getattr(b, "value", ""))]
    assert any('id="soft-legend"' in h and "uniform weight 1/S" in h and "the slot's peak weight" in h and "linear-gradient" in h for h in html)
    assert any('id="evidence-legend"' in h for h in html)


def test_page_pops_up_the_backend_messages(nano_checkpoint):
    app = SlotApp(nano_checkpoint, max_side=256, device="cpu")
    demo = webapp.build_app(backend=app)
    assert demo.slot_app is app and app.notify is gr.Warning


def test_launched_app_answers_through_gradio_client(nano_checkpoint, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    photo = tmp_path / "photo.png"
    Image.fromarray(_photo(120, 160)).save(photo)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    port = _free_port()
    too_big = tmp_path / "too_big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)).save(too_big)
    demo = webapp.launch(nano_checkpoint, port=port, max_side=256, device="cpu", prevent_thread_lock=True,
                         quiet=True, max_file_size="200kb")
    try:
        assert demo.local_url.startswith("http://127.0.0.1:")
        client = Client(demo.local_url, verbose=False)
        status, gallery, *_ = client.predict(handle_file(str(photo)), nano_checkpoint.name, 128, [0, 2], 2,
                                             api_name="/analyze")
        assert "160×120 px image" in status and len(gallery) == 2
        for item in gallery:
            with Image.open(item["image"]) as im:
                assert im.size == (256, 192)  # enlarged for display; the status gives the real size
        status, gallery, *_ = client.predict(handle_file(str(broken)), nano_checkpoint.name, 128, [0], 0,
                                             api_name="/analyze")
        assert status.startswith("**Error:** broken.png") and gallery == []
        with pytest.raises(Exception, match="(?i)file size|too large|exceeds"):  # over max_file_size
            client.predict(handle_file(str(too_big)), nano_checkpoint.name, 128, [0], 0, api_name="/analyze")
        with pytest.raises(AppError):  # not in the dropdown: refused before the callback runs
            client.predict(handle_file(str(photo)), "/etc/passwd", 128, [0], 0, api_name="/analyze")
        _, soft, _ = client.predict(handle_file(str(photo)), nano_checkpoint.name, 128, 2, api_name="/soft_maps")
        assert len(soft) == backend_slots(nano_checkpoint)
        assert "/analyze" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        # a server file named in the request (not uploaded) is refused by gradio before any callback
        import httpx

        data = [{"path": str(photo), "meta": {"_type": "gradio.FileData"}}, nano_checkpoint.name, 128, [0], 0]
        event = httpx.post(demo.local_url + "gradio_api/call/analyze", json={"data": data}, timeout=60).json()
        with httpx.stream("GET", demo.local_url + f"gradio_api/call/analyze/{event['event_id']}", timeout=120) as r:
            assert "event: error" in "\n".join(r.iter_lines())
    finally:
        demo.close()


def backend_slots(checkpoint: Path) -> int:
    return ModelCache(device="cpu").get(checkpoint).num_slots[2]


def test_a_visitors_session_does_not_grow_with_uploads(backend, nano_checkpoint, tmp_path) -> None:
    """gradio keeps a copy of every component a callback updates in the visitor's session; an
    updated copy of a component that is also an input used to be stored again under a new id on
    every request (one dropdown per upload, eval/soak_app.py). Uploads must leave it as it was."""
    import socket

    from gradio_client import Client, handle_file
    from PIL import Image

    from glmix_vis.app import build_app
    from glmix_vis.app.serving import launch_options, queue_options

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build_app(backend=backend)
    demo.queue(**queue_options())
    demo.launch(**launch_options(port=port, prevent_thread_lock=True, quiet=True))
    client = Client(demo.local_url, verbose=False, download_files=False)
    try:
        rng = np.random.default_rng(5)
        sizes = []
        for i in range(4):
            path = tmp_path / f"upload_{i}.png"
            Image.fromarray(rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)).save(path)
            status, gallery, *_ = client.predict(handle_file(str(path)), nano_checkpoint.name, 128, [0, 1], 1,
                                                 api_name="/analyze")
            assert len(gallery) == 2, status
            session = demo.state_holder.session_data[client.session_hash]
            sizes.append((len(session.blocks_config.blocks), len(session.config_values)))
        assert sizes[-1] == sizes[1], sizes
    finally:
        client.close()
        demo.close()


def test_launch_prints_its_address_and_no_share_hint(nano_checkpoint, capsys):
    """gradio's "To create a public link, set `share=True`" names an option no one can set here."""
    port = _free_port()
    demo = webapp.launch(nano_checkpoint, port=port, device="cpu", prevent_thread_lock=True)
    try:
        out = capsys.readouterr().out
    finally:
        demo.close()
    assert f"Running on local URL:  http://127.0.0.1:{port}" in out and "share" not in out, out
    assert f"* checkpoint: {Path(nano_checkpoint).resolve()}\n" in out, out  # which file is served, absolute


def test_launch_refuses_a_bad_upload_limit_before_loading(monkeypatch):
    from glmix_vis.app import page as page_module

    monkeypatch.setattr(page_module, "build_app", lambda *a, **k: pytest.fail("loaded the model"))
    with pytest.raises(ValueError, match="upload limit"):
        page_module.launch(port=_free_port(), max_file_size="lots", prevent_thread_lock=True)
