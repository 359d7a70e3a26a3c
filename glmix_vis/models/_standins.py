"""Inert stand-ins for the non-tensor objects that training checkpoints pickle.

Training scripts save their whole configuration next to the weights (``args``): a hydra /
omegaconf ``DictConfig`` or an ``argparse.Namespace``, sometimes holding paths and numpy
scalars. ``torch.load(weights_only=True)`` refuses those globals, and allowlisting the real
classes would need omegaconf installed and would run its code. Instead each known global is
registered (under its exact pickled name) as a small class or function defined here that only
stores the pickled state; :func:`to_plain` turns what was loaded into dicts, lists and
scalars. Every other global stays refused by torch's weights-only unpickler.

The omegaconf names were taken from real pickles (omegaconf 2.0-2.4 write the same ones):
``DictConfig``/``ListConfig`` whose state is ``{_metadata, _parent, _content}``, value nodes
(``AnyNode``, ``StringNode``, ...) with ``{_metadata, _parent, _val}``, ``Metadata`` /
``ContainerMetadata``, ``typing.Any`` and builtin types as metadata values, and
``collections.defaultdict`` for the resolver cache.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

__all__ = ["SAFE_GLOBALS", "STANDIN_NAMES", "to_plain", "resolve_interpolations"]


class _Stub:
    """Accepts any constructor arguments and pickled state and keeps them as data."""

    pickled_name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Stub:
        inst = object.__new__(cls)
        inst.args = args
        inst.state = None
        return inst

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def field(self, *names: str) -> Any:
        """The first of ``names`` present in a dict state (``None`` if none is)."""
        if isinstance(self.state, dict):
            for n in names:
                if n in self.state:
                    return self.state[n]
        return None

    def __repr__(self) -> str:
        return f"<{self.pickled_name} stand-in>"


def _stub(pickled_name: str, base: type[_Stub] = _Stub) -> type[_Stub]:
    cls = type(pickled_name.rsplit(".", 1)[-1], (base,), {"pickled_name": pickled_name, "__module__": __name__})
    return cls


class _Container(_Stub):
    """``DictConfig`` / ``ListConfig``: the values live in ``_content``."""


class _ValueNode(_Stub):
    """An omegaconf value node: the value lives in ``_val``."""


class _Namespace(_Stub):
    """``argparse.Namespace``: its ``__dict__`` is the pickled state."""

    def __getattr__(self, name: str) -> Any:
        state = self.__dict__.get("state")
        if isinstance(state, dict) and name in state:
            return state[name]
        raise AttributeError(name)


class _Enum(_Stub):
    """An enum member, pickled as ``EnumClass(value)``."""


class _TypeRef:
    """A class used as a value (omegaconf metadata ``ref_type``/``object_type``); not callable."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<type {self.name}>"

    def __call__(self, *args: Any) -> Any:
        """``bytes()``, ``dict()``, ...: how pickle protocol 2 writes an empty value of a builtin type
        (``b''`` is ``builtins.bytes()``); the empty value, and nothing else, is built."""
        empty = _EMPTY_VALUES.get(self.name)
        if args or empty is None:
            raise TypeError(f"{self.name} is referenced as a type, not called with arguments")
        return empty()


# ------------------------------------------------------------------------------------ numpy
_STRUCT_CODES = {("b", 1): "?", ("i", 1): "b", ("i", 2): "h", ("i", 4): "i", ("i", 8): "q",
                 ("u", 1): "B", ("u", 2): "H", ("u", 4): "I", ("u", 8): "Q",
                 ("f", 2): "e", ("f", 4): "f", ("f", 8): "d", ("c", 8): "ff", ("c", 16): "dd"}


class _DType(_Stub):
    """``numpy.dtype(descr, align, copy)``; BUILD state ``(version, byteorder, ...)``."""

    def layout(self) -> tuple[str, str, int] | None:
        """``(byteorder, kind, itemsize)`` for plain numeric/str/bytes dtypes, else ``None``."""
        descr = self.args[0] if self.args and isinstance(self.args[0], str) else ""
        m = re.fullmatch(r"([<>|=]?)([biufcUS])(\d+)", descr)
        if not m:
            return None
        order = m.group(1) or (self.state[1] if isinstance(self.state, tuple) and len(self.state) > 1 else "<")
        size = int(m.group(3))
        return (">" if order == ">" else "<"), m.group(2), size * (4 if m.group(2) == "U" else 1)

    def decode(self, data: bytes) -> list[Any] | None:
        """Decode a raw buffer of this dtype to Python values (``None`` if not decodable)."""
        layout = self.layout()
        if layout is None or not isinstance(data, bytes | bytearray):
            return None
        order, kind, size = layout
        if size == 0 or len(data) % size:
            return None
        chunks = [bytes(data[i:i + size]) for i in range(0, len(data), size)]
        if kind == "U":
            codec = "utf-32-be" if order == ">" else "utf-32-le"
            return [c.decode(codec).rstrip("\x00") for c in chunks]
        if kind == "S":
            return [c.rstrip(b"\x00") for c in chunks]
        code = _STRUCT_CODES.get((kind, size))
        if code is None:
            return None
        out: list[Any] = []
        for c in chunks:
            vals = struct.unpack(order + code, c)
            out.append(complex(*vals) if kind == "c" else vals[0])
        return out


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """``numpy.core.multiarray.scalar``: a numpy scalar becomes the Python number it holds."""
    if isinstance(dtype, _DType):
        values = dtype.decode(data)
        if values is not None and len(values) == 1:
            return values[0]
    return _Opaque("numpy scalar")


class _NDArray(_Stub):
    """``numpy.core.multiarray._reconstruct(ndarray, shape, typecode)`` + BUILD state."""

    def tolist(self) -> Any:
        if not (isinstance(self.state, tuple) and len(self.state) == 5):
            return None
        _, shape, dtype, fortran, data = self.state
        if isinstance(data, list):
            flat = data
        elif isinstance(dtype, _DType):
            flat = dtype.decode(data)
        else:
            flat = None
        dims = list(shape) if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape) else None
        if flat is None or dims is None or math.prod(dims) != len(flat):
            return None
        if fortran and len(dims) > 1:  # column-major buffer: build transposed, then transpose back
            nested = _reshape(flat, dims[::-1])
            return _transpose(nested, len(dims))
        return _reshape(flat, dims)


def _reshape(flat: list[Any], dims: list[int]) -> Any:
    if not dims:
        return flat[0] if flat else None
    if len(dims) == 1:
        return list(flat)
    step = len(flat) // dims[0] if dims[0] else 0
    return [_reshape(flat[i * step:(i + 1) * step], dims[1:]) for i in range(dims[0])]


def _transpose(nested: Any, ndim: int) -> Any:
    if ndim < 2:
        return nested
    rows = [_transpose(r, ndim - 1) for r in nested]
    return [list(col) for col in zip(*rows)] if ndim == 2 else rows


class _Opaque:
    """Something recognised but not decodable; shows up as its description."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __repr__(self) -> str:
        return f"<{self.what}>"


def _defaultdict(default_factory: Any = None, *args: Any) -> dict[Any, Any]:
    """``collections.defaultdict(factory)``: a plain dict (its items follow as SETITEMS)."""
    return {}


def _posix_path(*parts: str) -> str:
    return str(PurePosixPath(*parts))


def _windows_path(*parts: str) -> str:
    return str(PureWindowsPath(*parts))


# --------------------------------------------------------------------------- registrations
_OMEGACONF_CONTAINERS = ("omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig")
_OMEGACONF_NODES = tuple(f"omegaconf.nodes.{n}" for n in (
    "AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode", "BytesNode", "PathNode",
    "EnumNode", "LiteralNode", "ValueNode", "UnionNode")) + ("omegaconf.base.UnionNode",)
_OMEGACONF_DATA = ("omegaconf.base.Metadata", "omegaconf.base.ContainerMetadata")
_ENUMS = ("omegaconf.base.SCMode", "omegaconf._utils.ValueKind")
_TYPE_REFS = ("typing.Any", "builtins.dict", "builtins.list", "builtins.tuple", "builtins.int",
              "builtins.float", "builtins.str", "builtins.bool", "builtins.bytes", "builtins.object",
              "numpy.ndarray")
_EMPTY_VALUES: dict[str, Callable[[], Any]] = {
    f"builtins.{t.__name__}": t for t in (dict, list, tuple, int, float, str, bool, bytes)}
_PATHS: dict[str, Callable[..., str]] = {}
for _mod in ("pathlib", "pathlib._local"):
    for _cls in ("Path", "PosixPath", "PurePath", "PurePosixPath"):
        _PATHS[f"{_mod}.{_cls}"] = _posix_path
    for _cls in ("WindowsPath", "PureWindowsPath"):
        _PATHS[f"{_mod}.{_cls}"] = _windows_path


def _registrations() -> list[tuple[Any, str]]:
    regs: list[tuple[Any, str]] = []
    regs += [(_stub(n, _Container), n) for n in _OMEGACONF_CONTAINERS]
    regs += [(_stub(n, _ValueNode), n) for n in _OMEGACONF_NODES]
    regs += [(_stub(n), n) for n in _OMEGACONF_DATA]
    regs += [(_stub(n, _Enum), n) for n in _ENUMS]
    regs += [(_TypeRef(n), n) for n in _TYPE_REFS]
    regs += [(fn, n) for n, fn in _PATHS.items()]
    regs.append((_stub("argparse.Namespace", _Namespace), "argparse.Namespace"))
    regs.append((_defaultdict, "collections.defaultdict"))
    dtype = _stub("numpy.dtype", _DType)
    regs.append((dtype, "numpy.dtype"))
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        regs.append((_numpy_scalar, f"{mod}.scalar"))
        regs.append((_stub(f"{mod}._reconstruct", _NDArray), f"{mod}._reconstruct"))
    return regs


#: ``(stand-in, "module.qualname")`` pairs for ``torch.serialization.safe_globals``.
SAFE_GLOBALS: list[tuple[Any, str]] = _registrations()
STANDIN_NAMES: frozenset[str] = frozenset(name for _, name in SAFE_GLOBALS)


# ------------------------------------------------------------------------------ plain data
#: At most this many objects are converted; a pickle can share sub-objects so that naive
#: expansion would never finish.
MAX_ITEMS = 200_000


def to_plain(obj: Any) -> Any:
    """Turn loaded stand-ins (and containers of them) into dicts, lists, strings and numbers.

    One-element tensors become numbers; other tensors are left as they are.
    """
    budget = [MAX_ITEMS]

    def convert(o: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise ValueError(f"configuration too large (more than {MAX_ITEMS} values)")
        if depth > 64:
            return "<too deeply nested>"
        d = depth + 1
        if o is None or isinstance(o, bool | int | float | complex | str | bytes):
            return o
        if isinstance(o, _Container):
            content = o.field("_content", "content")
            if isinstance(content, dict):
                return {convert(k, d): convert(v, d) for k, v in content.items()}
            if isinstance(content, list | tuple):
                return [convert(v, d) for v in content]
            return content if isinstance(content, str) else None  # "${...}", "???" or None
        if isinstance(o, _ValueNode):
            return convert(o.field("_val", "val"), d)
        if isinstance(o, _Namespace):
            return {k: convert(v, d) for k, v in o.state.items()} if isinstance(o.state, dict) else {}
        if isinstance(o, _Enum):
            return convert(o.args[0], d) if o.args else None
        if isinstance(o, _NDArray):
            return o.tolist()
        if isinstance(o, _TypeRef):
            return o.name
        if isinstance(o, dict):
            return {convert(k, d): convert(v, d) for k, v in o.items()}
        if isinstance(o, list | tuple | set | frozenset):
            return [convert(v, d) for v in o]
        numel = getattr(o, "numel", None)
        if callable(numel) and hasattr(o, "item"):
            return o.item() if numel() == 1 else o
        return repr(o)

    return convert(obj, 0)


MAX_STRING = 10_000
_INTERP = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")


def resolve_interpolations(cfg: dict[str, Any]) -> dict[str, Any]:
    """Resolve plain ``${dotted.key}`` references inside a config (others are left as written)."""

    def lookup(path: str) -> Any:
        node: Any = cfg
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(path)
            node = node[part]
        return node

    cache: dict[str, Any] = {}  # each reference is resolved once, however often it is used

    def ref(path: str, depth: int) -> Any:
        if path not in cache:
            cache[path] = resolve(lookup(path), depth + 1)
        return cache[path]

    def resolve(value: Any, depth: int) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v, depth) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, depth) for v in value]
        if not isinstance(value, str) or depth > 8 or "${" not in value:
            return value
        whole = _INTERP.fullmatch(value)
        try:
            if whole:
                return ref(whole.group(1), depth)
            text = _INTERP.sub(lambda m: str(ref(m.group(1), depth)), value)
        except KeyError:
            return value
        return text if len(text) <= MAX_STRING else value

    return resolve(cfg, 0)
