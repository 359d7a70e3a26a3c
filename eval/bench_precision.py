"""fp32 against bf16 (``--precision``) side by side: backbone speed, and what reduced precision changes.

    python eval/bench_precision.py --out eval/_work/precision.json [--sizes 224,448] [--repeats 9]

Speed: ``glnet_stl`` and ``glnet_4g`` through the tool's own forward pass (``run_slots`` under
:func:`glmix_vis.devices.inference_precision`, slot maps included), the authors' implementation of
both (``--official eval/_official/glnet.py``, a copy of rayleizhu/GLMix ``models/glnet.py``, given our
weights; plain ``forward`` under ``torch.autocast``), and timm's ``convnext_tiny`` and ``swin_tiny``
as outside references, one image per call, each (model, size) timed in fp32 and bf16 alternately,
round after round, so background load hits both alike; medians and their ratio are reported.

Change: the relative L2 change of the logits and of the final features (bf16 vs fp32, same
weights and input: a real photo, skimage's astronaut), and, for the bundled demo model on the
generated val scenes, the share of pixels whose slot-CAM pseudo-mask differs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import timm
import torch
from skimage import data as skdata

import glmix_vis.models  # noqa: F401  (registers the GLNet family in timm)
from glmix_vis.devices import PRECISION_DTYPES, cpu_supports_bf16, inference_precision, resolve_precision
from glmix_vis.models.slots import run_slots
from glmix_vis.preprocess import image_to_batch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_backbone import BASELINES, load_official, official_twin  # noqa: E402

DTYPES = {name: PRECISION_DTYPES[name] for name in ("fp32", "bf16")}


PEERS = {name: BASELINES[name] for name in ("convnext_tiny", "swin_tiny")}


def _models(names: list[str], official: types.ModuleType | None) -> Iterator[tuple[str, torch.nn.Module]]:
    """(name, model) in order; after each GLNet variant, the authors' with the same weights."""
    for name in names:
        torch.manual_seed(0)
        model = timm.create_model(PEERS.get(name, name), num_classes=1000).eval()
        yield name, model
        if official is not None and hasattr(official, name):
            yield f"authors' {name}", official_twin(official, model, name, num_classes=1000)


def _forward(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    with inference_precision(dtype):
        if hasattr(model, "forward_slots"):
            return run_slots(model, x).logits
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            return model(x)


def _time(model: torch.nn.Module, x: torch.Tensor, repeats: int, warmup: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {k: [] for k in DTYPES}
    for _ in range(warmup):
        for dtype in DTYPES.values():
            _forward(model, x, dtype)
    for r in range(repeats):
        order = list(DTYPES.items()) if r % 2 == 0 else list(reversed(DTYPES.items()))
        for name, dtype in order:
            t0 = time.perf_counter()
            _forward(model, x, dtype)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return dict(median_ms={k: v * 1e3 for k, v in med.items()}, speedup=med["fp32"] / med["bf16"],
                per_round_speedup=statistics.median(a / b for a, b in zip(times["fp32"], times["bf16"])))


def _change(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    ref, low = (_forward(model, x, d).float() for d in DTYPES.values())
    change: dict[str, Any] = dict(logits_rel_l2=float((low - ref).norm() / ref.norm()),
                                  top1_same=bool(ref.argmax(-1).eq(low.argmax(-1)).all()))
    if hasattr(model, "forward_slots"):  # the slot maps the tool shows: share of grid cells keeping their slot
        outs = [_slots(model, x, dtype) for dtype in DTYPES.values()]
        change["hard_slot_agreement"] = [float((a.hard == b.hard).float().mean())
                                         for a, b in zip(outs[0].maps, outs[1].maps)]
    return change


def _bundled_agreement(scenes: int) -> dict[str, list[float]]:
    """The bundled model's hard-slot agreement per block, bf16 against fp32, averaged over images."""
    from glmix_vis.data import open_dataset
    from glmix_vis.data.scenes import root_or_default
    from glmix_vis.loading import load_model

    model, info = load_model(None, device="cpu")
    dataset = open_dataset("voc", root_or_default(None), "val")
    sets = {f"{scenes} val scenes": [dataset.load_image(i) for i in range(min(scenes, len(dataset)))],
            "4 photos (astronaut, chelsea, coffee, rocket)": [skdata.astronaut(), skdata.chelsea(),
                                                             skdata.coffee(), skdata.rocket()]}
    out = {}
    for name, images in sets.items():
        total = None
        for image in images:
            x = image_to_batch(image, info.mean, info.std)
            a, b = (_slots(model, x, dtype) for dtype in DTYPES.values())
            agree = [float((p.hard == q.hard).float().mean()) for p, q in zip(a.maps, b.maps)]
            total = agree if total is None else [t + v for t, v in zip(total, agree)]
        out[name] = [t / len(images) for t in total]
    return out


def _slots(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype):
    with inference_precision(dtype):
        return run_slots(model, x)


def _mask_change(limit: int) -> dict[str, Any]:
    from glmix_vis.data import open_dataset
    from glmix_vis.data.scenes import DEFAULT_SCENES_DIR, ensure_scenes
    from glmix_vis.predictor import SlotPredictor

    root = str(ensure_scenes(DEFAULT_SCENES_DIR).parents[1])
    dataset = open_dataset("voc", root, "val")
    preds = {k: SlotPredictor.from_checkpoint(None, device="cpu", precision=k) for k in DTYPES}
    differ = total = 0
    for i in range(min(limit, len(dataset))):
        image, labels = dataset.load_image(i), dataset.image_labels(i)
        masks = []
        for pred in preds.values():
            pred.set_image(image, input_size=min(image.shape[:2]))
            masks.append(pred.pseudo_mask("slot-cam", labels))
        differ += int((masks[0] != masks[1]).sum())
        total += masks[0].size
    return dict(images=min(limit, len(dataset)), pixels_differing=differ / total)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="glnet_stl,glnet_4g,convnext_tiny,swin_tiny")
    ap.add_argument("--official", type=Path, help="the authors' glnet.py: also time their glnet_stl and glnet_4g")
    ap.add_argument("--sizes", default="224,448")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mask-images", type=int, default=100)
    ap.add_argument("--agreement-images", type=int, default=30,
                    help="the bundled model's hard-slot agreement over this many val scenes (and 4 photos)")
    ap.add_argument("--out", type=Path, default=Path("eval/_work/precision.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    photo = skdata.astronaut()
    result: dict[str, Any] = dict(cpu=platform.processor() or platform.machine(), threads=args.threads,
                                  cpu_bf16=cpu_supports_bf16(), auto=str(resolve_precision("auto", "cpu")),
                                  torch=torch.__version__, models={})
    official = load_official(args.official) if args.official else None
    for name, model in _models(args.models.split(","), official):
        for size in (int(s) for s in args.sizes.split(",")):
            if name == "swin_tiny" and size != 224:
                model = timm.create_model(PEERS[name], num_classes=1000, img_size=size).eval()
            x = image_to_batch(photo, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), short_side=size)
            row = dict(**_time(model, x, args.repeats, args.warmup), **_change(model, x))
            result["models"][f"{name}@{size}"] = row
            print(f"{name}@{size}: fp32 {row['median_ms']['fp32']:.1f} ms, bf16 {row['median_ms']['bf16']:.1f} ms, "
                  f"x{row['speedup']:.2f} (per round x{row['per_round_speedup']:.2f}), "
                  f"logits rel. change {row['logits_rel_l2']:.4f}", flush=True)
            if "hard_slot_agreement" in row:
                print(f"  hard-slot agreement per GLMix block: "
                      f"{', '.join(f'{a:.3f}' for a in row['hard_slot_agreement'])}", flush=True)
    if args.agreement_images:
        result["bundled_agreement"] = _bundled_agreement(args.agreement_images)
        for name, agree in result["bundled_agreement"].items():
            print(f"bundled model, {name}: hard-slot agreement per GLMix block "
                  f"{', '.join(f'{a:.3f}' for a in agree)}", flush=True)
    if args.mask_images:
        result["demo_masks"] = _mask_change(args.mask_images)
        print(f"demo slot-CAM masks: {result['demo_masks']['pixels_differing']:.4%} of pixels differ "
              f"over {result['demo_masks']['images']} val images")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
