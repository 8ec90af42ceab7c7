"""Typed messages of the simulation API, shared by the HTTP/WebSocket and gRPC faces.

Poses are 4x4 row-major nested lists (``T_a_b`` maps points of frame b to frame a, metres).
Binary payloads (images, arrays) are ``bytes``: raw in msgpack, base64 in JSON.

- listings: ``SceneInfo`` (with its ``SensorInfo`` and ``ActorInfo``), ``AssetInfo``
- ``OpenSessionRequest``: scene id and a rig of ``SensorRequest`` (a scene sensor, maybe
  re-sized or re-mounted; a log-format ``entry`` for a sensor the log never had; or a
  ``lidar_preset`` with a mount)
- ``StepRequest``: time, ego pose, ``ActorState`` list (move / hide / insert an asset)
- ``StepResult``: one ``SensorFrame`` per sensor: an encoded ``Image`` and/or ``Array``s
  (``color``, ``depth``, ``alpha``, ``normal``; ``points`` (M, 6), ``range``, ``intensity``,
  ``drop_prob``) and labels on request
- ``ErrorInfo``: what every failed call answers
"""
from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CAMERA_OUTPUTS = ("color", "depth", "alpha", "normal")
LIDAR_OUTPUTS = ("points", "range", "intensity", "drop_prob", "alpha", "normal")
DEFAULT_OUTPUTS = {"camera": ("color",), "lidar": ("points",)}


class Message(BaseModel):
    """Base of every message: unknown fields are errors; bytes are base64 in JSON."""

    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")


def check_pose(value: Any, name: str = "pose") -> list[list[float]]:
    """A 4x4 rigid transform as nested lists: finite, last row (0, 0, 0, 1), rotation orthonormal."""
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 4x4 array of numbers") from None
    if m.shape != (4, 4):
        raise ValueError(f"{name} must be 4x4, got shape {list(m.shape)}")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{name} has non-finite entries")
    if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
        raise ValueError(f"{name} last row must be [0, 0, 0, 1], got {m[3].tolist()}")
    R = m[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
        raise ValueError(f"{name} rotation block is not a rotation (orthonormal, det +1)")
    return m.tolist()


Pose = list[list[float]]


# --------------------------------------------------------------------------- listings
class SensorInfo(Message):
    """A sensor: ``entry`` is its log-format entry (type, model, intrinsics or beams)."""

    id: str
    type: Literal["camera", "lidar"]
    model: str
    rows: int = Field(description="image height or LiDAR beams")
    cols: int = Field(description="image width or LiDAR columns")
    T_ego_sensor: Pose
    entry: dict[str, Any]


class ActorInfo(Message):
    id: str
    kind: Literal["actor", "asset"]
    cls: str
    size: list[float] | None = Field(None, description="length, width, height (m)")
    t_start: float | None = None
    t_end: float | None = None


class SceneInfo(Message):
    id: str
    name: str
    time_range: tuple[float, float]
    sensors: list[SensorInfo]
    actors: list[ActorInfo]
    sessions: int = Field(0, description="open sessions on this scene")


class SceneList(Message):
    scenes: list[SceneInfo]


class SensorList(Message):
    scene: str
    sensors: list[SensorInfo]


class AssetInfo(Message):
    id: str
    cls: str
    size: list[float]


class AssetList(Message):
    assets: list[AssetInfo]


# --------------------------------------------------------------------------- sessions
class SensorRequest(Message):
    """One sensor of a session's rig.

    Exactly one source: ``from_sensor`` (a scene sensor; the default when ``id`` names one
    and nothing else is given), ``entry`` (a log-format sensor entry without its pose) or
    ``lidar_preset`` (a bundled spinning LiDAR, with ``lidar_overrides``).  ``T_ego_sensor``
    overrides the mount (required for ``entry`` and ``lidar_preset``); ``width``/``height``
    re-size a camera (intrinsics scaled).
    """

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    from_sensor: str | None = None
    entry: dict[str, Any] | None = None
    lidar_preset: str | None = None
    lidar_overrides: dict[str, Any] = Field(default_factory=dict)
    T_ego_sensor: Pose | None = None
    width: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)
    outputs: list[str] | None = Field(None, description="camera: color, depth, alpha, normal; "
                                      "lidar: points, range, intensity, drop_prob, alpha, normal")
    encoding: Literal["png", "jpeg", "raw"] = Field("png", description="camera color: PNG/JPEG 8-bit, or raw float32")
    jpeg_quality: int = Field(90, ge=1, le=100)

    @field_validator("T_ego_sensor")
    @classmethod
    def _pose(cls, v):
        return None if v is None else check_pose(v, "T_ego_sensor")

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("from_sensor", "entry", "lidar_preset") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"sensor {self.id!r}: give one of from_sensor, entry, lidar_preset, not {given}")
        if given and given[0] != "from_sensor" and self.T_ego_sensor is None:
            raise ValueError(f"sensor {self.id!r}: a new sensor ({given[0]}) needs T_ego_sensor")
        if self.lidar_overrides and self.lidar_preset is None:
            raise ValueError(f"sensor {self.id!r}: lidar_overrides need lidar_preset")
        return self


class OpenSessionRequest(Message):
    scene: str
    sensors: list[SensorRequest] | None = Field(None, description="the rig; default: every scene sensor")
    timeout_s: float | None = Field(None, gt=0, description="idle seconds before the session is closed")


class SessionInfo(Message):
    session_id: str
    scene: str
    sensors: list[SensorInfo]
    time_range: tuple[float, float]
    timeout_s: float


class ActorState(Message):
    """An actor at this step: ``T_world_object`` moves it (or places an inserted asset),
    ``hidden`` hides it, ``asset`` inserts the library asset under this new ``id``.  Scene
    actors not listed follow their recorded tracks; inserted assets not listed are hidden."""

    id: str = Field(min_length=1, max_length=64)
    T_world_object: Pose | None = None
    hidden: bool = False
    asset: str | None = None

    @field_validator("T_world_object")
    @classmethod
    def _pose(cls, v):
        return None if v is None else check_pose(v, "T_world_object")

    @model_validator(mode="after")
    def _consistent(self):
        if self.hidden and self.T_world_object is not None:
            raise ValueError(f"actor {self.id!r}: hidden and T_world_object are exclusive")
        if not self.hidden and self.T_world_object is None:
            raise ValueError(f"actor {self.id!r}: give T_world_object or hidden=true")
        return self


class StepRequest(Message):
    t: float
    T_world_ego: Pose | None = Field(None, description="default: the recorded ego pose at t")
    T_world_ego_end: Pose | None = Field(None, description="ego pose at the end of a sweep/readout")
    actors: list[ActorState] = Field(default_factory=list)
    sensors: list[str] | None = Field(None, description="subset of the rig for this step; default all")
    labels: bool = False
    seed: int | None = Field(None, description="sample LiDAR drops with this seed (default: threshold)")

    @field_validator("t")
    @classmethod
    def _finite(cls, v):
        if not math.isfinite(v):
            raise ValueError("t must be finite")
        return v

    @field_validator("T_world_ego", "T_world_ego_end")
    @classmethod
    def _pose(cls, v, info):
        return None if v is None else check_pose(v, info.field_name)

    @model_validator(mode="after")
    def _unique(self):
        ids = [a.id for a in self.actors]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"actors listed twice: {dup}")
        if self.T_world_ego_end is not None and self.T_world_ego is None:
            raise ValueError("T_world_ego_end needs T_world_ego")
        return self


class Array(Message):
    """An n-d array: little-endian C-order bytes."""

    dtype: str
    shape: list[int]
    data: bytes

    @classmethod
    def of(cls, a: np.ndarray) -> "Array":
        a = np.ascontiguousarray(a, dtype=np.asarray(a).dtype.newbyteorder("<"))
        return cls(dtype=a.dtype.str, shape=list(a.shape), data=a.tobytes())

    def numpy(self) -> np.ndarray:
        return np.frombuffer(self.data, dtype=np.dtype(self.dtype)).reshape(self.shape)


class Image(Message):
    format: Literal["png", "jpeg"]
    width: int
    height: int
    data: bytes


class SensorFrame(Message):
    """One sensor's output: ``image`` (encoded color) and/or ``arrays`` by output name;
    ``labels`` (instances, and arrays ``instance``/``semantic`` in ``arrays``) on request."""

    sensor: str
    type: Literal["camera", "lidar"]
    T_world_sensor: Pose
    image: Image | None = None
    arrays: dict[str, Array] = Field(default_factory=dict)
    labels: dict[str, Any] | None = None


class StepResult(Message):
    session_id: str
    step: int
    t: float
    frames: dict[str, SensorFrame]
    render_ms: float
    encode_ms: float


class CloseResult(Message):
    session_id: str
    steps: int


class Health(Message):
    status: Literal["ok"] = "ok"
    scenes: int
    sessions: int
    uptime_s: float


class Metrics(Message):
    steps: int
    frames_served: int
    frames_by_type: dict[str, int]
    errors: int
    sessions_open: int
    sessions_opened: int
    sessions_closed: int
    sessions_expired: int
    step_latency_ms: dict[str, float] = Field(description="p50, p90, p99, max, mean over the last steps: from "
                                              "the step call to its encoded result, waiting for the scene's render "
                                              "lock included")
    latency_window: int


ERROR_STATUS = {"invalid": 422, "not_found": 404, "limit": 413, "expired": 410, "unauthorized": 401,
                "internal": 500}


class ErrorInfo(Message):
    error: str = Field(description="not_found | invalid | limit | unauthorized | expired | internal")
    detail: str


def pack(message: BaseModel) -> bytes:
    """A message as a msgpack binary frame (bytes fields stay raw)."""
    import msgpack
    return msgpack.packb(message.model_dump(mode="python"), use_bin_type=True)


def unpack(data: bytes) -> Any:
    """A msgpack frame as plain Python data (validate it with ``Model.model_validate``)."""
    import msgpack
    return msgpack.unpackb(data, raw=False, strict_map_key=True)
