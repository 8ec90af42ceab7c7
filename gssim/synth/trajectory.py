"""The ego trajectory: along the street (+x) in a lane, optionally shifted sideways.

A lateral shift (``shift`` metres, left positive) is either constant (the same drive one
lane over) or a smooth lane change between ``change_start`` and ``change_end`` seconds.
Poses are analytic, so they can be evaluated at any time (rolling shutter, LiDAR sweep).
"""
from __future__ import annotations

import numpy as np


def smoothstep(u: np.ndarray) -> np.ndarray:
    """3u^2 - 2u^3 on [0, 1], clamped outside."""
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3 - 2 * u)


class EgoTrajectory:
    """T_world_ego(t): x = start_x + speed t, y = lane_y + lateral offset, z = 0, yaw = heading."""

    def __init__(self, lane_y: float, start_x: float, speed: float, shift: float = 0.0,
                 lane_change: bool = False, change_start: float = 0.0, change_end: float = 1.0) -> None:
        if lane_change and not change_end > change_start:
            raise ValueError(f"lane change needs change_end > change_start, got {change_start}, {change_end}")
        self.lane_y, self.start_x, self.speed = float(lane_y), float(start_x), float(speed)
        self.shift, self.lane_change = float(shift), bool(lane_change)
        self.change_start, self.change_end = float(change_start), float(change_end)

    def lateral(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lateral offset (M,) and its time derivative (M,) at times t (M,)."""
        t = np.asarray(t, np.float64)
        if not self.lane_change:
            return np.full(t.shape, self.shift), np.zeros(t.shape)
        span = self.change_end - self.change_start
        u = (t - self.change_start) / span
        inside = (u > 0) & (u < 1)
        du = np.where(inside, 6 * u * (1 - u) / span, 0.0)
        return self.shift * smoothstep(u), self.shift * du

    def poses(self, t: float | np.ndarray) -> np.ndarray:
        """T_world_ego (4, 4) for scalar t or (M, 4, 4) for t (M,), float64."""
        scalar = np.ndim(t) == 0
        t = np.atleast_1d(np.asarray(t, np.float64))
        off, doff = self.lateral(t)
        yaw = np.arctan2(doff, max(self.speed, 1e-9)) if self.speed > 0 else np.zeros_like(t)
        T = np.zeros((len(t), 4, 4))
        c, s = np.cos(yaw), np.sin(yaw)
        T[:, 0, 0], T[:, 0, 1], T[:, 1, 0], T[:, 1, 1] = c, -s, s, c
        T[:, 2, 2] = T[:, 3, 3] = 1
        T[:, 0, 3] = self.start_x + self.speed * t
        T[:, 1, 3] = self.lane_y + off
        return T[0] if scalar else T
