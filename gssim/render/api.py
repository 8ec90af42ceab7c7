"""``gssim.render``: compose rays and surfels, rasterize on a backend, finish outputs."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from gssim.core.surfels import Surfels
from gssim.core.transforms import check_rigid
from gssim.render import native
from gssim.render.culling import SurfelChunks, visible_index
from gssim.render.pipeline import RayGrid, SurfelGeometry, build_rays, prepare_surfels
from gssim.render.reference import rasterize_reference
from gssim.sensors.base import Sensor
from gssim.sensors.limits import LIMITS

Tensor = torch.Tensor
log = logging.getLogger(__name__)

BACKENDS = ("auto", "cpu", "cuda", "torch")
_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


@dataclass
class CameraOutput:
    """Camera render.  color (H, W, C) over the background; alpha (H, W); depth (H, W)
    expected camera-z depth (sum w z / alpha); median_depth (H, W); normal (H, W, 3) unit
    world-frame normal facing the camera.  depth, median_depth, normal are 0 where alpha is 0."""

    color: Tensor
    alpha: Tensor
    depth: Tensor
    median_depth: Tensor
    normal: Tensor


@dataclass
class LidarOutput:
    """LiDAR render as range images (B, A): range (sum w t / alpha), median_range, alpha,
    features (B, A, C) = sum w f (not normalised), normal (B, A, 3); 0 where alpha is 0."""

    range: Tensor
    median_range: Tensor
    alpha: Tensor
    features: Tensor
    normal: Tensor


def _pick_backend(backend: str, device: torch.device) -> str:
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"render: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = device.type if native.available(device.type) else "torch"
        if backend == "torch":
            log.warning("render: no native %s kernels in this build; using the (slow) torch reference",
                        device.type)
    if backend in ("cpu", "cuda"):
        if device.type != backend:
            raise ValueError(f"render: backend {backend!r} needs surfels on {backend}, they are on {device}")
        if not native.available(backend):
            raise RuntimeError(f"render: this build of gssim has no native {backend} kernels "
                               f"({native.NATIVE_ERROR or 'not compiled'}); use backend='torch'")
    return backend


def _numeric_tensor(value, name: str) -> Tensor:
    """A real-valued tensor of a tensor, array or nested list; refuses strings, bools,
    complex values and tensors without data (the meta device) with a message naming it."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"render: {name} must be numbers (a tensor, array or nested list), got a string {value!r}")
    if isinstance(value, torch.Tensor):
        t = value
    else:
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"render: {name} must be numbers (a tensor, array or nested list): {exc}") from None
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"render: {name} must hold real numbers, got {type(value).__name__} of dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.device.type not in ("cpu", "cuda"):
        raise ValueError(f"render: {name} is on the {t.device.type} device; it must hold data on cpu or cuda")
    if not (t.is_floating_point() or t.dtype in _INT_DTYPES):
        raise TypeError(f"render: {name} must hold real numbers, got dtype {t.dtype}")
    return t


def _pose(T, name: str) -> Tensor:
    """A (4, 4) float64 CPU pose tensor (the graph is kept); finite, rigid, with its
    translation within ``LIMITS.max_coordinate_m``."""
    T = _numeric_tensor(T, name).to(device="cpu", dtype=torch.float64)
    check_rigid(T, name)
    reach = float(T[:3, 3].detach().abs().max())
    if reach > LIMITS.max_coordinate_m:
        raise ValueError(f"render: {name} translation reaches {reach:g} m, over the limit of "
                         f"{LIMITS.max_coordinate_m:g} m (gssim.sensors.LIMITS.max_coordinate_m); float32 "
                         f"rendering cannot resolve such coordinates")
    return T


def rasterize(grid: RayGrid, geom: SurfelGeometry, sensor: Sensor, backend: str) -> tuple[Tensor, ...]:
    """Run the compositing op of a backend: color_acc, alpha, t_acc, normal_acc, median_t."""
    args = (grid.rays_o.to(geom.means.device), grid.rays_d.to(geom.means.device), grid.rows, grid.cols,
            geom.means, geom.axis_u, geom.axis_v, geom.normals, geom.opacities, geom.features,
            geom.means2d, geom.depth_keys.to(geom.means.device), geom.records.to(geom.means.device))
    if backend == "torch":
        return rasterize_reference(*args, sensor.t_min, sensor.t_max)
    th, tw = sensor.tile_shape
    return native.rasterize(*args, th, tw, sensor.t_min, sensor.t_max)


def render(surfels: Surfels | SurfelChunks, sensor: Sensor, T_world_sensor, T_world_sensor_end=None,
           backend: str = "auto", background: Tensor | None = None, cull: bool = True
           ) -> CameraOutput | LidarOutput:
    """Render surfels through a sensor at a pose.

    surfels: a Surfels set, or SurfelChunks of a large static scene (only the chunks the
    sensor can see are touched).  T_world_sensor: (4, 4) sensor-to-world pose (at the
    start of a rolling-shutter readout or LiDAR sweep); T_world_sensor_end: pose at its end
    (optional; the pose of each row or column is interpolated between them).  background:
    (C,) colour under the composite (cameras; default zeros).  cull: reject surfels outside
    the sensor's view volume and range first (conservative: the render is the same).
    Gradients flow to every Surfels tensor on every backend.

    Arguments are checked before anything is computed: poses must be real-valued, finite,
    rigid and within ``gssim.sensors.LIMITS.max_coordinate_m``; the background finite;
    every tensor must hold data (cpu or cuda, not the meta device).
    """
    chunks = surfels if isinstance(surfels, SurfelChunks) else None
    if chunks is not None:
        surfels = chunks.surfels
    if not isinstance(surfels, Surfels):
        raise TypeError(f"render: surfels must be gssim.Surfels or SurfelChunks, got {type(surfels).__name__}")
    if not isinstance(sensor, Sensor):
        raise TypeError(f"render: sensor must be a gssim sensor, got {type(sensor).__name__}")
    if surfels.device.type not in ("cpu", "cuda"):
        raise ValueError(f"render: surfels are on the {surfels.device.type} device; they must hold data on cpu "
                         f"or cuda")
    backend = _pick_backend(backend, surfels.device)
    C = surfels.features.shape[1]
    dev = surfels.device
    if background is None:
        background = torch.zeros(C, device=dev)
    background = _numeric_tensor(background, "background").to(dtype=torch.float32, device=dev)
    if background.shape != (C,):
        raise ValueError(f"render: background must have shape ({C},) to match the features, "
                         f"got {tuple(background.shape)}")
    finite = torch.isfinite(background.detach())
    if not bool(finite.all()):
        c = int((~finite).nonzero()[0, 0])
        raise ValueError(f"render: background must be finite; channel {c} is {float(background[c])}")
    if T_world_sensor is None:
        raise TypeError("render: T_world_sensor is required (a (4, 4) sensor-to-world pose)")
    T_world_sensor = _pose(T_world_sensor, "T_world_sensor")
    if T_world_sensor_end is not None:
        T_world_sensor_end = _pose(T_world_sensor_end, "T_world_sensor_end")
    grid = build_rays(sensor, T_world_sensor, T_world_sensor_end, device=dev)
    seen = surfels
    if cull or chunks is not None:
        index = visible_index(surfels, sensor, grid, chunks.candidates(sensor, grid) if chunks is not None else None)
        if index is not None:
            seen = surfels.take(index)
    geom = prepare_surfels(seen, sensor, grid) if len(seen) else None
    H, W = grid.rows, grid.cols
    if geom is None or geom.records.shape[0] == 0:
        z = torch.zeros
        color_acc, alpha, t_acc = z(H * W, C, device=dev), z(H * W, device=dev), z(H * W, device=dev)
        normal_acc, median_t = z(H * W, 3, device=dev), z(H * W, device=dev)
        if len(surfels):  # keep the graph connected so gradients are defined (zeros)
            color_acc = color_acc + 0 * surfels.features.sum()
    else:
        color_acc, alpha, t_acc, normal_acc, median_t = rasterize(grid, geom, sensor, backend)
    hit = alpha > 0
    safe_alpha = torch.where(hit, alpha, torch.ones_like(alpha))
    t_mean = torch.where(hit, t_acc / safe_alpha, torch.zeros_like(t_acc))
    nrm_len = normal_acc.norm(dim=-1, keepdim=True)
    nrm_ok = hit[:, None] & (nrm_len > 1e-12)
    normal = torch.where(nrm_ok, normal_acc / torch.where(nrm_ok, nrm_len, torch.ones_like(nrm_len)),
                         torch.zeros_like(normal_acc))
    if getattr(sensor, "kind", "camera") == "lidar":
        return LidarOutput(range=t_mean.reshape(H, W), median_range=median_t.reshape(H, W),
                           alpha=alpha.reshape(H, W), features=color_acc.reshape(H, W, C),
                           normal=normal.reshape(H, W, 3))
    scale = grid.depth_scale.to(dev)
    color = color_acc + (1 - alpha)[:, None] * background
    return CameraOutput(color=color.reshape(H, W, C), alpha=alpha.reshape(H, W),
                        depth=(t_mean * scale).reshape(H, W), median_depth=(median_t * scale).reshape(H, W),
                        normal=normal.reshape(H, W, 3))

