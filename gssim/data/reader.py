"""Reading a log folder (format version 1) with full validation.

>>> log = Log.open("out/town")            # validates log.json and every file's header and end
>>> img = log.image(0, "cam_front")        # (H, W, 3) uint8
>>> ri = log.range_image(0, "lidar_top")   # returns and drops on the (B, A) grid
>>> T = log.pose_at(0.35)                  # (4, 4) T_world_ego, interpolated
>>> boxes = log.actor_boxes_at(0.35)       # actors whose track covers t

Frames are addressed by their position ``i`` in ``log.frames`` (equal to the stored
``index`` for logs this package writes).

The reader trusts nothing in the folder: every file is opened through
``gssim.data.safe_files`` (never outside the log folder, symbolic links included; only
regular files; sizes bounded by ``LogLimits``), every decoder failure (a truncated PNG,
an .npz saved as .npy, a decompression bomb) becomes a ``LogFormatError`` naming the
file, the field and the frame, and no allocation is sized by what a header claims
before the claim is checked against the sensor and the file's real size.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
from PIL import Image

from gssim.data.errors import LogFormatError
from gssim.data.limits import LOG_LIMITS, LogLimits
from gssim.data.poses import PoseTrack
from gssim.data.rangeimage import COL_TIME, PointsError, RangeImage, check_points, rebin_points
from gssim.data.safe_files import MissingFileError, SafeFileError, open_inside, read_json_inside
from gssim.data.schema import LOG_JSON, ActorEntry, FrameEntry, SensorEntry, parse_log_dict
from gssim.sensors.limits import LIMITS

logger = logging.getLogger(__name__)

# Image modes decoded to RGB (palette and grey images included; 16-bit ones are not 8-bit RGB).
IMAGE_MODES = ("RGB", "RGBA", "L", "LA", "P", "PA", "1")
# Decoder of each image suffix, and the magic bytes that identify the formats.
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
          (b"RIFF", "WEBP/RIFF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"PK\x03\x04", "zip"))
# The IEND chunk that closes a PNG, and the end-of-image marker of a JPEG (looked for in
# a file's last 4 KiB).
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_END = b"\xff\xd9"
_NPY_MAGIC = b"\x93NUMPY"
_NPY_MAX_HEADER = 10000


def _sniff(head: bytes) -> str:
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head.startswith(_NPY_MAGIC):
        return ".npy array"
    return "unknown"


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
                 actors: list[ActorEntry], extra: dict, limits: LogLimits | None = None) -> None:
        self.root = Path(root)
        self.name = name
        self.sensors = sensors
        self.frames = frames
        self.actors = {a.id: a for a in actors}
        self.extra = extra
        self.limits = LOG_LIMITS if limits is None else limits
        self.times = np.array([f.t for f in frames], dtype=np.float64)
        self.ego_track = (PoseTrack(self.times, np.stack([f.T_world_ego for f in frames]), name="ego trajectory")
                          if frames else None)

    # --- opening ------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path, check_files: bool = True, limits: LogLimits | None = None) -> "Log":
        """Read and validate ``root/log.json``; with ``check_files`` also every file: that
        it exists inside the folder, its header (image size and mode, LiDAR array shape,
        dtype and size) and its end (a half-copied PNG or JPEG lacks its end marker).
        ``limits``: a LogLimits (default ``gssim.data.LOG_LIMITS``).  Raises LogFormatError."""
        limits = LOG_LIMITS if limits is None else limits
        root = Path(root)
        try:
            is_dir = root.is_dir()
        except (OSError, ValueError) as exc:
            raise LogFormatError(f"cannot access log folder {str(root)[:200]!r}: {exc}", LOG_JSON) from None
        if not is_dir:
            raise LogFormatError(f"log folder {root} does not exist", LOG_JSON)
        try:
            data = read_json_inside(root, LOG_JSON, "log description", limits.max_json_bytes, limits.max_json_depth)
        except MissingFileError:
            raise LogFormatError(f"missing file {root / LOG_JSON}", LOG_JSON) from None
        except SafeFileError as exc:
            raise LogFormatError(exc.detail, LOG_JSON) from None
        log = cls(root, *parse_log_dict(data, limits), limits=limits)
        if check_files:
            log.check_files()
        logger.info("opened log %s: %d frames, sensors %s, %d actors", root, len(log.frames),
                    sorted(log.sensors), len(log.actors))
        return log

    def check_files(self) -> None:
        """Check every listed file: inside the folder, a regular file, its header (image
        size and mode, LiDAR array shape, dtype, row count and byte size) and its end
        marker (images).  Raises LogFormatError naming file, field and frame."""
        for pos, fr in enumerate(self.frames):
            for sid in fr.cameras:
                with self._open(pos, sid, "cameras") as (f, where):
                    self._image_header(f, where, pos, sid, check_end=True)
            for sid in fr.lidars:
                with self._open(pos, sid, "lidars") as (f, where):
                    self._npy_header(f, where)

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

    # --- files --------------------------------------------------------------------
    @contextmanager
    def _open(self, i: int, sid: str, kind: str) -> Iterator[tuple[BinaryIO, "_Where"]]:
        """Open the ``kind`` ("cameras" or "lidars") file of sensor ``sid`` in frame i,
        inside the log folder; yields (file, where).  Every failure while the block
        runs -- opening, or decoding by the caller -- becomes a LogFormatError naming the
        file, the field and the frame."""
        fr = self._frame(i)
        files = getattr(fr, kind)
        if sid not in files:
            raise KeyError(f"frame {fr.index} of log {self.name!r} has no {kind[:-1]} {sid!r}; "
                           f"it has {sorted(files)}")
        where = _Where(files[sid], f"frames[{i}].{kind}.{sid}", fr.index)
        max_bytes = self.limits.max_image_bytes if kind == "cameras" else None
        try:
            f = open_inside(self.root, where.file, "file", max_bytes)
        except MissingFileError:
            raise where.error(f"missing file (listed in log.json {where.field})") from None
        except SafeFileError as exc:
            raise where.error(exc.detail) from None
        with f:
            try:
                yield f, where
            except (LogFormatError, MemoryError):
                raise
            except Image.DecompressionBombError as exc:
                raise where.error(f"image header claims too many pixels (decompression-bomb guard): {exc}") from None
            except Exception as exc:  # a decoder failing on a damaged file, whatever it raises
                kind_name = "image" if kind == "cameras" else ".npy array"
                raise where.error(f"cannot read {kind_name}: {type(exc).__name__}: {exc}") from None

    # --- cameras ------------------------------------------------------------------
    def _image_header(self, f: BinaryIO, where: "_Where", i: int, sid: str, check_end: bool = False) -> Image.Image:
        """Open the image in ``f`` and check format, size and mode (no pixels decoded)."""
        cam = self._entry(sid).sensor
        expected = IMAGE_FORMATS[Path(where.file).suffix.lower()]
        head = f.read(16)
        actual = _sniff(head)
        if actual != expected:
            detail = "file is empty (0 bytes)" if not head else f"file content is {actual}"
            raise where.error(f"{detail}, but the name says {expected}")
        if check_end:
            size = f.seek(0, 2)
            f.seek(max(size - 4096, 0))
            tail = f.read()
            complete = (_PNG_END if expected == "PNG" else _JPEG_END) in tail  # trailing bytes are tolerated
            if not complete:
                raise where.error(f"the {expected} file is incomplete (no end marker; a half-copied file?)")
        f.seek(0)
        im = Image.open(f, formats=[expected])
        # Our own guard: PIL's MAX_IMAGE_PIXELS is a process-wide setting other libraries
        # change (nuscenes-devkit raises it at import).
        if im.size[0] * im.size[1] > LIMITS.max_cells:
            raise where.error(f"image header claims {im.size[0]}x{im.size[1]} pixels, over the limit of "
                              f"{LIMITS.max_cells} (gssim.sensors.LIMITS.max_cells; decompression-bomb guard)")
        if im.size != (cam.width, cam.height):
            raise where.error(f"image is {im.size[0]}x{im.size[1]}, but sensors.{sid} is {cam.width}x{cam.height}",
                              field=f"sensors.{sid}.width/height")
        if im.mode not in IMAGE_MODES:
            raise where.error(f"image mode {im.mode} not supported; expected one of {IMAGE_MODES}")
        return im

    def image(self, i: int, sid: str, dtype=np.uint8) -> np.ndarray:
        """Camera image of frame i: (H, W, 3) uint8, or float32 in [0, 1] with dtype=np.float32."""
        if not (np.dtype(dtype) == np.uint8 or np.issubdtype(np.dtype(dtype), np.floating)):
            raise ValueError(f"dtype must be uint8 or a float type, got {dtype}")
        with self._open(i, sid, "cameras") as (f, where):
            im = self._image_header(f, where, i, sid)
            if im.mode in ("P", "PA") and "transparency" in im.info:
                im = im.convert("RGBA")
            arr = np.asarray(im.convert("RGB"))
        if np.dtype(dtype) == np.uint8:
            return arr
        return arr.astype(dtype) / np.asarray(255, dtype)

    # --- LiDAR --------------------------------------------------------------------
    def _npy_header(self, f: BinaryIO, where: "_Where") -> tuple[tuple[int, int], np.dtype, bool]:
        """Check the .npy header in ``f`` against the log layout and the file's real size;
        returns (shape, dtype, fortran_order), ``f`` at the start of the data."""
        head = f.read(len(_NPY_MAGIC))
        if head != _NPY_MAGIC:
            head += f.read(16)
            detail = ("file is empty (0 bytes)" if not head else
                      "file is a zip archive (an .npz saved as .npy?)" if _sniff(head) == "zip" else
                      f"file is not a .npy array (content looks like {_sniff(head)})")
            raise where.error(detail, field="array header")
        f.seek(0)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=_NPY_MAX_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=_NPY_MAX_HEADER)
        else:
            raise where.error(f"unsupported .npy format version {version}", field="array header")
        if len(shape) != 2 or shape[1] != 6:
            raise where.error(f"expected an (M, 6) array [x, y, z, intensity, beam, time offset], "
                              f"got shape {shape}", field="array shape")
        if dtype.kind != "f" or dtype.itemsize not in (4, 8) or dtype.fields is not None:
            raise where.error(f"expected float32 values, got {dtype}", field="array dtype")
        if shape[0] > self.limits.max_lidar_points:
            raise where.error(f"{shape[0]} returns, over the limit of {self.limits.max_lidar_points} "
                              f"(LogLimits.max_lidar_points)", field="array shape")
        start = f.tell()
        size = f.seek(0, 2)
        need = shape[0] * shape[1] * dtype.itemsize
        if size - start < need:
            raise where.error(f"file is truncated: the header promises {shape[0]} rows ({need} bytes of data), the "
                              f"file holds {size - start} bytes", field="array data")
        f.seek(start)
        return shape, dtype, fortran

    def lidar_points(self, i: int, sid: str) -> np.ndarray:
        """Returns of frame i: (M, 6) float32 [x, y, z (sensor frame at frame time),
        intensity, beam index, time offset (s)], with values validated (see
        ``rangeimage.check_points``; ranges checked with the sensor's motion as slack)."""
        with self._open(i, sid, "lidars") as (f, where):
            shape, dtype, fortran = self._npy_header(f, where)
            data = f.read(shape[0] * shape[1] * dtype.itemsize)
            arr = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
            with np.errstate(over="ignore"):
                pts = np.ascontiguousarray(arr, dtype=np.float32)
        overflow = np.isfinite(arr) & ~np.isfinite(pts)
        if overflow.any():
            row, col = (int(v) for v in np.argwhere(overflow)[0])
            raise where.error(f"value {arr[row, col]:g} in row {row}, column {col} overflows float32", field="values")
        lim = self.limits
        try:
            check_points(pts, self._entry(sid).sensor, lim.lidar_time_slack, lim.lidar_time_slack_s,
                         lim.lidar_range_slack_m, lim.lidar_range_slack_rel,
                         motion_slack=lambda lo, hi: self._sensor_motion(i, sid, lo, hi))
        except PointsError as exc:
            raise where.error(exc.detail, field=exc.field) from None
        return pts

    def _sensor_motion(self, i: int, sid: str, lo: float, hi: float) -> float:
        """Largest distance (m) the sensor's origin moves from its pose at the time of
        frame i to its pose at any time t_i + [lo, hi] (ego track, extrapolated)."""
        if len(self.frames) < 2 or lo == hi == 0:
            return 0.0
        t = self.frames[i].t + np.linspace(lo, hi, 9)
        origins = self.sensor_pose_at(sid, t, extrapolate=True)[:, :3, 3]
        here = self.frame_sensor_pose(i, sid)[:3, 3]
        return 1.1 * float(np.linalg.norm(origins - here, axis=1).max())

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


@dataclass
class _Where:
    """A frame's file: relative path, JSON field and frame index, for error messages."""

    file: str
    field: str
    frame: int

    def error(self, message: str, field: str | None = None) -> LogFormatError:
        return LogFormatError(message, self.file, field or self.field, self.frame)


def load_log(root: str | Path, check_files: bool = True, limits: LogLimits | None = None) -> Log:
    """Open and validate the log folder ``root`` (see ``Log.open``)."""
    return Log.open(root, check_files=check_files, limits=limits)
