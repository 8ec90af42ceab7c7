"""Simulation sessions over loaded scenes, free of any transport (HTTP, WebSocket and
gRPC faces all call this layer).

>>> manager = SessionManager(["out/scene"])              # scenes loaded once, shared
>>> manager.list_scenes(), manager.list_sensors("scene"), manager.list_assets()
>>> info = manager.open(OpenSessionRequest(scene="scene", sensors=[
...     SensorRequest(id="cam_front", width=640, height=360),
...     SensorRequest(id="roof", lidar_preset="vlp-32c", T_ego_sensor=pose)]))
>>> result = manager.step(info.session_id, StepRequest(t=0.5, actors=[
...     ActorState(id="car_3", hidden=True),
...     ActorState(id="mine", asset="sedan", T_world_object=pose)]))   # -> StepResult
>>> frames = manager.session(info.session_id).render(StepRequest(t=0.5))  # raw tensors
>>> manager.close(info.session_id); manager.health(); manager.metrics()

Every failure is a ``SessionError`` whose ``code`` (not_found, invalid, limit, expired,
unauthorized) maps to an HTTP status (``status``) or a gRPC code; its message names what
is wrong.  Sessions on one scene share its tensors; renders of one scene are serialized
by a per-scene lock (encoding runs outside it); idle sessions expire after their timeout.
"""
from __future__ import annotations

import collections
import io
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gssim.data.poses import PoseTrack
from gssim.data.schema import parse_sensor
from gssim.edit.assets import DEFAULT_LIBRARY, list_assets, load_asset
from gssim.recon.scene import CameraFrame, Node, Scene, SensorSpec, readout_duration
from gssim.recon.scene_files import load_scene
from gssim.sensors.lidar import SpinningLidar
from gssim.sim.messages import (CAMERA_OUTPUTS, DEFAULT_OUTPUTS, ERROR_STATUS, LIDAR_OUTPUTS, ActorInfo, Array,
                                AssetInfo, CloseResult, Health, Image, Metrics, OpenSessionRequest, SceneInfo,
                                SensorFrame, SensorInfo, SensorRequest, SessionInfo, StepRequest, StepResult)

log = logging.getLogger(__name__)


class SessionError(Exception):
    """A request the session layer refuses; ``code`` says why, ``status`` is its HTTP status."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail

    @property
    def status(self) -> int:
        return ERROR_STATUS.get(self.code, 500)


@dataclass
class Limits:
    """Bounds on what one request may ask for (defaults fit a laptop CPU)."""

    max_camera_pixels: int = 2560 * 1600
    max_lidar_rays: int = 128 * 2048
    max_sensors: int = 16
    max_sessions: int = 64
    max_actors: int = 256
    max_inserted: int = 64
    default_timeout_s: float = 300.0
    max_timeout_s: float = 3600.0
    max_request_bytes: int = 1 << 20


@dataclass
class LoadedScene:
    """A scene loaded once; ``lock`` serializes its renders; ``asset_nodes`` caches one
    node per library asset (its LiDAR features fitted to this scene's decoders)."""

    id: str
    path: Path
    scene: Scene
    lock: threading.Lock = field(default_factory=threading.Lock)
    asset_nodes: dict[str, Node] = field(default_factory=dict)
    asset_lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class RigSensor:
    """A sensor of a session's rig: the gssim sensor, its mount and how to answer it.
    ``appearance_id``/``decoder_id``: the scene camera or LiDAR whose appearance or return
    decoder it uses (None: the mean appearance, the first decoder)."""

    id: str
    type: str
    sensor: object
    T_ego_sensor: np.ndarray
    entry: dict
    appearance_id: str | None
    decoder_id: str | None
    outputs: tuple[str, ...]
    encoding: str = "png"
    jpeg_quality: int = 90

    def info(self) -> SensorInfo:
        return SensorInfo(id=self.id, type=self.type, model=str(self.entry.get("model", "")), rows=self.sensor.rows,
                          cols=self.sensor.cols, T_ego_sensor=np.asarray(self.T_ego_sensor).tolist(),
                          entry=self.entry)


def _spec_info(spec: SensorSpec) -> SensorInfo:
    return SensorInfo(id=spec.id, type=spec.type, model=str(spec.entry.get("model", "")), rows=spec.sensor.rows,
                      cols=spec.sensor.cols, T_ego_sensor=np.asarray(spec.T_ego_sensor).tolist(),
                      entry=spec.entry)


def _sensor_cells(sensor) -> int:
    return int(sensor.rows) * int(sensor.cols)


def build_rig_sensor(scene: Scene, req: SensorRequest, limits: Limits) -> RigSensor:
    """The rig sensor a ``SensorRequest`` asks for (see its docstring); SessionError when
    the source is unknown, the entry invalid or the grid over the limits."""
    where = f"sensor {req.id!r}"
    source = req.from_sensor
    if source is None and req.entry is None and req.lidar_preset is None:
        source = req.id
    if source is not None:
        if source not in scene.sensors:
            raise SessionError("not_found", f"{where}: scene {scene.name!r} has no sensor {source!r}; "
                                            f"sensors are {sorted(scene.sensors)}")
        spec = scene.sensors[source]
        entry = dict(spec.entry)
        mount = np.asarray(spec.T_ego_sensor if req.T_ego_sensor is None else req.T_ego_sensor, np.float64)
        if req.width is not None or req.height is not None:
            if spec.type != "camera":
                raise SessionError("invalid", f"{where}: width/height re-size cameras; {source!r} is a LiDAR")
            w0, h0 = int(entry["width"]), int(entry["height"])
            w = req.width if req.width is not None else round(w0 * req.height / h0)
            h = req.height if req.height is not None else round(h0 * req.width / w0)
            _check_cells(where, w * h, limits.max_camera_pixels, "pixels")
            sx, sy = w / w0, h / h0
            entry.update(width=w, height=h, fx=entry["fx"] * sx, cx=entry["cx"] * sx, fy=entry["fy"] * sy,
                         cy=entry["cy"] * sy)
        app_id = source if spec.type == "camera" else None
        dec_id = source if spec.type == "lidar" and source in scene.lidar_decoders else None
        if entry == spec.entry and req.T_ego_sensor is None:
            sensor = spec.sensor
        else:
            sensor = _parse(req.id, entry, mount)
    elif req.entry is not None:
        entry = dict(req.entry)
        if "T_ego_sensor" in entry:
            raise SessionError("invalid", f"{where}: give the mount as T_ego_sensor beside entry, not inside it")
        w, h = entry.get("width"), entry.get("height")
        if entry.get("type") == "camera" and isinstance(w, int) and isinstance(h, int):   # before building the grid
            _check_cells(where, w * h, limits.max_camera_pixels, "pixels")
        mount = np.asarray(req.T_ego_sensor, np.float64)
        sensor = _parse(req.id, entry, mount)
        app_id, dec_id = None, None
    else:
        try:
            sensor = SpinningLidar.preset(req.lidar_preset, **req.lidar_overrides)
        except (ValueError, TypeError) as exc:
            raise SessionError("invalid" if req.lidar_preset.lower() in SpinningLidar.preset_names() else "not_found",
                               f"{where}: {exc}") from None
        entry = sensor.to_dict()
        mount = np.asarray(req.T_ego_sensor, np.float64)
        app_id, dec_id = None, None
    stype = "camera" if getattr(sensor, "kind", "camera") == "camera" else "lidar"
    if stype == "camera":
        _check_cells(where, _sensor_cells(sensor), limits.max_camera_pixels, "pixels")
    else:
        _check_cells(where, _sensor_cells(sensor), limits.max_lidar_rays, "rays")
    allowed = CAMERA_OUTPUTS if stype == "camera" else LIDAR_OUTPUTS
    outputs = tuple(req.outputs) if req.outputs is not None else DEFAULT_OUTPUTS[stype]
    bad = [o for o in outputs if o not in allowed]
    if bad or not outputs:
        raise SessionError("invalid", f"{where}: outputs {bad or '[]'} unknown for a {stype}; "
                                      f"choose from {list(allowed)}")
    return RigSensor(req.id, stype, sensor, mount, entry, app_id, dec_id, outputs, req.encoding, req.jpeg_quality)


def _check_cells(where: str, n: int, limit: int, what: str) -> None:
    if n > limit:
        raise SessionError("limit", f"{where}: {n} {what} exceed the server limit of {limit}")


def _parse(sid: str, entry: dict, mount: np.ndarray):
    try:
        return parse_sensor(sid, {**entry, "T_ego_sensor": mount.tolist()}).sensor
    except ValueError as exc:
        raise SessionError("invalid", f"sensor {sid!r}: {exc}") from None


class LatencyWindow:
    """The last ``size`` step latencies (ms) and their percentiles."""

    def __init__(self, size: int = 2048) -> None:
        self.values: collections.deque[float] = collections.deque(maxlen=size)

    def add(self, ms: float) -> None:
        self.values.append(ms)

    def summary(self) -> dict[str, float]:
        if not self.values:
            return {}
        v = np.asarray(self.values)
        return {"p50": float(np.percentile(v, 50)), "p90": float(np.percentile(v, 90)),
                "p99": float(np.percentile(v, 99)), "max": float(v.max()), "mean": float(v.mean())}


class Session:
    """A client's view of a scene: its rig, its inserted assets and its step count.
    Steps of one session run one at a time."""

    def __init__(self, sid: str, loaded: LoadedScene, rig: dict[str, RigSensor], timeout_s: float,
                 manager: "SessionManager") -> None:
        self.id, self.loaded, self.rig, self.timeout_s = sid, loaded, rig, timeout_s
        self.manager = manager
        self.inserted: dict[str, tuple[str, Node]] = {}     # actor id -> (asset id, node)
        self.view = loaded.scene
        self.steps = 0
        self.last_used = manager.clock()
        self.lock = threading.Lock()
        self.closed = False

    def info(self) -> SessionInfo:
        return SessionInfo(session_id=self.id, scene=self.loaded.id, sensors=[r.info() for r in self.rig.values()],
                           time_range=self.loaded.scene.time_range, timeout_s=self.timeout_s)

    # --- one step -----------------------------------------------------------------------
    def _sensors(self, req: StepRequest) -> list[RigSensor]:
        ids = list(self.rig) if req.sensors is None else req.sensors
        unknown = [s for s in ids if s not in self.rig]
        if unknown:
            raise SessionError("not_found", f"session {self.id}: no sensors {unknown} in its rig; "
                                            f"rig is {list(self.rig)}")
        if not ids:
            raise SessionError("invalid", "sensors: an empty list asks for nothing; omit it for the whole rig")
        return [self.rig[s] for s in dict.fromkeys(ids)]

    def _actors(self, req: StepRequest) -> dict[str, np.ndarray | None]:
        """{node id: T_world_object or None} for the step; inserts new assets (view updated)."""
        limits = self.manager.limits
        if len(req.actors) > limits.max_actors:
            raise SessionError("limit", f"actors: {len(req.actors)} exceed the server limit of {limits.max_actors}")
        scene = self.loaded.scene
        scene_ids = {n.id: n for n in scene.nodes}
        pending: dict[str, tuple[str, Node]] = {}  # committed only when the whole request is valid
        for a in req.actors:
            if a.asset is not None:
                if a.id in scene_ids:
                    raise SessionError("invalid", f"actor {a.id!r}: the scene already has a node of that id; "
                                                  f"insert the asset under a new id")
                known = self.inserted.get(a.id) or pending.get(a.id)
                if known is not None:
                    if known[0] != a.asset:
                        raise SessionError("invalid", f"actor {a.id!r}: already inserted as asset "
                                                      f"{known[0]!r}, not {a.asset!r}")
                    continue
                if len(self.inserted) + len(pending) >= limits.max_inserted:
                    raise SessionError("limit", f"actor {a.id!r}: a session may insert at most "
                                                f"{limits.max_inserted} assets")
                proto = self.manager.asset_node(self.loaded, a.asset)
                node = Node(a.id, "asset", proto.field, proto.cls, proto.size, None)
                pending[a.id] = (a.asset, node)
            elif a.id in scene_ids:
                if scene_ids[a.id].kind == "background":
                    raise SessionError("invalid", f"actor {a.id!r}: the background cannot be moved or hidden")
            elif a.id not in self.inserted and a.id not in pending:
                movable = sorted(n.id for n in scene.nodes if n.kind != "background")
                raise SessionError("not_found", f"actor {a.id!r}: no such actor in scene {self.loaded.id!r} "
                                                f"(actors: {movable}) nor inserted in this session; "
                                                f"give 'asset' to insert one")
        if pending:
            self.inserted.update(pending)
            self.view = Scene(scene.sensors, scene.ego_track, scene.nodes + [n for _, n in self.inserted.values()],
                              scene.appearance, scene.sky, dict(scene.lidar_decoders), scene.meta)
        actors = {aid: None for aid in self.inserted}
        for a in req.actors:
            actors[a.id] = None if a.hidden else np.asarray(a.T_world_object, np.float64)
        return actors

    def _poses(self, r: RigSensor, req: StepRequest) -> tuple[np.ndarray, np.ndarray | None]:
        """Start and end pose of the sensor's readout, as ``Scene._readout_poses``."""
        track = self.loaded.scene.ego_track
        T_ego = track.at(req.t, clamp=True) if req.T_world_ego is None else np.asarray(req.T_world_ego, np.float64)
        T0 = T_ego @ r.T_ego_sensor
        if r.sensor.is_instant:
            return T0, None
        if req.T_world_ego_end is not None:
            return T0, np.asarray(req.T_world_ego_end, np.float64) @ r.T_ego_sensor
        if req.T_world_ego is not None:
            return T0, T0
        return T0, track.at(req.t + readout_duration(r.sensor), extrapolate=True) @ r.T_ego_sensor

    def render(self, req: StepRequest) -> tuple[dict, dict]:
        """Raw frames {sensor id: CameraFrame | LidarFrame} (torch tensors) of a step, and
        its labels {sensor id: FrameLabels} when ``req.labels`` (no encoding, no metrics)."""
        with self.lock:
            return self._render(req, self._sensors(req), self._actors(req))

    def _render(self, req: StepRequest, sensors: list[RigSensor], actors: dict) -> tuple[dict, dict]:
        backend = self.manager.backend
        frames, labels = {}, {}
        with self.loaded.lock, torch.no_grad():
            for r in sensors:
                T0, T1 = self._poses(r, req)
                if r.type == "camera":
                    frames[r.id] = self.view.render_camera(r.id, req.t, actors=actors, backend=backend,
                                                           sensor=r.sensor, appearance_id=r.appearance_id,
                                                           T0=T0, T1=T1)[0]
                else:
                    frames[r.id] = self.view.render_lidar(r.id, req.t, actors=actors, backend=backend,
                                                          sensor=r.sensor, seed=req.seed, T0=T0, T1=T1,
                                                          decoder_id=r.decoder_id)[0]
            if req.labels:
                from gssim.edit.labels import labels_for
                view = self._labels_view(req, actors, sensors)
                labels = {r.id: labels_for(view, req.t, r.id, backend) for r in sensors}
        return frames, labels

    def _labels_view(self, req: StepRequest, actors: dict, sensors: list[RigSensor]) -> Scene:
        """A scene whose tracks hold this step's state (ego pose, moved/hidden/inserted
        actors) and whose sensors are the rig's, for ``labels_for``."""
        base = self.view
        t = req.t
        if req.T_world_ego is None:
            ego = base.ego_track
        elif req.T_world_ego_end is not None and max(readout_duration(r.sensor) for r in sensors) > 0:
            d = max(readout_duration(r.sensor) for r in sensors)
            ego = PoseTrack([t, t + d], [req.T_world_ego, req.T_world_ego_end], name="step ego")
        else:
            ego = PoseTrack([t], [req.T_world_ego], name="step ego")
        nodes = []
        for n in base.nodes:
            if n.id not in actors:
                nodes.append(n)
            elif actors[n.id] is not None:
                nodes.append(Node(n.id, n.kind, n.field, n.cls, n.size, PoseTrack([t], [actors[n.id]], name=n.id)))
        specs = {r.id: SensorSpec(r.id, r.type, r.sensor, r.T_ego_sensor, r.entry) for r in sensors}
        return Scene(specs, ego, nodes, base.appearance, base.sky, dict(base.lidar_decoders), base.meta)

    def step(self, req: StepRequest) -> StepResult:
        """Render and encode every requested sensor (see the module docstring)."""
        with self.lock:
            if self.closed:
                raise SessionError("not_found", f"session {self.id} is closed")
            t0 = time.perf_counter()
            sensors = self._sensors(req)
            frames, labels = self._render(req, sensors, self._actors(req))
            t1 = time.perf_counter()
            out = {}
            for r in sensors:
                T0, _ = self._poses(r, req)
                out[r.id] = encode_frame(r, frames[r.id], T0, labels.get(r.id))
            t2 = time.perf_counter()
            self.steps += 1
            self.last_used = self.manager.clock()
            self.manager._record(self, (t2 - t0) * 1e3, [r.type for r in sensors])
            return StepResult(session_id=self.id, step=self.steps, t=req.t, frames=out,
                              render_ms=(t1 - t0) * 1e3, encode_ms=(t2 - t1) * 1e3)


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float32, copy=False)


def encode_image(color: np.ndarray, fmt: str, quality: int = 90) -> bytes:
    """(H, W, 3) float in [0, 1] -> PNG (fast compression) or JPEG bytes."""
    from PIL import Image as PILImage
    img = PILImage.fromarray((np.clip(color, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, format="PNG", compress_level=1)
    else:
        img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def encode_frame(r: RigSensor, frame, T_world_sensor: np.ndarray, labels=None) -> SensorFrame:
    """A rendered frame as a ``SensorFrame`` with the rig sensor's outputs and encoding."""
    arrays, image = {}, None
    for name in r.outputs:
        value = getattr(frame, name)
        if name == "color" and r.encoding != "raw":
            color = _np(value)
            image = Image(format=r.encoding, width=color.shape[1], height=color.shape[0],
                          data=encode_image(color, r.encoding, r.jpeg_quality))
        else:
            arrays[name] = Array.of(_np(value))
    label_dict = None
    if labels is not None:
        label_dict = labels.to_dict()
        label_dict.pop("T_world_sensor", None)
        arrays["instance"] = Array.of(labels.instance.cpu().numpy().astype(np.int32))
        arrays["semantic"] = Array.of(labels.semantic.cpu().numpy().astype(np.int32))
        if labels.point_instance is not None:
            arrays["point_instance"] = Array.of(labels.point_instance.cpu().numpy().astype(np.int32))
            arrays["point_semantic"] = Array.of(labels.point_semantic.cpu().numpy().astype(np.int32))
    return SensorFrame(sensor=r.id, type="camera" if isinstance(frame, CameraFrame) else "lidar",
                       T_world_sensor=np.asarray(T_world_sensor).tolist(), image=image, arrays=arrays,
                       labels=label_dict)


class SessionManager:
    """Scenes loaded once (baked surfels where present) and the sessions open on them.

    scene_dirs: scene folders, each served under its folder name; library: the asset
    library; backend: render backend; clock: seconds (monotonic) for timeouts.
    """

    def __init__(self, scene_dirs, library=DEFAULT_LIBRARY, limits: Limits | None = None, backend: str = "auto",
                 clock=time.monotonic) -> None:
        self.limits = limits or Limits()
        self.library = Path(library)
        self.backend = backend
        self.clock = clock
        self.started = clock()
        self.scenes: dict[str, LoadedScene] = {}
        for d in scene_dirs:
            path = Path(d)
            sid = path.resolve().name
            if sid in self.scenes:
                raise ValueError(f"two scenes named {sid!r}: {self.scenes[sid].path} and {path}")
            self.scenes[sid] = LoadedScene(sid, path, load_scene(path, baked=True))
            log.info("loaded scene %r from %s", sid, path)
        self.sessions: dict[str, Session] = {}
        self.lock = threading.Lock()
        self._assets: list[AssetInfo] | None = None
        self.latency = LatencyWindow()
        self.counts = collections.Counter()

    # --- listings -------------------------------------------------------------------------
    def _scene(self, scene_id: str) -> LoadedScene:
        if scene_id not in self.scenes:
            raise SessionError("not_found", f"no scene {scene_id!r}; scenes are {sorted(self.scenes)}")
        return self.scenes[scene_id]

    def scene_info(self, scene_id: str) -> SceneInfo:
        loaded = self._scene(scene_id)
        s = loaded.scene
        actors = [ActorInfo(id=n.id, kind=n.kind, cls=n.cls, size=None if n.size is None else list(map(float, n.size)),
                            t_start=None if n.track is None else n.track.t_start,
                            t_end=None if n.track is None else n.track.t_end)
                  for n in s.nodes if n.kind != "background"]
        with self.lock:
            n_sessions = sum(1 for x in self.sessions.values() if x.loaded is loaded)
        return SceneInfo(id=scene_id, name=s.name, time_range=s.time_range,
                         sensors=[_spec_info(sp) for sp in s.sensors.values()], actors=actors, sessions=n_sessions)

    def list_scenes(self) -> list[SceneInfo]:
        return [self.scene_info(s) for s in self.scenes]

    def list_sensors(self, scene_id: str) -> list[SensorInfo]:
        return [_spec_info(sp) for sp in self._scene(scene_id).scene.sensors.values()]

    def list_assets(self) -> list[AssetInfo]:
        if self._assets is None:
            names = list_assets(self.library) if self.library.is_dir() else []
            infos = []
            for name in names:
                a = load_asset(name, self.library)
                infos.append(AssetInfo(id=name, cls=a.cls, size=[float(x) for x in np.asarray(a.size)]))
            self._assets = infos
        return self._assets

    def asset_node(self, loaded: LoadedScene, asset_id: str) -> Node:
        """The scene's node of a library asset (made once per scene and asset)."""
        with loaded.asset_lock:
            if asset_id not in loaded.asset_nodes:
                known = [a.id for a in self.list_assets()]
                if asset_id not in known:
                    raise SessionError("not_found", f"no asset {asset_id!r} in the library; assets are {known}")
                from gssim.edit.edits import asset_node
                asset = load_asset(asset_id, self.library)
                track = PoseTrack([0.0], [np.eye(4)], name=asset_id)
                with loaded.lock:      # fitting LiDAR features toggles the shared decoders' grad flags
                    loaded.asset_nodes[asset_id] = asset_node(loaded.scene, asset, asset_id, track, None, None)[0]
            return loaded.asset_nodes[asset_id]

    # --- sessions -----------------------------------------------------------------------
    def open(self, req: OpenSessionRequest) -> SessionInfo:
        self.reap()
        loaded = self._scene(req.scene)
        scene = loaded.scene
        reqs = req.sensors if req.sensors is not None else [SensorRequest(id=s) for s in scene.sensors]
        if not reqs:
            raise SessionError("invalid", "sensors: an empty rig; omit it for every scene sensor")
        if len(reqs) > self.limits.max_sensors:
            raise SessionError("limit", f"sensors: {len(reqs)} exceed the server limit of {self.limits.max_sensors}")
        ids = [r.id for r in reqs]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise SessionError("invalid", f"sensors: ids given twice: {dup}")
        rig = {r.id: build_rig_sensor(scene, r, self.limits) for r in reqs}
        timeout = self.limits.default_timeout_s if req.timeout_s is None else req.timeout_s
        if timeout > self.limits.max_timeout_s:
            raise SessionError("limit", f"timeout_s: {timeout} exceeds the server limit of {self.limits.max_timeout_s}")
        with self.lock:
            if len(self.sessions) >= self.limits.max_sessions:
                raise SessionError("limit", f"the server holds its limit of {self.limits.max_sessions} sessions; "
                                            f"close one first")
            session = Session(uuid.uuid4().hex, loaded, rig, float(timeout), self)
            self.sessions[session.id] = session
            self.counts["sessions_opened"] += 1
        log.info("session %s opened on %r with %s", session.id, loaded.id, list(rig))
        return session.info()

    def session(self, session_id: str) -> Session:
        """The open session of that id (its idle clock restarts); SessionError if unknown or expired."""
        self.reap()
        with self.lock:
            s = self.sessions.get(session_id)
            if s is None:
                raise SessionError("not_found", f"no open session {session_id!r} (closed, expired or never opened)")
            s.last_used = self.clock()
            return s

    def step(self, session_id: str, req: StepRequest) -> StepResult:
        return self.session(session_id).step(req)

    def note_error(self) -> None:
        """Count a refused or failed request (transports call this for every error they answer)."""
        with self.lock:
            self.counts["errors"] += 1

    def close(self, session_id: str) -> CloseResult:
        with self.lock:
            s = self.sessions.pop(session_id, None)
            if s is None:
                raise SessionError("not_found", f"no open session {session_id!r} (closed, expired or never opened)")
            s.closed = True
            self.counts["sessions_closed"] += 1
        log.info("session %s closed after %d steps", s.id, s.steps)
        return CloseResult(session_id=s.id, steps=s.steps)

    def reap(self) -> list[str]:
        """Close sessions idle past their timeout (not those stepping now); their ids."""
        now = self.clock()
        gone = []
        with self.lock:
            for sid, s in list(self.sessions.items()):
                if now - s.last_used > s.timeout_s and not s.lock.locked():
                    s.closed = True
                    del self.sessions[sid]
                    gone.append(sid)
            self.counts["sessions_expired"] += len(gone)
        for sid in gone:
            log.info("session %s expired", sid)
        return gone

    def close_all(self) -> None:
        with self.lock:
            for s in self.sessions.values():
                s.closed = True
            self.sessions.clear()

    # --- health and metrics -----------------------------------------------------------
    def _record(self, session: Session, ms: float, types: list[str]) -> None:
        with self.lock:
            self.latency.add(ms)
            self.counts["steps"] += 1
            for t in types:
                self.counts[f"frames_{t}"] += 1

    def health(self) -> Health:
        return Health(scenes=len(self.scenes), sessions=len(self.sessions), uptime_s=self.clock() - self.started)

    def metrics(self) -> Metrics:
        with self.lock:
            c = dict(self.counts)
            by_type = {t: c.get(f"frames_{t}", 0) for t in ("camera", "lidar")}
            return Metrics(steps=c.get("steps", 0), frames_served=sum(by_type.values()), frames_by_type=by_type,
                           errors=c.get("errors", 0), sessions_open=len(self.sessions),
                           sessions_opened=c.get("sessions_opened", 0), sessions_closed=c.get("sessions_closed", 0),
                           sessions_expired=c.get("sessions_expired", 0), step_latency_ms=self.latency.summary(),
                           latency_window=len(self.latency.values))

