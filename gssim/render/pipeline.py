"""Render preparation: rays of the sensor's grid, surfel geometry, projected centres and
footprint records -- everything the rasterizer ops consume."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from gssim.core.surfels import Surfels
from gssim.core.transforms import check_rigid, interpolate_pose
from gssim.sensors.base import ALPHA_MIN, FILTER_INV_SQUARE, Sensor

Tensor = torch.Tensor

FAR_AWAY = 1e9  # projected centre of surfels the low-pass filter must ignore


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
    origin: Tensor        # (3,) float32 sensor position at the middle of the readout


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


def build_rays(sensor: Sensor, T_world_sensor, T_world_sensor_end=None) -> RayGrid:
    """Rays of ``sensor`` at a pose; a moving sensor interpolates the pose per cell
    between ``T_world_sensor`` (readout fraction 0) and ``T_world_sensor_end`` (1)."""
    T0 = _as_pose(T_world_sensor, "T_world_sensor")
    dirs = sensor.ray_directions().double()
    if sensor.is_instant or T_world_sensor_end is None:
        poses = T0[None]
        index = torch.zeros(sensor.rows, sensor.cols, dtype=torch.long)
    else:
        T1 = _as_pose(T_world_sensor_end, "T_world_sensor_end")
        fr = sensor.cell_fractions().double()
        uniq, index = torch.unique(fr, return_inverse=True)
        poses = interpolate_pose(T0, T1, uniq)
    Rot = poses[index]                                    # (H, W, 4, 4)
    rays_d = (Rot[..., :3, :3] @ dirs[..., None])[..., 0]
    rays_o = Rot[..., :3, 3]
    if len(poses) == 1:
        mid = poses[0]
    else:
        mid = interpolate_pose(T0, _as_pose(T_world_sensor_end, "T_world_sensor_end"),
                               torch.tensor([0.5], dtype=torch.float64))[0]
    return RayGrid(rays_o=rays_o.reshape(-1, 3).float().contiguous(),
                   rays_d=rays_d.reshape(-1, 3).float().contiguous(),
                   depth_scale=sensor.depth_scale().reshape(-1).float(),
                   rows=sensor.rows, cols=sensor.cols, cell_poses=poses, cell_pose_index=index,
                   origin=mid[:3, 3].float())


def _to_sensor(T_world_sensor: Tensor, points: Tensor) -> Tensor:
    """World points (..., 3) into the frame of a (4, 4) float64 sensor pose (float32 out)."""
    T = T_world_sensor.to(dtype=points.dtype, device=points.device)
    return (points - T[:3, 3]) @ T[:3, :3]


def _project_centres(sensor: Sensor, grid: RayGrid, means: Tensor) -> tuple[Tensor, Tensor]:
    """Grid coordinates of surfel centres; for a moving sensor, at the pose of the cell
    they land in (fixed-point iteration on the readout fraction)."""
    if len(grid.cell_poses) == 1:
        return sensor.project(_to_sensor(grid.cell_poses[0], means))
    with torch.no_grad():
        idx = torch.full((means.shape[0],), int(grid.cell_pose_index[grid.rows // 2, grid.cols // 2]))
        for _ in range(3):
            T = grid.cell_poses[idx].to(means.dtype)
            pts = torch.einsum("nji,nj->ni", T[:, :3, :3], means - T[:, :3, 3])
            uv, ok = sensor.project(pts)
            col = uv[:, 0].nan_to_num(0).clamp(0, grid.cols - 1).long()
            row = uv[:, 1].nan_to_num(0).clamp(0, grid.rows - 1).long()
            idx = torch.where(ok, grid.cell_pose_index[row, col], idx)
    T = grid.cell_poses[idx].to(means.dtype)
    pts = torch.einsum("nji,nj->ni", T[:, :3, :3], means - T[:, :3, 3])
    return sensor.project(pts)


def _merge_records(records: Tensor) -> Tensor:
    """Union of the boxes of records sharing (surfel, column shift)."""
    if records.shape[0] == 0:
        return records
    rec = records.long()
    key = rec[:, 0] * 4 + torch.sign(rec[:, 5]) + 1
    uniq, inv = torch.unique(key, return_inverse=True)
    out = torch.zeros(len(uniq), 6, dtype=torch.long)
    out[:, 1] = out[:, 3] = 1 << 30
    out[:, 2] = out[:, 4] = -1
    out[inv, 0] = rec[:, 0]
    out[inv, 5] = rec[:, 5]
    out[:, 1].scatter_reduce_(0, inv, rec[:, 1], "amin")
    out[:, 2].scatter_reduce_(0, inv, rec[:, 2], "amax")
    out[:, 3].scatter_reduce_(0, inv, rec[:, 3], "amin")
    out[:, 4].scatter_reduce_(0, inv, rec[:, 4], "amax")
    return out.to(torch.int32).contiguous()


def prepare_surfels(surfels: Surfels, sensor: Sensor, grid: RayGrid) -> SurfelGeometry:
    """Surfel geometry, projected centres, depth keys and footprint records for a grid."""
    rot = surfels.rotations()
    t_u, t_v, normals = rot[..., 0], rot[..., 1], rot[..., 2]
    axis_u = t_u / surfels.scales[:, :1]
    axis_v = t_v / surfels.scales[:, 1:]
    means2d, valid2d = _project_centres(sensor, grid, surfels.means)
    means2d = torch.where(valid2d[:, None] & torch.isfinite(means2d), means2d,
                          torch.full_like(means2d, FAR_AWAY).detach())
    with torch.no_grad():
        means = surfels.means.detach()
        opac = surfels.opacities.detach()
        visible = opac >= ALPHA_MIN
        log_ratio = torch.log(torch.where(visible, opac / ALPHA_MIN, torch.ones_like(opac)))
        k = torch.sqrt(2 * log_ratio)                   # support radius, in sigmas
        filter_radius = torch.sqrt(2 * log_ratio / FILTER_INV_SQUARE)   # in cells
        eu = (k * surfels.scales[:, 0].detach())[:, None] * t_u.detach()
        ev = (k * surfels.scales[:, 1].detach())[:, None] * t_v.detach()
        corners = torch.stack([means + eu + ev, means + eu - ev, means - eu - ev, means - eu + ev], 1)
        radius = k * surfels.scales.detach().norm(dim=-1)
        vis2d = valid2d & visible & (means2d.detach().abs() < FAR_AWAY).all(-1)
        poses = [grid.cell_poses[0]] if len(grid.cell_poses) == 1 else [grid.cell_poses[0], grid.cell_poses[-1]]
        parts = []
        for T in poses:
            rec = sensor.footprints(_to_sensor(T, corners).cpu(), _to_sensor(T, means).cpu(), radius.cpu(),
                                    means2d.detach().cpu(), vis2d.cpu(), filter_radius.cpu())
            parts.append(rec[visible.cpu()[rec[:, 0].long()]] if rec.shape[0] else rec)
        records = parts[0] if len(parts) == 1 else _merge_records(torch.cat(parts))
        depth_keys = (means - grid.origin.to(means.device)).norm(dim=-1)
    return SurfelGeometry(means=surfels.means, axis_u=axis_u, axis_v=axis_v, normals=normals,
                          opacities=surfels.opacities, features=surfels.features, means2d=means2d,
                          depth_keys=depth_keys.contiguous(), records=records)

