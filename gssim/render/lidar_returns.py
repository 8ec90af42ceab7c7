"""LiDAR returns: intensity and ray-drop from composited features, and point clouds.

``LidarReturnDecoder`` maps what the rasterizer composited along each ray (features,
alpha) plus the incidence geometry (cosine between the ray and the surface normal, and
the range) to an intensity in [0, 1] and a ray-drop probability.  ``to_point_cloud``
turns a LiDAR render into the log format's (M, 6) points: x, y, z in the sensor frame at
the sweep start (motion-compensated), intensity, beam index, time offset.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from gssim.render.pipeline import build_rays

Tensor = torch.Tensor

log = logging.getLogger(__name__)


class LidarReturnDecoder(nn.Module):
    """Small MLP: (normalised features, cos incidence, range, alpha) -> intensity, drop.

    in_channels: C, the feature channels of the surfels.
    hidden: width of the two hidden layers.
    max_range: metres; the range input is divided by it.

    The drop probability combines the network's drop term p with the ray's coverage:
    ``drop = 1 - alpha * (1 - p)``, so a ray that crosses nothing (alpha 0) is always a
    drop, and gradients reach alpha as well as the features.
    """

    def __init__(self, in_channels: int, hidden: int = 32, max_range: float = 120.0) -> None:
        super().__init__()
        if int(in_channels) != in_channels or in_channels < 1:
            raise ValueError(f"LidarReturnDecoder: in_channels must be a positive integer, got {in_channels}")
        if int(hidden) != hidden or hidden < 1:
            raise ValueError(f"LidarReturnDecoder: hidden must be a positive integer, got {hidden}")
        if not max_range > 0:
            raise ValueError(f"LidarReturnDecoder: max_range must be > 0, got {max_range}")
        self.in_channels = int(in_channels)
        self.max_range = float(max_range)
        self.mlp = nn.Sequential(nn.Linear(self.in_channels + 3, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, features: Tensor, alpha: Tensor, cos_incidence: Tensor, range_: Tensor
                ) -> tuple[Tensor, Tensor]:
        """Decode every ray.

        features: (..., C) composited sum w f (as rendered, not normalised); alpha (...);
        cos_incidence (...) in [0, 1]; range_ (...) metres.
        Returns intensity (...) in [0, 1] and drop probability (...) in [0, 1].
        """
        if features.shape[-1] != self.in_channels:
            raise ValueError(f"LidarReturnDecoder: expected features with {self.in_channels} channels, "
                             f"got shape {tuple(features.shape)}")
        lead = features.shape[:-1]
        for name, t in (("alpha", alpha), ("cos_incidence", cos_incidence), ("range_", range_)):
            if t.shape != lead:
                raise ValueError(f"LidarReturnDecoder: {name} must have shape {tuple(lead)}, got {tuple(t.shape)}")
        hit = alpha > 1e-6
        f_norm = features / torch.where(hit, alpha, torch.ones_like(alpha))[..., None]
        x = torch.cat([f_norm, cos_incidence[..., None].clamp(0, 1), (range_ / self.max_range)[..., None],
                       alpha[..., None]], -1)
        out = self.mlp(x)
        intensity = torch.sigmoid(out[..., 0])
        drop = 1 - alpha.clamp(0, 1) * (1 - torch.sigmoid(out[..., 1]))
        return intensity, drop


def _cell_poses(lidar, T_world_sensor, T_world_sensor_end) -> Tensor:
    """(B, A, 4, 4) float64 pose of every cell, as the renderer interpolates them."""
    grid = build_rays(lidar, T_world_sensor, T_world_sensor_end)
    return grid.cell_poses[grid.cell_pose_index]


def world_ray_directions(lidar, T_world_sensor, T_world_sensor_end=None) -> Tensor:
    """(B, A, 3) float32 world-frame unit ray directions, with each cell's own pose."""
    return build_rays(lidar, T_world_sensor, T_world_sensor_end).rays_d.reshape(*lidar.shape, 3)


def incidence_cosine(normal: Tensor, lidar, T_world_sensor, T_world_sensor_end=None) -> Tensor:
    """(B, A) cosine between each ray and the rendered normal, in [0, 1] (0 without a return).

    normal: (B, A, 3) world-frame unit normals facing the sensor (a LiDAR render's
    ``normal``; zero where nothing was hit).
    """
    d = world_ray_directions(lidar, T_world_sensor, T_world_sensor_end).to(normal.device)
    if normal.shape != d.shape:
        raise ValueError(f"incidence_cosine: normal must have shape {tuple(d.shape)}, got {tuple(normal.shape)}")
    return (-(normal * d).sum(-1)).clamp(0, 1)


def to_point_cloud(output, lidar, drop_prob: Tensor | None = None, intensity: Tensor | None = None, *,
                   threshold: float = 0.5, seed: int | None = None, min_alpha: float = 1e-3,
                   use_median: bool = False, T_world_sensor=None, T_world_sensor_end=None) -> Tensor:
    """Points of a LiDAR render in the log format: (M, 6) float32.

    output: a LiDAR render (``range``, ``median_range``, ``alpha`` of shape (B, A)).
    lidar: the sensor it was rendered with (rows = beams).
    drop_prob: (B, A) ray-drop probability, or None (keep every ray that returns).
    intensity: (B, A) in [0, 1], or None (intensity column 0).
    threshold: a ray is dropped when drop_prob >= threshold (deterministic) ...
    seed: ... or, when given, dropped with probability drop_prob (Bernoulli, this seed).
    min_alpha: rays whose composited alpha is below it have no return.
    use_median: use ``median_range`` instead of the expected ``range``.
    T_world_sensor, T_world_sensor_end: the sweep's start and end poses; when both are
        given, each point is moved from its column's pose into the sensor frame at the
        sweep start (motion compensation); otherwise points are range * ray direction.

    Columns: x, y, z (sensor frame at the sweep start), intensity, beam index (row), time
    offset from the sweep start (cell fraction * sweep duration, seconds).  Rows are in
    row-major cell order (beam, then column).
    """
    rng = output.median_range if use_median else output.range
    alpha = output.alpha
    B, A = lidar.shape
    if rng.shape != (B, A) or alpha.shape != (B, A):
        raise ValueError(f"to_point_cloud: output range images must be ({B}, {A}) for {lidar!r}, "
                         f"got range {tuple(rng.shape)}, alpha {tuple(alpha.shape)}")
    if not 0 <= threshold <= 1:
        raise ValueError(f"to_point_cloud: threshold must be in [0, 1], got {threshold}")
    dev = rng.device
    with torch.no_grad():
        keep = (alpha >= min_alpha) & (rng > 0) & torch.isfinite(rng)
        if drop_prob is not None:
            if drop_prob.shape != (B, A):
                raise ValueError(f"to_point_cloud: drop_prob must be ({B}, {A}), got {tuple(drop_prob.shape)}")
            p = drop_prob.detach().to(dev).float()
            if seed is None:
                dropped = p >= threshold
            else:
                gen = torch.Generator(device=dev).manual_seed(int(seed))
                dropped = torch.rand(p.shape, generator=gen, device=dev) < p
            keep = keep & ~dropped
        if intensity is None:
            inten = torch.zeros(B, A, device=dev)
        else:
            if intensity.shape != (B, A):
                raise ValueError(f"to_point_cloud: intensity must be ({B}, {A}), got {tuple(intensity.shape)}")
            inten = intensity.detach().to(dev).float().clamp(0, 1)
        dirs = lidar.ray_directions().to(dev).double()
        pts = dirs * rng.detach().double()[..., None]                   # each cell's own frame
        if T_world_sensor is not None and T_world_sensor_end is not None and not lidar.is_instant:
            poses = _cell_poses(lidar, T_world_sensor, T_world_sensor_end).to(dev)
            T0 = torch.as_tensor(T_world_sensor, dtype=torch.float64, device=dev)
            world = (poses[..., :3, :3] @ pts[..., None])[..., 0] + poses[..., :3, 3]
            pts = (world - T0[:3, 3]) @ T0[:3, :3]
        beam = torch.arange(B, device=dev, dtype=torch.float64)[:, None].expand(B, A)
        time = lidar.cell_fractions().to(dev).double() * float(lidar.sweep_duration_s)
        cloud = torch.cat([pts, inten.double()[..., None], beam[..., None], time[..., None]], -1)
        cloud = cloud[keep].float().contiguous()
    log.debug("to_point_cloud: %d of %d rays returned", cloud.shape[0], B * A)
    return cloud
