"""Dense-CRF refinement: it snaps a blurred, shifted mask to the image's colour edge."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import numpy as np
import pytest

from glmix_vis.wsss.crf import CRFParams, crf_labels, crf_refine, crf_refine_batch, crf_stream
from glmix_vis.wsss.masks import scores_to_mask, unary_probabilities
from glmix_vis.wsss.metrics import confusion_matrix, iou_from_confusion

pytest.importorskip("pydensecrf.densecrf")

H, W, EDGE, SHIFT = 64, 80, 40, 9


def _two_regions(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A red object on the left (class 1), blue background on the right, with a soft evidence ramp
    centred SHIFT pixels right of the true edge (what an upsampled coarse CAM looks like)."""
    rng = np.random.default_rng(seed)
    image = np.empty((H, W, 3), np.float64)
    image[:, :EDGE] = (200, 40, 30)
    image[:, EDGE:] = (40, 60, 190)
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    gt = np.zeros((H, W), np.int64)
    gt[:, :EDGE] = 1
    x = np.arange(W, dtype=np.float32)
    ramp = 1 / (1 + np.exp((x - (EDGE + SHIFT)) / 4.0))
    scores = np.broadcast_to(ramp, (H, W))[None].astype(np.float32).copy()
    return image, scores, gt


def _iou(pred: np.ndarray, gt: np.ndarray) -> float:
    return float(iou_from_confusion(confusion_matrix(pred, gt, 2))[1])


def test_crf_improves_a_blurred_shifted_mask() -> None:
    image, scores, gt = _two_regions()
    before = scores_to_mask(scores, 0.5)
    probs = unary_probabilities(scores, np.array([1]), bg_threshold=0.5)
    after = crf_labels(image, probs)
    assert after.shape == (H, W) and after.dtype == np.int64
    iou_before, iou_after = _iou(before, gt), _iou(after, gt)
    assert iou_before < 0.85
    assert iou_after > iou_before + 0.1
    assert iou_after > 0.95
    # IRN's parameters refine it too
    assert _iou(crf_labels(image, probs, CRFParams.irn()), gt) > iou_before


def test_crf_posteriors_and_absent_classes() -> None:
    image, scores, _ = _two_regions()
    three = np.concatenate([scores, np.zeros_like(scores)])  # a second class absent from the image
    probs = unary_probabilities(three, np.array([1, 0]), bg_threshold=0.5)
    q = crf_refine(image, probs)
    assert q.shape == (3, H, W) and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(0), 1.0, atol=1e-4)
    assert np.all(q[2] == 0)  # left out of the CRF, stays zero
    # only one active label: nothing to decide
    only_bg = unary_probabilities(scores, np.array([0]), bg_threshold=0.5)
    np.testing.assert_array_equal(crf_refine(image, only_bg), np.stack([np.ones((H, W)), np.zeros((H, W))]))


def test_crf_params_defaults() -> None:
    p = CRFParams()
    assert (p.iterations, p.gaussian_sxy, p.gaussian_compat) == (10, 3.0, 3.0)
    assert (p.bilateral_sxy, p.bilateral_srgb, p.bilateral_compat) == (80.0, 13.0, 10.0)
    assert CRFParams.psa() == p
    irn = CRFParams.irn()
    assert (irn.bilateral_sxy, irn.bilateral_srgb, irn.bilateral_compat) == (50.0, 5.0, 10.0)


def test_crf_image_checks() -> None:
    image, scores, gt = _two_regions()
    probs = unary_probabilities(scores, np.array([1]), bg_threshold=0.5)
    with pytest.raises(ValueError, match="uint8"):
        crf_refine(image.astype(np.float32), probs)
    with pytest.raises(ValueError, match="does not match"):
        crf_refine(image[:32], probs)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        crf_refine(image, probs[0])
    # a non-contiguous view is accepted (copied to C order)
    mirrored = crf_labels(image[:, ::-1], probs[:, :, ::-1])
    assert _iou(mirrored[:, ::-1], gt) > 0.95


def test_crf_batch_in_a_process_pool() -> None:
    cases = [_two_regions(seed) for seed in range(3)]
    images = [c[0] for c in cases]
    probs = [unary_probabilities(c[1], np.array([1]), bg_threshold=0.5) for c in cases]
    serial = crf_refine_batch(images, probs, max_workers=1)
    assert len(serial) == 3 and all(m.shape == (H, W) for m in serial)
    pooled = crf_refine_batch(images, probs, max_workers=2)
    for a, b in zip(serial, pooled):
        np.testing.assert_array_equal(a, b)
    with ProcessPoolExecutor(max_workers=2) as pool:
        post = crf_refine_batch(images, probs, CRFParams(iterations=5), output="probs", executor=pool)
    assert all(q.shape == (2, H, W) and q.dtype == np.float32 for q in post)
    with pytest.raises(ValueError):
        crf_refine_batch(images, probs[:2])
    with pytest.raises(ValueError, match="output"):
        crf_refine_batch(images, probs, output="mask")


def _record(folder: str, key: int, labels: np.ndarray) -> None:
    """A sink: runs where the CRF ran (a worker process for a pool)."""
    np.save(f"{folder}/{key}.npy", labels)


@pytest.mark.parametrize("workers", [0, 1, 2])  # 0: here; 1 and more: a pool
def test_crf_stream_yields_in_job_order_and_sinks_where_it_ran(workers, tmp_path) -> None:
    cases = [_two_regions(seed) for seed in range(5)]
    jobs = [(k, c[0], unary_probabilities(c[1], np.array([1]), bg_threshold=0.5)) for k, c in enumerate(cases)]
    produced: list[int] = []

    def lazily():
        for job in jobs:
            produced.append(job[0])
            yield job

    got = list(crf_stream(lazily(), CRFParams(iterations=3), workers=workers))
    assert [k for k, _, _ in got] == list(range(5)) == produced
    for (_, image, probs), (_, labels, seconds) in zip(jobs, got):
        np.testing.assert_array_equal(labels, crf_labels(image, probs, CRFParams(iterations=3)))
        assert seconds > 0
    # a sink takes the labels where the CRF ran; nothing is sent back
    sunk = list(crf_stream(iter(jobs), workers=workers, sink=partial(_record, str(tmp_path))))
    assert [labels for _, labels, _ in sunk] == [None] * 5
    for k, (_, image, probs) in enumerate(jobs):
        np.testing.assert_array_equal(np.load(tmp_path / f"{k}.npy"), crf_labels(image, probs))


def test_crf_stream_stops_its_pool_when_the_producer_fails() -> None:
    image, scores, _ = _two_regions()
    probs = unary_probabilities(scores, np.array([1]), bg_threshold=0.5)

    def failing():
        yield 0, image, probs
        raise KeyboardInterrupt  # what Ctrl-C does while the network computes the next job

    before = set(multiprocessing.active_children())
    stream = crf_stream(failing(), workers=2)
    with pytest.raises(KeyboardInterrupt):
        list(stream)
    with pytest.raises(StopIteration):
        next(stream)  # finished: its finally shut the pool down
    assert set(multiprocessing.active_children()) <= before  # and its workers are gone
