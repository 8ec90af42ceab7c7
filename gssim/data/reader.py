"""Reading a log folder (format version 1) with full validation.

>>> log = Log.open("out/town")            # validates log.json and every file header
>>> img = log.image(0, "cam_front")        # (H, W, 3) uint8
>>> ri = log.range_image(0, "lidar_top")   # returns and drops on the (B, A) grid
>>> T = log.pose_at(0.35)                  # (4, 4) T_world_ego, interpolated
>>> boxes = log.actor_boxes_at(0.35)       # actors whose track covers t

Frames are addressed by their position ``i`` in ``log.frames`` (equal to the stored
``index`` for logs this package writes).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from gssim.data.errors import LogFormatError
from gssim.data.poses import PoseTrack
from gssim.data.rangeimage import COL_BEAM, COL_INTENSITY, COL_TIME, RangeImage, rebin_points
from gssim.data.schema import LOG_JSON, ActorEntry, FrameEntry, SensorEntry, parse_log_dict

logger = logging.getLogger(__name__)

IMAGE_MODES = ("RGB", "RGBA", "L")


@dataclass
class ActorBox:
    """An actor's box at one time: T_world_object (4, 4) float64, size (3,) = l, w, h."""

    id: str
    cls: str
    size: np.ndarray
    T_world_object: np.ndarray

    def corners(self) -> np.ndarray:
        """(8, 3) world-frame box corners."""
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float64)
        local = signs * self.size / 2
        return local @ self.T_world_object[:3, :3].T + self.T_world_object[:3, 3]

    def contains(self, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """(M,) bool: world points (M, 3) inside the box grown by ``margin`` metres."""
        R, t = self.T_world_object[:3, :3], self.T_world_object[:3, 3]
        local = (np.asarray(points, np.float64) - t) @ R
        return np.all(np.abs(local) <= self.size / 2 + margin, axis=1)


class Log:
    """A validated log: sensors, frames, actors, and loaders of the per-frame data."""

    def __init__(self, root: Path, name: str, sensors: dict[str, SensorEntry], frames: list[FrameEntry],
                 actors: list[ActorEntry], extra: dict) -> None:
        self.root = Path(root)
        self.name = name
        self.sensors = sensors
        self.frames = frames
        self.actors = {a.id: a for a in actors}
        self.extra = extra
        self.times = np.array([f.t for f in frames], dtype=np.float64)
        self.ego_track = (PoseTrack(self.times, np.stack([f.T_world_ego for f in frames]), name="ego trajectory")
                          if frames else None)

    # --- opening ------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path, check_files: bool = True) -> "Log":
        """Read and validate ``root/log.json``; with ``check_files`` also every file's
        existence, image size and LiDAR array shape (headers only).  Raises LogFormatError."""
        root = Path(root)
        path = root / LOG_JSON
        if not root.is_dir():
            raise LogFormatError(f"log folder {root} does not exist", LOG_JSON)
        if not path.is_file():
            raise LogFormatError(f"missing file {path}", LOG_JSON)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise LogFormatError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", LOG_JSON) from None
        log = cls(root, *parse_log_dict(data))
        if check_files:
            log.check_files()
        logger.info("opened log %s: %d frames, sensors %s, %d actors", root, len(log.frames),
                    sorted(log.sensors), len(log.actors))
        return log

    def check_files(self) -> None:
        """Check that every listed file exists, images have the sensor's size and LiDAR
        arrays are (M, 6) floats.  Raises LogFormatError naming file, field and frame."""
        for pos, fr in enumerate(self.frames):
            for sid in fr.cameras:
                self._image_header(pos, sid)
            for sid in fr.lidars:
                self._lidar_header(pos, sid)

    # --- sensors ------------------------------------------------------------------
    @property
    def camera_ids(self) -> list[str]:
        return [s for s, e in self.sensors.items() if e.type == "camera"]

    @property
    def lidar_ids(self) -> list[str]:
        return [s for s, e in self.sensors.items() if e.type == "lidar"]

    def sensor(self, sid: str):
        """The gssim sensor object (camera or LiDAR ray grid) of ``sid``."""
        return self._entry(sid).sensor

    def _entry(self, sid: str) -> SensorEntry:
        if sid not in self.sensors:
            raise KeyError(f"log {self.name!r} has no sensor {sid!r}; sensors are {sorted(self.sensors)}")
        return self.sensors[sid]

    def _frame(self, i: int) -> FrameEntry:
        if not 0 <= i < len(self.frames):
            raise IndexError(f"frame {i} out of range; log {self.name!r} has {len(self.frames)} frames")
        return self.frames[i]

    # --- poses --------------------------------------------------------------------
    def pose_at(self, t: float | np.ndarray, extrapolate: bool = False) -> np.ndarray:
        """T_world_ego at time(s) t: (4, 4) or (M, 4, 4) float64, interpolated between frames."""
        if self.ego_track is None:
            raise ValueError(f"log {self.name!r} has no frames")
        return self.ego_track.at(t, extrapolate=extrapolate)

    def sensor_pose_at(self, sid: str, t: float | np.ndarray, extrapolate: bool = False) -> np.ndarray:
        """T_world_sensor = T_world_ego(t) @ T_ego_sensor, (4, 4) or (M, 4, 4) float64."""
        return self.pose_at(t, extrapolate=extrapolate) @ self._entry(sid).T_ego_sensor

    def frame_sensor_pose(self, i: int, sid: str) -> np.ndarray:
        """T_world_sensor (4, 4) at the time of frame i."""
        return self._frame(i).T_world_ego @ self._entry(sid).T_ego_sensor

    # --- actors -------------------------------------------------------------------
    def actor_boxes_at(self, t: float) -> list[ActorBox]:
        """Boxes of the actors whose track covers time t (interpolated poses)."""
        return [ActorBox(a.id, a.cls, a.size, a.track.at(t)) for a in self.actors.values() if a.track.covers(t)]

    def actor_box(self, aid: str, t: float) -> ActorBox:
        """Box of actor ``aid`` at time t (raises if its track does not cover t)."""
        if aid not in self.actors:
            raise KeyError(f"log {self.name!r} has no actor {aid!r}")
        a = self.actors[aid]
        return ActorBox(a.id, a.cls, a.size, a.track.at(t))

    # --- cameras ------------------------------------------------------------------
    def _file(self, i: int, sid: str, kind: str) -> tuple[str, Path]:
        fr = self._frame(i)
        files = getattr(fr, kind)
        if sid not in files:
            raise KeyError(f"frame {fr.index} of log {self.name!r} has no {kind[:-1]} {sid!r}; "
                           f"it has {sorted(files)}")
        rel = files[sid]
        path = self.root / rel
        if not path.is_file():
            raise LogFormatError(f"missing file (listed in log.json frames[{i}].{kind}.{sid})", rel,
                                 f"frames[{i}].{kind}.{sid}", fr.index)
        return rel, path

    def _image_header(self, i: int, sid: str) -> None:
        rel, path = self._file(i, sid, "cameras")
        fr, cam = self.frames[i], self._entry(sid).sensor
        try:
            with Image.open(path) as im:
                size, mode = im.size, im.mode
        except OSError as exc:
            raise LogFormatError(f"cannot read image: {exc}", rel, f"frames[{i}].cameras.{sid}", fr.index) from None
        if size != (cam.width, cam.height):
            raise LogFormatError(f"image is {size[0]}x{size[1]}, but sensors.{sid} is {cam.width}x{cam.height}",
                                 rel, f"sensors.{sid}.width/height", fr.index)
        if mode not in IMAGE_MODES:
            raise LogFormatError(f"image mode {mode} not supported; expected one of {IMAGE_MODES}", rel,
                                 f"frames[{i}].cameras.{sid}", fr.index)

    def image(self, i: int, sid: str, dtype=np.uint8) -> np.ndarray:
        """Camera image of frame i: (H, W, 3) uint8, or float32 in [0, 1] with dtype=np.float32."""
        self._image_header(i, sid)
        _, path = self._file(i, sid, "cameras")
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        if np.dtype(dtype) == np.uint8:
            return arr
        if np.issubdtype(np.dtype(dtype), np.floating):
            return arr.astype(dtype) / np.asarray(255, dtype)
        raise ValueError(f"dtype must be uint8 or a float type, got {dtype}")

    # --- LiDAR --------------------------------------------------------------------
    def _lidar_header(self, i: int, sid: str) -> np.ndarray:
        rel, path = self._file(i, sid, "lidars")
        fr = self.frames[i]
        fld = f"frames[{i}].lidars.{sid}"
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise LogFormatError(f"cannot read .npy array: {exc}", rel, fld, fr.index) from None
        if arr.ndim != 2 or arr.shape[1] != 6:
            raise LogFormatError(f"expected an (M, 6) array [x, y, z, intensity, beam, time offset], "
                                 f"got shape {arr.shape}", rel, "array shape", fr.index)
        if arr.dtype not in (np.float32, np.float64):
            raise LogFormatError(f"expected float32 values, got {arr.dtype}", rel, "array dtype", fr.index)
        return arr

    def lidar_points(self, i: int, sid: str) -> np.ndarray:
        """Returns of frame i: (M, 6) float32 [x, y, z (sensor frame at frame time),
        intensity, beam index, time offset (s)], with values validated."""
        rel, _ = self._file(i, sid, "lidars")
        fr = self.frames[i]
        pts = np.asarray(self._lidar_header(i, sid), dtype=np.float32)
        n_beams = int(self._entry(sid).sensor.ray_directions().shape[0])
        if not np.all(np.isfinite(pts)):
            bad = int(np.argwhere(~np.isfinite(pts))[0, 0])
            raise LogFormatError(f"non-finite value in row {bad}", rel, "values", fr.index)
        inten = pts[:, COL_INTENSITY]
        if len(pts) and (inten.min() < 0 or inten.max() > 1):
            raise LogFormatError(f"intensity must lie in [0, 1], got [{inten.min():g}, {inten.max():g}]", rel,
                                 "column 3 (intensity)", fr.index)
        beam = pts[:, COL_BEAM]
        if len(pts) and (np.any(beam != np.round(beam)) or beam.min() < 0 or beam.max() >= n_beams):
            raise LogFormatError(f"beam index must be an integer in [0, {n_beams}) (sensors.{sid} has "
                                 f"{n_beams} elevations), got [{beam.min():g}, {beam.max():g}]", rel,
                                 "column 4 (beam index)", fr.index)
        return pts

    def range_image(self, i: int, sid: str, undo_motion: bool = True) -> RangeImage:
        """LiDAR returns of frame i on the sensor's (B, A) grid; empty cells are ray drops.

        With ``undo_motion`` each point is moved into the sensor frame at its own ray time
        (poses interpolated from the ego track) to find the ray that measured it.
        """
        pts = self.lidar_points(i, sid)
        lidar = self._entry(sid).sensor
        ray_xyz = None
        if undo_motion and len(pts) and len(self.frames) > 1 and np.any(pts[:, COL_TIME] != 0):
            fr = self.frames[i]
            T_frame = self.frame_sensor_pose(i, sid)
            T_ray = self.sensor_pose_at(sid, fr.t + pts[:, COL_TIME].astype(np.float64), extrapolate=True)
            world = pts[:, :3].astype(np.float64) @ T_frame[:3, :3].T + T_frame[:3, 3]
            d = world - T_ray[:, :3, 3]
            ray_xyz = np.einsum("mji,mj->mi", T_ray[:, :3, :3], d)
        return rebin_points(lidar, pts, ray_xyz)

    def lidar_points_world(self, i: int, sid: str) -> np.ndarray:
        """World-frame xyz (M, 3) float64 of the returns of frame i."""
        pts = self.lidar_points(i, sid)
        T = self.frame_sensor_pose(i, sid)
        return pts[:, :3].astype(np.float64) @ T[:3, :3].T + T[:3, 3]


def load_log(root: str | Path, check_files: bool = True) -> Log:
    """Open and validate the log folder ``root`` (see ``Log.open``)."""
    return Log.open(root, check_files=check_files)
