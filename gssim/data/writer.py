"""Writing a log folder (format version 1).

>>> with LogWriter("out/town", name="town") as w:
...     w.add_sensor("cam_front", camera, T_ego_cam)        # (4, 4) float64
...     w.add_sensor("lidar_top", lidar, T_ego_lidar)
...     w.add_frame(0.0, T_world_ego, images={"cam_front": img}, lidar_points={"lidar_top": pts})
...     w.add_actor("car_0", "car", [4.5, 1.9, 1.6], times, poses)

Images are written as they come; ``log.json`` is written (after validation against
the reader's rules) by ``finish()`` or when the ``with`` block ends without error.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
from PIL import Image

from gssim.data.limits import LOG_LIMITS, LogLimits
from gssim.data.rangeimage import PointsError, check_points
from gssim.data.safe_files import check_name
from gssim.data.schema import LOG_FORMAT, LOG_JSON, LOG_VERSION, parse_log_dict, parse_pose

logger = logging.getLogger(__name__)


def _matrix_list(T: np.ndarray) -> list[list[float]]:
    return [[float(v) for v in row] for row in np.asarray(T, dtype=np.float64)]


def image_to_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 from uint8, or from floats in [0, 1] (clipped, rounded)."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    if np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)):
            raise ValueError("image contains NaN or inf")
        return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    raise ValueError(f"image dtype must be uint8 or float in [0, 1], got {image.dtype}")


class LogWriter:
    """Builds a log folder: sensors, frames (with their files) and actor tracks."""

    def __init__(self, root: str | Path, name: str, image_format: str = "png", overwrite: bool = False,
                 jpeg_quality: int = 95, limits: LogLimits | None = None) -> None:
        if image_format not in ("png", "jpg"):
            raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
        self.root = Path(root)
        if (self.root / LOG_JSON).exists() and not overwrite:
            raise FileExistsError(f"{self.root / LOG_JSON} exists; pass overwrite=True to replace the log")
        self.root.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.image_format = image_format
        self.jpeg_quality = int(jpeg_quality)
        self.sensors: dict[str, dict] = {}
        self._sensor_objs: dict[str, object] = {}
        self.frames: list[dict] = []
        self.actors: list[dict] = []
        self.extra: dict = {}
        self.limits = LOG_LIMITS if limits is None else limits
        self._finished = False

    def __enter__(self) -> "LogWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and not self._finished:
            self.finish()

    def add_sensor(self, sid: str, sensor, T_ego_sensor: np.ndarray) -> None:
        """Add a camera or LiDAR (a gssim sensor with ``to_dict()``) mounted at T_ego_sensor (4, 4)."""
        check_name(sid, "sensor id")  # it names the sensor's folders
        if sid in self.sensors:
            raise ValueError(f"sensor {sid!r} added twice")
        if self.frames:
            raise ValueError("add every sensor before the first frame")
        T = parse_pose(_matrix_list(T_ego_sensor) if np.shape(T_ego_sensor) == (4, 4) else T_ego_sensor,
                       f"sensors.{sid}.T_ego_sensor")
        entry = dict(sensor.to_dict())
        entry["T_ego_sensor"] = _matrix_list(T)
        self.sensors[sid] = entry
        self._sensor_objs[sid] = sensor

    def add_frame(self, t: float, T_world_ego: np.ndarray, images: dict[str, np.ndarray] | None = None,
                  lidar_points: dict[str, np.ndarray] | None = None) -> int:
        """Write one frame's files and record it; returns its index.

        images: {camera id: (H, W, 3) uint8 or float in [0, 1]}.
        lidar_points: {lidar id: (M, 6) [x, y, z, intensity, beam, time offset]}, stored float32.
        """
        index = len(self.frames)
        if isinstance(t, (bool, np.bool_, str, bytes)) or not np.isscalar(t) or not math.isfinite(float(t)):
            raise ValueError(f"frame {index}: t must be a finite number, got {t!r}")
        t = float(t)
        if abs(t) > self.limits.max_abs_time_s:
            raise ValueError(f"frame {index}: |t| = {abs(t):g} s is over the limit of {self.limits.max_abs_time_s:g} s")
        if self.frames and t <= self.frames[-1]["t"]:
            raise ValueError(f"frame {index}: timestamps out of order, t={t} after {self.frames[-1]['t']}")
        if self.frames and t - self.frames[-1]["t"] < self.limits.min_frame_interval_s:
            raise ValueError(f"frame {index}: t={t!r} is only {t - self.frames[-1]['t']:.3g} s after the previous "
                             f"frame (at least {self.limits.min_frame_interval_s:g} s)")
        T = parse_pose(_matrix_list(T_world_ego) if np.shape(T_world_ego) == (4, 4) else T_world_ego,
                       f"frames[{index}].T_world_ego", index)
        frame = {"index": index, "t": float(t), "T_world_ego": _matrix_list(T), "cameras": {}, "lidars": {}}
        for sid, img in (images or {}).items():
            self._check_sensor(sid, "camera", index)
            img = image_to_uint8(img)
            e = self.sensors[sid]
            if img.shape != (e["height"], e["width"], 3):
                raise ValueError(f"frame {index}, camera {sid}: image shape {img.shape}, expected "
                                 f"({e['height']}, {e['width']}, 3)")
            rel = f"cameras/{sid}/{index:06d}.{self.image_format}"
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if self.image_format == "png":
                Image.fromarray(img).save(path, compress_level=1)
            else:
                Image.fromarray(img).save(path, quality=self.jpeg_quality)
            frame["cameras"][sid] = rel
        for sid, pts in (lidar_points or {}).items():
            self._check_sensor(sid, "lidar", index)
            pts = np.asarray(pts)
            if pts.ndim != 2 or pts.shape[1] != 6:
                raise ValueError(f"frame {index}, lidar {sid}: points must be (M, 6), got {pts.shape}")
            pts = pts.astype(np.float32)
            lim = self.limits
            try:  # the reader's rules, but ranges: the motion slack needs the whole ego track
                check_points(pts, self._sensor_objs[sid], lim.lidar_time_slack, lim.lidar_time_slack_s)
            except PointsError as exc:
                raise ValueError(f"frame {index}, lidar {sid}: {exc}") from None
            rel = f"lidar/{sid}/{index:06d}.npy"
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, pts)
            frame["lidars"][sid] = rel
        self.frames.append(frame)
        return index

    def _check_sensor(self, sid: str, kind: str, index: int) -> None:
        if sid not in self.sensors:
            raise ValueError(f"frame {index}: unknown sensor {sid!r}; added sensors are {sorted(self.sensors)}")
        if self.sensors[sid]["type"] != kind:
            raise ValueError(f"frame {index}: sensor {sid!r} is a {self.sensors[sid]['type']}, not a {kind}")

    def add_actor(self, aid: str, cls: str, size, times, poses, **extra) -> None:
        """Add an actor: box ``size`` = (length, width, height), poses T_world_object (K, 4, 4)
        at increasing ``times`` (K,).  Extra keys (JSON values) are stored with it."""
        check_name(aid, "actor id")
        poses = np.asarray(poses, dtype=np.float64)
        times = [float(t) for t in np.atleast_1d(times)]
        if poses.shape != (len(times), 4, 4):
            raise ValueError(f"actor {aid}: expected poses ({len(times)}, 4, 4), got {poses.shape}")
        entry = {"id": aid, "class": cls, "size": [float(s) for s in size],
                 "track": [{"t": t, "T_world_object": _matrix_list(T)} for t, T in zip(times, poses)]}
        entry.update(extra)
        self.actors.append(entry)

    def to_dict(self) -> dict:
        """The ``log.json`` content."""
        d = {"format": LOG_FORMAT, "version": LOG_VERSION, "name": self.name, "sensors": self.sensors,
             "frames": self.frames, "actors": self.actors}
        d.update(self.extra)
        return d

    def finish(self) -> Path:
        """Validate and write ``log.json``; returns its path."""
        d = self.to_dict()
        parse_log_dict(json.loads(json.dumps(d)), self.limits)  # same rules as the reader
        path = self.root / LOG_JSON
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(d, indent=1))
        tmp.replace(path)
        self._finished = True
        logger.info("wrote %s: %d frames, %d sensors, %d actors", path, len(self.frames), len(self.sensors),
                    len(self.actors))
        return path
