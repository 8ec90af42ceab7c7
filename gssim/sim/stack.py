"""Driving stacks: the callback a closed loop feeds with sensor frames.

A stack is any callable ``stack(obs: Observation) -> Command`` (with an optional
``reset()``); ``Command`` is a longitudinal acceleration (m/s^2, negative brakes) and a
front-wheel steering angle (rad, left positive) for the kinematic bicycle model the loop
integrates.  ``AccStack`` is adaptive cruise + emergency braking from the rendered LiDAR.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Protocol

import numpy as np


@dataclass
class Observation:
    """What the stack sees at one step: time t (s), the rendered frames {sensor id:
    CameraFrame | LidarFrame}, the calibration (each sensor's model {id: sensor} and
    mounting pose {id: T_ego_sensor (4, 4)}), and the ego's own odometry (speed m/s; pose
    T_world_ego (4, 4))."""

    t: float
    frames: dict
    sensors: dict
    T_ego_sensor: dict
    speed: float
    T_world_ego: np.ndarray


@dataclass
class Command:
    """Acceleration (m/s^2) and steering angle (rad, left positive)."""

    accel: float
    steer: float = 0.0


class DrivingStack(Protocol):
    def __call__(self, obs: Observation) -> Command: ...


@dataclass
class AccConfig:
    """Adaptive cruise (IDM car following) on the nearest LiDAR obstacle ahead in the ego's
    lane, and emergency braking when the time to collision with it drops below
    ``emergency_ttc`` s or the gap below ``min_gap`` m.  An obstacle return is one on a
    steep surface: between vertically adjacent beams of a column the surface rises more
    than ``steep_deg`` (ground, even at grazing angles, stays below it); and an obstacle is tall:
    its column holds steep returns above ``min_top`` m within ``depth`` m behind its nearest
    one (kerbs, road bumps and artefacts of a reconstructed road are lower; so are cones and
    barriers: lower ``min_top`` to brake for those)."""

    target_speed: float = 10.0      # m/s
    time_gap: float = 1.5           # s
    min_gap: float = 3.0            # m, bumper to obstacle at standstill
    max_accel: float = 1.5          # m/s^2
    comfort_decel: float = 2.5      # m/s^2
    max_decel: float = 8.0          # m/s^2, emergency
    emergency_ttc: float = 1.8      # s
    lane_half_width: float = 1.2    # m, |y| of points counted as in the ego's path
    z_min: float = 0.3              # m above the ego's ground: lower points are road
    z_max: float = 2.5
    front: float = 2.3              # m from the ego origin to its front bumper
    max_range: float = 80.0
    steep_deg: float = 45.0
    min_top: float = 1.0            # m above the ego's ground
    depth: float = 1.5              # m
    lidar: str | None = None        # LiDAR id (default: the first LiDAR frame)

    @classmethod
    def from_dict(cls, d: dict | None) -> "AccConfig":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"stack: unknown parameters {unknown}; known are {sorted(known)}")
        return cls(**d)


class AccStack:
    """Adaptive cruise + emergency braking from the rendered LiDAR; steering 0 (lane keeping
    is not its job).  Keeps the last gap to estimate the closing speed."""

    def __init__(self, cfg: AccConfig | None = None) -> None:
        self.cfg = cfg or AccConfig()
        self.reset()

    def reset(self) -> None:
        self.last: tuple[float, float] | None = None    # (t, gap)
        self.state: dict = {}

    def obstacle_gap(self, obs: Observation) -> float | None:
        """Distance (m) from the front bumper to the nearest obstacle return in the ego's
        lane ahead, None when there is none."""
        c = self.cfg
        lid = c.lidar or next((k for k, f in obs.frames.items() if hasattr(f, "drop_prob")), None)
        if lid is None or lid not in obs.frames:
            raise KeyError(f"AccStack: no LiDAR frame {c.lidar or ''} in {sorted(obs.frames)}")
        f = obs.frames[lid]
        dirs = obs.sensors[lid].ray_directions().detach().cpu().numpy().astype(np.float64)   # (B, A, 3)
        r = f.median_range.detach().cpu().numpy().astype(np.float64)
        ok = (f.alpha.detach().cpu().numpy() > 0.5) & (f.drop_prob.detach().cpu().numpy() < 0.5) & (r > 0)
        order = np.argsort(-dirs[..., 2].mean(1))                   # beams top to bottom
        T = np.asarray(obs.T_ego_sensor[lid], np.float64)
        p = (dirs * r[..., None])[order] @ T[:3, :3].T + T[:3, 3]   # (B, A, 3) ego frame
        ok = ok[order]
        # Slope between vertically adjacent returns: steep = an obstacle's face.
        rho = np.hypot(p[..., 0], p[..., 1])
        dz = np.abs(p[:-1, :, 2] - p[1:, :, 2])
        slope = math.tan(math.radians(c.steep_deg))
        steep = ok[:-1] & ok[1:] & (dz > 0.05) & (dz > slope * np.abs(rho[:-1] - rho[1:]))
        obstacle = np.zeros(ok.shape, bool)
        obstacle[:-1] |= steep
        obstacle[1:] |= steep
        ahead = obstacle & (p[..., 0] > c.front) & (np.abs(p[..., 1]) < c.lane_half_width) & (
            p[..., 2] > c.z_min) & (p[..., 2] < c.z_max) & (p[..., 0] < c.front + c.max_range)
        nearest = None
        for col in np.nonzero(ahead.any(0))[0]:
            x, z = p[ahead[:, col], col, 0], p[ahead[:, col], col, 2]
            x0 = float(x.min())
            if (z[x <= x0 + c.depth] >= c.min_top).any() and (nearest is None or x0 < nearest):
                nearest = x0
        return None if nearest is None else nearest - c.front

    def __call__(self, obs: Observation) -> Command:
        c = self.cfg
        v = max(obs.speed, 0.0)
        gap = self.obstacle_gap(obs)
        closing = 0.0
        if gap is not None and self.last is not None and obs.t > self.last[0]:
            closing = (self.last[1] - gap) / (obs.t - self.last[0])
        self.last = (obs.t, gap) if gap is not None else None
        # IDM: free-road term and the interaction term with the obstacle.
        accel = c.max_accel * (1 - (v / max(c.target_speed, 0.1)) ** 4)
        ttc = math.inf
        if gap is not None:
            s_star = c.min_gap + v * c.time_gap + v * closing / (2 * math.sqrt(c.max_accel * c.comfort_decel))
            accel -= c.max_accel * (max(s_star, 0.0) / max(gap, 0.1)) ** 2
            if closing > 0:
                ttc = gap / closing
        emergency = gap is not None and v > 0.1 and (ttc < c.emergency_ttc or gap < c.min_gap)
        if emergency:
            accel = -c.max_decel
        accel = float(np.clip(accel, -c.max_decel, c.max_accel))
        self.state = {"gap": gap, "closing": closing, "ttc": ttc, "emergency": bool(emergency)}
        return Command(accel, 0.0)

    def to_dict(self) -> dict:
        return asdict(self.cfg)
