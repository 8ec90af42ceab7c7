"""Pose tracks: rigid poses sampled at increasing times, interpolated in between.

Translation is interpolated linearly and rotation by slerp
(``gssim.core.transforms.interpolate_pose``), in float64.
"""
from __future__ import annotations

import numpy as np
import torch

from gssim.core.transforms import interpolate_pose


class PoseTrack:
    """Poses ``T_world_x`` (K, 4, 4) at strictly increasing times (K,).

    ``at(t)`` interpolates; outside [times[0], times[-1]] it raises unless ``clamp``
    is set, in which case it holds the first/last pose.
    """

    def __init__(self, times: np.ndarray, poses: np.ndarray, name: str = "track") -> None:
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        poses = np.asarray(poses, dtype=np.float64)
        if poses.shape != (times.shape[0], 4, 4):
            raise ValueError(f"{name}: expected poses of shape ({times.shape[0]}, 4, 4), got {poses.shape}")
        if times.shape[0] == 0:
            raise ValueError(f"{name}: a track needs at least one pose")
        if np.any(np.diff(times) <= 0):
            raise ValueError(f"{name}: times must be strictly increasing")
        self.name = name
        self.times = times
        self.poses = poses

    @property
    def t_start(self) -> float:
        return float(self.times[0])

    @property
    def t_end(self) -> float:
        return float(self.times[-1])

    def covers(self, t: float, tol: float = 1e-9) -> bool:
        """True when t lies within the sampled time span."""
        return self.t_start - tol <= t <= self.t_end + tol

    def at(self, t: float | np.ndarray, clamp: bool = False, extrapolate: bool = False) -> np.ndarray:
        """Pose(s) at time(s) t: scalar -> (4, 4), array (M,) -> (M, 4, 4), float64.

        Outside the sampled span: ``clamp`` holds the end poses, ``extrapolate`` continues
        the first/last segment at constant velocity; otherwise a ValueError is raised.
        """
        scalar = np.ndim(t) == 0
        ts = np.atleast_1d(np.asarray(t, dtype=np.float64))
        if not np.all(np.isfinite(ts)):
            raise ValueError(f"{self.name}: query times must be finite")
        tol = 1e-9
        if not (clamp or extrapolate) and (ts.min() < self.t_start - tol or ts.max() > self.t_end + tol):
            raise ValueError(f"{self.name}: time {ts.min() if ts.min() < self.t_start - tol else ts.max():.6f} "
                             f"is outside the track [{self.t_start:.6f}, {self.t_end:.6f}]; "
                             f"pass clamp=True to hold the end poses")
        if not extrapolate:
            ts = np.clip(ts, self.t_start, self.t_end)
        out = np.empty((ts.shape[0], 4, 4), dtype=np.float64)
        if self.times.shape[0] == 1:
            out[:] = self.poses[0]
            return out[0] if scalar else out
        seg = np.clip(np.searchsorted(self.times, ts, side="right") - 1, 0, self.times.shape[0] - 2)
        for k in np.unique(seg):
            sel = seg == k
            t0, t1 = self.times[k], self.times[k + 1]
            s_np = (ts[sel] - t0) / (t1 - t0)
            if np.array_equal(self.poses[k, :3, :3], self.poses[k + 1, :3, :3]):  # pure translation
                out[sel] = self.poses[k]
                out[sel, :3, 3] = (1 - s_np[:, None]) * self.poses[k, :3, 3] + s_np[:, None] * self.poses[k + 1, :3, 3]
                continue
            s = torch.from_numpy(s_np)
            out[sel] = interpolate_pose(torch.from_numpy(self.poses[k]), torch.from_numpy(self.poses[k + 1]),
                                        s).numpy()
        return out[0] if scalar else out
