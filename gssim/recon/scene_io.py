"""The scene folder (format version 1) on disk, generic over what the tensors mean.

```
scene.json                 {"format": "gssim-scene", "version": 1, "name", "sensors", "ego_track",
                            "nodes": [{"id", "kind", "tensors", "baked"?, "track"?, ...}],
                            "tensors"?, ...}
nodes/<id>.safetensors     a node's tensors, in its own frame
baked/<id>.safetensors     optional explicit surfels for fast serving
scene.safetensors          optional scene-level tensors (top-level "tensors": appearance, sky, ...)
```

>>> write_scene_folder("out/town", scene_json, {"nodes/background.safetensors": {"anchors": anchors}})
>>> scene_json, tensors = read_scene_folder("out/town")
>>> sizes = validate_tensors("nodes/background.safetensors", tensors["nodes/background.safetensors"],
...                          {"anchors": ("M", 3), "offsets": ("M", "K", 3)})

Writing builds the whole scene in a temporary sibling folder and renames it into place,
so a reader sees the old scene or the new one, never a mix.  Reading checks
``scene.json`` (format, version, required keys, sensors, pose tracks, nodes) and every
tensor file it references (each node's ``tensors`` and ``baked``, and the optional
top-level ``tensors``): it must lie inside the folder and be a readable safetensors
file.  Every failure is a :class:`SceneFormatError` naming the scene, the file and the
field.

Every file is opened through ``gssim.data.safe_files``, as the log reader's are: never
outside the scene folder (symbolic links included), only regular files (a FIFO fails at
once instead of blocking), ``scene.json`` decoded as strict JSON (UTF-8, a byte-order mark
accepted; no NaN, duplicate keys or nesting deeper than SCENE_JSON_MAX_DEPTH), and no file
larger than SCENE_JSON_MAX_BYTES / MAX_TENSOR_FILE_BYTES.  Tensor files are parsed from the
bytes read through that one handle; the metadata-only read parses and checks just the
safetensors header.
"""
from __future__ import annotations

import json
import logging
import math
import os
import secrets
import shutil
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import safetensors.torch
import torch

from gssim.data.errors import LogFormatError
from gssim.data.safe_files import (DEFAULT_MAX_JSON_BYTES, DEFAULT_MAX_JSON_DEPTH, MissingFileError, SafeFileError,
                                   UnsafePathError, check_relative, open_inside, parse_json, read_json_inside)
from gssim.data.schema import parse_pose, parse_sensor

logger = logging.getLogger(__name__)

SCENE_FORMAT = "gssim-scene"
SCENE_VERSION = 1
SCENE_JSON = "scene.json"
NODE_KINDS = ("background", "actor", "asset")
REQUIRED_KEYS = ("name", "sensors", "ego_track", "nodes")
NODE_FILE_KEYS = ("tensors", "baked")

# Reading limits, module constants so a caller can raise them (read at call time).
SCENE_JSON_MAX_BYTES = DEFAULT_MAX_JSON_BYTES    # size of scene.json (256 MiB)
SCENE_JSON_MAX_DEPTH = DEFAULT_MAX_JSON_DEPTH    # nesting depth of scene.json (64)
MAX_TENSOR_FILE_BYTES = 4 * 2 ** 30              # one tensor file (4 GiB); read whole into memory
MAX_TENSOR_HEADER_BYTES = 100_000_000            # a safetensors JSON header (the safetensors library's own limit)

# Bits per element of each safetensors dtype name.
_DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
               "F8_E8M0": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
               "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64, "C64": 64}


class SceneFormatError(ValueError):
    """A scene folder (or the content given to write one) that breaks format version 1.

    ``file``: path relative to the scene folder (``scene.json``, ``nodes/car_3.safetensors``);
    ``field``: the JSON path (``nodes[2].tensors``) or the part of a tensor file
    (``tensor 'anchors'``), or None; ``message``: what is wrong; ``scene``: the scene
    folder as given, or None.  ``str(err)`` joins them:
    ``scene out/s: nodes/car_3.safetensors: tensor 'anchors': expected shape (M, 3), got (5, 2)``.
    """

    def __init__(self, message: str, file: str, field: str | None = None, scene: str | os.PathLike | None = None):
        self.message = message
        self.file = file
        self.field = field
        self.scene = None if scene is None else str(scene)
        parts = ([f"scene {self.scene}"] if self.scene is not None else []) + [file]
        parts += [field] if field else []
        super().__init__(": ".join(parts + [message]))


def _format_shape(shape: tuple) -> str:
    dims = ", ".join(str(d) for d in shape)
    return f"({dims},)" if len(shape) == 1 else f"({dims})"


def validate_tensors(file: str, tensors: dict[str, torch.Tensor], spec: dict[str, tuple], *,
                     dtype: torch.dtype = torch.float32, dtypes: dict[str, torch.dtype] | None = None,
                     sizes: dict[str, int] | None = None, scene: str | os.PathLike | None = None) -> dict[str, int]:
    """Check the tensors of one file against ``spec``; return the size of every symbol.

    spec: {tensor name: expected shape}, each dimension an int or a symbol (``"M"``) that
    must take the same size everywhere it appears, e.g. ``{"anchors": ("M", 3),
    "offsets": ("M", "K", 3)}``.  Tensors not in ``spec`` are allowed.
    dtype: the dtype every tensor must have, unless ``dtypes`` names another for it.
    sizes: symbols already known (from another file or the config); checked, not rebound.
    Floating tensors must be finite.  Raises SceneFormatError naming ``file`` and the tensor.
    """
    bound = dict(sizes or {})
    origin = {sym: "the given sizes" for sym in bound}
    for name, shape in spec.items():
        fld = f"tensor {name!r}"
        if name not in tensors:
            raise SceneFormatError("missing", file, fld, scene)
        t = tensors[name]
        if not isinstance(t, torch.Tensor):
            raise SceneFormatError(f"expected a torch.Tensor, got {type(t).__name__}", file, fld, scene)
        want = (dtypes or {}).get(name, dtype)
        if t.dtype != want:
            raise SceneFormatError(f"expected dtype {str(want).removeprefix('torch.')}, "
                                   f"got {str(t.dtype).removeprefix('torch.')}", file, fld, scene)
        got = tuple(t.shape)
        if len(got) != len(shape) or any(isinstance(d, int) and d != g for d, g in zip(shape, got)):
            raise SceneFormatError(f"expected shape {_format_shape(shape)}, got {_format_shape(got)}", file, fld,
                                   scene)
        for d, g in zip(shape, got):
            if isinstance(d, str):
                if d in bound and bound[d] != g:
                    raise SceneFormatError(f"expected shape {_format_shape(shape)} with {d}={bound[d]} (from "
                                           f"{origin[d]}), got {_format_shape(got)}", file, fld, scene)
                bound.setdefault(d, g)
                origin.setdefault(d, fld)
        if t.is_floating_point():
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise SceneFormatError(f"{bad} non-finite values (NaN or inf)", file, fld, scene)
    return bound


# ---------------------------------------------------------------- scene.json


def _relative_path(value: Any, fld: str | None, scene: str | None, file: str = SCENE_JSON) -> str:
    """A path in scene.json (or a key of the tensor files): relative, '/'-separated, without '..'."""
    if not isinstance(value, str) or not value:
        raise SceneFormatError(f"expected a relative file path, got {value!r}", file, fld, scene)
    pure = PurePosixPath(value)
    if pure.is_absolute() or PureWindowsPath(value).drive:
        raise SceneFormatError(f"path {value!r} is absolute; expected a path relative to the scene folder",
                               file, fld, scene)
    if "\\" in value:
        raise SceneFormatError(f"path {value!r} contains '\\'; expected '/' separators", file, fld, scene)
    if ".." in pure.parts:
        raise SceneFormatError(f"path {value!r} contains '..'; expected a path inside the scene folder",
                               file, fld, scene)
    if value == SCENE_JSON:
        raise SceneFormatError(f"path {value!r} is the scene description itself", file, fld, scene)
    try:
        check_relative(value, "file")
    except SafeFileError as exc:
        raise SceneFormatError(exc.detail, file, fld, scene) from None
    return value


def _number(value: Any, fld: str, scene: str | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SceneFormatError(f"expected a finite number, got {value!r}", SCENE_JSON, fld, scene)
    return float(value)


def _as_object(value: Any, fld: str | None, scene: str | None) -> dict:
    if not isinstance(value, dict):
        raise SceneFormatError(f"expected an object, got {type(value).__name__}", SCENE_JSON, fld, scene)
    return value


def _require(d: dict, key: str, where: str, scene: str | None) -> Any:
    if key not in d:
        raise SceneFormatError("missing", SCENE_JSON, f"{where}.{key}" if where else key, scene)
    return d[key]


def _check_track(track: Any, where: str, pose_key: str, scene: str | None) -> None:
    """A list of {"t", pose_key: 4x4 rigid} at strictly increasing t."""
    if not isinstance(track, list):
        raise SceneFormatError(f"expected a list of {{t, {pose_key}}}, got {type(track).__name__}", SCENE_JSON,
                               where, scene)
    last = -math.inf
    for k, entry in enumerate(track):
        fld = f"{where}[{k}]"
        _as_object(entry, fld, scene)
        t = _number(_require(entry, "t", fld, scene), f"{fld}.t", scene)
        if t <= last:
            raise SceneFormatError(f"timestamps out of order: t={t} after t={last}", SCENE_JSON, f"{fld}.t", scene)
        last = t
        try:
            parse_pose(_require(entry, pose_key, fld, scene), f"{fld}.{pose_key}")
        except LogFormatError as exc:
            raise SceneFormatError(exc.detail, SCENE_JSON, exc.field, scene) from None


def check_scene_json(d: Any, scene: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """Validate a parsed ``scene.json``; return the tensor files it references.

    Returns [(relative path, JSON field)] for every node's ``tensors`` and ``baked``, in
    node order, then the optional top-level ``tensors`` (the scene-level tensor file).
    Checks the format and version, the required keys, each sensor (as in a log), the ego
    track and node tracks (rigid poses at increasing times), and each node's id
    (non-empty, unique), kind and file paths (relative, inside the folder).
    """
    scene = None if scene is None else str(scene)
    _as_object(d, None, scene)
    fmt = _require(d, "format", "", scene)
    if fmt != SCENE_FORMAT:
        raise SceneFormatError(f"expected {SCENE_FORMAT!r}, got {fmt!r}", SCENE_JSON, "format", scene)
    version = _require(d, "version", "", scene)
    if type(version) is not int:  # noqa: E721  (bool is an int subclass and is not a version)
        raise SceneFormatError(f"expected an integer, got {version!r}", SCENE_JSON, "version", scene)
    if version != SCENE_VERSION:
        raise SceneFormatError(f"unsupported version {version}; this reader knows version {SCENE_VERSION}",
                               SCENE_JSON, "version", scene)
    for key in REQUIRED_KEYS:
        _require(d, key, "", scene)
    if not isinstance(d["name"], str) or not d["name"]:
        raise SceneFormatError(f"expected a non-empty string, got {d['name']!r}", SCENE_JSON, "name", scene)
    for sid, entry in _as_object(d["sensors"], "sensors", scene).items():
        try:
            parse_sensor(sid, entry)
        except LogFormatError as exc:
            raise SceneFormatError(exc.detail, SCENE_JSON, exc.field, scene) from None
    _check_track(d["ego_track"], "ego_track", "T_world_ego", scene)
    nodes = d["nodes"]
    if not isinstance(nodes, list):
        raise SceneFormatError(f"expected a list of nodes, got {type(nodes).__name__}", SCENE_JSON, "nodes", scene)
    refs: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for i, node in enumerate(nodes):
        where = f"nodes[{i}]"
        _as_object(node, where, scene)
        nid = _require(node, "id", where, scene)
        if not isinstance(nid, str) or not nid:
            raise SceneFormatError(f"expected a non-empty string, got {nid!r}", SCENE_JSON, f"{where}.id", scene)
        if nid in seen:
            raise SceneFormatError(f"duplicate node id {nid!r} (also nodes[{seen[nid]}])", SCENE_JSON,
                                   f"{where}.id", scene)
        seen[nid] = i
        kind = _require(node, "kind", where, scene)
        if kind not in NODE_KINDS:
            raise SceneFormatError(f"unknown kind {kind!r}; expected one of {list(NODE_KINDS)}", SCENE_JSON,
                                   f"{where}.kind", scene)
        _require(node, "tensors", where, scene)
        for key in NODE_FILE_KEYS:
            if key in node:
                refs.append((_relative_path(node[key], f"{where}.{key}", scene), f"{where}.{key}"))
        if "track" in node:
            _check_track(node["track"], f"{where}.track", "T_world_object", scene)
    if "tensors" in d:
        refs.append((_relative_path(d["tensors"], "tensors", scene), "tensors"))
    return refs


# ---------------------------------------------------------------- reading


# Wording of this module kept for some safe_files details (prefix of the detail -> ours).
_KEPT_WORDING = (("is a directory", "not a regular file (a directory)"),
                 ("is not a regular file", "not a regular file"),
                 ("is not valid UTF-8", "not UTF-8 text"))


def _file_error(exc: SafeFileError, file: str, fld: str | None, scene: str) -> SceneFormatError:
    """The SceneFormatError for a file that safe_files refused to open or decode."""
    if isinstance(exc, MissingFileError):
        return SceneFormatError("missing file", file, fld, scene)
    if isinstance(exc, UnsafePathError):
        return SceneFormatError(f"outside the scene folder: {exc.detail}", file, fld, scene)
    message = exc.detail
    for prefix, ours in _KEPT_WORDING:
        if message.startswith(prefix):
            message = ours + message[len(prefix):]
            break
    return SceneFormatError(message, file, fld, scene)


def _load_scene_json(root: Path, scene: str) -> tuple[dict, list[tuple[str, str]]]:
    try:
        is_dir = root.is_dir()
    except (OSError, ValueError) as exc:
        raise SceneFormatError(f"cannot access the scene folder ({exc})", SCENE_JSON, None, scene) from None
    if not is_dir:
        raise SceneFormatError(f"missing file (no scene folder at {root})", SCENE_JSON, None, scene)
    try:
        d = read_json_inside(root, SCENE_JSON, "scene description", SCENE_JSON_MAX_BYTES, SCENE_JSON_MAX_DEPTH)
    except SafeFileError as exc:
        raise _file_error(exc, SCENE_JSON, None, scene) from None
    return d, check_scene_json(d, scene)


def _read_header(f, size: int, rel: str, fld: str, scene: str) -> dict[str, str]:
    """Parse and check the safetensors header at the start of ``f`` (a file of ``size`` bytes);
    return its string metadata.  Layout: an 8-byte little-endian length N, N bytes of JSON
    {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__"?: {str: str}},
    then the tensor data, which the offsets must cover exactly, in order, without gaps."""
    def bad(why: str) -> SceneFormatError:
        return SceneFormatError(f"not a readable safetensors file ({why})", rel, fld, scene)

    if size < 8:
        raise bad(f"{size} bytes long, shorter than the 8-byte header length")
    n = int.from_bytes(f.read(8), "little")
    if n > MAX_TENSOR_HEADER_BYTES:
        raise bad(f"header claims {n} bytes, over the limit of {MAX_TENSOR_HEADER_BYTES}")
    if n > size - 8:
        raise bad(f"header claims {n} bytes, but the file holds {size - 8} after the length")
    raw = f.read(n)
    if len(raw) != n:
        raise bad(f"file ends inside the header ({len(raw)} of {n} bytes)")
    try:
        header = parse_json(raw, rel, "safetensors header", SCENE_JSON_MAX_DEPTH)
    except SafeFileError as exc:
        raise bad(f"header: {exc.detail}") from None
    if not isinstance(header, dict):
        raise bad(f"header is a JSON {type(header).__name__}, not an object")
    metadata = header.pop("__metadata__", None)
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise bad("'__metadata__' is not an object of strings")
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
            raise bad(f"tensor {name!r}: expected an object with dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in _DTYPE_BITS:
            raise bad(f"tensor {name!r}: unknown dtype {str(dtype)[:40]!r}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):  # noqa: E721
            raise bad(f"tensor {name!r}: shape is not a list of non-negative integers")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(type(o) is int and o >= 0 for o in offsets)):  # noqa: E721
            raise bad(f"tensor {name!r}: data_offsets is not a pair of non-negative integers")
        bits = math.prod(shape) * _DTYPE_BITS[dtype]
        if bits % 8 or offsets[1] - offsets[0] != bits // 8:
            raise bad(f"tensor {name!r}: data_offsets {offsets} do not hold shape {shape} of {dtype}")
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise bad(f"tensor {name!r}: data starts at {begin}, expected {end} (gap or overlap)")
        end = stop
    if end != size - 8 - n:
        raise bad(f"tensor data is {size - 8 - n} bytes, the header describes {end}")
    return dict(metadata)


def _read_tensor_file(root: Path, rel: str, fld: str, scene: str, with_tensors: bool):
    """(tensors or None, metadata) of one referenced file, any failure as SceneFormatError.
    The file is opened once (``open_inside``); the tensors are parsed from its bytes."""
    try:
        f = open_inside(root, rel, "tensor file", MAX_TENSOR_FILE_BYTES)
    except SafeFileError as exc:
        raise _file_error(exc, rel, fld, scene) from None
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            metadata = _read_header(f, size, rel, fld, scene)
            if not with_tensors:
                return None, metadata
            f.seek(0)
            data = f.read(size + 1)
        except OSError as exc:
            raise SceneFormatError(f"cannot read ({exc.strerror or exc})", rel, fld, scene) from None
    if len(data) != size:
        raise SceneFormatError(f"changed while being read ({size} bytes, then {len(data)})", rel, fld, scene)
    try:
        tensors = safetensors.torch.load(data)
    except Exception as exc:  # safetensors raises its own error, or others: all mean "unreadable"
        raise SceneFormatError(f"not a readable safetensors file ({exc})", rel, fld, scene) from None
    return tensors, metadata


def read_scene_folder(path: str | os.PathLike) -> tuple[dict, dict[str, dict[str, torch.Tensor]]]:
    """Read and validate a scene folder.

    Returns (scene_json, tensors): the parsed ``scene.json`` and, for every file it
    references (``nodes[*].tensors``, ``nodes[*].baked``, top-level ``tensors``),
    {relative path as written in scene.json: {tensor name: CPU tensor}}.  Raises SceneFormatError naming the file and
    field of the first problem.
    """
    root = Path(path)
    d, refs = _load_scene_json(root, str(path))
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    for rel, fld in refs:
        if rel not in tensors:
            tensors[rel] = _read_tensor_file(root, rel, fld, str(path), with_tensors=True)[0]
    return d, tensors


def read_scene_metadata(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """The string metadata stored in each referenced tensor file's header (no tensor data read).

    Returns {relative path: {key: value}}, with the same validation as read_scene_folder.
    """
    root = Path(path)
    _, refs = _load_scene_json(root, str(path))
    return {rel: _read_tensor_file(root, rel, fld, str(path), with_tensors=False)[1] for rel, fld in refs}


# ---------------------------------------------------------------- writing


def _is_replaceable(path: Path) -> bool:
    """An empty folder, or one whose scene.json says it is a gssim scene."""
    if path.is_symlink() or not path.is_dir():
        return False
    if not any(path.iterdir()):
        return True
    try:
        d = read_json_inside(path, SCENE_JSON, "scene description", SCENE_JSON_MAX_BYTES, SCENE_JSON_MAX_DEPTH)
    except SafeFileError:
        return False
    return isinstance(d, dict) and d.get("format") == SCENE_FORMAT


def _cpu_tensors(rel: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached contiguous CPU tensors; a tensor sharing memory with an earlier one is copied
    (safetensors refuses shared storage)."""
    if not isinstance(tensors, dict):
        raise SceneFormatError(f"expected a dict of tensors, got {type(tensors).__name__}", rel)
    out: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for name, t in tensors.items():
        if not isinstance(name, str) or not isinstance(t, torch.Tensor):
            raise SceneFormatError(f"expected a torch.Tensor, got {type(t).__name__}", rel, f"tensor {name!r}")
        t = t.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in storages:
            t = t.clone()
        storages.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """fsync every file and folder under ``folder`` (so a rename publishes durable content)."""
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            _fsync_file(Path(dirpath) / name)
        _fsync_file(Path(dirpath))


def write_scene_folder(path: str | os.PathLike, scene_json: dict, tensor_files: dict[str, dict[str, torch.Tensor]],
                       metadata: dict[str, dict[str, str]] | None = None) -> Path:
    """Write a scene folder atomically; returns its path.

    scene_json: the ``scene.json`` content; ``"format"`` and ``"version"`` are set here.
    It must pass the reader's checks, and every file it references must be a key of
    ``tensor_files``.
    tensor_files: {relative path (``"nodes/background.safetensors"``): {name: tensor}};
    every file must be referenced by scene.json (the reader loads no other).
    metadata: optional {relative path: {key: str value}} stored in that file's header.

    Everything is written and fsynced in a temporary sibling folder, then renamed to
    ``path``.  An existing scene (or empty folder) at ``path`` is renamed aside, the new
    folder renamed in, and the old one deleted; anything else at ``path`` is refused
    (FileExistsError).  On any error ``path`` is left as it was and the temporary folder
    is removed.
    """
    target = Path(os.path.abspath(path))
    metadata = dict(metadata or {})
    d = {"format": SCENE_FORMAT, "version": SCENE_VERSION}
    d.update((k, v) for k, v in scene_json.items() if k not in d)
    try:
        text = json.dumps(d, indent=1, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SceneFormatError(f"not serialisable as strict JSON ({exc})", SCENE_JSON, None, path) from None
    refs = check_scene_json(json.loads(text), path)
    referenced = {rel for rel, _ in refs}
    for rel, fld in refs:
        if rel not in tensor_files:
            raise SceneFormatError(f"references {rel!r}, which is not among the tensor files given", SCENE_JSON,
                                   fld, path)
    for rel in tensor_files:
        _relative_path(rel, None, path, file=rel)
        if rel not in referenced:
            raise SceneFormatError("not referenced by scene.json (a node's 'tensors' or 'baked', or the top-level "
                                   "'tensors'); the reader would not load it", rel, None, path)
    for rel, meta in metadata.items():
        if rel not in tensor_files:
            raise SceneFormatError("metadata given for a file that is not among the tensor files", rel, None, path)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
            raise SceneFormatError("metadata keys and values must be strings", rel, "metadata", path)
    if target.exists() or target.is_symlink():
        if not _is_replaceable(target):
            raise FileExistsError(f"{path} exists and is not a gssim scene folder (no scene.json with format "
                                  f"{SCENE_FORMAT!r}, and not empty); refusing to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)

    tmp = target.parent / f".{target.name}.writing-{secrets.token_hex(4)}"
    os.mkdir(tmp)
    try:
        for rel, tensors in tensor_files.items():
            file = tmp / rel
            file.parent.mkdir(parents=True, exist_ok=True)
            safetensors.torch.save_file(_cpu_tensors(rel, tensors), str(file), metadata=metadata.get(rel))
        (tmp / SCENE_JSON).write_text(text, encoding="utf-8")
        _fsync_tree(tmp)
        if target.exists():
            old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
            os.rename(target, old)
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
            if old.exists():
                logger.warning("could not delete the replaced scene at %s", old)
        else:
            os.rename(tmp, target)
        _fsync_file(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote scene %s: %d nodes, %d tensor files", target, len(d["nodes"]), len(tensor_files))
    return target
