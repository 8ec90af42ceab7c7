"""Gaussian assets and the asset library.

An asset is an object made of explicit surfels in its own box frame (origin at the box
centre, x forward, y left, z up; ``size`` = length, width, height in metres), with what
editing and labelling need: its class, the ground contact point (object frame; the point
that rests on the road), a LiDAR reflectivity per surfel in [0, 1], and where it came from.

A library is a folder; each asset is a sub-folder::

    <library>/<name>/asset.json          {"format": "gssim-asset", "version": 1, "name", "class",
                                          "size", "contact", "source", "surfels": N, "channels": C,
                                          "fit": {...} (optional: how well it matches its source)}
    <library>/<name>/surfels.safetensors means (N, 3), quats (N, 4), scales (N, 2),
                                          opacities (N,), colors (N, 3), reflectivity (N,)
    <library>/<name>/thumbnail.png

``DEFAULT_LIBRARY`` is the repository's ``assets/library``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from PIL import Image

from gssim.core.surfels import Surfels
from gssim.data.safe_files import check_name
from gssim.edit.views import render_shaded

Tensor = torch.Tensor

ASSET_FORMAT = "gssim-asset"
ASSET_VERSION = 1
ASSET_JSON = "asset.json"
ASSET_TENSORS = "surfels.safetensors"
THUMBNAIL = "thumbnail.png"
DEFAULT_LIBRARY = Path(__file__).resolve().parent.parent.parent / "assets" / "library"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TENSOR_SHAPES = {"means": (3,), "quats": (4,), "scales": (2,), "opacities": (), "colors": (3,), "reflectivity": ()}


class AssetError(ValueError):
    """An asset or library problem: names the asset (and file) and what is wrong."""


@dataclass
class Asset:
    """A Gaussian asset (see the module docstring).  Tensors are float32, object frame."""

    name: str
    cls: str
    size: np.ndarray            # (3,) length, width, height (m)
    contact: np.ndarray         # (3,) ground contact point, object frame (usually (0, 0, -height / 2))
    means: Tensor               # (N, 3)
    quats: Tensor               # (N, 4) (w, x, y, z)
    scales: Tensor              # (N, 2)
    opacities: Tensor           # (N,)
    colors: Tensor              # (N, 3) RGB in [0, 1]
    reflectivity: Tensor        # (N,) LiDAR reflectivity in [0, 1]
    source: str = ""            # how it was made ("procedural:sedan", "mesh:car.glb", "scene:out/s#car_3", ...)
    fit: dict | None = None     # quality against its source (held-out PSNR before/after fitting, ...), if measured

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise AssetError(f"asset name {self.name!r} must be 1-64 letters, digits, '_', '.' or '-' "
                             f"(starting with a letter or digit)")
        self.size = np.asarray(self.size, np.float64).reshape(-1)
        self.contact = np.asarray(self.contact, np.float64).reshape(-1)
        if self.size.shape != (3,) or not np.all(np.isfinite(self.size)) or np.any(self.size <= 0):
            raise AssetError(f"asset {self.name}: size must be 3 positive lengths (m), got {self.size.tolist()}")
        if self.contact.shape != (3,) or not np.all(np.isfinite(self.contact)):
            raise AssetError(f"asset {self.name}: contact must be a finite 3-vector, got {self.contact.tolist()}")
        n = self.means.shape[0] if isinstance(self.means, torch.Tensor) else -1
        for key, tail in _TENSOR_SHAPES.items():
            t = getattr(self, key)
            if not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or tuple(t.shape) != (n, *tail):
                got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise AssetError(f"asset {self.name}: {key} must be a float32 tensor of shape (N, *{tail}) with "
                                 f"N={n}, got {got}")
            if not bool(torch.isfinite(t).all()):
                raise AssetError(f"asset {self.name}: {key} holds NaN or inf")
        if n < 1:
            raise AssetError(f"asset {self.name}: has no surfels")
        if bool((self.reflectivity < 0).any() | (self.reflectivity > 1).any()):
            raise AssetError(f"asset {self.name}: reflectivity must lie in [0, 1]")

    def __len__(self) -> int:
        return self.means.shape[0]

    def surfels(self, features: Tensor | None = None) -> Surfels:
        """The asset as gssim Surfels in its object frame (features default to the colours)."""
        return Surfels(self.means, self.quats, self.scales, self.opacities,
                       self.colors if features is None else features)

    def tensors(self) -> dict[str, Tensor]:
        return {k: getattr(self, k).detach().contiguous() for k in _TENSOR_SHAPES}

    def meta(self) -> dict:
        meta = {"format": ASSET_FORMAT, "version": ASSET_VERSION, "name": self.name, "class": self.cls,
                "size": [float(v) for v in self.size], "contact": [float(v) for v in self.contact],
                "source": self.source, "surfels": len(self), "channels": 3}
        if self.fit is not None:
            meta["fit"] = self.fit
        return meta


def save_asset(asset: Asset, library: str | Path = DEFAULT_LIBRARY, overwrite: bool = False) -> Path:
    """Write ``<library>/<name>/`` (json and tensors; the thumbnail is written by the
    builder).  Returns the asset folder."""
    folder = Path(library) / check_name(asset.name, "asset name")
    if (folder / ASSET_JSON).exists() and not overwrite:
        raise FileExistsError(f"asset {asset.name} exists in {library}; pass overwrite=True to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{ASSET_TENSORS}.tmp"
    safetensors.torch.save_file(asset.tensors(), str(tmp))
    tmp.replace(folder / ASSET_TENSORS)
    tmp = folder / f".{ASSET_JSON}.tmp"
    tmp.write_text(json.dumps(asset.meta(), indent=1))
    tmp.replace(folder / ASSET_JSON)
    return folder


def load_asset(name: str, library: str | Path = DEFAULT_LIBRARY) -> Asset:
    """The asset ``name`` of a library; AssetError naming the asset and file otherwise."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise AssetError(f"unknown asset {name!r}: not a valid asset name")
    folder = Path(library) / name
    meta_path, tensor_path = folder / ASSET_JSON, folder / ASSET_TENSORS
    if not meta_path.is_file():
        known = ", ".join(list_assets(library)) or "none"
        raise AssetError(f"unknown asset {name!r} in library {library} (assets: {known})")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise AssetError(f"asset {name}: {meta_path}: not readable JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != ASSET_FORMAT or meta.get("version") != ASSET_VERSION:
        raise AssetError(f"asset {name}: {meta_path}: not a {ASSET_FORMAT} version {ASSET_VERSION} file")
    for key in ("name", "class", "size", "contact"):
        if key not in meta:
            raise AssetError(f"asset {name}: {meta_path}: missing field {key!r}")
    if not tensor_path.is_file():
        raise AssetError(f"asset {name}: missing {tensor_path}")
    try:
        t = safetensors.torch.load_file(str(tensor_path))
    except Exception as exc:  # a damaged file, whatever safetensors raises
        raise AssetError(f"asset {name}: {tensor_path}: cannot read: {type(exc).__name__}: {exc}") from None
    missing = sorted(set(_TENSOR_SHAPES) - set(t))
    if missing:
        raise AssetError(f"asset {name}: {tensor_path}: missing tensors {missing}")
    return Asset(name=meta["name"], cls=str(meta["class"]), size=meta["size"], contact=meta["contact"],
                 source=str(meta.get("source", "")), fit=meta.get("fit"), **{k: t[k] for k in _TENSOR_SHAPES})


def asset_radius(asset: Asset) -> float:
    """Radius of the sphere around the box centre that holds the asset's box."""
    return float(np.linalg.norm(asset.size) / 2)


def write_thumbnail(asset: Asset, library: str | Path = DEFAULT_LIBRARY, size: int = 128) -> Path:
    """Render the asset from the front-left 3/4 view (shaded) into ``<library>/<name>/thumbnail.png``."""
    path = Path(library) / check_name(asset.name, "asset name") / THUMBNAIL
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(render_shaded(asset.surfels(), asset_radius(asset), size)).save(path)
    return path


def list_assets(library: str | Path = DEFAULT_LIBRARY) -> list[str]:
    """Names of the assets in a library, sorted."""
    root = Path(library)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / ASSET_JSON).is_file())
