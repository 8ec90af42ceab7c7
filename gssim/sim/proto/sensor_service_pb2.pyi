from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Pose(_message.Message):
    __slots__ = ("m",)
    M_FIELD_NUMBER: _ClassVar[int]
    m: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, m: _Optional[_Iterable[float]] = ...) -> None: ...

class TimeRange(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: float
    end: float
    def __init__(self, start: _Optional[float] = ..., end: _Optional[float] = ...) -> None: ...

class ListScenesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAssetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MetricsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SceneRequest(_message.Message):
    __slots__ = ("scene",)
    SCENE_FIELD_NUMBER: _ClassVar[int]
    scene: str
    def __init__(self, scene: _Optional[str] = ...) -> None: ...

class SensorInfo(_message.Message):
    __slots__ = ("id", "type", "model", "rows", "cols", "T_ego_sensor", "entry")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    T_EGO_SENSOR_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    model: str
    rows: int
    cols: int
    T_ego_sensor: Pose
    entry: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., model: _Optional[str] = ..., rows: _Optional[int] = ..., cols: _Optional[int] = ..., T_ego_sensor: _Optional[_Union[Pose, _Mapping]] = ..., entry: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ActorInfo(_message.Message):
    __slots__ = ("id", "kind", "cls", "size", "t_start", "t_end")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CLS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    T_START_FIELD_NUMBER: _ClassVar[int]
    T_END_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    cls: str
    size: _containers.RepeatedScalarFieldContainer[float]
    t_start: float
    t_end: float
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., cls: _Optional[str] = ..., size: _Optional[_Iterable[float]] = ..., t_start: _Optional[float] = ..., t_end: _Optional[float] = ...) -> None: ...

class SceneInfo(_message.Message):
    __slots__ = ("id", "name", "time_range", "sensors", "actors", "sessions")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    SENSORS_FIELD_NUMBER: _ClassVar[int]
    ACTORS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    time_range: TimeRange
    sensors: _containers.RepeatedCompositeFieldContainer[SensorInfo]
    actors: _containers.RepeatedCompositeFieldContainer[ActorInfo]
    sessions: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., time_range: _Optional[_Union[TimeRange, _Mapping]] = ..., sensors: _Optional[_Iterable[_Union[SensorInfo, _Mapping]]] = ..., actors: _Optional[_Iterable[_Union[ActorInfo, _Mapping]]] = ..., sessions: _Optional[int] = ...) -> None: ...

class SceneList(_message.Message):
    __slots__ = ("scenes",)
    SCENES_FIELD_NUMBER: _ClassVar[int]
    scenes: _containers.RepeatedCompositeFieldContainer[SceneInfo]
    def __init__(self, scenes: _Optional[_Iterable[_Union[SceneInfo, _Mapping]]] = ...) -> None: ...

class SensorList(_message.Message):
    __slots__ = ("scene", "sensors")
    SCENE_FIELD_NUMBER: _ClassVar[int]
    SENSORS_FIELD_NUMBER: _ClassVar[int]
    scene: str
    sensors: _containers.RepeatedCompositeFieldContainer[SensorInfo]
    def __init__(self, scene: _Optional[str] = ..., sensors: _Optional[_Iterable[_Union[SensorInfo, _Mapping]]] = ...) -> None: ...

class AssetInfo(_message.Message):
    __slots__ = ("id", "cls", "size")
    ID_FIELD_NUMBER: _ClassVar[int]
    CLS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    id: str
    cls: str
    size: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, id: _Optional[str] = ..., cls: _Optional[str] = ..., size: _Optional[_Iterable[float]] = ...) -> None: ...

class AssetList(_message.Message):
    __slots__ = ("assets",)
    ASSETS_FIELD_NUMBER: _ClassVar[int]
    assets: _containers.RepeatedCompositeFieldContainer[AssetInfo]
    def __init__(self, assets: _Optional[_Iterable[_Union[AssetInfo, _Mapping]]] = ...) -> None: ...

class SensorRequest(_message.Message):
    __slots__ = ("id", "from_sensor", "entry", "lidar_preset", "lidar_overrides", "T_ego_sensor", "width", "height", "outputs", "encoding", "jpeg_quality")
    ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SENSOR_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    LIDAR_PRESET_FIELD_NUMBER: _ClassVar[int]
    LIDAR_OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    T_EGO_SENSOR_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    JPEG_QUALITY_FIELD_NUMBER: _ClassVar[int]
    id: str
    from_sensor: str
    entry: _struct_pb2.Struct
    lidar_preset: str
    lidar_overrides: _struct_pb2.Struct
    T_ego_sensor: Pose
    width: int
    height: int
    outputs: _containers.RepeatedScalarFieldContainer[str]
    encoding: str
    jpeg_quality: int
    def __init__(self, id: _Optional[str] = ..., from_sensor: _Optional[str] = ..., entry: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., lidar_preset: _Optional[str] = ..., lidar_overrides: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., T_ego_sensor: _Optional[_Union[Pose, _Mapping]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., outputs: _Optional[_Iterable[str]] = ..., encoding: _Optional[str] = ..., jpeg_quality: _Optional[int] = ...) -> None: ...

class OpenSessionRequest(_message.Message):
    __slots__ = ("scene", "sensors", "timeout_s")
    SCENE_FIELD_NUMBER: _ClassVar[int]
    SENSORS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    scene: str
    sensors: _containers.RepeatedCompositeFieldContainer[SensorRequest]
    timeout_s: float
    def __init__(self, scene: _Optional[str] = ..., sensors: _Optional[_Iterable[_Union[SensorRequest, _Mapping]]] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class SessionInfo(_message.Message):
    __slots__ = ("session_id", "scene", "sensors", "time_range", "timeout_s")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SCENE_FIELD_NUMBER: _ClassVar[int]
    SENSORS_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    scene: str
    sensors: _containers.RepeatedCompositeFieldContainer[SensorInfo]
    time_range: TimeRange
    timeout_s: float
    def __init__(self, session_id: _Optional[str] = ..., scene: _Optional[str] = ..., sensors: _Optional[_Iterable[_Union[SensorInfo, _Mapping]]] = ..., time_range: _Optional[_Union[TimeRange, _Mapping]] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class ActorState(_message.Message):
    __slots__ = ("id", "T_world_object", "hidden", "asset")
    ID_FIELD_NUMBER: _ClassVar[int]
    T_WORLD_OBJECT_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    id: str
    T_world_object: Pose
    hidden: bool
    asset: str
    def __init__(self, id: _Optional[str] = ..., T_world_object: _Optional[_Union[Pose, _Mapping]] = ..., hidden: _Optional[bool] = ..., asset: _Optional[str] = ...) -> None: ...

class StepRequest(_message.Message):
    __slots__ = ("session_id", "t", "T_world_ego", "T_world_ego_end", "actors", "sensors", "labels", "seed")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    T_FIELD_NUMBER: _ClassVar[int]
    T_WORLD_EGO_FIELD_NUMBER: _ClassVar[int]
    T_WORLD_EGO_END_FIELD_NUMBER: _ClassVar[int]
    ACTORS_FIELD_NUMBER: _ClassVar[int]
    SENSORS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    t: float
    T_world_ego: Pose
    T_world_ego_end: Pose
    actors: _containers.RepeatedCompositeFieldContainer[ActorState]
    sensors: _containers.RepeatedScalarFieldContainer[str]
    labels: bool
    seed: int
    def __init__(self, session_id: _Optional[str] = ..., t: _Optional[float] = ..., T_world_ego: _Optional[_Union[Pose, _Mapping]] = ..., T_world_ego_end: _Optional[_Union[Pose, _Mapping]] = ..., actors: _Optional[_Iterable[_Union[ActorState, _Mapping]]] = ..., sensors: _Optional[_Iterable[str]] = ..., labels: _Optional[bool] = ..., seed: _Optional[int] = ...) -> None: ...

class Array(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("format", "width", "height", "data")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    format: str
    width: int
    height: int
    data: bytes
    def __init__(self, format: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class SensorFrame(_message.Message):
    __slots__ = ("sensor", "type", "T_world_sensor", "image", "arrays", "labels")
    class ArraysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Array
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Array, _Mapping]] = ...) -> None: ...
    SENSOR_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    T_WORLD_SENSOR_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ARRAYS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    sensor: str
    type: str
    T_world_sensor: Pose
    image: Image
    arrays: _containers.MessageMap[str, Array]
    labels: _struct_pb2.Struct
    def __init__(self, sensor: _Optional[str] = ..., type: _Optional[str] = ..., T_world_sensor: _Optional[_Union[Pose, _Mapping]] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., arrays: _Optional[_Mapping[str, Array]] = ..., labels: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class StepResult(_message.Message):
    __slots__ = ("session_id", "step", "t", "frames", "render_ms", "encode_ms")
    class FramesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: SensorFrame
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[SensorFrame, _Mapping]] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    T_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    RENDER_MS_FIELD_NUMBER: _ClassVar[int]
    ENCODE_MS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    step: int
    t: float
    frames: _containers.MessageMap[str, SensorFrame]
    render_ms: float
    encode_ms: float
    def __init__(self, session_id: _Optional[str] = ..., step: _Optional[int] = ..., t: _Optional[float] = ..., frames: _Optional[_Mapping[str, SensorFrame]] = ..., render_ms: _Optional[float] = ..., encode_ms: _Optional[float] = ...) -> None: ...

class CloseResult(_message.Message):
    __slots__ = ("session_id", "steps")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    steps: int
    def __init__(self, session_id: _Optional[str] = ..., steps: _Optional[int] = ...) -> None: ...

class Health(_message.Message):
    __slots__ = ("status", "scenes", "sessions", "uptime_s")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SCENES_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    status: str
    scenes: int
    sessions: int
    uptime_s: float
    def __init__(self, status: _Optional[str] = ..., scenes: _Optional[int] = ..., sessions: _Optional[int] = ..., uptime_s: _Optional[float] = ...) -> None: ...

class Metrics(_message.Message):
    __slots__ = ("steps", "frames_served", "frames_by_type", "errors", "sessions_open", "sessions_opened", "sessions_closed", "sessions_expired", "step_latency_ms", "latency_window")
    class FramesByTypeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class StepLatencyMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STEPS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_SERVED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_BY_TYPE_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_OPEN_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_OPENED_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_CLOSED_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    STEP_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_WINDOW_FIELD_NUMBER: _ClassVar[int]
    steps: int
    frames_served: int
    frames_by_type: _containers.ScalarMap[str, int]
    errors: int
    sessions_open: int
    sessions_opened: int
    sessions_closed: int
    sessions_expired: int
    step_latency_ms: _containers.ScalarMap[str, float]
    latency_window: int
    def __init__(self, steps: _Optional[int] = ..., frames_served: _Optional[int] = ..., frames_by_type: _Optional[_Mapping[str, int]] = ..., errors: _Optional[int] = ..., sessions_open: _Optional[int] = ..., sessions_opened: _Optional[int] = ..., sessions_closed: _Optional[int] = ..., sessions_expired: _Optional[int] = ..., step_latency_ms: _Optional[_Mapping[str, float]] = ..., latency_window: _Optional[int] = ...) -> None: ...
