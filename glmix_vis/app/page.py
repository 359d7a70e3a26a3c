"""The web page (Gradio): widgets, their wiring to the backend's callbacks, and launch.

Everything the callbacks compute is :class:`~glmix_vis.app.backend.SlotApp`'s; this module only
lays out the widgets, turns gallery pictures into files (:class:`~glmix_vis.app.serving.PictureFiles`)
and serves the page with the settings of :mod:`glmix_vis.app.serving`.

>>> from glmix_vis.app import launch
>>> launch()                       # http://127.0.0.1:7860 on the bundled demo model
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import gradio as gr
import numpy as np
import torch

from .backend import AppError, SlotApp
from .serving import (
    PictureFiles,
    ServeError,
    address_problem,
    bound_session_queues,
    example_files,
    launch_options,
    limit_heap_fragmentation,
    queue_options,
)
from .settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_DEVICE,
    DEFAULT_HOST,
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_MAX_SIDE,
    DEFAULT_PORT,
    INPUT_SIZES,
    TAB_CLASSES,
    TAB_SLOTS,
    TAB_SOFT,
)

__all__ = ["INTRO", "UploadImage", "build_app", "class_colors", "colorbar_html", "launch"]


class UploadImage(gr.Image):
    """``gr.Image`` that hands the callback the uploaded file untouched, so that every upload is
    read by :func:`glmix_vis.io.load_image` (and a broken file becomes a message, not an error)."""

    def get_block_name(self) -> str:
        return "image"

    def preprocess(self, payload: Any) -> str | None:
        if payload is None:
            return None
        if getattr(payload, "path", None):
            return str(payload.path)
        raise gr.Error("the image did not arrive; upload it again")


INTRO = """\
# glmix-vis: GLMix slot maps
Each GLMix block of a GLNet groups the pixels into a few *slots*. Upload an image (or pick an example)
to see, per block, the hard slot groups (every pixel coloured by its most likely slot, colours matched
across blocks), each slot's soft dispatch map and, for models with a classifier, the class evidence
and the pseudo-mask it gives.
"""


#: Gallery captions wrap instead of being cut off (soft-map captions carry their scale's peak).
PAGE_CSS = ("#soft-maps .caption-label, #evidence .caption-label { white-space: normal; max-width: 95%; }\n"
            # small tiles: a caption must not cover a third of the map it names
            "#soft-maps .caption-label { font-size: 0.75em; line-height: 1.2; padding: 1px 4px; }")


def class_colors(class_names: Sequence[str]) -> dict[str, str]:
    """The mask colour of each class (the VOC palette the pseudo-masks are saved with)."""
    from ..data.palette import voc_palette
    from ..figures.palette import to_hex

    colors = voc_palette()
    return {name: to_hex(colors[k]) for k, name in enumerate(class_names)}


def colorbar_html(low: str, high: str, elem_id: str | None = None) -> str:
    """A legend line: ``low``, the maps' colormap as a bar, ``high`` (what the two ends mean)."""
    from ..figures.palette import to_hex
    from ..figures.render import SOFT_CMAP, apply_colormap

    stops = ", ".join(to_hex(c) for c in apply_colormap(np.linspace(0.0, 1.0, 11)[None], SOFT_CMAP)[0])
    ident = f' id="{elem_id}"' if elem_id else ""
    return (f'<div{ident} class="colorbar-legend" style="display:flex;align-items:center;gap:0.5em;'
            f'font-size:var(--text-sm)"><span>{low}</span><span style="display:inline-block;width:10em;'
            f'height:0.9em;border-radius:2px;background:linear-gradient(to right, {stops})"></span>'
            f"<span>{high}</span></div>")


def build_app(checkpoint: str | os.PathLike[str] | None = None, *, max_side: int = DEFAULT_MAX_SIDE,
              device: str | torch.device = DEFAULT_DEVICE, backend: SlotApp | None = None,
              precision: str | None = None) -> gr.Blocks:
    """The Gradio page on ``checkpoint`` (default: the bundled demo model) plus the checkpoint directory.

    A ``backend`` without a ``notify`` gets ``gr.Warning``: its error messages also pop up.
    """
    app = backend or SlotApp(checkpoint, max_side=max_side, device=device, precision=precision)
    if app.notify is None:
        app.notify = gr.Warning
    first = app.model_settings(app.default_label)
    examples = example_files()
    colors = class_colors(first["class_names"])

    with gr.Blocks(title="glmix-vis", analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        demo.slot_app = app  # type: ignore[attr-defined]
        gr.Markdown(INTRO)
        view = gr.State(TAB_SLOTS)
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                image = UploadImage(label="Image", type="filepath", sources=["upload", "clipboard"], height=300,
                                    elem_id="input-image")
                if examples:
                    gr.Examples([[str(p)] for p in examples.values()], inputs=[image], example_labels=list(examples),
                                label="Examples", examples_per_page=12)
                model = gr.Dropdown(list(app.checkpoints), value=app.default_label, label="Model",
                                    info="the bundled demo model, or a checkpoint found in the checkpoint folder")
                model_note = gr.Markdown(first["notice"], elem_id="model-notice")
                size = gr.Slider(*INPUT_SIZES, step=32, value=first["input_size"], label="Input resolution",
                                 info="short side of the image the network sees, in pixels")
                blocks = gr.CheckboxGroup(first["block_choices"], value=first["blocks"], label="GLMix blocks")
                run = gr.Button("Show slot maps", variant="primary")
                status = gr.Markdown(elem_id="status")
            with gr.Column(scale=3, min_width=400):
                with gr.Tabs():
                    with gr.Tab("Slot groups", id=TAB_SLOTS, elem_id="tab-slots") as tab_slots:
                        overlays = gr.Gallery(label="Hard slot groups, one image per block", columns=2,
                                              height="fit-content", object_fit="contain", elem_id="overlays")
                    with gr.Tab("Soft maps", id=TAB_SOFT, elem_id="tab-soft") as tab_soft:
                        layer = gr.Dropdown(first["block_choices"], value=first["blocks"][-1], label="Block",
                                            elem_id="block-choice")
                        soft_status = gr.Markdown()
                        gr.HTML(colorbar_html("0", "the slot's peak weight (in its caption)", "soft-legend"))
                        soft = gr.Gallery(label="Per-slot dispatch maps", columns=4, height="fit-content",
                                          object_fit="contain", elem_id="soft-maps")
                        slot_text = gr.Markdown(elem_id="slot-detail")
                    with gr.Tab("Classes and pseudo-mask", id=TAB_CLASSES, elem_id="tab-classes",
                                visible=first["has_classifier"]) as tab_classes:
                        method = gr.Dropdown(first["evidence_methods"], value=first["method"],
                                             label="Evidence method", elem_id="evidence-method")
                        class_status = gr.Markdown(elem_id="class-status")
                        scores = gr.Label(label="Class scores", num_top_classes=5)
                        evidence = gr.Gallery(label="Class evidence of the classes the model sees", columns=3,
                                              height="fit-content", object_fit="contain", fit_columns=False,
                                              elem_id="evidence")
                        gr.HTML(colorbar_html("evidence 0", "1", "evidence-legend"))
                        with gr.Row():
                            mask = gr.AnnotatedImage(label="Pseudo-mask", color_map=colors)
                            mask_crf = gr.AnnotatedImage(label="Pseudo-mask + dense CRF", color_map=colors)
                with gr.Row(equal_height=False):
                    fmt = gr.Radio(["PNG", "PDF"], value="PNG", label="Figure format", scale=1)
                    make = gr.Button("Make a figure of this view", scale=1)
                figure_status = gr.Markdown(elem_id="figure-status")
                figure_file = gr.File(label="Figure", interactive=False, visible=False, elem_id="figure-file")

        common = [image, model, size]

        def on_model(label: str) -> tuple:
            try:
                s = app.model_settings(label)
            except Exception as exc:
                app.report(exc)
                return (gr.skip(),) * 8
            cmap = class_colors(s["class_names"])
            return (gr.update(value=s["input_size"]), gr.update(choices=s["block_choices"], value=s["blocks"]),
                    gr.update(visible=s["has_classifier"]),
                    gr.update(choices=s["block_choices"], value=s["blocks"][-1]),
                    gr.update(color_map=cmap, value=None), gr.update(color_map=cmap, value=None),
                    gr.update(choices=s["evidence_methods"], value=s["method"]), s["notice"])

        files = PictureFiles()

        def on_overlays(img: Any, label: str, input_size: float, chosen: list[int], current: int | None) -> tuple:
            text, items = app.slot_overlays(img, label, input_size, chosen)
            items = files.gallery(items)
            chosen = sorted(chosen or [])
            keep = current if current in chosen else (chosen[-1] if chosen else None)
            # `keep` as a plain value, not gr.update(value=...): gradio stores an updated copy of a
            # component that is also an input under a new id in the visitor's session on every
            # request, so a visitor's state grew by one dropdown per upload (eval/soak_app.py)
            return text, items, keep, gr.update(value=None, visible=False), ""

        def on_soft(img: Any, label: str, input_size: float, block: int | None, current: str) -> tuple:
            if current != TAB_SOFT:  # computed when its tab is opened
                return "", [], ""
            text, items = app.soft_maps(img, label, input_size, block, warn=False)
            return text, files.gallery(items), ""

        def on_layer(img: Any, label: str, input_size: float, block: int | None) -> tuple:
            text, items = app.soft_maps(img, label, input_size, block)
            return text, files.gallery(items), ""

        def on_slot(img: Any, label: str, input_size: float, block: int | None, evt: gr.SelectData) -> str:
            return app.slot_detail(img, label, input_size, block, evt.index)

        def on_classes(img: Any, label: str, input_size: float, meth: str, current: str) -> tuple:
            if current != TAB_CLASSES:  # computed when its tab is opened
                return "", {}, [], None, None
            text, scores_, items, annotated = app.class_view(img, label, input_size, meth, warn=False)
            return text, scores_, files.gallery(items), annotated, None

        def on_crf(img: Any, label: str, input_size: float, meth: str, current: str) -> Any:
            return app.crf_mask(img, label, input_size, meth) if current == TAB_CLASSES else None

        def on_figure(img: Any, label: str, input_size: float, chosen: list[int], block: int | None, meth: str,
                      current: str, kind: str) -> tuple:
            path, text = app.figure(img, label, input_size, chosen, block, meth, current, kind)
            return gr.update(value=path, visible=path is not None), text

        soft_outputs = [soft_status, soft, slot_text]
        class_outputs = [class_status, scores, evidence, mask, mask_crf]
        hidden = dict(api_name=False, show_progress="hidden")

        def follow_up(event: Any) -> None:
            """After new overlays: the open tab's soft maps or class views, then the CRF mask."""
            (event.then(on_soft, common + [layer, view], soft_outputs, **hidden)
                  .then(on_classes, common + [method, view], class_outputs, **hidden)
                  .then(on_crf, common + [method, view], [mask_crf], **hidden))

        analyze = dict(fn=on_overlays, inputs=common + [blocks, layer],
                       outputs=[status, overlays, layer, figure_file, figure_status])
        follow_up(run.click(**analyze, api_name="analyze"))
        follow_up(image.change(**analyze, api_name=False))
        follow_up(size.release(**analyze, api_name=False))
        follow_up(blocks.input(**analyze, api_name=False))
        follow_up(model.input(on_model, [model], [size, blocks, tab_classes, layer, mask, mask_crf, method,
                                                  model_note], api_name=False)
                  .then(**analyze, api_name=False))
        # a figure belongs to the view it was made of: another tab, block or method takes it away
        figure_outputs = [figure_file, figure_status]

        def clear_figure() -> tuple:
            return gr.update(value=None, visible=False), ""

        def open_tab(tab: str) -> Any:
            return lambda: (tab, *clear_figure())

        layer.input(on_layer, common + [layer], soft_outputs, api_name="soft_maps")
        layer.input(clear_figure, None, figure_outputs, api_name=False, queue=False)
        soft.select(on_slot, common + [layer], [slot_text], api_name=False)
        tab_slots.select(open_tab(TAB_SLOTS), None, [view, *figure_outputs], api_name=False, queue=False)
        (tab_soft.select(open_tab(TAB_SOFT), None, [view, *figure_outputs], api_name=False, queue=False)
                 .then(on_soft, common + [layer, view], soft_outputs, api_name=False))
        (tab_classes.select(open_tab(TAB_CLASSES), None, [view, *figure_outputs], api_name=False, queue=False)
                    .then(on_classes, common + [method, view], class_outputs, api_name=False)
                    .then(on_crf, common + [method, view], [mask_crf], api_name=False))
        (method.input(on_classes, common + [method, view], class_outputs, api_name=False)
               .then(on_crf, common + [method, view], [mask_crf], api_name=False))
        method.input(clear_figure, None, figure_outputs, api_name=False, queue=False)
        make.click(on_figure, common + [blocks, layer, method, view, fmt], [figure_file, figure_status],
                   api_name="figure")
    return demo


def launch(checkpoint: str | os.PathLike[str] | None = None, *, host: str = DEFAULT_HOST, port: int | None = DEFAULT_PORT,
           max_file_size: str | int = DEFAULT_MAX_FILE_SIZE, concurrency: int = DEFAULT_CONCURRENCY,
           max_side: int = DEFAULT_MAX_SIDE, device: str | torch.device = DEFAULT_DEVICE,
           prevent_thread_lock: bool = False, max_sessions: int = DEFAULT_MAX_SESSIONS,
           quiet: bool = False, precision: str | None = None) -> gr.Blocks:
    """Build the app and serve it (blocking unless ``prevent_thread_lock``); returns the Blocks.

    ``max_sessions`` bounds the per-visitor state gradio keeps (least recently used dropped).
    A taken address or an unusable ``checkpoint`` raises :class:`~glmix_vis.app.serving.ServeError`
    with one line that names the option to change; the address is checked first, before any
    model is loaded.
    """
    if port is not None and (problem := address_problem(host, port)):
        raise ServeError(problem)
    limit_heap_fragmentation()
    try:
        demo = build_app(checkpoint, max_side=max_side, device=device, precision=precision)
    except AppError as exc:
        raise ServeError(str(exc)) from None
    demo.queue(**queue_options(concurrency))
    bound_session_queues(demo, max_sessions)
    try:
        demo.launch(**launch_options(host=host, port=port, max_file_size=max_file_size, concurrency=concurrency,
                                     max_sessions=max_sessions, prevent_thread_lock=prevent_thread_lock,
                                     quiet=quiet), theme=gr.themes.Soft(), css=PAGE_CSS)
    except OSError as exc:  # gradio: "Cannot find empty port ..." (taken since the check above)
        if "empty port" not in str(exc):
            raise
        raise ServeError((address_problem(host, port) if port is not None else None)
                         or f"cannot serve on {host}:{port}; choose another --port or --host") from None
    return demo
