"""Dense CRF refinement of pseudo-masks (Krähenbühl & Koltun, NeurIPS 2011) through pydensecrf.

The energy is the standard one of the WSSS literature: a unary ``-log p`` from per-pixel class
probabilities (``pydensecrf.utils.unary_from_softmax``), a Gaussian (smoothness) kernel on
positions and a bilateral (appearance) kernel on positions and RGB colours, ``n`` mean-field
iterations. :class:`CRFParams` defaults to PSA's settings (Ahn & Kwak, "Learning Pixel-level
Semantic Affinity with Image-level Supervision", CVPR 2018, ``tool/imutils.crf_inference``):
Gaussian ``sxy=3, compat=3``; bilateral ``sxy=80, srgb=13, compat=10``; 10 iterations.
:meth:`CRFParams.irn` gives IRN's (Ahn, Cho & Kwak, CVPR 2019, ``misc/imutils``):
bilateral ``sxy=50, srgb=5``.

Every function here is a pure function of numpy arrays (the pydensecrf objects are built and
dropped inside), so it is safe to run in worker processes. CRF parallelism lives here and only
here: :func:`crf_pool` makes a process pool whose workers never outlive their parent;
:func:`crf_refine_batch` refines a list of images in one, and :func:`crf_stream` a stream of them
while the caller computes the next (the eval loop's network beside its CRF).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from ..workers import init_worker

__all__ = ["CRFParams", "crf_pool", "crf_refine", "crf_labels", "crf_refine_batch", "crf_stream"]

Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True)
class CRFParams:
    """Dense-CRF parameters (defaults: PSA, CVPR 2018).

    Attributes:
        iterations: mean-field iterations (10).
        gaussian_sxy, gaussian_compat: position kernel width (px) and weight (3, 3).
        bilateral_sxy, bilateral_srgb, bilateral_compat: appearance kernel position width (px),
            colour width (intensity levels) and weight (80, 13, 10).
        scale_factor: PSA's divisor of both position widths, for images processed at a scale.
        clip: the probability floor of ``unary_from_softmax`` (the unary is at most ``-log clip``).
    """

    iterations: int = 10
    gaussian_sxy: float = 3.0
    gaussian_compat: float = 3.0
    bilateral_sxy: float = 80.0
    bilateral_srgb: float = 13.0
    bilateral_compat: float = 10.0
    scale_factor: float = 1.0
    clip: float = 1e-5

    def __post_init__(self) -> None:
        if isinstance(self.iterations, bool) or int(self.iterations) != self.iterations or self.iterations < 1:
            raise ValueError(f"CRF iterations must be a whole number >= 1, got {self.iterations!r}")
        for name in ("gaussian_sxy", "bilateral_sxy", "bilateral_srgb", "scale_factor"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"CRF {name} must be a finite number > 0, got {value!r}")
        for name in ("gaussian_compat", "bilateral_compat"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"CRF {name} must be a finite number >= 0, got {value!r}")
        if not 0.0 < self.clip < 1.0:
            raise ValueError(f"CRF clip must be in (0, 1), got {self.clip!r}")

    @classmethod
    def psa(cls) -> CRFParams:
        """PSA (Ahn & Kwak, CVPR 2018): the defaults."""
        return cls()

    @classmethod
    def irn(cls) -> CRFParams:
        """IRN (Ahn, Cho & Kwak, CVPR 2019): bilateral ``sxy=50, srgb=5, compat=10``."""
        return cls(bilateral_sxy=50.0, bilateral_srgb=5.0)


def _check_image(image: np.ndarray, h: int, w: int) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"the CRF image must be uint8 (H, W, 3), got {img.dtype} {img.shape}")
    if img.shape[:2] != (h, w):
        raise ValueError(f"image size {img.shape[:2]} does not match the probabilities' {(h, w)}")
    if img.flags.c_contiguous and img.flags.writeable:
        return img
    return np.array(img, order="C", copy=True)  # pydensecrf needs a writable C buffer


def crf_refine(image: np.ndarray, probs: np.ndarray, params: CRFParams | None = None) -> np.ndarray:
    """Refine ``(C, H, W)`` probabilities over an ``(H, W, 3)`` uint8 RGB image.

    Returns ``(C, H, W)`` float32 posteriors. Planes that are zero everywhere (classes not in
    the image, as :func:`glmix_vis.wsss.masks.unary_probabilities` leaves them) are kept out of
    the CRF, as PSA and IRN only include the image's classes, and stay zero.
    """
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    params = params or CRFParams()
    p = np.asarray(probs, dtype=np.float32)
    if p.ndim != 3:
        raise ValueError(f"probabilities must be (C, H, W), got shape {p.shape}")
    c, h, w = p.shape
    img = _check_image(image, h, w)
    active = np.flatnonzero(p.reshape(c, -1).max(axis=1) > 0)
    out = np.zeros((c, h, w), np.float32)
    if active.size <= 1:  # one label (or none): nothing to decide
        out[active] = 1.0
        return out
    sub = p[active]
    sub = sub / np.maximum(sub.sum(axis=0, keepdims=True), 1e-12)
    crf = dcrf.DenseCRF2D(w, h, int(active.size))
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(sub, clip=params.clip)))
    crf.addPairwiseGaussian(sxy=params.gaussian_sxy / params.scale_factor, compat=params.gaussian_compat)
    crf.addPairwiseBilateral(sxy=params.bilateral_sxy / params.scale_factor, srgb=params.bilateral_srgb,
                             rgbim=img, compat=params.bilateral_compat)
    q = np.asarray(crf.inference(params.iterations), dtype=np.float32)
    out[active] = q.reshape(active.size, h, w)
    return out


def crf_labels(image: np.ndarray, probs: np.ndarray, params: CRFParams | None = None) -> np.ndarray:
    """``(H, W)`` int64 label map: the argmax of :func:`crf_refine`'s posteriors."""
    return crf_refine(image, probs, params).argmax(axis=0).astype(np.int64)


def crf_pool(max_workers: int | None = None) -> ProcessPoolExecutor:
    """A process pool for CRF jobs whose workers end with their parent, even if it is killed.

    Workers start in the thread that submits and, on Linux, die with that thread
    (:func:`glmix_vis.workers.init_worker`): submit from one that outlives the pool, as the main thread
    does. They ignore Ctrl-C: shut it down with ``shutdown(cancel_futures=True)`` in a ``finally``, which lets
    the running jobs finish and drops the queued ones.
    """
    return ProcessPoolExecutor(max_workers=max_workers, initializer=init_worker)


def _refine_one(args: tuple[np.ndarray, np.ndarray, CRFParams | None, str]) -> np.ndarray:
    image, probs, params, output = args
    refined = crf_refine(image, probs, params)
    return refined if output == "probs" else refined.argmax(axis=0).astype(np.int64)


def crf_refine_batch(images: Sequence[np.ndarray], probs: Sequence[np.ndarray], params: CRFParams | None = None,
                     output: str = "labels", max_workers: int | None = None,
                     executor: Executor | None = None) -> list[np.ndarray]:
    """Refine many images, in parallel processes.

    Args:
        images, probs: matching ``(H, W, 3)`` uint8 images and ``(C, H, W)`` probabilities.
        output: ``"labels"`` (int64 label maps) or ``"probs"`` (float32 posteriors).
        max_workers: size of a process pool created for this call; ``0``/``1`` runs in this
            process. Ignored when ``executor`` is given.
        executor: an existing ``concurrent.futures`` executor to reuse across batches.
    """
    if output not in ("labels", "probs"):
        raise ValueError(f"output must be 'labels' or 'probs', got {output!r}")
    if len(images) != len(probs):
        raise ValueError(f"{len(images)} images but {len(probs)} probability maps")
    jobs = [(img, p, params, output) for img, p in zip(images, probs)]
    if executor is not None:
        return list(executor.map(_refine_one, jobs))
    if (max_workers is not None and max_workers <= 1) or len(jobs) <= 1:
        return [_refine_one(j) for j in jobs]
    pool = crf_pool(max_workers)
    try:
        return list(pool.map(_refine_one, jobs))
    finally:
        pool.shutdown(cancel_futures=True)  # on Ctrl-C: finish the running jobs, drop the queued ones


def _stream_job(key: Key, image: np.ndarray, probs: np.ndarray, params: CRFParams | None,
                sink: Callable[[Key, np.ndarray], None] | None) -> tuple[np.ndarray | None, float]:
    """One streamed job (in a worker, or here): labels (or ``None`` once ``sink`` took them), seconds."""
    started = time.perf_counter()
    labels: np.ndarray | None = crf_labels(image, probs, params)
    if sink is not None:
        sink(key, labels)
        labels = None
    return labels, time.perf_counter() - started


def crf_stream(jobs: Iterable[tuple[Key, np.ndarray, np.ndarray]], params: CRFParams | None = None, *,
               workers: int = 1, sink: Callable[[Key, np.ndarray], None] | None = None,
               ) -> Iterator[tuple[Key, np.ndarray | None, float]]:
    """Refine ``(key, image, probs)`` jobs as they come; yield ``(key, labels, seconds)`` in job order.

    ``jobs`` is consumed lazily, so the caller's work that produces the next job (the network)
    runs while the pool refines the previous ones. ``workers`` 0 refines each job here as it
    arrives; otherwise a :func:`crf_pool` of that many processes does (one is enough to overlap
    the CRF with the network), with at most ``2 * workers`` jobs queued (which bounds the memory
    their images hold). ``sink(key, labels)`` runs where the CRF ran, e.g. to
    write the mask from the worker, and then ``labels`` is ``None`` (nothing is sent back).
    The pool shuts down (running jobs finish, queued ones are dropped) when the stream ends,
    fails or is closed; close it in a ``finally`` (``contextlib.closing``) when the consumer may fail.
    """
    if workers <= 0:
        for key, image, probs in jobs:
            yield (key, *_stream_job(key, image, probs, params, sink))
        return
    pool = crf_pool(workers)
    pending: deque[tuple[Key, Future]] = deque()
    try:
        for key, image, probs in jobs:
            pending.append((key, pool.submit(_stream_job, key, image, probs, params, sink)))
            if len(pending) >= 2 * workers:
                done, job = pending.popleft()
                yield (done, *job.result())
        while pending:
            done, job = pending.popleft()
            yield (done, *job.result())
    finally:
        pool.shutdown(cancel_futures=True)  # on Ctrl-C: finish the running jobs, drop the queued ones
