"""Render preparation: rays of the sensor's grid, surfel geometry, projected centres and
footprint records -- everything the rasterizer ops consume."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from gssim.core.surfels import Surfels
from gssim.core.transforms import check_rigid, interpolate_pose
from gssim.render import native
from gssim.sensors.base import ALPHA_MIN, FILTER_INV_SQUARE, Sensor

Tensor = torch.Tensor

FAR_AWAY = 1e9  # projected centre of surfels the low-pass filter must ignore
# Footprints by the native op where it applies (CPU or CUDA tensors of a build with that
# backend, a sensor model it knows); False forces the torch reference (tests compare the two).
USE_NATIVE_PREP = True


@dataclass
class RayGrid:
    """World-frame rays of one sensor pose (or readout), row-major, R = rows * cols."""

    rays_o: Tensor        # (R, 3)
    rays_d: Tensor        # (R, 3) unit
    depth_scale: Tensor   # (R,) ray distance -> reported depth
    rows: int
    cols: int
    cell_poses: Tensor    # (P, 4, 4) float64 distinct cell poses (P = 1 for an instant sensor)
    cell_pose_index: Tensor  # (rows, cols) index into cell_poses
    cell_pose_fractions: Tensor  # (P,) float64 readout fraction of each cell pose
    origin: Tensor        # (3,) float32 sensor position at the middle of the readout
    translation: float    # distance the sensor moves over the whole readout (m)
    rotation: float       # angle it turns over the whole readout (rad)


@dataclass
class SurfelGeometry:
    """Per-surfel quantities the rasterizer uses (differentiable in the Surfels tensors)."""

    means: Tensor       # (N, 3)
    axis_u: Tensor      # (N, 3) t_u / s_u
    axis_v: Tensor      # (N, 3) t_v / s_v
    normals: Tensor     # (N, 3) unit
    opacities: Tensor   # (N,)
    features: Tensor    # (N, C)
    means2d: Tensor     # (N, 2) projected centre (col, row), FAR_AWAY where not valid
    depth_keys: Tensor  # (N,) distance to the sensor (mid readout), sort key
    records: Tensor     # (F, 6) int32 footprints (surfel, r0, r1, c0, c1, column shift)


def _as_pose(T: Tensor | object, name: str) -> Tensor:
    T = torch.as_tensor(T, dtype=torch.float64)
    check_rigid(T, name)
    return T


def _sensor_rays(sensor: Sensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """The sensor's unit ray directions (H, W, 3) float64 and depth scales (R,) float32 on
    a device, kept on the sensor object (like its view volume: sensors are not changed
    after they are made), so a render does not rebuild or copy them every frame."""
    cache = sensor.__dict__.setdefault("_device_rays", {})
    if str(device) not in cache:
        cache[str(device)] = (sensor.ray_directions().double().to(device),
                              sensor.depth_scale().reshape(-1).float().to(device))
    return cache[str(device)]


def _readout_poses_index(sensor: Sensor) -> tuple[Tensor, Tensor]:
    """Distinct readout fractions of the sensor's cells (P,) float64 and each cell's index
    into them (rows, cols), kept on the sensor object."""
    cached = sensor.__dict__.get("_readout_index")
    if cached is None:
        cached = torch.unique(sensor.cell_fractions().double(), return_inverse=True)
        sensor._readout_index = cached
    return cached


def build_rays(sensor: Sensor, T_world_sensor, T_world_sensor_end=None, device=None) -> RayGrid:
    """Rays of ``sensor`` at a pose; a moving sensor interpolates the pose per cell
    between ``T_world_sensor`` (readout fraction 0) and ``T_world_sensor_end`` (1).
    Rays (and depth scales) are on ``device`` (default CPU); poses stay on the CPU."""
    dev = torch.device("cpu") if device is None else torch.device(device)
    T0 = _as_pose(T_world_sensor, "T_world_sensor")
    translation = rotation = 0.0
    if sensor.is_instant or T_world_sensor_end is None:
        poses = T0[None]
        uniq = torch.zeros(1, dtype=torch.float64)
        index = torch.zeros(sensor.rows, sensor.cols, dtype=torch.long)
        mid = T0
        T0_dev = T0.to(dev)
        rays_d = _sensor_rays(sensor, dev)[0] @ T0_dev[:3, :3].T
        rays_o = T0_dev[:3, 3].expand_as(rays_d)
    else:
        T1 = _as_pose(T_world_sensor_end, "T_world_sensor_end")
        uniq, index = _readout_poses_index(sensor)
        poses = interpolate_pose(T0, T1, uniq)
        mid = interpolate_pose(T0, T1, torch.tensor([0.5], dtype=torch.float64))[0]
        translation = float((T1[:3, 3] - T0[:3, 3]).norm())
        cos_angle = ((T0[:3, :3].T @ T1[:3, :3]).trace() - 1) / 2
        rotation = float(torch.arccos(cos_angle.clamp(-1, 1)))
        dirs = _sensor_rays(sensor, torch.device("cpu"))[0]
        rays_d = (poses[:, :3, :3][index] @ dirs[..., None])[..., 0]
        rays_o = poses[:, :3, 3][index]
    return RayGrid(rays_o=rays_o.reshape(-1, 3).float().to(dev).contiguous(),
                   rays_d=rays_d.reshape(-1, 3).float().to(dev).contiguous(),
                   depth_scale=_sensor_rays(sensor, dev)[1], rows=sensor.rows, cols=sensor.cols, cell_poses=poses,
                   cell_pose_index=index, cell_pose_fractions=uniq, origin=mid[:3, 3].float(),
                   translation=translation, rotation=rotation)


def _to_sensor(T_world_sensor: Tensor, points: Tensor) -> Tensor:
    """World points (..., 3) into the frame of a (4, 4) float64 sensor pose (float32 out)."""
    T = T_world_sensor.to(dtype=points.dtype, device=points.device)
    return (points - T[:3, 3]) @ T[:3, :3]


def _per_surfel_frame(grid: RayGrid, index: Tensor, points: Tensor) -> Tensor:
    """World points (N, ..., 3) into the frame of each surfel's own cell pose (N,)."""
    T = grid.cell_poses.to(points.device)[index.to(points.device)].to(points.dtype)
    R, t = T[:, :3, :3], T[:, :3, 3]
    shape = (points.shape[0],) + (1,) * (points.dim() - 2) + (3,)
    return torch.einsum("nji,n...j->n...i", R, points - t.reshape(shape))


def _project_centres(sensor: Sensor, grid: RayGrid, means: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Grid coordinates of surfel centres, validity, and the index of the cell pose each is
    seen from (a moving sensor: the pose of the cell it lands in, by fixed-point iteration
    on the readout fraction; natively where the footprints are)."""
    idx = torch.zeros(means.shape[0], dtype=torch.long, device=means.device)
    if len(grid.cell_poses) == 1:
        return (*sensor.project(_to_sensor(grid.cell_poses[0], means)), idx)
    if _use_native_prep(sensor, means) and sensor.native_projection_args() is not None:
        idx = native.moving_pose_index(sensor.native_projection_args(), grid.rows, grid.cols, means,
                                       grid.cell_poses, grid.cell_pose_index)
        return (*sensor.project(_per_surfel_frame(grid, idx, means)), idx)
    with torch.no_grad():
        idx += int(grid.cell_pose_index[grid.rows // 2, grid.cols // 2])
        for _ in range(3):
            uv, ok = sensor.project(_per_surfel_frame(grid, idx, means.detach()))
            col = uv[:, 0].nan_to_num(0).clamp(0, grid.cols - 1).long()
            row = uv[:, 1].nan_to_num(0).clamp(0, grid.rows - 1).long()
            idx = torch.where(ok, grid.cell_pose_index.to(means.device)[row, col], idx)
    return (*sensor.project(_per_surfel_frame(grid, idx, means)), idx)


def _readout_tables(sensor: Sensor, grid: RayGrid) -> tuple[Tensor, Tensor, Tensor, Tensor, float]:
    """Range of cell readout fractions per row (row_lo, row_hi (rows,)) and per column
    (col_lo, col_hi (cols,)), float64, and the angle (rad) between the rays of the first
    and the last cells read out."""
    frac = torch.zeros(grid.rows, grid.cols, dtype=torch.float64)
    frac.view(-1)[:] = grid.cell_pose_fractions[grid.cell_pose_index.reshape(-1)]
    dirs = sensor.ray_directions().double()
    d_first, d_last = dirs[frac == frac.min()].mean(0), dirs[frac == frac.max()].mean(0)
    readout_angle = float(torch.arccos((d_first @ d_last / (d_first.norm() * d_last.norm())).clamp(-1, 1)))
    return frac.amin(1), frac.amax(1), frac.amin(0), frac.amax(0), readout_angle


def _use_native_prep(sensor: Sensor, means: Tensor) -> bool:
    return (USE_NATIVE_PREP and means.device.type in ("cpu", "cuda")
            and native.footprints_available(means.device.type) and sensor.native_footprint_args() is not None)


def _native_footprints(sensor: Sensor, grid: RayGrid, pose_idx: Tensor, surfels: Surfels, t_u: Tensor,
                       t_v: Tensor, means2d: Tensor, vis2d: Tensor) -> Tensor:
    """Records of the native op: the supports built, moved into the sensor frame and binned
    (span growth of a moving sensor included) in C++, per surfel in parallel."""
    motion = None
    if len(grid.cell_poses) > 1:
        row_lo, row_hi, col_lo, col_hi, readout_angle = _readout_tables(sensor, grid)
        motion = ([grid.translation, grid.rotation, readout_angle, float(sensor.periodic), sensor.column_angle],
                  [row_lo, row_hi, col_lo, col_hi])
    return native.footprints(sensor.native_footprint_args(), grid.rows, grid.cols, surfels.means, t_u, t_v,
                             surfels.scales, surfels.opacities, means2d, vis2d, grid.cell_poses,
                             pose_idx if motion is not None else None, grid.cell_pose_fractions, motion)


def _moving_footprints(sensor: Sensor, grid: RayGrid, idx: Tensor, corners: Tensor, means: Tensor,
                       radius: Tensor, means2d: Tensor, valid2d: Tensor, filter_radius: Tensor) -> Tensor:
    """Footprint records for a sensor that moves during its readout.

    Each surfel is binned from the pose of the cell its centre lands in, with its bounds
    widened by the motion over the readout span its own cells cover; the span is grown
    until the cells it yields need no more (at most the whole readout).  A surfel out of
    view from that pose, one the motion sweeps faster than the readout does, or one near
    the seam of a periodic sensor, gets the whole readout.
    """
    corners_l = _per_surfel_frame(grid, idx, corners)
    means_l = _per_surfel_frame(grid, idx, means)
    f_s = grid.cell_pose_fractions[idx]
    row_lo, row_hi, col_lo, col_hi, readout_angle = _readout_tables(sensor, grid)
    span = torch.zeros(len(idx), dtype=torch.float64)
    todo = torch.arange(len(idx))
    done = []
    for attempt in range(5):
        last = attempt == 4
        if last:
            span[todo] = 1.0
        motion = None if attempt == 0 else (grid.translation * span[todo], grid.rotation * span[todo])
        rec = sensor.footprints(corners_l[todo], means_l[todo], radius[todo], means2d[todo], valid2d[todo],
                                filter_radius[todo], motion=motion).long()
        rec[:, 0] = todo[rec[:, 0]]
        if last:
            done.append(rec)
            break
        # Readout fractions each record's cells are taken at (monotone along rows or columns).
        r0, r1, c0, c1 = rec[:, 1], rec[:, 2], rec[:, 3], rec[:, 4]
        lo = torch.maximum(torch.minimum(row_lo[r0], row_lo[r1]), torch.minimum(col_lo[c0], col_lo[c1]))
        hi = torch.minimum(torch.maximum(row_hi[r0], row_hi[r1]), torch.maximum(col_hi[c0], col_hi[c1]))
        f = f_s[rec[:, 0]]
        need_rec = torch.maximum((f - lo).abs(), (hi - f).abs())
        # How far the motion can turn the surfel's direction over the whole readout.
        near = (means_l[rec[:, 0]].norm(dim=-1) - radius[rec[:, 0]]).clamp(min=1e-9)
        sway = (grid.rotation + torch.asin((grid.translation / near).clamp(max=1.0))).double()
        if sensor.periodic:
            # Across the seam, neighbouring columns are a readout apart: a surfel the motion
            # can carry over it needs the whole readout.
            reach = sway / sensor.column_angle + 2
            overtaken = (c0 - reach <= 0) | (c1 + reach >= grid.cols - 1)
        else:
            # Moving faster than the readout sweeps, it may show up in two places.
            overtaken = sway >= 0.5 * readout_angle
        need_rec = torch.where(overtaken, torch.maximum(f, 1 - f), need_rec)
        need = torch.zeros(len(idx), dtype=torch.float64).scatter_reduce(0, rec[:, 0], need_rec, "amax")
        if attempt == 0:
            # Out of view from its own pose: it can only show up from far in the readout.
            seen = torch.zeros(len(idx), dtype=torch.bool)
            seen[rec[:, 0]] = True
            need = torch.where(seen, need, torch.ones_like(need))
        grow = torch.zeros(len(idx), dtype=torch.bool)
        grow[todo] = need[todo] > span[todo] + 1e-12
        done.append(rec[~grow[rec[:, 0]]])
        todo = grow.nonzero()[:, 0]
        if len(todo) == 0:
            break
        # Headroom so the span settles in a pass or two rather than creeping up.
        span[todo] = (need[todo] * 1.25 + 1e-3).clamp(max=1.0)
    return torch.cat(done).to(torch.int32).contiguous()


def prepare_surfels(surfels: Surfels, sensor: Sensor, grid: RayGrid) -> SurfelGeometry:
    """Surfel geometry, projected centres, depth keys and footprint records for a grid."""
    rot = surfels.rotations()
    t_u, t_v, normals = rot[..., 0], rot[..., 1], rot[..., 2]
    axis_u = t_u / surfels.scales[:, :1]
    axis_v = t_v / surfels.scales[:, 1:]
    means2d, valid2d, pose_idx = _project_centres(sensor, grid, surfels.means)
    means2d = torch.where(valid2d[:, None] & torch.isfinite(means2d), means2d,
                          torch.full_like(means2d, FAR_AWAY).detach())
    with torch.no_grad():
        means = surfels.means.detach()
        opac = surfels.opacities.detach()
        visible = opac >= ALPHA_MIN
        m2d = means2d.detach()
        vis2d = valid2d & visible & (m2d.abs() < FAR_AWAY).all(-1)
        depth_keys = (means - grid.origin.to(means.device)).norm(dim=-1)
        if _use_native_prep(sensor, surfels.means):
            records = _native_footprints(sensor, grid, pose_idx, surfels, t_u, t_v, m2d, vis2d)
        else:
            records = _reference_footprints(sensor, grid, pose_idx, surfels, t_u.detach(), t_v.detach(), m2d,
                                            vis2d)
    return SurfelGeometry(means=surfels.means, axis_u=axis_u, axis_v=axis_v, normals=normals,
                          opacities=surfels.opacities, features=surfels.features, means2d=means2d,
                          depth_keys=depth_keys.contiguous(), records=records)


def _reference_footprints(sensor: Sensor, grid: RayGrid, pose_idx: Tensor, surfels: Surfels, t_u: Tensor,
                          t_v: Tensor, m2d: Tensor, vis2d: Tensor) -> Tensor:
    """Records by the torch reference: supports (corners, bounding sphere, filter radius)
    in torch, binned by ``Sensor.footprints`` (``_moving_footprints`` for a moving sensor)."""
    means = surfels.means.detach()
    opac = surfels.opacities.detach()
    visible = opac >= ALPHA_MIN
    log_ratio = torch.log(torch.where(visible, opac / ALPHA_MIN, torch.ones_like(opac)))
    k = torch.sqrt(2 * log_ratio + 1e-3)            # support radius, in sigmas (with slack)
    filter_radius = torch.sqrt(2 * log_ratio / FILTER_INV_SQUARE)   # in cells
    eu = (k * surfels.scales[:, 0].detach())[:, None] * t_u
    ev = (k * surfels.scales[:, 1].detach())[:, None] * t_v
    corners = torch.stack([means + eu + ev, means + eu - ev, means - eu - ev, means - eu + ev], 1)
    radius = k * surfels.scales.detach().norm(dim=-1)
    if len(grid.cell_poses) == 1:
        T = grid.cell_poses[0]
        records = sensor.footprints(_to_sensor(T, corners).cpu(), _to_sensor(T, means).cpu(), radius.cpu(),
                                    m2d.cpu(), vis2d.cpu(), filter_radius.cpu())
    else:
        records = _moving_footprints(sensor, grid, pose_idx, corners.cpu(), means.cpu(), radius.cpu(),
                                     m2d.cpu(), vis2d.cpu(), filter_radius.cpu())
    if records.shape[0]:
        records = records[visible.cpu()[records[:, 0].long()]]
    return records
