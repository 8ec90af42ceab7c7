"""Gaussian-splat PLY files as INRIA's 3DGS viewer, SuperSplat and gsplat read them.

One ``vertex`` element, binary little-endian float32 properties, in this order::

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  f_rest_0 .. f_rest_{3K-1}
    opacity  scale_0 scale_1 scale_2  rot_0 rot_1 rot_2 rot_3

stored as the 3DGS optimiser holds them: ``f_dc = (color - 0.5) / C0`` (degree-0
spherical harmonic), ``opacity = logit(alpha)``, ``scale_i = log(s_i)``, ``rot`` a unit
quaternion (w, x, y, z).  ``f_rest`` is channel-major as INRIA writes it:
``f_rest[c * K + k] = sh_rest[k, c]`` with K = 3, 8 or 15 (SH degree 1, 2 or 3).

A surfel has no third axis; it is written as a thin Gaussian whose third scale is
``THICKNESS_RATIO`` times its larger tangent scale, so 3D viewers draw a flat disc of
the right orientation at any scene scale.  ``nx ny nz`` is the surfel normal, the third
column of R(rot).  Readers ignore ``scale_2`` and the normals, so 2DGS files (which have
neither) read too.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from scipy.special import expit

Tensor = torch.Tensor

SH_C0 = 0.28209479177387814
THICKNESS_RATIO = 1e-4
OPACITY_EPS = 1e-6  # opacities are clipped to [eps, 1 - eps] so that their logit is finite
SH_REST_SIZES = (3, 8, 15)
MAX_HEADER_BYTES = 1 << 16
PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
             "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
             "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1",
            "rot_0", "rot_1", "rot_2", "rot_3")


class PlyFormatError(ValueError):
    """A PLY file that is not a readable Gaussian-splat file; ``str(err)`` names the file."""

    def __init__(self, path: str | os.PathLike, message: str) -> None:
        self.path = str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}")


class GaussianPly(NamedTuple):
    """The surfels of a Gaussian-splat PLY, float32 CPU tensors."""

    means: Tensor      # (N, 3)
    quats: Tensor      # (N, 4) (w, x, y, z), unit norm
    scales: Tensor     # (N, 2) tangent scales s_u, s_v (metres)
    opacities: Tensor  # (N,) in (0, 1)
    colors: Tensor     # (N, 3) RGB of the degree-0 harmonic, 0.5 + C0 * f_dc (not clipped)
    sh_rest: Tensor | None  # (N, K, 3) higher-order SH coefficients, or None


def _float64(value, name: str, shape: tuple) -> np.ndarray:
    """``value`` (tensor or array) as a finite float64 array of ``shape`` (None: any size)."""
    arr = np.asarray(value.detach().cpu() if isinstance(value, Tensor) else value, dtype=np.float64)
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"{name} must be {want}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _rotation_third_column(q: np.ndarray) -> np.ndarray:
    """Third column of R(q) for unit quaternions (N, 4) (w, x, y, z): the surfel normal; (N, 3)."""
    w, x, y, z = q.T
    return np.stack([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)], axis=1)


def gaussian_ply_properties(sh_rest_size: int) -> list[str]:
    """Property names of the vertex element, in file order, for K = ``sh_rest_size`` (0 for none)."""
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(3 * sh_rest_size)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def write_gaussian_ply(path: str | os.PathLike, means, quats, scales, opacities, colors, sh_rest=None) -> Path:
    """Write surfels as a binary little-endian Gaussian-splat PLY; returns the path.

    means: (N, 3) world frame; quats: (N, 4) (w, x, y, z), normalised here; scales:
    (N, 2) > 0, tangent scales s_u, s_v; opacities: (N,) in [0, 1] (clipped to
    [1e-6, 1 - 1e-6]); colors: (N, 3) RGB, usually in [0, 1]; sh_rest: (N, K, 3) with
    K in (3, 8, 15), or None.  Torch tensors or arrays.  The file is written beside
    ``path`` and renamed into place.
    """
    means = _float64(means, "means", (None, 3))
    n = len(means)
    quats = _float64(quats, "quats", (n, 4))
    scales = _float64(scales, "scales", (n, 2))
    opacities = _float64(opacities, "opacities", (n,))
    colors = _float64(colors, "colors", (n, 3))
    k = 0
    if sh_rest is not None:
        sh_rest = _float64(sh_rest, "sh_rest", (n, None, 3))
        k = sh_rest.shape[1]
        if k not in SH_REST_SIZES:
            raise ValueError(f"sh_rest must have K in {SH_REST_SIZES} coefficients (SH degree 1 to 3), got {k}")
    norms = np.linalg.norm(quats, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"quats has {int(np.sum(norms == 0))} zero quaternions")
    if np.any(scales <= 0):
        raise ValueError("scales must be > 0")
    if np.any((opacities < 0) | (opacities > 1)):
        raise ValueError("opacities must be in [0, 1]")
    rot = quats / norms
    alpha = np.clip(opacities, OPACITY_EPS, 1 - OPACITY_EPS)
    columns = [
        means,
        _rotation_third_column(rot),
        (colors - 0.5) / SH_C0,
        sh_rest.transpose(0, 2, 1).reshape(n, 3 * k) if k else np.zeros((n, 0)),
        np.log(alpha / (1 - alpha))[:, None],
        np.log(scales),
        np.log(THICKNESS_RATIO * scales.max(axis=1, keepdims=True)),
        rot,
    ]
    data = np.ascontiguousarray(np.concatenate(columns, axis=1), dtype="<f4")
    names = gaussian_ply_properties(k)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in names] + ["end_header"]
    path = Path(path)
    tmp = path.with_name(f".{path.name}.writing")
    try:
        with open(tmp, "wb") as f:
            f.write(("\n".join(header) + "\n").encode("ascii"))
            f.write(data.tobytes())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _read_header(f, path) -> tuple[int, list[tuple[str, str]], int]:
    """Parse the header; returns (vertex count, [(property, numpy type)], header bytes)."""
    first = f.readline(MAX_HEADER_BYTES)
    if first.rstrip(b"\r\n") != b"ply":
        raise PlyFormatError(path, "not a PLY file (the first line is not 'ply')")
    size = len(first)
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    fmt = None
    while True:
        raw = f.readline(MAX_HEADER_BYTES)
        size += len(raw)
        if not raw.endswith(b"\n") or size > MAX_HEADER_BYTES:
            raise PlyFormatError(path, f"header has no 'end_header' line within {MAX_HEADER_BYTES} bytes")
        try:
            line = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise PlyFormatError(path, "header is not ASCII text") from None
        words = line.split()
        if line == "end_header":
            break
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            fmt = " ".join(words[1:])
            if fmt != "binary_little_endian 1.0":
                raise PlyFormatError(path, f"unsupported format {fmt!r}; only 'binary_little_endian 1.0' is read")
        elif words[0] == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise PlyFormatError(path, f"bad element line {line!r}")
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property":
            if not elements:
                raise PlyFormatError(path, f"property before any element: {line!r}")
            name, _, props = elements[-1]
            if len(words) >= 2 and words[1] == "list":
                if name == "vertex":
                    raise PlyFormatError(path, f"list property in element 'vertex' is not supported: {line!r}")
                continue
            if len(words) != 3 or words[1] not in PLY_TYPES:
                raise PlyFormatError(path, f"bad property line {line!r}")
            props.append((words[2], PLY_TYPES[words[1]]))
        else:
            raise PlyFormatError(path, f"unknown header line {line!r}")
    if fmt is None:
        raise PlyFormatError(path, "header has no 'format' line")
    if not elements or elements[0][0] != "vertex":
        found = [e[0] for e in elements]
        raise PlyFormatError(path, f"expected 'vertex' as the first element, found elements {found}")
    return elements[0][1], elements[0][2], size


def read_gaussian_ply(path: str | os.PathLike) -> GaussianPly:
    """Read a Gaussian-splat PLY written by :func:`write_gaussian_ply`, 3DGS or 2DGS.

    Undoes the storage transforms (sigmoid of opacity, exp of scales, ``0.5 + C0 f_dc``,
    normalised rotation).  Property types other than float are accepted; extra
    properties, ``scale_2`` and the normals are ignored.  Raises PlyFormatError naming
    the file and what is wrong (format, missing property, truncated data, ...).
    """
    try:
        with open(path, "rb") as f:
            n, props, header_size = _read_header(f, path)
            names = [p[0] for p in props]
            if len(set(names)) != len(names):
                raise PlyFormatError(path, "a vertex property is declared twice")
            missing = [p for p in REQUIRED if p not in names]
            if missing:
                raise PlyFormatError(path, f"vertex element lacks properties {missing}")
            rest = [f"f_rest_{i}" for i in range(sum(p.startswith("f_rest_") for p in names))]
            if not set(rest) <= set(names) or len(rest) not in (0, 9, 24, 45):
                raise PlyFormatError(path, f"expected f_rest_0 .. f_rest_{{3K-1}} with K in {SH_REST_SIZES} or none, "
                                           f"got {sorted(p for p in names if p.startswith('f_rest_'))}")
            dtype = np.dtype([(name, "<" + t) for name, t in props])
            available = os.fstat(f.fileno()).st_size - header_size
            if available < n * dtype.itemsize:
                raise PlyFormatError(path, f"truncated: {n} vertices need {n * dtype.itemsize} bytes after the "
                                           f"{header_size}-byte header, the file has {available}")
            data = f.read(n * dtype.itemsize)
    except OSError as exc:
        raise PlyFormatError(path, f"unreadable ({exc.strerror})") from None
    v = np.frombuffer(data, dtype=dtype, count=n)

    def columns(*names: str) -> np.ndarray:
        out = np.stack([v[name].astype(np.float64) for name in names], axis=1)
        bad = [name for i, name in enumerate(names) if not np.all(np.isfinite(out[:, i]))]
        if bad:
            raise PlyFormatError(path, f"properties {bad} contain NaN or inf")
        return out

    rot = columns("rot_0", "rot_1", "rot_2", "rot_3")
    norms = np.linalg.norm(rot, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise PlyFormatError(path, f"{int(np.sum(norms == 0))} vertices have a zero rotation quaternion")
    k = len(rest) // 3
    sh_rest = columns(*rest).reshape(n, 3, k).transpose(0, 2, 1) if k else None

    def tensor(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    return GaussianPly(
        means=tensor(columns("x", "y", "z")),
        quats=tensor(rot / norms),
        scales=tensor(np.exp(columns("scale_0", "scale_1"))),
        opacities=tensor(expit(columns("opacity")[:, 0])),
        colors=tensor(0.5 + SH_C0 * columns("f_dc_0", "f_dc_1", "f_dc_2")),
        sh_rest=None if sh_rest is None else tensor(sh_rest),
    )
