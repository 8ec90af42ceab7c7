"""Ground-truth sensor rendering by ray casting the world meshes.

Independent of the Gaussian renderer: the gssim sensor classes only supply their ray
grids (``ray_directions``) and readout timing (``cell_fractions``).  The sensor pose of
a cell at readout fraction f is interpolated between the pose at the frame time t
(``T_start``) and at the end of the readout (``T_end``, rolling shutter time or sweep
duration later), and the world is cast at that cell's time t + f * duration.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gssim.core.transforms import interpolate_pose
from gssim.synth.materials import evaluate
from gssim.synth.raycast import Hits, RayCaster
from gssim.synth.shading import Light

SHADOW_EPS = 2e-3


@dataclass
class CameraFrame:
    """A rendered camera frame.

    rgb (H, W, 3) float32 in [0, 1]; depth (H, W) float32 camera-z depth (0 = sky);
    object (H, W) int32 object id of the centre ray (-1 = sky).
    """

    rgb: np.ndarray
    depth: np.ndarray
    object: np.ndarray


@dataclass
class LidarFrame:
    """A rendered LiDAR sweep.

    points (M, 6) float32: x, y, z in the sensor frame at the frame time (motion
    compensated), intensity, beam index, time offset (s); the log's LiDAR array.
    range (B, A) float32 true range of returns (0 = drop); valid (B, A) bool;
    world_points (M, 3) float64 noise-free hit points; object (M,) int32 object ids.
    """

    points: np.ndarray
    range: np.ndarray
    valid: np.ndarray
    world_points: np.ndarray
    object: np.ndarray


def cell_poses(fractions: np.ndarray, T_start: np.ndarray, T_end: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct fractions (K,), their poses (K, 4, 4) and the index (H*W,) of each cell."""
    uniq, inv = np.unique(np.asarray(fractions, np.float64).reshape(-1), return_inverse=True)
    if np.allclose(T_start, T_end):
        poses = np.repeat(np.asarray(T_start, np.float64)[None], len(uniq), 0)
    else:
        poses = interpolate_pose(torch.from_numpy(np.asarray(T_start, np.float64)),
                                 torch.from_numpy(np.asarray(T_end, np.float64)), torch.from_numpy(uniq)).numpy()
    return uniq, poses, inv


def world_rays(dirs_sensor: np.ndarray, poses: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World origins and directions (N, 3) of sensor-frame directions (N, 3) under
    per-cell poses ``poses[index]``."""
    R = poses[index, :3, :3]
    return poses[index, :3, 3], np.einsum("nij,nj->ni", R, dirs_sensor)


def material_of(caster: RayCaster, hits: Hits, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Albedo (n, 3) and reflectivity (n,) of the hits ``sel`` (bool or index)."""
    params = caster.world.params.take(hits.object[sel])
    return evaluate(hits.material[sel], hits.local_point[sel], hits.local_normal[sel], params)


def _scaled_camera(camera, k: int):
    if k == 1:
        return camera
    return type(camera)(camera.width * k, camera.height * k, camera.fx * k, camera.fy * k, camera.cx * k,
                        camera.cy * k, distortion=list(camera.distortion) if camera.n_distortion else (),
                        rolling_shutter_s=camera.rolling_shutter_s)


def render_camera(caster: RayCaster, light: Light, camera, T_start: np.ndarray, T_end: np.ndarray, t: float,
                  supersample: int = 1) -> CameraFrame:
    """Render ``camera`` (a gssim camera) at frame time t.

    T_start, T_end: (4, 4) T_world_sensor at t and at t + camera.rolling_shutter_s.
    supersample: k renders k x k rays per pixel (box filter); 1 = one ray at the centre.
    """
    cam = _scaled_camera(camera, supersample)
    dirs = cam.ray_directions().numpy().astype(np.float64).reshape(-1, 3)
    frac = cam.cell_fractions().numpy()
    uniq, poses, idx = cell_poses(frac, T_start, T_end)
    times = t + uniq * cam.rolling_shutter_s
    origins, wdirs = world_rays(dirs, poses, idx)
    hits = caster.cast(origins, wdirs, times, idx)
    rgb = light.sky_color(wdirs)
    h = hits.hit
    if h.any():
        albedo, _ = material_of(caster, hits, h)
        n = hits.normal[h]
        n = np.where((np.einsum("ni,ni->n", n, wdirs[h]) > 0)[:, None], -n, n)  # face the viewer
        p = origins[h] + hits.t[h, None] * wdirs[h]
        lit = (n @ light.sun_dir) > 0
        if lit.any():
            li = np.flatnonzero(lit)
            so = p[li] + SHADOW_EPS * n[li]
            sd = np.broadcast_to(light.sun_dir, so.shape)
            lit[li] = ~caster.occluded(so, sd, times, idx[h][li])
        rgb[h] = light.shade(albedo, n, lit)
    depth = np.where(h, hits.t * dirs[:, 2], 0.0)
    k = supersample
    H, W = camera.height, camera.width
    rgb = rgb.reshape(H, k, W, k, 3).mean((1, 3))
    depth_c = depth.reshape(H * k, W * k)[k // 2::k, k // 2::k]
    obj = hits.object.reshape(H * k, W * k)[k // 2::k, k // 2::k]
    return CameraFrame(rgb.astype(np.float32), depth_c.astype(np.float32), obj.astype(np.int32))


def render_lidar(caster: RayCaster, lidar, T_start: np.ndarray, T_end: np.ndarray, t: float,
                 rng: np.random.Generator | None = None, range_noise_std: float = 0.0,
                 reference_range: float = 10.0, min_return_power: float = 0.0) -> LidarFrame:
    """Render one sweep of ``lidar`` (a gssim LiDAR ray grid) starting at frame time t.

    T_start, T_end: (4, 4) T_world_sensor at t and at t + the sweep duration.
    Intensity = reflectivity * |cos(incidence)|.  A ray is dropped when it misses, its
    range lies outside [min_range, max_range], or intensity * (reference_range / range)^2
    < min_return_power.  Gaussian range noise (std ``range_noise_std``, from ``rng``)
    moves each return along its ray.
    """
    dirs_grid = lidar.ray_directions().numpy().astype(np.float64)
    B, A = dirs_grid.shape[:2]
    dirs = dirs_grid.reshape(-1, 3)
    duration = float(getattr(lidar, "sweep_duration_s", 1.0 / getattr(lidar, "spin_hz", 10.0)))
    frac = lidar.cell_fractions().numpy()
    uniq, poses, idx = cell_poses(frac, T_start, T_end)
    times = t + uniq * duration
    origins, wdirs = world_rays(dirs, poses, idx)
    hits = caster.cast(origins, wdirs, times, idx)
    r = hits.t
    valid = hits.hit & (r >= lidar.min_range) & (r <= lidar.max_range)
    sel = np.flatnonzero(valid)
    _, refl = material_of(caster, hits, sel)
    cos_inc = np.abs(np.einsum("ni,ni->n", hits.normal[sel], wdirs[sel]))
    intensity = np.clip(refl * cos_inc, 0.0, 1.0)
    power = intensity * (reference_range / r[sel]) ** 2
    strong = power >= min_return_power
    sel, intensity = sel[strong], intensity[strong]
    valid[:] = False
    valid[sel] = True
    r_true = r[sel]
    noise = rng.normal(0.0, range_noise_std, len(sel)) if (rng is not None and range_noise_std > 0) else 0.0
    r_meas = np.maximum(r_true + noise, 1e-3)
    world_true = origins[sel] + r_true[:, None] * wdirs[sel]
    world_meas = origins[sel] + r_meas[:, None] * wdirs[sel]
    # Motion compensation: express every return in the sensor frame at the frame time.
    R0, p0 = np.asarray(T_start)[:3, :3], np.asarray(T_start)[:3, 3]
    local = (world_meas - p0) @ R0
    rows = sel // A
    dt = times[idx[sel]] - t
    pts = np.column_stack([local, intensity, rows, dt]).astype(np.float32)
    rng_img = np.zeros(B * A, np.float32)
    rng_img[sel] = r_true
    return LidarFrame(pts, rng_img.reshape(B, A), valid.reshape(B, A), world_true, hits.object[sel])
