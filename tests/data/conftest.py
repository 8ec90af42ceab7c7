"""A tiny deterministic log written in the test: 3 frames, a 16x12 camera, a 4-beam LiDAR."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gssim.data import LogWriter
from gssim.sensors import PinholeCamera, SpinningLidar

N_FRAMES = 3
ELEV = [10.0, 0.0, -10.0, -20.0]
AZ_RES = 10.0


def pose(x=0.0, y=0.0, z=0.0, yaw=0.0) -> np.ndarray:
    T = np.eye(4)
    c, s = math.cos(yaw), math.sin(yaw)
    T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    T[:3, 3] = [x, y, z]
    return T


def make_lidar_points(lidar: SpinningLidar, frame: int, rng: np.random.Generator) -> np.ndarray:
    """Returns for every third cell of the grid at ranges 5..20 m, sensor at rest."""
    dirs = lidar.ray_directions().numpy().astype(np.float64)
    B, A = dirs.shape[:2]
    rows, cols = np.meshgrid(np.arange(B), np.arange(A), indexing="ij")
    keep = ((rows * A + cols + frame) % 3) == 0
    r = rng.uniform(5, 20, size=keep.sum())
    xyz = dirs[keep] * r[:, None]
    inten = rng.uniform(0, 1, size=keep.sum())
    dt = (cols[keep] + 0.5) / A / lidar.spin_hz
    return np.column_stack([xyz, inten, rows[keep], dt]).astype(np.float32)


@pytest.fixture
def tiny_log(tmp_path):
    """Write the tiny log; returns (path, dict of what was written)."""
    rng = np.random.default_rng(0)
    cam = PinholeCamera(16, 12, 10.0, 10.0, 8.0, 6.0)
    lidar = SpinningLidar(ELEV, AZ_RES, min_range=1.0, max_range=50.0, spin_hz=10.0)
    T_cam = np.array([[0, 0, 1, 1.5], [-1, 0, 0, 0], [0, -1, 0, 1.6], [0, 0, 0, 1.0]])
    T_lidar = pose(1.0, 0.0, 1.9)
    root = tmp_path / "log"
    written = {"images": [], "points": [], "poses": [], "times": [], "cam": cam, "lidar": lidar,
               "T_cam": T_cam, "T_lidar": T_lidar}
    with LogWriter(root, name="tiny") as w:
        w.add_sensor("cam_front", cam, T_cam)
        w.add_sensor("lidar_top", lidar, T_lidar)
        for i in range(N_FRAMES):
            t = 0.1 * i
            T = pose(2.0 * i, 0.0, 0.0, yaw=0.1 * i)
            img = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
            pts = make_lidar_points(lidar, i, rng)
            w.add_frame(t, T, images={"cam_front": img}, lidar_points={"lidar_top": pts})
            for k, v in (("images", img), ("points", pts), ("poses", T), ("times", t)):
                written[k].append(v)
        w.add_actor("car_0", "car", [4.5, 1.9, 1.6], [0.0, 0.2],
                    np.stack([pose(10.0, 3.0, 0.8), pose(12.0, 3.0, 0.8, yaw=0.2)]))
        w.add_actor("ped_0", "pedestrian", [0.5, 0.6, 1.75], [0.1], pose(5.0, -4.0, 0.9)[None])
    return root, written
