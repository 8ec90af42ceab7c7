"""Re-binning LiDAR returns into the sensor's range-image grid (returns and drops).

A log stores LiDAR returns as points (M, 6): x, y, z in the sensor frame at the frame
time (motion-compensated), intensity, beam index, time offset.  The sensor's ray grid
is (B, A): row = beam (order of ``elevations_deg``), column = azimuth.  A return's row is
its beam index; its column is the azimuth of the ray that measured it, i.e. of the point
expressed in the sensor frame at the ray time (motion compensation undone when the
sensor poses are known).  Cells without a return are ray drops.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COL_X, COL_Y, COL_Z, COL_INTENSITY, COL_BEAM, COL_TIME = range(6)


@dataclass
class RangeImage:
    """A LiDAR frame on its ray grid.

    range: (B, A) float32, distance along the ray (m), 0 at drops.
    intensity: (B, A) float32 in [0, 1], 0 at drops.
    points: (B, A, 3) float32, the stored (motion-compensated) sensor-frame points.
    time_offset: (B, A) float32, seconds after the frame time, 0 at drops.
    valid: (B, A) bool, True where the ray returned (False: ray drop).
    n_collisions: returns that fell into an already filled cell (the nearest is kept).
    """

    range: np.ndarray
    intensity: np.ndarray
    points: np.ndarray
    time_offset: np.ndarray
    valid: np.ndarray
    n_collisions: int = 0

    @property
    def drop_mask(self) -> np.ndarray:
        """(B, A) bool, True where the ray did not return."""
        return ~self.valid


def grid_azimuths(lidar) -> tuple[float, float]:
    """Azimuth (rad) of column 0 and signed step (rad) between columns, from the ray grid."""
    dirs = np.asarray(lidar.ray_directions(), dtype=np.float64)  # (B, A, 3)
    horiz = np.hypot(dirs[..., 0], dirs[..., 1])
    row = int(np.argmax(horiz.min(axis=1)))  # the beam closest to horizontal
    az = np.arctan2(dirs[row, :, 1], dirs[row, :, 0])
    if az.shape[0] == 1:
        return float(az[0]), 2 * np.pi
    step = float(np.angle(np.exp(1j * (az[1] - az[0]))))
    return float(az[0]), step


def columns_of_points(lidar, xyz: np.ndarray) -> np.ndarray:
    """Nearest grid column (M,) int64 of sensor-frame points (M, 3) by their azimuth."""
    az0, step = grid_azimuths(lidar)
    n_cols = int(lidar.ray_directions().shape[1])
    az = np.arctan2(xyz[:, 1], xyz[:, 0])
    rel = np.angle(np.exp(1j * (az - az0)))  # wrapped to (-pi, pi]
    col = np.rint(rel / step).astype(np.int64)
    return np.mod(col, n_cols)


def rebin_points(lidar, points: np.ndarray, ray_time_xyz: np.ndarray | None = None) -> RangeImage:
    """Range image (B, A) of returns ``points`` (M, 6) of ``lidar``.

    ray_time_xyz: optional (M, 3), the points in the sensor frame at their own ray time
    (motion compensation undone); gives exact columns and ranges for a moving sensor.
    Without it the stored coordinates are used (exact for a sensor at rest).
    """
    dirs = lidar.ray_directions()
    n_rows, n_cols = int(dirs.shape[0]), int(dirs.shape[1])
    points = np.asarray(points)
    xyz = points[:, :3].astype(np.float64)
    meas = xyz if ray_time_xyz is None else np.asarray(ray_time_xyz, dtype=np.float64)
    rows = points[:, COL_BEAM].astype(np.int64)
    cols = columns_of_points(lidar, meas) if len(points) else np.zeros(0, np.int64)
    rng = np.linalg.norm(meas, axis=1)
    out = RangeImage(np.zeros((n_rows, n_cols), np.float32), np.zeros((n_rows, n_cols), np.float32),
                     np.zeros((n_rows, n_cols, 3), np.float32), np.zeros((n_rows, n_cols), np.float32),
                     np.zeros((n_rows, n_cols), bool))
    if not len(points):
        return out
    cell = rows * n_cols + cols
    # Nearest return per cell: sort by cell then range, keep the first of each cell.
    order = np.lexsort((rng, cell))
    first = np.ones(len(order), bool)
    first[1:] = cell[order][1:] != cell[order][:-1]
    keep = order[first]
    r, c = rows[keep], cols[keep]
    out.range[r, c] = rng[keep]
    out.intensity[r, c] = points[keep, COL_INTENSITY]
    out.points[r, c] = xyz[keep]
    out.time_offset[r, c] = points[keep, COL_TIME]
    out.valid[r, c] = True
    out.n_collisions = int(len(points) - len(keep))
    return out
