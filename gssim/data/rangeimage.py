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
from typing import Callable

import numpy as np

COL_X, COL_Y, COL_Z, COL_INTENSITY, COL_BEAM, COL_TIME = range(6)
FIELD_XYZ, FIELD_INTENSITY, FIELD_BEAM, FIELD_TIME = ("columns 0-2 (x, y, z)", "column 3 (intensity)",
                                                      "column 4 (beam index)", "column 5 (time offset)")


class PointsError(ValueError):
    """A LiDAR array that breaks the log layout; ``field`` names the part (``column 3
    (intensity)``), ``detail`` what is wrong."""

    def __init__(self, field: str, detail: str) -> None:
        self.field = field
        self.detail = detail
        super().__init__(f"{field}: {detail}")


def check_points(points: np.ndarray, lidar, time_slack: float = 0.1, time_slack_s: float = 1e-3,
                 range_slack_m: float = 0.25, range_slack_rel: float = 0.01,
                 motion_slack: Callable[[float, float], float] | None = None) -> None:
    """Check LiDAR returns (M, 6) of ``lidar`` against the log layout; raises PointsError.

    Values finite; no return at the sensor origin (a placeholder for a missing return:
    leave such rays out); intensity in [0, 1]; integer beam indices in [0, B); time
    offsets within one sweep of the frame time (``sweep * (1 + time_slack) +
    time_slack_s`` either side, spanning at most that), so poses are never extrapolated
    further.  With ``motion_slack`` (a function of the offsets' range (lo, hi) giving the
    distance in metres the sensor moves between the frame time and any time in it), the
    ranges must also lie in [min_range, max_range] widened by ``range_slack_m +
    range_slack_rel * bound`` plus that distance.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 6:
        raise PointsError("array shape", f"expected an (M, 6) array [x, y, z, intensity, beam, time offset], "
                                         f"got shape {pts.shape}")
    if not len(pts):
        return
    finite = np.isfinite(pts)
    if not finite.all():
        row, col = (int(v) for v in np.argwhere(~finite)[0])
        raise PointsError("values", f"non-finite value in row {row}, column {col}")
    xyz = pts[:, :3].astype(np.float64)
    rng = np.linalg.norm(xyz, axis=1)
    if (rng == 0).any():
        row = int(np.flatnonzero(rng == 0)[0])
        raise PointsError(FIELD_XYZ, f"row {row} is at the sensor origin (0, 0, 0); leave rays without a return "
                                     f"out of the array instead of writing zeros")
    inten = pts[:, COL_INTENSITY]
    if inten.min() < 0 or inten.max() > 1:
        raise PointsError(FIELD_INTENSITY, f"intensity must lie in [0, 1], got [{inten.min():g}, {inten.max():g}]")
    n_beams = int(lidar.rows)
    beam = pts[:, COL_BEAM]
    if np.any(beam != np.round(beam)) or beam.min() < 0 or beam.max() >= n_beams:
        raise PointsError(FIELD_BEAM, f"beam index must be an integer in [0, {n_beams}) (the sensor has {n_beams} "
                                      f"beams), got [{beam.min():g}, {beam.max():g}]")
    sweep = float(lidar.sweep_duration_s)
    reach = sweep * (1 + time_slack) + time_slack_s
    dt = pts[:, COL_TIME].astype(np.float64)
    lo, hi = float(dt.min()), float(dt.max())
    if lo < -reach or hi > reach or hi - lo > reach:
        raise PointsError(FIELD_TIME, f"time offsets must lie within one sweep ({sweep:g} s, with slack {reach:g} s) "
                                      f"of the frame time, got [{lo:g}, {hi:g}] s")
    if motion_slack is None:
        return
    moved = float(motion_slack(lo, hi))
    r_lo = lidar.min_range * (1 - range_slack_rel) - range_slack_m - moved
    r_hi = lidar.max_range * (1 + range_slack_rel) + range_slack_m + moved
    bad = (rng < r_lo) | (rng > r_hi)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise PointsError(FIELD_XYZ, f"row {row} is {rng[row]:.6g} m from the sensor, outside [min_range, "
                                     f"max_range] = [{lidar.min_range:g}, {lidar.max_range:g}] m with slack "
                                     f"(accepted [{max(r_lo, 0):.4g}, {r_hi:.4g}] m; the sensor moves {moved:.3g} m "
                                     f"over the sweep)")


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
    if points.ndim != 2 or points.shape[1] != 6:
        raise ValueError(f"rebin_points: points must be (M, 6), got shape {points.shape}")
    xyz = points[:, :3].astype(np.float64)
    meas = xyz if ray_time_xyz is None else np.asarray(ray_time_xyz, dtype=np.float64)
    if meas.shape != xyz.shape:
        raise ValueError(f"rebin_points: ray_time_xyz must be {xyz.shape}, got {meas.shape}")
    beam = points[:, COL_BEAM]
    if len(points) and not (np.isfinite(meas).all() and np.all(beam == np.round(beam)) and beam.min() >= 0
                            and beam.max() < n_rows):
        raise ValueError(f"rebin_points: points need finite coordinates and integer beam indices in "
                         f"[0, {n_rows})")
    rows = beam.astype(np.int64)
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
