"""The web page (Gradio): the controls, one function per tab, the :data:`TABS` table that
:func:`build_app` iterates, and launch.

A new tab is one tab function (its widgets, its callbacks returning dicts keyed by those widgets,
a :class:`TabView` naming them) and one :class:`Tab` entry in :data:`TABS`; :func:`build_app`
wires it: its refresh steps run when it is opened and after every new analysis, its figure option
reaches :meth:`SlotApp.figure` by name, its widgets follow a newly chosen model. Everything the
callbacks compute is :class:`~glmix_vis.app.backend.SlotApp`'s; this module only lays out the
widgets, turns gallery pictures into files (:class:`~glmix_vis.app.serving.PictureFiles`) and
serves the page with the settings of :mod:`glmix_vis.app.serving`.

>>> from glmix_vis.app import launch
>>> launch()                       # http://127.0.0.1:7860 on the bundled demo model
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import numpy as np
import torch

from ..figures.render import SOFT_MIN_CONTRAST
from . import messages
from .backend import SlotApp
from .file_cache import VisitorFileCache
from .messages import AppError
from .serving import (
    PictureFiles,
    ServeError,
    address_problem,
    bound_event_records,
    bound_session_queues,
    collect_cycles_promptly,
    example_files,
    launch_options,
    limit_heap_fragmentation,
    operator_message,
    queue_options,
)
from .settings import (
    CACHE_CHECK_S,
    CACHE_MAX_AGE_S,
    DEFAULT_CONCURRENCY,
    DEFAULT_DEVICE,
    DEFAULT_HOST,
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_MAX_SIDE,
    DEFAULT_PORT,
    INPUT_SIZES,
    MAX_SOFT_MAPS,
    SOFT_SHOWN,
    TAB_ATLAS,
    TAB_CLASSES,
    TAB_SLOTS,
    TAB_SOFT,
    file_size,
)

__all__ = ["INTRO", "TABS", "Controls", "FigureRow", "ModelUpdate", "Page", "Shown", "Step", "Tab", "TabView",
           "UploadImage", "build_app", "class_colors", "classes_tab", "colorbar_html", "launch", "session_of",
           "slot_groups_tab", "soft_maps_tab"]


class UploadImage(gr.Image):
    """``gr.Image`` that hands the callback the uploaded file untouched, so that every upload is
    read by :func:`glmix_vis.io.load_image` (and a broken file becomes a message, not an error)."""

    def get_block_name(self) -> str:
        return "image"

    def preprocess(self, payload: Any) -> str | None:
        if payload is None:
            return None
        if getattr(payload, "path", None):
            if not os.path.exists(payload.path):  # deleted from gradio's cache since the page sent it
                raise gr.Error(messages.UPLOAD_GONE)
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


# ------------------------------------------------------------------------------ the parts of a page
@dataclass(frozen=True)
class Step:
    """One callback of the page: ``fn`` on the values of ``inputs`` returns a dict keyed by
    components of ``outputs`` (named outputs: no positional tuple has to match a list)."""

    fn: Callable[..., Any]
    inputs: list[Any]
    outputs: list[Any]

    def on(self, event: Any, **options: Any) -> Any:
        """Wire this step to a gradio event listener (``image.change``, a ``.then``, ...)."""
        return event(self.fn, self.inputs, self.outputs, **options)


@dataclass(frozen=True)
class ModelUpdate:
    """How a tab follows a newly chosen model: ``fn(settings)`` (:meth:`SlotApp.model_settings`)
    returns updates keyed by components of ``outputs``."""

    fn: Callable[[dict[str, Any]], dict[Any, Any]]
    outputs: tuple[Any, ...]


@dataclass(frozen=True)
class Shown:
    """What a visitor's pictures show (the value of :attr:`Controls.shown`): the last image that
    could be read (``None``: none yet, or removed) and whether their latest upload was refused
    (the pictures were kept)."""

    image: str | None = None
    refused: bool = False


@dataclass
class Controls:
    """The widgets beside the tabs (image, model, input size, blocks), the open tab, what the
    pictures show (:class:`Shown`), how many uploads were refused, and what every tab function may
    use: the backend, the gallery files and the first model's settings."""

    app: SlotApp
    files: PictureFiles
    first: dict[str, Any]
    view: gr.State
    shown: gr.State
    refusals: gr.State
    image: UploadImage
    examples: gr.Examples | None
    model: gr.Dropdown
    model_note: gr.Markdown
    size: gr.Slider
    blocks: gr.CheckboxGroup
    run: gr.Button
    status: gr.Markdown

    @property
    def common(self) -> list[Any]:
        """The inputs of every view: image, model and input size."""
        return [self.image, self.model, self.size]


@dataclass
class FigureRow:
    """The figure download under the tabs: a figure belongs to the view it was made of."""

    fmt: gr.Radio
    make: gr.Button
    status: gr.Markdown
    file: gr.File

    @property
    def outputs(self) -> list[Any]:
        return [self.file, self.status]

    def cleared(self) -> dict[Any, Any]:
        """The updates that take a made figure away."""
        return {self.file: gr.update(value=None, visible=False), self.status: ""}


@dataclass
class TabView:
    """What a tab function gives the page; every field names its widgets.

    ``refresh`` runs after every new analysis and when the tab is opened (each step a no-op while
    another tab is open); ``analysis_gallery`` is the gallery the analysis itself fills (the slot
    groups); ``follows_blocks`` a block choice the analysis keeps among the chosen blocks;
    ``figure_option`` the :meth:`SlotApp.figure` keyword the tab's widget gives (its change takes
    a made figure away); ``on_model`` how the tab's widgets follow a newly chosen model.
    """

    outputs: dict[str, Any]
    refresh: tuple[Step, ...] = ()
    analysis_gallery: Any = None
    follows_blocks: Any = None
    figure_option: tuple[str, Any] | None = None
    on_model: ModelUpdate | None = None


@dataclass(frozen=True)
class Tab:
    """One entry of :data:`TABS`: the tab's view name (:attr:`Controls.view`), title, element id,
    its tab function and, when not every model has it, which do (from their settings)."""

    id: str
    title: str
    elem_id: str
    build: Callable[[Controls], TabView]
    applies: Callable[[dict[str, Any]], bool] | None = None


@dataclass
class Page:
    """A built page by name (``demo.page_parts``): its controls, figure row, tab views and the page steps."""

    controls: Controls
    figure: FigureRow
    tabs: dict[str, TabView]
    analysis: Step
    give_back: Step
    model_change: Step
    make_figure: Step
    #: Every tab's refresh as wired after an analysis (an unreadable upload leaves its widgets alone).
    follow_ups: list[Step] = field(default_factory=list)
    #: Each tab's refresh as wired when it is opened, by tab (on the image the pictures show).
    on_open: dict[str, list[Step]] = field(default_factory=dict)
    #: The API's endpoints by name (``/analyze``, ``/class_scores``, ``/mask``, ``/figure``):
    #: answers to a client, wired to no widget of the page.
    api: dict[str, Step] = field(default_factory=dict)

    def open_tab(self, tab: str) -> Step:
        """What opening ``tab`` does first: remember it and take a made figure away."""
        return Step(lambda: {self.controls.view: tab, **self.figure.cleared()}, [],
                    [self.controls.view, *self.figure.outputs])


# ------------------------------------------------------------------------------ the tabs
def slot_groups_tab(c: Controls) -> TabView:
    """The hard slot groups of every chosen block: what the analysis itself shows."""
    overlays = gr.Gallery(label="Hard slot groups, one image per block", columns=2,
                          height="fit-content", object_fit="contain", elem_id="overlays")
    return TabView(outputs={"overlays": overlays}, analysis_gallery=overlays)


def soft_maps_tab(c: Controls) -> TabView:
    """One block's per-slot dispatch maps, the largest area first (the first
    :data:`~glmix_vis.app.settings.MAX_SOFT_MAPS`, every slot that owns pixels, or all), and a click
    on one says what that slot is."""
    app, files = c.app, c.files
    with gr.Row():
        layer = gr.Dropdown(c.first["block_choices"], value=c.first["blocks"][-1], label="Block",
                            elem_id="block-choice", scale=1)
        which = gr.Radio([(f"the {MAX_SOFT_MAPS} largest", "largest"), ("every slot that owns pixels", "owning"),
                          ("all slots", "all")], value=SOFT_SHOWN[0], label="Slots shown", elem_id="soft-shown",
                         scale=2)
    soft_status = gr.Markdown(elem_id="soft-status")
    gr.HTML(colorbar_html("uniform weight 1/S", f"the slot's peak weight (in its caption; at least "
                          f"{SOFT_MIN_CONTRAST:g}/S)", "soft-legend"))
    soft = gr.Gallery(label="Per-slot dispatch maps", columns=4, height="fit-content",
                      object_fit="contain", elem_id="soft-maps")
    slot_text = gr.Markdown(elem_id="slot-detail")
    shown = [soft_status, soft, slot_text]

    def gallery(text: str, items: list) -> dict[Any, Any]:
        return {soft_status: text, soft: files.gallery(items), slot_text: ""}

    def on_soft(img: Any, label: str, input_size: float, block: int | None, slots: str,
                current: str) -> dict[Any, Any]:
        if current != TAB_SOFT:  # computed when its tab is opened
            return {soft_status: "", soft: [], slot_text: ""}
        return gallery(*app.soft_maps(img, label, input_size, block, warn=False, shown=slots))

    def on_layer(img: Any, label: str, input_size: float, block: int | None, slots: str) -> dict[Any, Any]:
        return gallery(*app.soft_maps(img, label, input_size, block, shown=slots))

    def on_slot(img: Any, label: str, input_size: float, block: int | None, evt: gr.SelectData) -> dict[Any, Any]:
        return {slot_text: app.slot_detail(img, label, input_size, block, evt.index)}

    Step(on_layer, [*c.common, layer, which], shown).on(layer.input, api_name="soft_maps")
    Step(on_layer, [*c.common, layer, which], shown).on(which.input, api_name=False)
    Step(on_slot, [*c.common, layer], [slot_text]).on(soft.select, api_name=False)
    return TabView(outputs={"layer": layer, "which": which, "soft_status": soft_status, "soft": soft,
                            "slot_text": slot_text},
                   refresh=(Step(on_soft, [*c.common, layer, which, c.view], shown),), follows_blocks=layer,
                   figure_option=("block", layer),
                   on_model=ModelUpdate(lambda s: {layer: gr.update(choices=s["block_choices"], value=s["blocks"][-1])},
                                        (layer,)))


def classes_tab(c: Controls) -> TabView:
    """Class scores, the evidence of the classes the model sees, and the pseudo-mask with and
    without the dense CRF (the slow part, computed last)."""
    app, files = c.app, c.files
    colors = class_colors(c.first["class_names"])
    method = gr.Dropdown(c.first["method_choices"], value=c.first["method"], label="Evidence method",
                         elem_id="evidence-method", info=f"each request stops after {c.app.time_budget:g} s")
    class_status = gr.Markdown(elem_id="class-status")
    scores = gr.Label(label="Class scores", num_top_classes=5)
    evidence = gr.Gallery(label="Class evidence of the classes the model sees", columns=3, height="fit-content",
                          object_fit="contain", fit_columns=False, elem_id="evidence")
    gr.HTML(colorbar_html("evidence 0", "1", "evidence-legend"))
    with gr.Row():
        mask = gr.AnnotatedImage(label="Pseudo-mask", color_map=colors)
        mask_crf = gr.AnnotatedImage(label="Pseudo-mask + dense CRF", color_map=colors)

    def on_classes(img: Any, label: str, input_size: float, meth: str, current: str) -> dict[Any, Any]:
        if current != TAB_CLASSES:  # computed when its tab is opened
            return {class_status: "", scores: {}, evidence: [], mask: None, mask_crf: None}
        text, scores_, items, annotated = app.class_view(img, label, input_size, meth, warn=False,
                                                         session=session_of())
        # the heading names the top class only when the model sees one (its evidence is then shown)
        return {class_status: text, scores: gr.update(value=scores_, show_heading=bool(items)),
                evidence: files.gallery(items), mask: annotated,
                mask_crf: None}

    def on_crf(img: Any, label: str, input_size: float, meth: str, current: str) -> dict[Any, Any]:
        if current != TAB_CLASSES:
            return {mask_crf: None}
        return {mask_crf: app.crf_mask(img, label, input_size, meth, session=session_of())}

    def on_model(s: dict[str, Any]) -> dict[Any, Any]:
        cmap = class_colors(s["class_names"])
        return {mask: gr.update(color_map=cmap, value=None), mask_crf: gr.update(color_map=cmap, value=None),
                method: gr.update(choices=s["method_choices"], value=s["method"])}

    views = Step(on_classes, [*c.common, method, c.view], [class_status, scores, evidence, mask, mask_crf])
    crf = Step(on_crf, [*c.common, method, c.view], [mask_crf])
    crf.on(views.on(method.input, api_name=False).then, api_name=False)
    return TabView(outputs={"method": method, "class_status": class_status, "scores": scores, "evidence": evidence,
                            "mask": mask, "mask_crf": mask_crf},
                   refresh=(views, crf), figure_option=("method", method),
                   on_model=ModelUpdate(on_model, (mask, mask_crf, method)))


def atlas_tab(c: Controls) -> TabView:
    """A loaded slot atlas (``glmix-vis atlas``): click a pixel to see its slot in every block, the
    concept of its slot and that concept's typical slots; and the image's per-block slot numbers."""
    from . import atlas_views

    app, files = c.app, c.files
    with gr.Row():
        folder = gr.Textbox(value=os.environ.get("GLMIX_ATLAS", ""), label="Atlas folder (glmix-vis atlas --out)",
                            placeholder="a folder holding atlas.json", scale=4, elem_id="atlas-folder")
        load = gr.Button("Load atlas", scale=1)
    atlas_status = gr.Markdown(elem_id="atlas-status")
    with gr.Row():
        picture = gr.Image(label="Click a pixel", interactive=False, elem_id="atlas-picture")
        with gr.Column():
            detail = gr.Markdown(elem_id="atlas-detail")
            examples = gr.Gallery(label="Typical slots of its concept", columns=3, height="fit-content",
                                  object_fit="contain", elem_id="atlas-examples")
    metrics = gr.Markdown(elem_id="atlas-metrics")
    shown = [atlas_status, picture, metrics, detail, examples]

    def on_atlas(img: Any, label: str, input_size: float, path: str, current: str) -> dict[Any, Any]:
        empty = {atlas_status: "", picture: None, metrics: "", detail: "", examples: []}
        if current != TAB_ATLAS or img is None:  # computed when its tab is opened
            return empty
        try:
            result = app.analysis(img, label, input_size)
            atlas = atlas_views.atlas_or_none(path)
            view = result.shown if atlas is None else atlas_views.concept_picture(result, atlas)
            note = "No atlas loaded: the picture shows the image." if atlas is None else (
                f"Atlas of {atlas.data.get('block_name')}: {len(atlas.data['concepts'])} concepts over "
                f"{atlas.data['images']} images; colours are concepts.")
            return {**empty, atlas_status: note, picture: view, metrics: atlas_views.block_metrics(result)}
        except Exception as exc:  # AppError: a message; anything else: logged, then a message
            return {**empty, atlas_status: app.report(exc)}

    def on_click(img: Any, label: str, input_size: float, path: str, evt: gr.SelectData) -> dict[Any, Any]:
        try:
            result = app.analysis(img, label, input_size)
            text, items = atlas_views.pixel_detail(result, atlas_views.atlas_or_none(path), *map(int, evt.index))
        except Exception as exc:  # AppError: a message; anything else: logged, then a message
            return {detail: app.report(exc), examples: []}
        return {detail: text, examples: files.gallery(items)}

    refresh = Step(on_atlas, [*c.common, folder, c.view], shown)

    def on_load(img: Any, label: str, input_size: float, path: str) -> dict[Any, Any]:
        return on_atlas(img, label, input_size, path, TAB_ATLAS)

    Step(on_load, [*c.common, folder], shown).on(load.click, api_name="atlas")
    Step(on_click, [*c.common, folder], [detail, examples]).on(picture.select, api_name=False)
    return TabView(outputs={"folder": folder, "atlas_status": atlas_status, "picture": picture, "detail": detail,
                            "examples": examples, "metrics": metrics}, refresh=(refresh,))


#: The page's tabs, in order: a new tab is one tab function and one entry here.
TABS: tuple[Tab, ...] = (
    Tab(TAB_SLOTS, "Slot groups", "tab-slots", slot_groups_tab),
    Tab(TAB_SOFT, "Soft maps", "tab-soft", soft_maps_tab),
    Tab(TAB_CLASSES, "Classes and pseudo-mask", "tab-classes", classes_tab, applies=lambda s: s["has_classifier"]),
    Tab(TAB_ATLAS, "Slot atlas", "tab-atlas", atlas_tab),
)


# ------------------------------------------------------------------------------ the page
def build_app(checkpoint: str | os.PathLike[str] | None = None, *, max_side: int = DEFAULT_MAX_SIDE,
              device: str | torch.device = DEFAULT_DEVICE, backend: SlotApp | None = None,
              precision: str | None = None) -> gr.Blocks:
    """The Gradio page on ``checkpoint`` (default: the bundled demo model) plus the checkpoint
    directory: the controls, then every :data:`TABS` entry, then the figure row, wired by name
    (``demo.page_parts``, a :class:`Page`).

    A ``backend`` without a ``notify`` gets ``gr.Warning``: its error messages also pop up.
    """
    app = backend or SlotApp(checkpoint, max_side=max_side, device=device, precision=precision)
    if app.notify is None:
        app.notify = gr.Warning
    first = app.model_settings(app.default_label)

    with gr.Blocks(title="glmix-vis", analytics_enabled=False, delete_cache=(CACHE_CHECK_S, CACHE_MAX_AGE_S)) as demo:
        demo.slot_app = app  # type: ignore[attr-defined]
        gr.Markdown(INTRO)
        view = gr.State(TAB_SLOTS)
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                controls = _controls(app, first, view)
            with gr.Column(scale=3, min_width=400):
                with gr.Tabs():
                    tabs = []
                    for spec in TABS:
                        visible = spec.applies is None or spec.applies(first)
                        with gr.Tab(spec.title, id=spec.id, elem_id=spec.elem_id, visible=visible) as tab:
                            tabs.append((spec, tab, spec.build(controls)))
                figure = _figure_row()
        demo.page_parts = _wire(controls, figure, tabs)  # type: ignore[attr-defined]  (gradio owns demo.page)
    return demo


def _controls(app: SlotApp, first: dict[str, Any], view: gr.State) -> Controls:
    """The column beside the tabs: image, examples, model and what it knows, input size, blocks."""
    image = UploadImage(label="Image", type="filepath", sources=["upload", "clipboard"], height=300,
                        elem_id="input-image")
    # right under the image, where the visitor looks after an upload: its size, or why it was refused
    status = gr.Markdown(elem_id="status")
    files = example_files()
    examples = gr.Examples([[str(p)] for p in files.values()], inputs=[image], example_labels=list(files),
                           label="Examples", examples_per_page=12) if files else None
    model = gr.Dropdown(list(app.checkpoints), value=app.default_label, label="Model",
                        info="the bundled demo model, or a checkpoint found in the checkpoint folder")
    model_note = gr.Markdown(first["notice"], elem_id="model-notice")
    size = gr.Slider(*INPUT_SIZES, step=32, value=first["input_size"], label="Input resolution",
                     info="short side of the image the network sees, in pixels")
    blocks = gr.CheckboxGroup(first["block_choices"], value=first["blocks"], label="GLMix blocks",
                              info=first["blocks_info"], elem_id="block-picker")
    run = gr.Button("Show slot maps", variant="primary")
    # per visitor, bounded with gradio's sessions (launch's max_sessions); each refusal changes the count
    shown, refusals = gr.State(Shown()), gr.State(0)
    return Controls(app, PictureFiles(), first, view, shown, refusals, image, examples, model, model_note, size,
                    blocks, run, status)


def _figure_row() -> FigureRow:
    with gr.Row(equal_height=False):
        fmt = gr.Radio(["PNG", "PDF"], value="PNG", label="Figure format", scale=1)
        make = gr.Button("Make a figure of this view", scale=1)
    status = gr.Markdown(elem_id="figure-status")
    file = gr.File(label="Figure", interactive=False, visible=False, elem_id="figure-file")
    return FigureRow(fmt, make, status, file)


def _wire(c: Controls, figure: FigureRow, tabs: list[tuple[Tab, gr.Tab, TabView]]) -> Page:
    """The page's events: a new analysis (then every tab's refresh), a model change, opening a
    tab, a figure of the open view and the view options that take it away.

    A new image is analysed once: on its upload (a paste from the clipboard is one too), on an
    example and when it is removed, never on ``image.change``, which gradio's image fires twice for
    every upload after the first (nor on the image given back after a refused upload, :func:`_give_back`).
    While it runs, every tab's pictures show progress over what they held; an unreadable upload
    leaves them as they were, and every view shows the last image that could be read
    (:func:`_on_shown_image`)."""
    views = [v for _, _, v in tabs]
    plain = _analysis_step(c, figure, views)
    page = Page(c, figure, {spec.id: v for spec, _, v in tabs}, _keeping_previous(c, plain), _give_back(c),
                _model_step(c, tabs), _figure_step(c, figure, views))
    gallery = next(v.analysis_gallery for v in views if v.analysis_gallery is not None)
    pictures = [c.status, gallery, *dict.fromkeys(w for v in views for s in v.refresh for w in s.outputs)]
    refresh = page.follow_ups = [_on_shown_image(c, s, after_analysis=True) for v in views for s in v.refresh]

    def analyse(event: Any, **options: Any) -> None:
        """A new analysis, progress shown on every tab's pictures at once, then the open tab's views."""
        event = page.analysis.on(event, show_progress_on=pictures, **options)
        for step in refresh:
            event = step.on(event.then, api_name=False)

    page.api = _api_endpoints(c, figure, views, plain)
    triggers = [c.run.click, c.image.upload, c.image.clear, c.size.release, c.blocks.input]
    if c.examples is not None:  # right after gradio has put the example into the image
        triggers.append(c.examples.load_input_event.then)
    for trigger in triggers:
        analyse(trigger, api_name=False)
    page.give_back.on(c.refusals.change, api_name=False, show_progress="hidden")
    analyse(page.model_change.on(c.model.input, api_name=False).then, api_name=False)
    for spec, tab, v in tabs:
        event = page.open_tab(spec.id).on(tab.select, api_name=False, queue=False)
        page.on_open[spec.id] = [_on_shown_image(c, step) for step in v.refresh]
        for step in page.on_open[spec.id]:
            event = step.on(event.then, api_name=False)
        if v.figure_option is not None:  # a figure belongs to the view it was made of
            v.figure_option[1].input(figure.cleared, None, figure.outputs, api_name=False, queue=False)
    page.make_figure.on(figure.make.click, api_name=False)
    _cancel_when_gone(c)
    return page


def _on_shown_image(c: Controls, step: Step, *, after_analysis: bool = False) -> Step:
    """``step`` on the image the pictures show: an upload that could not be read stands for the
    visitor's last readable image (:class:`Shown`; none: the view's empty state), so a tab opened
    after a bad upload shows what the other tabs show. Right after the analysis that refused an
    upload (``after_analysis``) the step changes nothing: its widgets show that image already."""
    if not step.inputs or step.inputs[0] is not c.image:
        return step

    def on_shown(img: Any, *rest: Any) -> Any:
        *values, shown = rest
        if after_analysis and shown.refused:
            return {w: gr.skip() for w in step.outputs}
        return step.fn(shown.image if c.app.unreadable(img) else img, *values)

    return Step(on_shown, [*step.inputs, c.shown], step.outputs)


def session_of() -> str | None:
    """The visitor whose request the calling callback serves (gradio sets it for the callback's
    thread; ``None`` outside a served page, e.g. a test calling a step)."""
    from gradio.context import LocalContext

    request = LocalContext.request.get(None)
    return getattr(request, "session_hash", None)


def _cancel_when_gone(c: Controls) -> None:
    """No request outlives its visitor: a closed or reloaded page stops what the visitor's request
    is still computing (at its next check; see :mod:`glmix_vis.wsss.evidence.budget`). A new image
    does so too: its analysis is a new request of the same visitor (:meth:`SlotApp.budgeted`)."""
    demo = gr.context.Context.root_block
    if demo is not None:
        demo.unload(lambda: c.app.cancel(session_of()))


def _analysis_step(c: Controls, figure: FigureRow, views: list[TabView]) -> Step:
    """The forward pass and the slot overlays (:meth:`SlotApp.slot_overlays`); the block choices
    that follow the chosen blocks keep theirs when still chosen; a made figure goes."""
    gallery = next(v.analysis_gallery for v in views if v.analysis_gallery is not None)
    follow = [v.follows_blocks for v in views if v.follows_blocks is not None]

    def on_analysis(img: Any, label: str, input_size: float, chosen: list[int], *current: int | None) -> dict:
        text, items = c.app.slot_overlays(img, label, input_size, chosen, session=session_of())
        chosen = sorted(chosen or [])
        # each kept choice as a plain value, not gr.update(value=...): gradio stores an updated copy
        # of a component that is also an input under a new id in the visitor's session on every
        # request, so a visitor's state grew by one dropdown per upload (eval/soak_app.py)
        kept = {w: (b if b in chosen else (chosen[-1] if chosen else None)) for w, b in zip(follow, current)}
        return {c.status: text, gallery: c.files.gallery(items), **kept, **figure.cleared()}

    return Step(on_analysis, [*c.common, c.blocks, *follow], [c.status, gallery, *follow, *figure.outputs])


def _keeping_previous(c: Controls, analysis: Step) -> Step:
    """The page's analysis: an upload that cannot be read leaves every picture as it was and says so
    under the image (that they show the last image that could be read, when there is one); the
    image box then gets that image back (:func:`_give_back`). It keeps what the pictures show
    (:class:`Shown`). ``/analyze``, for API clients, answers with an empty gallery instead."""
    follow = analysis.inputs[len(c.common) + 1:]  # the block choices that follow the chosen blocks

    def keep_or_show(img: Any, label: str, input_size: float, chosen: list[int], *rest: Any) -> dict:
        *current, shown, refusals = rest
        out = analysis.fn(img, label, input_size, chosen, *current)
        if not c.app.unreadable(img):
            return {**out, c.shown: Shown(img), c.refusals: gr.skip()}
        kept = {w: gr.skip() for w in analysis.outputs}
        kept.update(zip(follow, current))  # plain values: see on_analysis
        status = out[c.status] if shown.image is None else f"{out[c.status].rstrip('.')}. {messages.KEPT_PREVIOUS}"
        return {**kept, c.status: status, c.shown: Shown(shown.image, refused=True), c.refusals: refusals + 1}

    return Step(keep_or_show, [*analysis.inputs, c.shown, c.refusals], [*analysis.outputs, c.shown, c.refusals])


def _give_back(c: Controls) -> Step:
    """After a refused upload (each one changes :attr:`Controls.refusals`), the image box gets back
    the image the pictures show, or is emptied when there is none (or gradio has deleted its file),
    unless the visitor has put another image there since. It fires the image's ``change``, never
    its ``upload``: no second analysis.

    A separate step, so that only a refusal writes to the image: gradio stores any update of a
    component that is also an input, ``gr.skip()`` included, as one more component in the
    visitor's session (see on_analysis); this one returns plain values only."""

    def give_back(img: Any, shown: Shown) -> dict[Any, str | None]:
        if not c.app.unreadable(img):
            return {c.image: img}  # another image since: as it is
        return {c.image: shown.image if shown.image is not None and os.path.exists(shown.image) else None}

    return Step(give_back, [c.image, c.shown], [c.image])


def _api_endpoints(c: Controls, figure: FigureRow, views: list[TabView], analysis: Step) -> dict[str, Step]:
    """The endpoints API clients call (gradio_client, ``/gradio_api/call/NAME``), wired to no widget
    of the page: ``/analyze`` (status and overlays), ``/class_scores`` (JSON), ``/mask`` (the
    pseudo-mask as an indexed PNG in the VOC palette, with its legend as JSON) and ``/figure`` (the
    view it is told, ``slots``, ``soft`` or ``classes``, with the block and method it is given).
    Their parameters the page has no widget for are hidden widgets; the parameter names are the
    functions' own. Each answer is bounded by the time budget; a client's calls do not cancel
    each other (a visitor's new upload cancels their running request, :meth:`SlotApp.budgeted`)."""
    options = {name: widget for v in views if v.figure_option for name, widget in [v.figure_option]}
    with gr.Column(visible=False):
        view_choice = gr.Radio([TAB_SLOTS, TAB_SOFT, TAB_CLASSES], value=TAB_SLOTS, label="view")
        crf_choice = gr.Checkbox(False, label="crf (the mask refined by a dense CRF)")
        scores_json = gr.JSON(label="class scores")
        mask_png = gr.Image(type="filepath", format="png", label="pseudo-mask (class index per pixel)")
        legend_json = gr.JSON(label="mask legend")

    def class_scores(image: Any, model: str, input_size: float) -> dict[Any, Any]:
        return {scores_json: c.app.class_scores(image, model, input_size)}

    def mask(image: Any, model: str, input_size: float, method: str, crf: bool) -> dict[Any, Any]:
        path, legend = c.app.mask_file(image, model, input_size, method, crf=bool(crf))
        return {mask_png: path, legend_json: legend}

    def view_figure(image: Any, model: str, input_size: float, blocks: list[int], block: int | None, method: str,
                    fmt: str, view: str) -> dict[Any, Any]:
        path, text = c.app.figure(image, model, input_size, blocks, block=block, method=method, view=view, fmt=fmt)
        return {figure.file: path, figure.status: text}

    endpoints = {"analyze": analysis,
                 "class_scores": Step(class_scores, [*c.common], [scores_json]),
                 "mask": Step(mask, [*c.common, options["method"], crf_choice], [mask_png, legend_json]),
                 "figure": Step(view_figure, [*c.common, c.blocks, options["block"], options["method"], figure.fmt,
                                              view_choice], figure.outputs)}
    for name, step in endpoints.items():
        gr.on([], step.fn, step.inputs, step.outputs, api_name=name, show_progress="hidden")
    return endpoints


def _model_step(c: Controls, tabs: list[tuple[Tab, gr.Tab, TabView]]) -> Step:
    """A newly chosen model: its input size, blocks, notice, which tabs apply and each tab's widgets."""
    shown = [(spec, tab) for spec, tab, _ in tabs if spec.applies is not None]
    follow = [v.on_model for _, _, v in tabs if v.on_model is not None]

    def on_model(label: str) -> Any:
        try:
            s = c.app.model_settings(label)
        except Exception as exc:
            c.app.report(exc)
            return gr.skip()
        out = {c.size: gr.update(value=s["input_size"]),
               c.blocks: gr.update(choices=s["block_choices"], value=s["blocks"], info=s["blocks_info"]),
               c.model_note: s["notice"]}
        for spec, tab in shown:
            out[tab] = gr.update(visible=spec.applies(s))
        for update in follow:
            out.update(update.fn(s))
        return out

    outputs = [c.size, c.blocks, *(tab for _, tab in shown), *(w for u in follow for w in u.outputs), c.model_note]
    return Step(on_model, [c.model], outputs)


def _figure_step(c: Controls, figure: FigureRow, views: list[TabView]) -> Step:
    """The open view as a figure file (:meth:`SlotApp.figure`), with the tabs' options by name."""
    options = [v.figure_option for v in views if v.figure_option is not None]

    def on_figure(img: Any, label: str, input_size: float, chosen: list[int], *rest: Any) -> dict:
        *values, current, kind = rest
        named = {name: value for (name, _), value in zip(options, values)}
        path, text = c.app.figure(img, label, input_size, chosen, view=current, fmt=kind, session=session_of(),
                                  **named)
        return {figure.file: gr.update(value=path, visible=path is not None), figure.status: text}

    inputs = [*c.common, c.blocks, *(w for _, w in options), c.view, figure.fmt]
    return Step(on_figure, inputs, figure.outputs)


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
    max_file_size = file_size(max_file_size)  # a bad limit: one line now, not after the model loads
    if port is not None and (problem := address_problem(host, port)):
        raise ServeError(problem)
    limit_heap_fragmentation()
    try:
        demo = build_app(checkpoint, max_side=max_side, device=device, precision=precision)
    except AppError as exc:
        raise ServeError(operator_message(str(exc), checkpoint)) from None
    demo.queue(**queue_options(concurrency))
    bound_session_queues(demo, max_sessions)
    bound_event_records(demo)
    demo.visitor_files = VisitorFileCache(demo).start()
    collect_cycles_promptly()
    try:
        # gradio's own lines would add "To create a public link, set `share=True`", an option no one here
        # can set: it is told to be quiet, and the address is printed here
        demo.launch(**launch_options(host=host, port=port, max_file_size=max_file_size, concurrency=concurrency,
                                     max_sessions=max_sessions, prevent_thread_lock=True, quiet=True),
                    theme=gr.themes.Soft(), css=PAGE_CSS)
    except OSError as exc:  # gradio: "Cannot find empty port ..." (taken since the check above)
        if "empty port" not in str(exc):
            raise
        raise ServeError((address_problem(host, port) if port is not None else None)
                         or f"cannot serve on {host}:{port}; choose another --port or --host") from None
    if not quiet:
        print(f"* {_served_checkpoint(checkpoint)}\n* Running on local URL:  {demo.local_url}", flush=True)
    if not prevent_thread_lock:
        demo.block_thread()  # until Ctrl-C or SIGTERM, as gradio's launch would
    return demo


def _served_checkpoint(checkpoint: str | os.PathLike[str] | None) -> str:
    """The operator's line for the file served first (absolute; another file of the same name passed over)."""
    from ..assets import default_checkpoint
    from ..loading import checkpoint_line
    from ..models.checkpoints import resolve_checkpoint

    return checkpoint_line(str(default_checkpoint() if checkpoint is None else resolve_checkpoint(checkpoint)),
                           checkpoint)
