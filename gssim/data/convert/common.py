"""What every dataset converter shares: errors that name the missing file or field,
paths kept inside the dataset folder, class mapping, beam recovery from elevation,
LiDAR motion compensation, and the progress bar.

A converter is a function ``convert(source, scene, out, progress=True) -> Path`` that
writes one log folder (``gssim.data.writer.LogWriter``) and is registered in
``gssim.data.convert.CONVERTERS`` under its ``--from`` name.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from gssim.core.transforms import quat_to_rotmat
from gssim.data.poses import PoseTrack
from gssim.data.safe_files import resolve_inside

# Our actor classes (the synthetic world and the asset library use the same names).
CLASSES = ("car", "truck", "bus", "trailer", "construction_vehicle", "motorcycle", "bicycle", "cyclist",
           "pedestrian", "animal", "traffic_cone", "barrier", "other")


class ConvertError(ValueError):
    """A source dataset that cannot be converted: names the dataset, the file (relative
    to the source folder) and, where known, the field or column."""

    def __init__(self, dataset: str, file: str, message: str, field: str | None = None) -> None:
        self.dataset, self.file, self.field, self.detail = dataset, file, field, message
        where = f"{dataset}: {file}" + (f", field {field}" if field else "")
        super().__init__(f"{where}: {message}")


def source_file(dataset: str, root: str | os.PathLike, rel: str, what: str = "file") -> Path:
    """The existing file ``rel`` inside ``root`` (a path from the dataset's own tables is
    never allowed outside it); a clear ConvertError naming it when it is missing."""
    try:
        path = resolve_inside(root, rel, what)
    except (ValueError, OSError) as exc:
        raise ConvertError(dataset, str(rel), f"not a path inside the dataset folder {root}: {exc}") from None
    if not path.is_file():
        raise ConvertError(dataset, str(rel), f"missing {what} (looked in {root})")
    return path


def source_dir(dataset: str, root: str | os.PathLike, rel: str, what: str = "folder") -> Path:
    """The existing folder ``rel`` inside ``root``, or a ConvertError naming it."""
    root = Path(root)
    path = (root / rel).resolve()
    if root.resolve() not in (path, *path.parents):
        raise ConvertError(dataset, str(rel), f"not a path inside the dataset folder {root}")
    if not path.is_dir():
        raise ConvertError(dataset, str(rel), f"missing {what} (looked in {root})")
    return path


def read_image(dataset: str, path: Path, rel: str, width: int, height: int, calibration: str = "the calibration",
               field: str | None = None) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a source image; a ConvertError naming it when it does not
    decode or its size is not the calibrated ``width`` x ``height``."""
    try:
        with Image.open(path) as im:
            img = np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ConvertError(dataset, rel, f"cannot read the image: {exc}") from None
    if img.shape[:2] != (height, width):
        raise ConvertError(dataset, rel, f"image is {img.shape[1]}x{img.shape[0]}, {calibration} says "
                                         f"{width}x{height}", field)
    return img


def require(dataset: str, file: str, record: dict, key: str, where: str = ""):
    """``record[key]``, or a ConvertError naming the file and the field."""
    if not isinstance(record, dict) or key not in record:
        raise ConvertError(dataset, file, "missing field", f"{where}{key}")
    return record[key]


def map_class(name: str, table: dict[str, str], default: str = "other") -> str:
    """Our class for a source class name: exact match in ``table``, then the longest
    table key that prefixes it (``vehicle.car`` -> ``vehicle``), else ``default``."""
    if name in table:
        return table[name]
    best = max((k for k in table if name.startswith(k)), key=len, default=None)
    return table[best] if best is not None else default


def pose_matrix(rotation: np.ndarray, translation) -> np.ndarray:
    """(4, 4) float64 pose from a (3, 3) rotation and a translation (3,)."""
    T = np.eye(4)
    T[:3, :3] = np.asarray(rotation, np.float64)
    T[:3, 3] = np.asarray(translation, np.float64)
    return T


def quat_wxyz_to_rotmat(q) -> np.ndarray:
    """(3, 3) float64 rotation of a quaternion (w, x, y, z) (normalised first)."""
    q = np.asarray(q, np.float64)
    return quat_to_rotmat(torch.from_numpy(q / np.linalg.norm(q))).numpy()


def yaw_pose(center, yaw: float) -> np.ndarray:
    """Object pose (4, 4) of a box centre (3,) and heading ``yaw`` (rad about +z)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return pose_matrix([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], center)


def elevations_deg(xyz: np.ndarray) -> np.ndarray:
    """Elevation (deg) of sensor-frame points (M, 3) above the sensor's xy plane."""
    xyz = np.asarray(xyz, np.float64)
    return np.degrees(np.arctan2(xyz[:, 2], np.hypot(xyz[:, 0], xyz[:, 1])))


def beams_from_elevation(xyz: np.ndarray, beam_elevations_deg: Iterable[float]) -> np.ndarray:
    """Beam index (M,) int of each point: the beam whose elevation is nearest the point's
    (for sources that store no ring index, with a known or estimated beam table)."""
    table = np.asarray(list(beam_elevations_deg), np.float64)
    order = np.argsort(table)
    srt = table[order]
    el = elevations_deg(xyz)
    k = np.clip(np.searchsorted(srt, el), 1, len(srt) - 1) if len(srt) > 1 else np.zeros(len(el), np.int64)
    if len(srt) > 1:
        k = np.where(np.abs(el - srt[k - 1]) <= np.abs(srt[k] - el), k - 1, k)
    return order[k].astype(np.int64)


def estimate_beam_elevations(xyz: np.ndarray, beam: np.ndarray, n_beams: int) -> np.ndarray:
    """Per-beam elevation table (deg, (n_beams,)) from points with known beam indices:
    the median elevation of each beam's points; beams without points are interpolated
    (or extrapolated) from their neighbours by index."""
    el = elevations_deg(xyz)
    beam = np.asarray(beam, np.int64)
    table = np.full(n_beams, np.nan)
    for b in np.unique(beam):
        if 0 <= b < n_beams:
            table[b] = np.median(el[beam == b])
    known = np.flatnonzero(np.isfinite(table))
    if len(known) == 0:
        raise ValueError("no LiDAR points to estimate the beam elevations from")
    if len(known) == 1:
        return np.where(np.isfinite(table), table, table[known[0]] + (np.arange(n_beams) - known[0]) * 0.1)
    fit = np.polyfit(known, table[known], 1)
    missing = np.flatnonzero(~np.isfinite(table))
    table[missing] = np.interp(missing, known, table[known], left=np.nan, right=np.nan)
    ends = ~np.isfinite(table)
    table[ends] = np.polyval(fit, np.flatnonzero(ends))
    # Distinct values (a sensor needs one elevation per beam).
    for i in range(1, n_beams):
        if abs(table[i] - table[i - 1]) < 1e-6:
            table[i] += 1e-4 * (1 if fit[0] >= 0 else -1)
    return table


def motion_compensate(xyz: np.ndarray, times: np.ndarray, t_frame: float, sensor_pose_at: Callable) -> np.ndarray:
    """Points measured at their own times (sensor frame at each time) into the sensor frame
    at ``t_frame``: p' = T(t_frame)^-1 T(t_i) p.  ``sensor_pose_at(times (K,)) -> (K, 4, 4)``
    world poses of the sensor; unique times are evaluated once."""
    xyz = np.asarray(xyz, np.float64)
    times = np.asarray(times, np.float64)
    uniq, inv = np.unique(times, return_inverse=True)
    T_ref_inv = np.linalg.inv(sensor_pose_at(np.array([t_frame]))[0])
    rel = T_ref_inv[None] @ sensor_pose_at(uniq)          # (K, 4, 4)
    R, t = rel[inv, :3, :3], rel[inv, :3, 3]
    return np.einsum("mij,mj->mi", R, xyz) + t


def sensor_track(ego: PoseTrack, T_ego_sensor: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``times -> (K, 4, 4)`` world poses of a sensor mounted at ``T_ego_sensor`` on the ego
    (ego poses extrapolated at constant velocity past the ends)."""
    T = np.asarray(T_ego_sensor, np.float64)
    return lambda times: ego.at(np.asarray(times, np.float64), extrapolate=True).reshape(-1, 4, 4) @ T


def lidar_points(xyz: np.ndarray, intensity: np.ndarray, beam: np.ndarray, dt: np.ndarray,
                 min_range: float = 0.0) -> np.ndarray:
    """The log's (M, 6) float32 LiDAR array; drops points at the origin or nearer than
    ``min_range`` (returns a source writes as zeros are missing returns)."""
    xyz = np.asarray(xyz, np.float64)
    rng = np.linalg.norm(xyz, axis=1)
    keep = np.isfinite(rng) & (rng > max(min_range, 1e-6))
    pts = np.column_stack([xyz, np.clip(intensity, 0.0, 1.0), beam, dt])[keep]
    return pts.astype(np.float32)


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A rich progress bar with ETA; yields ``advance(n=1)``."""
    cols = (TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*cols, disable=not enabled) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
