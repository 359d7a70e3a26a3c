"""Reading GLNet checkpoint files safely: official ``.pth`` training checkpoints, plain state
dicts and our ``.safetensors``; finding them on disk; telling which variant a state dict is.

Safety: ``.pth`` files are read with ``torch.load(weights_only=True)`` only. The configuration
objects that training scripts pickle (omegaconf ``DictConfig``, ``argparse.Namespace``, paths,
numpy scalars) are loaded as inert stand-ins (:mod:`._standins`), so neither omegaconf nor hydra
is needed and no code from the file runs. Any other global is refused before unpickling starts,
with an error naming it.

Memory: zip-format ``.pth`` files are memory-mapped (``mmap=True``) and safetensors are mapped by
the safetensors library, so only the weights that are used are ever read, and loading into a
model created on the meta device assigns the mapped tensors instead of copying them.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.torch_version import TorchVersion

from ..io import atomic_path
from ._standins import SAFE_GLOBALS, STANDIN_NAMES, resolve_interpolations, to_plain

__all__ = [
    "CheckpointError", "Checkpoint", "LoadReport", "Detection", "read_checkpoint", "read_checkpoint_meta",
    "load_checkpoint", "find_checkpoint", "checkpoint_candidates", "looks_like_path", "resolve_checkpoint", "checkpoint_dirs", "save_safetensors",
    "compare_signature", "shape_of", "strip_prefixes", "load_state_dict_into", "load_pretrained_weights", "head_size",
    "locate_pretrained", "EMA_PREFERRED", "HEAD_KEYS", "CHECKPOINT_SUFFIXES", "first_non_finite", "check_finite",
]

#: Variants whose EMA weights the authors recommend (README: "use model_ema for glnet_16g").
EMA_PREFERRED = frozenset({"glnet_16g"})
#: The files a checkpoint name stands for, in lookup order (``glnet_4g`` -> ``glnet_4g.safetensors``,
#: then ``glnet_4g.pth``, the official release): what is found by name and offered by the app.
CHECKPOINT_SUFFIXES = (".safetensors", ".pth")
#: A checkpoint argument ending in one of these is a file path, never a name (other tools' suffixes too).
_PATH_SUFFIXES = (*CHECKPOINT_SUFFIXES, ".pt", ".bin", ".ckpt")
#: Classifier parameters; their class dimension is free (fine-tuned heads).
HEAD_KEYS = ("head.weight", "head.bias", "tklb_aux_head.weight", "tklb_aux_head.bias")
TOP_LEVEL = "(top level)"
_EMA_ENTRIES = ("model_ema", "state_dict_ema", "ema")
_PLAIN_ENTRIES = ("model", "state_dict", "module", TOP_LEVEL)
_STRIP_PREFIXES = ("module.", "_orig_mod.")
_LIST_LIMIT = 10


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint, or whose weights do not fit the model."""


# ------------------------------------------------------------------------------ finding files
def checkpoint_dirs() -> list[Path]:
    """Where named checkpoints are looked up: ``$GLMIX_CHECKPOINT_DIR`` (``os.pathsep``-separated),
    else torch hub's checkpoint directory (``~/.cache/torch/hub/checkpoints``)."""
    env = os.environ.get("GLMIX_CHECKPOINT_DIR")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [Path(torch.hub.get_dir()) / "checkpoints"]


def find_checkpoint(name: str) -> Path:
    """``<name>.safetensors``, then ``<name>.pth`` (the official release layout), in :func:`checkpoint_dirs`."""
    looked = []
    for d in checkpoint_dirs():
        for suffix in CHECKPOINT_SUFFIXES:
            p = d / f"{name}{suffix}"
            looked.append(str(p))
            if p.is_file():
                return p
    raise FileNotFoundError(f"no checkpoint for {name!r}; looked for {', '.join(looked)} "
                            "(set GLMIX_CHECKPOINT_DIR to the folder holding the weights)")


def looks_like_path(text: str) -> bool:
    """Whether ``--checkpoint TEXT`` names a file (a checkpoint suffix, a folder separator, ``~``)
    rather than a checkpoint name looked up by :func:`checkpoint_candidates`."""
    return Path(text).suffix in _PATH_SUFFIXES or os.sep in text or "/" in text or text.startswith("~")


def checkpoint_candidates(name: str) -> list[Path]:
    """Every file the checkpoint name ``name`` stands for, in the order :func:`resolve_checkpoint`
    takes them: ``<name>.safetensors``, then ``<name>.pth``, in the working directory, then in each of
    :func:`checkpoint_dirs`. More than one: the first is used (what a command's loaded line says)."""
    found = []
    for d in (Path(), *checkpoint_dirs()):
        for suffix in CHECKPOINT_SUFFIXES:
            p = d / f"{name}{suffix}"
            if p.is_file() and not any(_same_file(p, q) for q in found):
                found.append(p)
    return found


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def resolve_checkpoint(name_or_path: str | os.PathLike[str]) -> Path:
    """A checkpoint file path, or a name (e.g. ``glnet_4g``): :func:`checkpoint_candidates`'s first
    (a file in the working directory wins over :func:`checkpoint_dirs`; ``.safetensors`` over ``.pth``).

    A *file* of that name wins; a folder that merely shares a variant's name (``./glnet_4g/`` of
    training outputs, say) does not hide the registered checkpoint.
    """
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    text = os.fspath(name_or_path)
    if looks_like_path(text):
        if p.exists():
            raise CheckpointError(f"{p} is not a file")
        raise FileNotFoundError(f"no such checkpoint file: {p}")
    candidates = checkpoint_candidates(text)
    if candidates:
        return candidates[0]
    looked = ", ".join([*(f"./{text}{s}" for s in CHECKPOINT_SUFFIXES),
                        *(str(d / f"{text}{s}") for d in checkpoint_dirs() for s in CHECKPOINT_SUFFIXES)])
    if p.exists():
        raise CheckpointError(f"{p} is not a file, and no checkpoint named {text!r} was found: looked for {looked}")
    raise FileNotFoundError(f"no checkpoint for {text!r}; looked for {looked} "
                            "(set GLMIX_CHECKPOINT_DIR to the folder holding the weights)")


def locate_pretrained(variant: str, *, user_file: str | os.PathLike[str] | None = None,
                      bundled: str | None = None) -> Path:
    """The weights ``timm.create_model(variant, pretrained=True)`` loads.

    ``user_file`` (timm's ``pretrained_cfg_overlay=dict(file=...)``) must exist: it is never
    silently replaced. Otherwise ``<variant>.safetensors`` / ``.pth`` in :func:`checkpoint_dirs`,
    then ``bundled``, the name of a file shipped in the package's assets (the demo model).
    """
    if user_file is not None:
        p = Path(user_file).expanduser()
        if p.is_file():
            return p
        if p.is_dir():
            raise CheckpointError(f"{p} is a folder, not a checkpoint file (from pretrained_cfg_overlay['file'])")
        raise FileNotFoundError(f"no such checkpoint file: {p} (from pretrained_cfg_overlay['file'])")
    try:
        return find_checkpoint(variant)
    except FileNotFoundError:
        if bundled:
            from ..assets import asset_path

            shipped = asset_path(bundled)
            if shipped.is_file():
                return shipped
        raise


# ------------------------------------------------------------------------------ reading files
@dataclass
class Checkpoint:
    """What a checkpoint file holds. ``weights`` maps entry names (``model``, ``model_ema``,
    ``state_dict``, ... or ``"(top level)"``) to state dicts with DDP prefixes removed."""

    path: Path
    format: str  # "torch-zip", "torch-legacy" or "safetensors"
    entries: dict[str, str]  # top-level entry -> short description
    weights: dict[str, dict[str, torch.Tensor]]
    meta: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    epoch: Any = None

    @property
    def has_ema(self) -> bool:
        return self.ema_entry is not None

    @property
    def ema_entry(self) -> str | None:
        """The entry holding EMA weights, if any."""
        return next((e for e in _EMA_ENTRIES if e in self.weights), None)

    def select(self, ema: bool | None = None, variant: str | None = None) -> tuple[str, dict[str, torch.Tensor]]:
        """Pick the weights to use: ``ema=True``/``False`` forces a choice; by default the EMA
        weights for :data:`EMA_PREFERRED` variants, the plain ones otherwise."""
        ema_entry = next((e for e in _EMA_ENTRIES if e in self.weights), None)
        plain_entry = next((e for e in _PLAIN_ENTRIES if e in self.weights), None)
        if ema is True and ema_entry is None:
            raise CheckpointError(f"{self.path} has no EMA weights (entries: {', '.join(self.entries)})")
        if ema is False and plain_entry is None:
            raise CheckpointError(f"{self.path} has only EMA weights ({ema_entry}); use ema=True")
        if ema is None:
            ema = ema_entry is not None and (plain_entry is None or variant in EMA_PREFERRED)
        entry = ema_entry if ema else plain_entry
        assert entry is not None
        return entry, self.weights[entry]


def read_checkpoint(path: str | os.PathLike[str], *, map_location: Any = "cpu", mmap: bool = True) -> Checkpoint:
    """Open a checkpoint file without loading more than its structure (tensors are mapped lazily)."""
    path = Path(path)
    fmt = _sniff(path)
    if fmt == "safetensors":
        return _read_safetensors(path, map_location)
    obj = _torch_load(path, fmt, map_location, mmap)
    return _describe(path, fmt, obj)


def read_checkpoint_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata a checkpoint carries (``model``, ``classes``, ``input_size``, ``mean``, ``std``, ...).

    Our files store it explicitly (safetensors header, or a ``meta`` entry in ``.pth``); for
    training checkpoints without one, ``model`` and ``input_size`` come from the saved config.
    """
    return dict(read_checkpoint(path).meta)


def _sniff(path: Path) -> str:
    if not path.exists():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty, not a checkpoint")
    with path.open("rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if len(head) >= 9 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if 8 + n <= size:
            return "safetensors"
        if not _looks_like_text(head):
            raise CheckpointError(f"{path} is a truncated safetensors file (header needs {n} bytes, file has {size})")
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "torch-legacy"
    if _looks_like_text(head):
        raise CheckpointError(f"{path} is a text file, not a checkpoint (starts with {head[:16]!r})")
    raise CheckpointError(f"{path} is not a checkpoint: not a PyTorch (.pth) or safetensors file "
                          f"(starts with {head[:8].hex(' ')})")


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n" for c in text)


def _unsafe_globals(path: Path) -> list[str]:
    """Globals referenced by the pickle that are neither torch's defaults nor our stand-ins."""
    found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    return sorted(set(found) - STANDIN_NAMES)


def _refuse(path: Path, names: Iterable[str]) -> CheckpointError:
    listed = ", ".join(names)
    return CheckpointError(
        f"refusing to load {path}: it references {listed}, which could run code when unpickled "
        "(only tensors, plain containers and known config objects are allowed)")


def _torch_load(path: Path, fmt: str, map_location: Any, mmap: bool) -> Any:
    if TorchVersion(torch.__version__) < (2, 6):  # safe_globals with (stand-in, "module.name") pairs
        raise RuntimeError(f"reading .pth checkpoints safely needs torch>=2.6 (found {torch.__version__})")
    scan_error: Exception | None = None
    if fmt == "torch-zip":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise CheckpointError(f"{path} is truncated or corrupt (not a readable zip archive: {exc})") from None
        if not any(n.endswith("data.pkl") for n in names):
            raise CheckpointError(f"{path} is a zip archive but not a PyTorch checkpoint (no data.pkl)")
        try:
            unsafe = _unsafe_globals(path)
        except Exception as exc:  # unreadable pickle stream: the loader below names the problem
            unsafe, scan_error = [], exc
        if unsafe:
            raise _refuse(path, unsafe)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            try:
                return torch.load(path, map_location=map_location, weights_only=True,
                                  mmap=mmap and fmt == "torch-zip")
            except RuntimeError as exc:
                if not (mmap and fmt == "torch-zip" and "mmap" in str(exc)):
                    raise
                return torch.load(path, map_location=map_location, weights_only=True)  # unaligned records
    except pickle.UnpicklingError as exc:
        # torch shortens "builtins.eval" to "eval" in this message
        names = [n if "." in n else f"builtins.{n}" for n in re.findall(r"GLOBAL (\S+)", str(exc))]
        if names:
            raise _refuse(path, dict.fromkeys(names)) from None
        raise CheckpointError(f"{path} cannot be loaded safely: {_first_line(exc)}") from None
    except Exception as exc:
        detail = _first_line(exc)
        if fmt == "torch-zip" and scan_error is not None:
            detail = f"{detail} ({_first_line(scan_error)})"
        raise CheckpointError(f"{path} is truncated or corrupt: {detail}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _read_safetensors(path: Path, map_location: Any) -> Checkpoint:
    from safetensors import safe_open

    device = str(map_location) if isinstance(map_location, str | torch.device) else "cpu"
    try:
        with safe_open(str(path), framework="pt", device=device) as f:
            header = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise CheckpointError(f"{path} is truncated or corrupt safetensors: {_first_line(exc)}") from None
    meta = {}
    for key, value in header.items():
        try:
            meta[key] = json.loads(value)
        except (TypeError, ValueError):
            meta[key] = value
        except RecursionError:  # a hostile header: [[[[...]]]] 200,000 deep
            raise CheckpointError(f"{path}: metadata {key!r} is nested too deeply to be read "
                                  "(not a checkpoint this package wrote)") from None
    meta.pop("format", None)
    weights = {TOP_LEVEL: strip_prefixes(tensors)} if tensors else {}
    if not weights:
        raise CheckpointError(f"{path} holds no tensors")
    entries = {TOP_LEVEL: f"state dict, {len(tensors)} tensors"}
    return Checkpoint(path, "safetensors", entries, weights, meta=meta, epoch=meta.get("epoch"))


def first_non_finite(state_dict: Mapping[str, torch.Tensor]) -> tuple[str, int] | None:
    """The first floating-point tensor holding NaN or Inf, with its count of such values (None: all finite)."""
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex()):
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                return key, bad
    return None


def check_finite(state_dict: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse weights holding NaN or Inf (every output would be NaN, and results silently wrong):
    a :class:`CheckpointError` naming ``where`` and the first bad tensor."""
    found = first_non_finite(state_dict)
    if found is not None:
        key, count = found
        raise CheckpointError(f"{where}: {key} holds {count} non-finite value(s) (NaN or Inf); "
                              "refusing weights that would turn every output into NaN")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def strip_prefixes(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = dict(sd)
    changed = True
    while changed:
        changed = False
        for prefix in _STRIP_PREFIXES:
            if out and all(k.startswith(prefix) for k in out):
                out = {k[len(prefix):]: v for k, v in out.items()}
                changed = True
    return out


def _entry_summary(value: Any) -> str:
    if _is_state_dict(value):
        return f"state dict, {len(value)} tensors"
    if isinstance(value, Mapping):
        return f"dict, {len(value)} keys"
    plain = to_plain(value)
    if isinstance(plain, dict):
        return f"config, {len(plain)} values"
    text = repr(plain)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(path: Path, fmt: str, obj: Any) -> Checkpoint:
    try:
        return _describe_contents(path, fmt, obj)
    except ValueError as exc:  # to_plain's size limit
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: {exc}") from None


def _describe_contents(path: Path, fmt: str, obj: Any) -> Checkpoint:
    if _is_state_dict(obj):
        return Checkpoint(path, fmt, {TOP_LEVEL: _entry_summary(obj)}, {TOP_LEVEL: strip_prefixes(obj)})
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict or a dict of them")
    entries = {str(k): _entry_summary(v) for k, v in obj.items()}
    weights = {e: strip_prefixes(obj[e]) for e in (*_PLAIN_ENTRIES, *_EMA_ENTRIES) if _is_state_dict(obj.get(e))}
    if not weights:
        raise CheckpointError(f"{path} holds no model weights (entries: {', '.join(entries) or 'none'})")
    raw_config = next((obj[k] for k in ("args", "config", "cfg") if obj.get(k) is not None), None)
    config = to_plain(raw_config) if raw_config is not None else {}
    config = resolve_interpolations(config) if isinstance(config, dict) else {"value": config}
    meta = to_plain(obj["meta"]) if isinstance(obj.get("meta"), Mapping) else {}
    if "model" not in meta and isinstance(config.get("model"), str):
        meta["model"] = config["model"]
    if "input_size" not in meta and isinstance(config.get("input_size"), int):
        meta["input_size"] = [config["input_size"]] * 2
    return Checkpoint(path, fmt, entries, weights, meta=meta, config=config, epoch=to_plain(obj.get("epoch")))


# ------------------------------------------------------------------------------ variant detection
@dataclass(frozen=True)
class Detection:
    """How well a state dict fits a variant. ``score`` is the fraction of keys that agree in
    name and shape (classifier out dimension ignored); 1.0 is an exact fit."""

    name: str
    score: float
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # key, file shape, model shape
    num_classes: int | None

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe_differences(self) -> str:
        """The differences as one readable clause (long key lists are cut)."""
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): {_cut(self.missing)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s): {_cut(self.unexpected)}")
        if self.mismatched:
            shapes = [f"{k} {tuple(a)} in file vs {tuple(b)} in model" for k, a, b in self.mismatched]
            parts.append(f"{len(self.mismatched)} wrong shape(s): {_cut(shapes)}")
        return "; ".join(parts) or "none"


def _cut(items: Sequence[str], limit: int = _LIST_LIMIT) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... and {len(items) - limit} more" if len(items) > limit else "")


def shape_of(v: Any) -> tuple[int, ...]:
    return tuple(v.shape) if hasattr(v, "shape") else tuple(int(s) for s in v)


def head_size(state_dict: Mapping[str, Any]) -> int:
    """How many classes a state dict's classifier scores (``head.weight``'s rows; 0: no classifier).
    Values may be tensors or shapes."""
    head = state_dict.get("head.weight")
    return int(shape_of(head)[0]) if head is not None else 0


def _optional(key: str) -> bool:
    # BatchNorm fills a missing counter itself; some exporters drop it
    return key.endswith("num_batches_tracked")


def compare_signature(given: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]],
                      name: str, *, free_heads: bool = True) -> Detection:
    """Compare ``{key: shape}`` maps; with ``free_heads`` the classifiers' class count may differ."""
    keys_g = {k for k in given if not _optional(k)}
    keys_e = {k for k in expected if not _optional(k)}
    missing = tuple(k for k in expected if k in keys_e - keys_g)
    unexpected = tuple(k for k in given if k in keys_g - keys_e)
    mismatched = []
    for k in expected:
        if k not in keys_g or k not in keys_e:
            continue
        a, b = given[k], expected[k]
        same = a == b or (free_heads and k in HEAD_KEYS and len(a) == len(b) and a[1:] == b[1:])
        if not same:
            mismatched.append((k, a, b))
    agree = len(keys_g & keys_e) - len(mismatched)
    score = agree / max(len(keys_g | keys_e), 1)
    headless = not any(k.startswith("head.") for k in given)
    num_classes = head_size(given) if "head.weight" in given or headless else None
    return Detection(name, score, missing, unexpected, tuple(mismatched), num_classes)


# ------------------------------------------------------------------------------ loading weights
@dataclass
class LoadReport:
    """What :func:`load_checkpoint` (or :func:`~glmix_vis.create_model`) loaded from where."""

    path: Path
    format: str
    entry: str
    variant: str | None
    num_classes: int | None  # the checkpoint's classifier size (0: no head)
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    mismatched_keys: list[str] = field(default_factory=list)
    reset_heads: list[str] = field(default_factory=list)
    epoch: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    assigned: bool = False  # True: the model now uses the file's (mapped) tensors directly

    @property
    def ema(self) -> bool:
        return self.entry in _EMA_ENTRIES

    def __str__(self) -> str:
        text = f"loaded {self.path.name} [{self.entry}]"
        if self.variant:
            text += f" as {self.variant}"
        for label, keys in (("missing", self.missing_keys), ("unexpected", self.unexpected_keys),
                            ("skipped (shape)", self.mismatched_keys), ("reset", self.reset_heads)):
            if keys:
                text += f"; {label}: {_cut(keys)}"
        return text


def _architecture(model: nn.Module) -> str | None:
    """The name timm created ``model`` as (its ``pretrained_cfg`` architecture), if any: the one
    place a model (not a state dict, see :mod:`.variants`) says which variant it is."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    arch = cfg.get("architecture") if isinstance(cfg, Mapping) else None
    return arch if isinstance(arch, str) else None


def load_checkpoint(model: nn.Module, path: str | os.PathLike[str], *, ema: bool | None = None,
                    strict: bool = True, map_location: Any = "cpu") -> LoadReport:
    """Load a checkpoint file into ``model``.

    Accepts official ``.pth`` files (``model`` / ``model_ema`` entries, with optimizer state and
    a pickled config), plain or ``state_dict``-wrapped state dicts, DDP ``module.`` prefixes
    and our ``.safetensors``. ``ema=None`` takes the EMA weights for ``glnet_16g`` (as the
    authors advise) and the plain ones otherwise. With ``strict`` any missing, unexpected or
    wrongly shaped key raises one :class:`CheckpointError`; otherwise keys that fit are loaded
    and the rest are listed in the report. A model on the meta device gets the file's tensors
    assigned (no copy).
    """
    state_dict, report = _open_for(model, path, None, ema, map_location)
    load_state_dict_into(model, state_dict, report, strict=strict)
    return report


def _open_for(model: nn.Module, path: str | os.PathLike[str] | Checkpoint, variant: str | None,
              ema: bool | None, map_location: Any) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """The weights of ``path`` (or of a file already opened) to load into ``model``, the EMA
    choice made for its variant (the one given, else timm's architecture, else the file's
    metadata), and a report to fill."""
    ckpt = path if isinstance(path, Checkpoint) else read_checkpoint(path, map_location=map_location)
    named = ckpt.meta.get("model")
    variant = variant or _architecture(model) or (named if isinstance(named, str) else None)
    entry, state_dict = ckpt.select(ema, variant)
    report = LoadReport(ckpt.path, ckpt.format, entry, variant, None, epoch=ckpt.epoch,
                        meta=ckpt.meta, config=ckpt.config)
    return dict(state_dict), report


def load_pretrained_weights(model: nn.Module, path: str | os.PathLike[str] | Checkpoint, *,
                            variant: str | None = None, first_conv: str | None = None, ema: bool | None = None,
                            map_location: Any = "cpu") -> LoadReport:
    """Load a checkpoint file (or a :class:`Checkpoint` already read, so that the file is read
    once) the way timm loads pretrained weights, into a model of any head or stem.

    This is the one load path behind ``timm.create_model(name, pretrained=True)`` and
    :func:`~glmix_vis.create_model`: everything must fit except what timm adapts:

    * the classifier(s) when the model's class count differs (or it has none): left out, and
      re-initialised (listed in ``reset_heads``);
    * the first convolution (``first_conv``) when the model has another number of input channels:
      adapted from the RGB kernels with timm's ``adapt_input_conv`` (summed for one channel,
      repeated and rescaled for more).

    A model on the meta device gets the file's tensors assigned (no copy) and re-initialised heads
    on the CPU.
    """
    from timm.models import adapt_input_conv

    state_dict, report = _open_for(model, path, variant, ema, map_location)
    target = model.state_dict()
    stem = f"{first_conv}.weight" if first_conv else None
    if stem in state_dict and stem in target and state_dict[stem].ndim == 4:
        wanted = target[stem].shape[1]
        if state_dict[stem].shape[1] != wanted:
            state_dict[stem] = adapt_input_conv(wanted, state_dict[stem].float()).to(state_dict[stem].dtype)
    skip = set()
    for head in ("head", "tklb_aux_head"):
        keys = [f"{head}.weight", f"{head}.bias"]
        if any(k in state_dict and (k not in target or target[k].shape != state_dict[k].shape) for k in keys):
            skip.update(k for k in keys if k in state_dict)
            if isinstance(getattr(model, head, None), nn.Linear):
                report.reset_heads.append(head)
    load_state_dict_into(model, state_dict, report, strict=True, skip=skip)
    for head in report.reset_heads:  # fresh weights, also where the model was built on the meta device
        module = getattr(model, head)
        if module.weight.is_meta:
            module.to_empty(device="cpu")
        init = getattr(model, "_init_weights", None)
        if callable(init):
            init(module)
        else:
            module.reset_parameters()
    return report


def load_state_dict_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor], report: LoadReport, *,
                         strict: bool = True, skip: Iterable[str] = ()) -> None:
    """Check ``state_dict`` against ``model`` and load it, filling ``report`` (keys in ``skip`` are left out)."""
    skip = set(skip)
    target = model.state_dict()
    given = {k: v for k, v in state_dict.items() if k not in skip}
    report.num_classes = head_size(state_dict)
    det = compare_signature({k: tuple(v.shape) for k, v in given.items()},
                            {k: tuple(v.shape) for k, v in target.items() if k not in skip},
                            report.variant or type(model).__name__, free_heads=False)
    if strict and not det.exact:
        raise CheckpointError(f"{report.path} [{report.entry}] does not fit the model "
                              f"({report.variant or type(model).__name__}): {det.describe_differences()}")
    report.missing_keys = list(det.missing)
    report.unexpected_keys = list(det.unexpected)
    report.mismatched_keys = [k for k, _, _ in det.mismatched]
    bad = set(det.unexpected) | set(report.mismatched_keys)
    usable = {k: v for k, v in given.items() if k not in bad}
    check_finite(usable, f"{report.path} [{report.entry}]")
    assign = any(t.is_meta for t in target.values())
    if assign:
        usable = {k: _like(v, target[k]) for k, v in usable.items()}
    model.load_state_dict(usable, strict=False, assign=assign)
    report.assigned = assign
    if assign:
        for name, buf in model.named_buffers():
            if buf.is_meta and name.endswith("num_batches_tracked"):
                _set_buffer(model, name, torch.zeros((), dtype=buf.dtype))


def _like(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``value`` with ``target``'s dtype and memory layout (a module may keep a weight channels-last);
    the file's tensor itself when those already agree, so nothing is copied."""
    if value.dtype == target.dtype and value.stride() == target.stride():
        return value
    out = torch.empty_strided(target.shape, target.stride(), dtype=target.dtype, device=value.device)
    return out.copy_(value)


def _set_buffer(model: nn.Module, name: str, value: torch.Tensor) -> None:
    owner_name, _, attr = name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    owner.register_buffer(attr, value, persistent=attr not in owner._non_persistent_buffers_set)


# ------------------------------------------------------------------------------ writing
def save_safetensors(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike[str], *,
                     meta: Mapping[str, Any] | None = None, dtype: torch.dtype | None = torch.float32) -> Path:
    """Write a state dict as ``.safetensors`` atomically (temp file + rename).

    Floating-point tensors are cast to ``dtype`` (``None`` keeps them). ``meta`` values are
    stored JSON-encoded in the header (safetensors metadata must be strings) and read back by
    :func:`read_checkpoint_meta`.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {}
    for k, v in state_dict.items():
        t = v.detach()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[k] = t.contiguous()
    header = {"format": "pt"}
    header.update({str(k): json.dumps(v) for k, v in (meta or {}).items()})
    with atomic_path(path) as tmp:  # also gives the file the usual permissions (safetensors: owner-only)
        save_file(tensors, str(tmp), metadata=header)
    return path
