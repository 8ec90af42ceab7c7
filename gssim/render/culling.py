"""View culling: reject surfels a sensor cannot see before any per-surfel work.

A sensor's rays (in its own frame) lie in a cone about their mean direction and in a
band of elevations about the sensor's z axis; its hits lie in [t_min, t_max] along them.
A surfel is kept unless its bounding sphere (support radius at its opacity, as the
footprints use) lies wholly outside the cone or the band widened by the low-pass filter's
reach, or wholly out of range.  The test is conservative: a culled surfel has no record,
so renders are unchanged.

``SurfelChunks`` groups the surfels of a large static scene into spatial chunks with
bounding spheres, so a render tests a few hundred chunks and then only the surfels of the
chunks it can see.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from gssim.core.surfels import Surfels
from gssim.sensors.base import ALPHA_MIN, FILTER_INV_SQUARE, Sensor

Tensor = torch.Tensor

# Slack on angles (rad) and distances (relative) so float32 rounding never culls a surfel
# the rasterizer would draw.
ANGLE_SLACK = 1e-4
RANGE_SLACK = 1e-4
# A grid offset of r cells (Euclidean) spans at most sqrt(2) r neighbour steps in angle.
CELL_DIAGONAL = math.sqrt(2.0)


@dataclass(frozen=True)
class ViewVolume:
    """Directions and distances a sensor can see, in its own frame."""

    axis: tuple[float, float, float]   # unit mean ray direction
    half_angle: float                  # largest angle of a ray from the axis (rad)
    el_lo: float                       # lowest and highest ray elevation above the xy plane (rad)
    el_hi: float
    cell_angle: float                  # largest angle between neighbouring rays (rad)
    t_min: float
    t_max: float


def view_volume(sensor: Sensor) -> ViewVolume:
    """The sensor's view volume (computed once per sensor object)."""
    cached = getattr(sensor, "_view_volume", None)
    if cached is not None:
        return cached
    d = sensor.ray_directions().double()
    mean = d.reshape(-1, 3).mean(0)
    if float(mean.norm()) < 1e-3:   # rays all around (a spinning LiDAR): the cone is everything
        axis, half = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), math.pi
    else:
        axis = mean / mean.norm()
        half = float(torch.arccos((d @ axis).clamp(-1, 1)).max())
    el = torch.asin(d[..., 2].clamp(-1, 1))
    steps = []
    if d.shape[1] > 1:
        steps.append(torch.arccos((d[:, 1:] * d[:, :-1]).sum(-1).clamp(-1, 1)).max())
    if d.shape[0] > 1:
        steps.append(torch.arccos((d[1:] * d[:-1]).sum(-1).clamp(-1, 1)).max())
    cell = float(torch.stack(steps).max()) if steps else math.pi
    vol = ViewVolume(tuple(float(v) for v in axis), half, float(el.min()), float(el.max()), cell,
                     float(sensor.t_min), float(sensor.t_max))
    sensor._view_volume = vol
    return vol


def support_radius(scales: Tensor, opacities: Tensor) -> Tensor:
    """Radius (N,) of the sphere holding every point where a surfel's alpha reaches ALPHA_MIN
    (0 where it never does)."""
    visible = opacities >= ALPHA_MIN
    log_ratio = torch.log(torch.where(visible, opacities / ALPHA_MIN, torch.ones_like(opacities)))
    k = torch.sqrt(2 * log_ratio + 1e-3)
    return torch.where(visible, k * scales.norm(dim=-1), torch.zeros_like(k))


def filter_reach(opacities: Tensor) -> Tensor:
    """Radius (N,) in cells of the low-pass filter disc about the projected centre."""
    ratio = (opacities / ALPHA_MIN).clamp(min=1.0)
    return torch.sqrt(2 * torch.log(ratio) / FILTER_INV_SQUARE)


def sphere_visible(centre: Tensor, radius: Tensor, reach_cells: Tensor, vol: ViewVolume,
                   translation: float = 0.0, rotation: float = 0.0) -> Tensor:
    """Which spheres (centres (N, 3) in the sensor frame, radii (N,)) the sensor may see,
    from any pose at most ``translation`` m and ``rotation`` rad from the frame's; the
    low-pass filter reaches ``reach_cells`` (N,) cells (plus one) beyond the projection."""
    r = radius + translation
    dist = centre.norm(dim=-1)
    inside = dist <= r * (1 + RANGE_SLACK) + 1e-6
    beta = torch.asin((r / dist.clamp(min=1e-12)).clamp(max=1.0))
    margin = beta + (reach_cells + 1.0) * CELL_DIAGONAL * vol.cell_angle + rotation + ANGLE_SLACK
    axis = torch.tensor(vol.axis, dtype=centre.dtype, device=centre.device)
    off_axis = torch.arccos(((centre @ axis) / dist.clamp(min=1e-12)).clamp(-1, 1))
    in_cone = off_axis <= vol.half_angle + margin
    el = torch.asin((centre[:, 2] / dist.clamp(min=1e-12)).clamp(-1, 1))
    in_band = (el + margin >= vol.el_lo) & (el - margin <= vol.el_hi)
    # Hits lie within r of the centre (3D branch); the filter branch reports the centre's
    # projection on a ray within its reach, at least dist * cos(reach angle).
    near = (dist + r) * (1 + RANGE_SLACK) >= vol.t_min
    reach_angle = ((reach_cells + 1.0) * CELL_DIAGONAL * vol.cell_angle + rotation).clamp(max=math.pi / 2)
    # (dist - r) cos(reach) bounds both, for any sphere inside this one too.
    gap = dist - r
    far_hit = torch.where(gap > 0, gap * torch.cos(reach_angle), gap) * (1 - RANGE_SLACK) - translation
    in_range = near & (far_hit <= vol.t_max)
    return inside | (in_cone & in_band & in_range)


def _motion(grid) -> tuple[float, float]:
    return float(grid.translation), float(grid.rotation)


def visible_index(surfels: Surfels, sensor: Sensor, grid, candidates: Tensor | None = None) -> Tensor | None:
    """Ascending indices of the surfels (of ``candidates``, default all) the sensor may see
    from the readout's poses in ``grid``; None when every surfel is kept."""
    vol = view_volume(sensor)
    T = grid.cell_poses[0].to(surfels.means.device)
    with torch.no_grad():
        idx = candidates
        means = surfels.means.detach() if idx is None else surfels.means.detach().index_select(0, idx)
        scales = surfels.scales.detach() if idx is None else surfels.scales.detach().index_select(0, idx)
        opac = surfels.opacities.detach() if idx is None else surfels.opacities.detach().index_select(0, idx)
        local = ((means.double() - T[:3, 3]) @ T[:3, :3]).float()
        keep = sphere_visible(local, support_radius(scales, opac), filter_reach(opac), vol, *_motion(grid))
        keep &= opac >= ALPHA_MIN
        if idx is None:
            return None if bool(keep.all()) else keep.nonzero()[:, 0]
        return idx[keep]


class SurfelChunks:
    """Surfels of a static scene grouped into spatial chunks (cubes of ``chunk_m``) with
    bounding spheres of their supports; pass it to ``gssim.render`` instead of the surfels.
    Build it again after the surfels change."""

    def __init__(self, surfels: Surfels, chunk_m: float = 16.0) -> None:
        if not chunk_m > 0:
            raise ValueError(f"SurfelChunks: chunk_m must be > 0, got {chunk_m}")
        self.surfels = surfels
        self.chunk_m = float(chunk_m)
        with torch.no_grad():
            means = surfels.means.detach()
            radius = support_radius(surfels.scales.detach(), surfels.opacities.detach())
            cell = torch.floor(means / chunk_m).long()
            cell -= cell.amin(0) if len(cell) else 0
            dims = cell.amax(0) + 1 if len(cell) else torch.ones(3, dtype=torch.long)
            key = (cell[:, 0] * dims[1] + cell[:, 1]) * dims[2] + cell[:, 2]
            key, order = torch.sort(key, stable=True)
            uniq, counts = torch.unique_consecutive(key, return_counts=True)
            starts = torch.cumsum(counts, 0) - counts
            chunk_of = torch.repeat_interleave(torch.arange(len(uniq), device=means.device), counts)
            m, r = means[order], radius[order]
            n_chunks = len(uniq)
            lo = torch.full((n_chunks, 3), math.inf, device=means.device).scatter_reduce(
                0, chunk_of[:, None].expand(-1, 3), m, "amin")
            hi = torch.full((n_chunks, 3), -math.inf, device=means.device).scatter_reduce(
                0, chunk_of[:, None].expand(-1, 3), m, "amax")
            centre = (lo + hi) / 2
            extent = (m - centre[chunk_of]).norm(dim=-1) + r
            self.order = order
            self.starts, self.counts = starts, counts
            self.centre = centre
            self.radius = torch.zeros(n_chunks, device=means.device).scatter_reduce(0, chunk_of, extent, "amax")
            self.reach = torch.zeros(n_chunks, device=means.device).scatter_reduce(
                0, chunk_of, filter_reach(surfels.opacities.detach()[order]), "amax")

    def __len__(self) -> int:
        return len(self.starts)

    def candidates(self, sensor: Sensor, grid) -> Tensor:
        """Ascending indices of the surfels in the chunks the sensor may see."""
        vol = view_volume(sensor)
        T = grid.cell_poses[0].to(self.centre.device)
        local = ((self.centre.double() - T[:3, 3]) @ T[:3, :3]).float()
        seen = sphere_visible(local, self.radius, self.reach, vol, *_motion(grid)).nonzero()[:, 0]
        if len(seen) == 0:
            return torch.zeros(0, dtype=torch.long, device=self.order.device)
        counts = self.counts[seen]
        offsets = torch.repeat_interleave(self.starts[seen] - (torch.cumsum(counts, 0) - counts), counts)
        pos = torch.arange(int(counts.sum()), device=self.order.device) + offsets
        return torch.sort(self.order[pos]).values
