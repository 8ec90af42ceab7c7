"""``log.json`` of log format version 1: parsing and validation into typed entries.

Every check names the file (``log.json``), the JSON field (``frames[3].T_world_ego``)
and, where the error concerns one frame, the frame index.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gssim.core.transforms import check_rigid
from gssim.data.errors import LogFormatError
from gssim.data.limits import LOG_LIMITS, LogLimits
from gssim.data.poses import PoseTrack
from gssim.data.safe_files import SafeFileError, check_name, check_relative
from gssim.sensors.limits import LIMITS, SensorConfigError

LOG_FORMAT = "gssim-log"
LOG_VERSION = 1
LOG_JSON = "log.json"
SENSOR_TYPES = ("camera", "lidar")
CAMERA_KEYS = ("model", "width", "height", "fx", "fy", "cx", "cy")
LIDAR_KEYS = ("model",)
# File name endings of the per-frame files, by the frame's key.
FILE_SUFFIXES = {"cameras": (".png", ".jpg", ".jpeg"), "lidars": (".npy",)}


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


def _number(value: Any, fld: str, frame: int | None = None, positive: bool = False,
            bound: float | None = None) -> float:
    """A finite JSON number (never a bool or a string) as a float; ``bound`` limits |value|."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _err(f"expected a finite number, got {type(value).__name__} {_short(value)}", fld, frame)
    try:
        v = float(value)
    except OverflowError:
        raise _err(f"number too large: {_short(value)}", fld, frame) from None
    if not math.isfinite(v):
        raise _err(f"expected a finite number, got {value!r}", fld, frame)
    if positive and v <= 0:
        raise _err(f"must be > 0, got {value!r}", fld, frame)
    if bound is not None and abs(v) > bound:
        raise _err(f"|{v:g}| is over the limit of {bound:g}", fld, frame)
    return v


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:50] + "..." + text[-6:]


def _name(value: Any, fld: str, frame: int | None = None) -> str:
    """An id that may become a file name (see ``safe_files.check_name``)."""
    try:
        return check_name(value, "id")
    except SafeFileError as exc:
        raise _err(exc.detail if isinstance(value, str) else f"expected a string, got {type(value).__name__}",
                   fld, frame) from None


def parse_pose(value: Any, fld: str, frame: int | None = None) -> np.ndarray:
    """A rigid 4x4 pose from nested lists of JSON numbers, as float64, its translation
    within ``gssim.sensors.LIMITS.max_coordinate_m``; raises LogFormatError naming ``fld``."""
    numeric = (value.dtype.kind in "iuf" if isinstance(value, np.ndarray) else
               isinstance(value, torch.Tensor) and value.dtype != torch.bool and not value.is_complex())
    if numeric:
        rows = value.tolist()  # callers in Python (the writer, scene files) may pass arrays
    else:
        rows = value
    if not isinstance(rows, list) or len(rows) != 4 or not all(isinstance(r, list) and len(r) == 4 for r in rows):
        try:
            shape = np.shape(rows) if isinstance(rows, list) and all(isinstance(r, list) for r in rows) else None
        except ValueError:  # ragged
            shape = None
        got = f"got shape {shape}" if shape is not None else f"got {_short(value)}"
        raise _err(f"expected a 4x4 matrix, {got} (give 4 lists of 4 numbers)", fld, frame)
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
                raise _err(f"expected a 4x4 matrix of numbers, element [{i}][{j}] is {type(v).__name__} "
                           f"{_short(v)}", fld, frame)
    try:
        arr = np.array(rows, dtype=np.float64)
    except OverflowError:
        raise _err("expected a 4x4 matrix of finite numbers (an element is too large)", fld, frame) from None
    try:
        check_rigid(torch.from_numpy(arr), name=fld)
    except ValueError as exc:
        detail = str(exc).split(": ", 1)[-1]
        raise _err(f"not a rigid transform ({detail})", fld, frame) from None
    reach = float(np.abs(arr[:3, 3]).max())
    if reach > LIMITS.max_coordinate_m:
        raise _err(f"translation reaches {reach:g} m, over the limit of {LIMITS.max_coordinate_m:g} m "
                   f"(gssim.sensors.LIMITS.max_coordinate_m)", fld, frame)
    return arr


def parse_relative_path(value: Any, kind: str, fld: str, frame: int | None = None) -> str:
    """A frame's file path: relative, inside the log folder, with a suffix allowed for
    ``kind`` (``cameras``: .png/.jpg/.jpeg, ``lidars``: .npy)."""
    try:
        pure = check_relative(value, "file")
    except SafeFileError as exc:
        got = exc.detail if isinstance(value, str) else f"got {type(value).__name__} {_short(value)}"
        raise _err(f"expected a relative path inside the log folder: {got}", fld, frame) from None
    if pure.suffix.lower() not in FILE_SUFFIXES[kind]:
        raise _err(f"file {_short(value)} must end in one of {list(FILE_SUFFIXES[kind])}", fld, frame)
    return value


def parse_sensor(sid: str, d: Any) -> SensorEntry:
    """Validate one entry of ``sensors`` and build its gssim sensor object (whose
    constructor checks every parameter's type, range and the grid size)."""
    where = f"sensors.{sid}"
    _name(sid, where)
    stype = _require(d, "type", where)
    if not isinstance(stype, str) or stype not in SENSOR_TYPES:
        raise _err(f"unknown sensor type {_short(stype)}; expected one of {list(SENSOR_TYPES)}", f"{where}.type")
    for key in CAMERA_KEYS if stype == "camera" else LIDAR_KEYS:
        _require(d, key, where)
    if stype == "lidar" and d["model"] == "spinning":
        for key in ("elevations_deg", "azimuth_resolution_deg"):
            _require(d, key, where)
    T = parse_pose(_require(d, "T_ego_sensor", where), f"{where}.T_ego_sensor")
    if stype == "camera":
        from gssim.sensors import camera_from_dict as build
    else:
        from gssim.sensors import lidar_from_dict as build
    try:
        sensor = build({k: v for k, v in d.items() if k != "T_ego_sensor"})
    except SensorConfigError as exc:
        raise _err(exc.detail, f"{where}.{exc.param}") from None
    except (ValueError, TypeError) as exc:
        raise _err(f"invalid {stype}: {exc}", where) from None
    return SensorEntry(sid, stype, sensor, T, d)


def parse_frame(pos: int, d: Any, sensors: dict[str, SensorEntry], limits: LogLimits = LOG_LIMITS) -> FrameEntry:
    """Validate ``frames[pos]``: index, time, pose, and the sensor files it lists."""
    where = f"frames[{pos}]"
    index = _require(d, "index", where, pos)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise _err(f"expected a non-negative integer, got {_short(index)}", f"{where}.index", pos)
    t = _number(_require(d, "t", where, index), f"{where}.t", index, bound=limits.max_abs_time_s)
    T = parse_pose(_require(d, "T_world_ego", where, index), f"{where}.T_world_ego", index)
    out = FrameEntry(index, t, T)
    for kind, want in (("cameras", "camera"), ("lidars", "lidar")):
        files = d.get(kind, {})
        if not isinstance(files, dict):
            raise _err("expected an object {sensor_id: file}", f"{where}.{kind}", index)
        for sid, path in files.items():
            fld = f"{where}.{kind}.{sid}"
            if sid not in sensors:
                raise _err(f"unknown sensor {_short(sid)}; log.json sensors are {sorted(sensors)}", fld, index)
            if sensors[sid].type != want:
                raise _err(f"sensor {sid!r} is a {sensors[sid].type}, listed under {kind}", fld, index)
            getattr(out, kind)[sid] = parse_relative_path(path, kind, fld, index)
    return out


def parse_actor(pos: int, d: Any, limits: LogLimits = LOG_LIMITS) -> ActorEntry:
    """Validate ``actors[pos]``: id, class, box size and a time-ordered pose track."""
    where = f"actors[{pos}]"
    aid = _name(_require(d, "id", where), f"{where}.id")
    cls = _require(d, "class", where)
    if not isinstance(cls, str) or not cls:
        raise _err(f"expected a non-empty string, got {_short(cls)}", f"{where}.class")
    size = _require(d, "size", where)
    if not isinstance(size, list) or len(size) != 3:
        raise _err(f"expected [length, width, height], got {_short(size)}", f"{where}.size")
    size = np.array([_number(s, f"{where}.size[{i}]", positive=True, bound=LIMITS.max_coordinate_m)
                     for i, s in enumerate(size)])
    track = _require(d, "track", where)
    if not isinstance(track, list) or not track:
        raise _err("expected a non-empty list of {t, T_world_object}", f"{where}.track")
    times, poses = [], []
    for k, entry in enumerate(track):
        fld = f"{where}.track[{k}]"
        t = _number(_require(entry, "t", fld), f"{fld}.t", bound=limits.max_abs_time_s)
        if times and t <= times[-1]:
            raise _err(f"timestamps out of order: t={t} after t={times[-1]}", f"{fld}.t")
        if times and t - times[-1] < limits.min_frame_interval_s:
            raise _err(f"t={t!r} is only {t - times[-1]:.3g} s after the previous sample; samples must be at "
                       f"least {limits.min_frame_interval_s:g} s apart (LogLimits.min_frame_interval_s)", f"{fld}.t")
        times.append(t)
        poses.append(parse_pose(_require(entry, "T_world_object", fld), f"{fld}.T_world_object"))
    extra = {k: v for k, v in d.items() if k not in ("id", "class", "size", "track")}
    return ActorEntry(aid, cls, size, PoseTrack(np.array(times), np.stack(poses), name=f"actor {aid}"), extra)


def parse_log_dict(d: Any, limits: LogLimits | None = None
                   ) -> tuple[str, dict[str, SensorEntry], list[FrameEntry], list[ActorEntry], dict]:
    """Validate a parsed ``log.json``; returns name, sensors, frames, actors, extra keys."""
    limits = LOG_LIMITS if limits is None else limits
    if not isinstance(d, dict):
        raise _err(f"top level must be an object, got {type(d).__name__}")
    fmt = _require(d, "format", "")
    if fmt != LOG_FORMAT:
        raise _err(f"expected {LOG_FORMAT!r}, got {_short(fmt)}", "format")
    version = _require(d, "version", "")
    if isinstance(version, bool) or not isinstance(version, int) or version != LOG_VERSION:
        raise _err(f"unsupported version {_short(version)}; this reader reads version {LOG_VERSION} (an integer)",
                   "version")
    name = d.get("name", "")
    if not isinstance(name, str):
        raise _err(f"expected a string, got {_short(name)}", "name")
    raw_sensors = _require(d, "sensors", "")
    if not isinstance(raw_sensors, dict):
        raise _err("expected an object {sensor_id: entry}", "sensors")
    sensors = {sid: parse_sensor(sid, s) for sid, s in raw_sensors.items()}
    raw_frames = _require(d, "frames", "")
    if not isinstance(raw_frames, list):
        raise _err("expected a list of frames", "frames")
    frames: list[FrameEntry] = []
    for pos, f in enumerate(raw_frames):
        fr = parse_frame(pos, f, sensors, limits)
        if frames:
            prev = frames[-1]
            if fr.index <= prev.index:
                raise _err(f"frame indices must increase: {fr.index} after {prev.index}",
                           f"frames[{pos}].index", fr.index)
            if fr.t <= prev.t:
                raise _err(f"timestamps out of order: t={fr.t} after t={prev.t} (frame {prev.index})",
                           f"frames[{pos}].t", fr.index)
            if fr.t - prev.t < limits.min_frame_interval_s:
                raise _err(f"t={fr.t!r} is only {fr.t - prev.t:.3g} s after frame {prev.index}; frames must be at "
                           f"least {limits.min_frame_interval_s:g} s apart (LogLimits.min_frame_interval_s)",
                           f"frames[{pos}].t", fr.index)
        frames.append(fr)
    raw_actors = d.get("actors", [])
    if not isinstance(raw_actors, list):
        raise _err("expected a list of actors", "actors")
    actors = [parse_actor(i, a, limits) for i, a in enumerate(raw_actors)]
    seen: set[str] = set()
    for i, a in enumerate(actors):
        if a.id in seen:
            raise _err(f"duplicate actor id {a.id!r}", f"actors[{i}].id")
        seen.add(a.id)
    extra = {k: v for k, v in d.items() if k not in ("format", "version", "name", "sensors", "frames", "actors")}
    return name, sensors, frames, actors, extra
