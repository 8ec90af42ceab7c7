"""``log.json`` of log format version 1: parsing and validation into typed entries.

Every check names the file (``log.json``), the JSON field (``frames[3].T_world_ego``)
and, where the error concerns one frame, the frame index.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gssim.core.transforms import check_rigid
from gssim.data.errors import LogFormatError
from gssim.data.poses import PoseTrack

LOG_FORMAT = "gssim-log"
LOG_VERSION = 1
LOG_JSON = "log.json"
SENSOR_TYPES = ("camera", "lidar")
CAMERA_KEYS = ("model", "width", "height", "fx", "fy", "cx", "cy")
LIDAR_KEYS = ("model",)


@dataclass
class SensorEntry:
    """A sensor of the rig: ``sensor`` is a gssim camera or LiDAR (a ray grid).

    T_ego_sensor: (4, 4) float64, sensor frame -> ego frame.
    """

    id: str
    type: str
    sensor: Any
    T_ego_sensor: np.ndarray
    entry: dict


@dataclass
class FrameEntry:
    """One frame: time ``t`` (s), ego pose (4, 4) float64, and sensor files (relative paths)."""

    index: int
    t: float
    T_world_ego: np.ndarray
    cameras: dict[str, str] = field(default_factory=dict)
    lidars: dict[str, str] = field(default_factory=dict)


@dataclass
class ActorEntry:
    """A tracked object: box ``size`` (3,) = length, width, height (m) and a pose track."""

    id: str
    cls: str
    size: np.ndarray
    track: PoseTrack
    extra: dict = field(default_factory=dict)


def _err(msg: str, fld: str | None = None, frame: int | None = None) -> LogFormatError:
    return LogFormatError(msg, LOG_JSON, fld, frame)


def _require(d: dict, key: str, where: str, frame: int | None = None) -> Any:
    if not isinstance(d, dict):
        raise _err(f"expected an object, got {type(d).__name__}", where, frame)
    if key not in d:
        raise _err("missing", f"{where}.{key}" if where else key, frame)
    return d[key]


def _number(value: Any, fld: str, frame: int | None = None, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _err(f"expected a finite number, got {value!r}", fld, frame)
    if positive and value <= 0:
        raise _err(f"must be > 0, got {value!r}", fld, frame)
    return float(value)


def parse_pose(value: Any, fld: str, frame: int | None = None) -> np.ndarray:
    """A rigid 4x4 pose from nested lists, as float64; raises LogFormatError naming ``fld``."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _err("expected a 4x4 matrix of numbers (nested lists)", fld, frame) from None
    if arr.shape != (4, 4):
        raise _err(f"expected a 4x4 matrix, got shape {arr.shape}", fld, frame)
    try:
        check_rigid(torch.from_numpy(arr), name=fld)
    except ValueError as exc:
        detail = str(exc).split(": ", 1)[-1]
        raise _err(f"not a rigid transform ({detail})", fld, frame) from None
    return arr


def parse_sensor(sid: str, d: Any) -> SensorEntry:
    """Validate one entry of ``sensors`` and build its gssim sensor object."""
    where = f"sensors.{sid}"
    stype = _require(d, "type", where)
    if stype not in SENSOR_TYPES:
        raise _err(f"unknown sensor type {stype!r}; expected one of {list(SENSOR_TYPES)}", f"{where}.type")
    for key in CAMERA_KEYS if stype == "camera" else LIDAR_KEYS:
        _require(d, key, where)
    T = parse_pose(_require(d, "T_ego_sensor", where), f"{where}.T_ego_sensor")
    if stype == "camera":
        from gssim.sensors import camera_from_dict
        for key in ("width", "height"):
            if isinstance(d[key], bool) or not isinstance(d[key], int) or d[key] < 1:
                raise _err(f"expected a positive integer, got {d[key]!r}", f"{where}.{key}")
        for key in ("fx", "fy", "cx", "cy"):
            _number(d[key], f"{where}.{key}", positive=key in ("fx", "fy"))
        build = camera_from_dict
    else:
        from gssim.sensors import lidar_from_dict
        if d["model"] == "spinning":
            for key in ("elevations_deg", "azimuth_resolution_deg"):
                _require(d, key, where)
            elev = d["elevations_deg"]
            if not isinstance(elev, list) or not elev:
                raise _err("expected a non-empty list of beam elevations (degrees)", f"{where}.elevations_deg")
            for i, e in enumerate(elev):
                _number(e, f"{where}.elevations_deg[{i}]")
            _number(d["azimuth_resolution_deg"], f"{where}.azimuth_resolution_deg", positive=True)
        for key in ("min_range", "max_range", "spin_hz", "frame_hz"):
            if key in d:
                _number(d[key], f"{where}.{key}", positive=True)
        if "min_range" in d and "max_range" in d and not d["min_range"] < d["max_range"]:
            raise _err(f"need min_range < max_range, got {d['min_range']} and {d['max_range']}",
                       f"{where}.max_range")
        build = lidar_from_dict
    try:
        sensor = build({k: v for k, v in d.items() if k != "T_ego_sensor"})
    except (ValueError, TypeError) as exc:
        raise _err(f"invalid {stype}: {exc}", where) from None
    return SensorEntry(sid, stype, sensor, T, d)


def parse_frame(pos: int, d: Any, sensors: dict[str, SensorEntry]) -> FrameEntry:
    """Validate ``frames[pos]``: index, time, pose, and the sensor files it lists."""
    where = f"frames[{pos}]"
    index = _require(d, "index", where)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise _err(f"expected a non-negative integer, got {index!r}", f"{where}.index", pos)
    t = _number(_require(d, "t", where, index), f"{where}.t", index)
    T = parse_pose(_require(d, "T_world_ego", where, index), f"{where}.T_world_ego", index)
    out = FrameEntry(index, t, T)
    for kind, want in (("cameras", "camera"), ("lidars", "lidar")):
        files = d.get(kind, {})
        if not isinstance(files, dict):
            raise _err("expected an object {sensor_id: file}", f"{where}.{kind}", index)
        for sid, path in files.items():
            fld = f"{where}.{kind}.{sid}"
            if sid not in sensors:
                raise _err(f"unknown sensor {sid!r}; log.json sensors are {sorted(sensors)}", fld, index)
            if sensors[sid].type != want:
                raise _err(f"sensor {sid!r} is a {sensors[sid].type}, listed under {kind}", fld, index)
            if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/"):
                raise _err(f"expected a relative path inside the log folder, got {path!r}", fld, index)
            getattr(out, kind)[sid] = path
    return out


def parse_actor(pos: int, d: Any) -> ActorEntry:
    """Validate ``actors[pos]``: id, class, box size and a time-ordered pose track."""
    where = f"actors[{pos}]"
    aid = _require(d, "id", where)
    if not isinstance(aid, str) or not aid:
        raise _err(f"expected a non-empty string, got {aid!r}", f"{where}.id")
    cls = _require(d, "class", where)
    if not isinstance(cls, str) or not cls:
        raise _err(f"expected a non-empty string, got {cls!r}", f"{where}.class")
    size = _require(d, "size", where)
    if not isinstance(size, list) or len(size) != 3:
        raise _err(f"expected [length, width, height], got {size!r}", f"{where}.size")
    size = np.array([_number(s, f"{where}.size[{i}]", positive=True) for i, s in enumerate(size)])
    track = _require(d, "track", where)
    if not isinstance(track, list) or not track:
        raise _err("expected a non-empty list of {t, T_world_object}", f"{where}.track")
    times, poses = [], []
    for k, entry in enumerate(track):
        fld = f"{where}.track[{k}]"
        t = _number(_require(entry, "t", fld), f"{fld}.t")
        if times and t <= times[-1]:
            raise _err(f"timestamps out of order: t={t} after t={times[-1]}", f"{fld}.t")
        times.append(t)
        poses.append(parse_pose(_require(entry, "T_world_object", fld), f"{fld}.T_world_object"))
    extra = {k: v for k, v in d.items() if k not in ("id", "class", "size", "track")}
    return ActorEntry(aid, cls, size, PoseTrack(np.array(times), np.stack(poses), name=f"actor {aid}"), extra)


def parse_log_dict(d: Any) -> tuple[str, dict[str, SensorEntry], list[FrameEntry], list[ActorEntry], dict]:
    """Validate a parsed ``log.json``; returns name, sensors, frames, actors, extra keys."""
    if not isinstance(d, dict):
        raise _err(f"top level must be an object, got {type(d).__name__}")
    fmt = _require(d, "format", "")
    if fmt != LOG_FORMAT:
        raise _err(f"expected {LOG_FORMAT!r}, got {fmt!r}", "format")
    version = _require(d, "version", "")
    if version != LOG_VERSION:
        raise _err(f"unsupported version {version!r}; this reader reads version {LOG_VERSION}", "version")
    name = d.get("name", "")
    if not isinstance(name, str):
        raise _err(f"expected a string, got {name!r}", "name")
    raw_sensors = _require(d, "sensors", "")
    if not isinstance(raw_sensors, dict):
        raise _err("expected an object {sensor_id: entry}", "sensors")
    sensors = {sid: parse_sensor(sid, s) for sid, s in raw_sensors.items()}
    raw_frames = _require(d, "frames", "")
    if not isinstance(raw_frames, list):
        raise _err("expected a list of frames", "frames")
    frames: list[FrameEntry] = []
    for pos, f in enumerate(raw_frames):
        fr = parse_frame(pos, f, sensors)
        if frames:
            prev = frames[-1]
            if fr.index <= prev.index:
                raise _err(f"frame indices must increase: {fr.index} after {prev.index}",
                           f"frames[{pos}].index", fr.index)
            if fr.t <= prev.t:
                raise _err(f"timestamps out of order: t={fr.t} after t={prev.t} (frame {prev.index})",
                           f"frames[{pos}].t", fr.index)
        frames.append(fr)
    raw_actors = d.get("actors", [])
    if not isinstance(raw_actors, list):
        raise _err("expected a list of actors", "actors")
    actors = [parse_actor(i, a) for i, a in enumerate(raw_actors)]
    seen: set[str] = set()
    for i, a in enumerate(actors):
        if a.id in seen:
            raise _err(f"duplicate actor id {a.id!r}", f"actors[{i}].id")
        seen.add(a.id)
    extra = {k: v for k, v in d.items() if k not in ("format", "version", "name", "sensors", "frames", "actors")}
    return name, sensors, frames, actors, extra
