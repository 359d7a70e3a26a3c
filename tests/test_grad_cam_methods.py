"""pytorch-grad-cam's methods as evidence methods: shapes and range at odd sizes and batch > 1, the
model left as it was (hooks, grads, requires_grad, train/eval modes, BN statistics), targets of
class_map groups, target-layer choice, agreement with pytorch-grad-cam itself, and the helper."""

import threading

import numpy as np
import pytest
import torch

import glmix_vis.models  # noqa: F401  (registers the GLNet family in timm)
from glmix_vis.data.labels import LabelSpace
from glmix_vis.models.slots import run_slots
from glmix_vis.predictor import SlotPredictor
from glmix_vis.wsss.evidence import GRAD_CAM_METHODS, get_evidence_method, target_layer_candidates
from glmix_vis.wsss.evidence.grad_cam import _recorder_class, default_target_layers
from glmix_vis.wsss.pipeline import ImageInput, class_evidence, pseudo_mask
from glmix_vis.wsss.recipe import MaskRecipe

SIZE = (97, 131)


@pytest.fixture(scope="module")
def nano():
    torch.manual_seed(0)
    return glmix_vis.create_model("glnet_nano", num_classes=2).eval()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.randn(2, 3, *SIZE)


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def _options(name):
    # Score-CAM runs the model once per channel: a 32-channel layer keeps the test cheap
    return {"target_layers": "stages.0", "batch_size": 32} if name == "scorecam" else {}


@pytest.mark.parametrize("name", list(GRAD_CAM_METHODS))
def test_each_method_gives_maps_and_leaves_the_model_as_it_was(name, nano, images):
    nano.train()
    nano.stages[1].eval()  # mixed modes must come back module by module
    modes = [m.training for m in nano.modules()]
    flags = [p.requires_grad for p in nano.parameters()]
    state = {k: v.clone() for k, v in nano.state_dict().items()}
    hooks = _hooks(nano)
    method = get_evidence_method(name, **_options(name))
    try:
        with torch.no_grad():  # as the pipeline calls it
            maps = method(nano, images, classes=[0, 1] if name != "scorecam" else [1])
    finally:
        modes_after = [m.training for m in nano.modules()]
        nano.eval()
    k = 2 if name != "scorecam" else 1
    assert maps.shape == (2, k, *SIZE) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    assert maps.flatten(2).amax(-1).gt(0.5).all()  # each map normalised to its own peak
    assert _hooks(nano) == hooks
    assert all(p.grad is None for p in nano.parameters())
    assert [p.requires_grad for p in nano.parameters()] == flags
    assert modes_after == modes
    assert all(torch.equal(v, state[k]) for k, v in nano.state_dict().items())  # no BN statistics moved


def test_unnormalised_maps_and_size(nano, images):
    method = get_evidence_method("gradcam", target_layers="norm")  # one layer: no per-layer scaling
    raw = method.compute(nano, images, classes=[1], size=(40, 50))
    assert raw.shape == (2, 1, 40, 50) and raw.min() >= 0
    assert not torch.allclose(raw.flatten(2).amax(-1), torch.ones(2, 1))  # not max-normalised


@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "layercam"])
def test_maps_agree_with_pytorch_grad_cam_itself(name, nano):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(3))
    ours = get_evidence_method(name, target_layers="norm")(nano, x, classes=[1])[:, 0].numpy()
    cls = getattr(pytorch_grad_cam, GRAD_CAM_METHODS[name])
    with cls(nano, target_layers=[nano.norm]) as cam:
        theirs = cam(x, targets=[ClassifierOutputTarget(1)] * 2)
    ours = (ours - ours.min((1, 2), keepdims=True)) / (np.ptp(ours, (1, 2), keepdims=True) + 1e-7)
    # they scale before a cv2 resize, we after a bilinear one (same sampling grid)
    assert np.abs(ours - theirs).mean() < 0.01 and np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.999


def test_class_map_groups_take_the_max_or_logsumexp_of_their_logits(images):
    torch.manual_seed(4)
    model = glmix_vis.create_model("glnet_nano", num_classes=4).eval()
    groups = [[0, 2], [1, 3]]
    grouped = get_evidence_method("gradcam", class_map=groups).compute(model, images)
    single = get_evidence_method("gradcam").compute(model, images)
    with torch.no_grad():
        logits = model(images)
    for t, g in enumerate(groups):
        for b in range(2):
            best = g[int(logits[b, g].argmax())]  # max: the gradient flows to the group's best class
            assert torch.allclose(grouped[b, t], single[b, best], atol=1e-6)
    lse = get_evidence_method("gradcam", class_map=groups, class_reduce="logsumexp").compute(model, images)
    assert lse.shape == grouped.shape and not torch.allclose(lse, grouped)
    with pytest.raises(ValueError, match="out of range"):
        get_evidence_method("gradcam", class_map=groups)(model, images, classes=[2])


def test_target_layers_override_and_a_bad_name(nano, images):
    assert default_target_layers(nano, "gradcam") == ["stages.2", "norm"]  # measured, see eval/RESULTS.md
    assert default_target_layers(nano, "layercam") == ["stages.2", "stages.3"]
    default = get_evidence_method("gradcam").compute(nano, images)
    both = get_evidence_method("gradcam", target_layers=["stages.2", "norm"]).compute(nano, images)
    other = get_evidence_method("gradcam", target_layers="stages.3").compute(nano, images)
    assert torch.equal(default, both) and other.shape == default.shape and not torch.allclose(other, default)
    # several layers: each scaled to a peak of 1, then averaged, as pytorch-grad-cam aggregates them
    parts = [get_evidence_method("gradcam", target_layers=n).compute(nano, images) for n in ("stages.2", "norm")]
    expected = sum(p / (p.flatten(2).amax(-1)[..., None, None] + 1e-7) for p in parts) / 2
    assert torch.allclose(both, expected, atol=1e-5)
    with pytest.raises(ValueError, match=r"'stages\.9'.*norm") as err:
        get_evidence_method("gradcam", target_layers="norm,stages.9")(nano, images)
    assert "stages.3" in str(err.value) and _hooks(nano) == 0


def test_any_variant_frozen_too_and_token_blocks_are_no_candidates():
    model = glmix_vis.create_model("glnet_stl", num_classes=3).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    names = target_layer_candidates(model)
    assert names[-2:] == ["stages.3", "norm"] and "stages.3.blocks.0" not in names  # an MHSABlock: (B, N, C)
    maps = get_evidence_method("gradcam")(model, torch.randn(1, 3, 65, 99), classes=[2])
    assert maps.shape == (1, 1, 65, 99) and maps.max() > 0.5
    assert not any(p.requires_grad for p in model.parameters()) and _hooks(model) == 0


def test_a_slot_output_is_refused_but_the_pipeline_passes_the_images(nano, images):
    method = get_evidence_method("gradcam")
    with pytest.raises(TypeError, match="image batch"):
        method(nano, run_slots(nano, images))
    x = images[:1]
    with torch.no_grad():
        via_pipeline = class_evidence(method, nano, x, SIZE, slots=run_slots(nano, x))
    assert np.allclose(via_pipeline, method(nano, x)[0].numpy())


def test_scorecam_batch_size_is_an_option(nano, images):
    with pytest.raises(ValueError, match="batch_size"):
        get_evidence_method("scorecam", batch_size=0)
    x = images[:1, :, :41, :53]
    a = get_evidence_method("scorecam", target_layers="stages.0", batch_size=7)(nano, x, classes=[0])
    b = get_evidence_method("scorecam", target_layers="stages.0", batch_size=32)(nano, x, classes=[0])
    assert torch.allclose(a, b, atol=1e-5)


def test_the_recorder_ignores_other_threads(nano, images):
    recorder = _recorder_class()(nano, [nano.norm])
    try:
        worker = threading.Thread(target=lambda: nano(images))
        worker.start()
        worker.join()
        assert recorder.activations == []
        recorder(images)
        assert len(recorder.activations) == 1
    finally:
        recorder.release()
    assert _hooks(nano) == 0


def test_the_helper_serves_pytorch_grad_cam_directly(nano, images):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layers, reshape = glmix_vis.gradcam_targets(nano)
    assert reshape is None and all(isinstance(m, torch.nn.Module) for m in layers)
    with GradCAM(model=nano, target_layers=layers, reshape_transform=reshape) as cam:
        heat = cam(input_tensor=images, targets=[ClassifierOutputTarget(0)] * 2)
    assert heat.shape == (2, *SIZE) and heat.max() > 0.9
    assert _hooks(nano) == 0
    stl_layers, _ = glmix_vis.gradcam_targets(glmix_vis.create_model("glnet_stl", num_classes=2))
    assert len(stl_layers) == len(layers)


def test_the_predictor_serves_the_new_methods():
    model = glmix_vis.create_model("glnet_nano", num_classes=3).eval()
    info = glmix_vis.ModelInfo(name="glnet_nano", labels=LabelSpace(("background", "a", "b", "c")), input_size=64)
    pred = SlotPredictor(model, info)
    pred.set_image(np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8))
    ev = pred.evidence("layercam")
    assert ev.shape == (3, 70, 90) and 0 <= ev.min() and ev.max() <= 1
    mask = pred.pseudo_mask("gradcam++", labels=np.array([1, 0, 1], np.float32))
    assert mask.shape == (70, 90) and set(np.unique(mask)) <= {0, 1, 3}


def test_the_pipeline_computes_only_the_image_classes_and_gets_the_same_mask(nano, images):

    class Head:
        multilabel = True

        def class_scores(self, logits):
            return torch.sigmoid(logits).numpy()

    method = get_evidence_method("gradcam")
    x = images[:1]
    labels = np.array([0.0, 1.0], np.float32)
    rgb = np.zeros((*SIZE, 3), np.uint8)  # the size the masks are drawn at
    result = pseudo_mask(nano, Head(), ImageInput(rgb, x), MaskRecipe("gradcam", bg_threshold=0.3), labels)
    full = method(nano, x)[0].numpy()  # every class
    assert np.allclose(result.scores[1], full[1], atol=1e-6)
    assert not result.scores[0].any()  # a class outside the labels is never computed
    from glmix_vis.wsss.masks import scores_to_mask

    assert np.array_equal(result.mask, scores_to_mask(full, 0.3, labels))
