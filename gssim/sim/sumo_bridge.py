"""SUMO traffic bridge: a SUMO network aligned to the scene's road, run through libsumo at
a fixed step, its vehicles mapped to scene actors or library assets.

Frames.  The network is built in the *road frame*: a straight two-way road along +x from
``x_start`` to ``x_end``, right-hand traffic, the +x lanes at y < 0 and the -x lanes at
y > 0 (lane 0 is the outermost, as SUMO numbers them and as ``gssim.synth`` lays out its
street).  ``RoadLayout.T_world_road`` (4, 4) places that frame in the gssim world (x
forward, y left, z up); for the synthetic town it is the identity.  netconvert keeps the
input coordinates (no offset normalisation), so SUMO's x, y *are* road-frame x, y.

SUMO reports a vehicle by its *front bumper* position and an angle in degrees clockwise
from north (+y); gssim poses an object by its box *centre* and a yaw counter-clockwise from
+x.  So ``yaw = radians(90 - angle)`` and ``centre = front - length / 2 * (cos yaw, sin yaw)``
(``sumo_to_world`` / ``world_to_sumo``; they round-trip).

libsumo holds one simulation per process: ``SumoBridge`` refuses to start a second one.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

EGO_ID = "ego"
ROUTES = {1: "route_fwd", -1: "route_bwd"}
EDGES = {1: "fwd", -1: "bwd"}


# ------------------------------------------------------------------ frames
def yaw_from_sumo_angle(angle_deg: float) -> float:
    """gssim yaw (rad, CCW from +x) of a SUMO angle (deg, clockwise from north)."""
    return math.atan2(math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg)))


def sumo_angle_from_yaw(yaw: float) -> float:
    """SUMO angle (deg in [0, 360), clockwise from north) of a gssim yaw (rad)."""
    return (90.0 - math.degrees(yaw)) % 360.0


def yaw_of(T: np.ndarray) -> float:
    """Heading (rad) of a pose's x axis in the xy plane."""
    return math.atan2(T[1, 0], T[0, 0])


def planar_pose(x: float, y: float, z: float, yaw: float) -> np.ndarray:
    """T (4, 4) float64: translation (x, y, z), rotation yaw about z."""
    c, s = math.cos(yaw), math.sin(yaw)
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:3, 3] = (x, y, z)
    return T


def sumo_to_world(x: float, y: float, angle_deg: float, length: float, z: float = 0.0,
                  T_world_road: np.ndarray | None = None) -> np.ndarray:
    """T_world_object (4, 4) of a SUMO vehicle: front bumper (x, y) and angle in the road
    (SUMO) frame -> box centre pose in the gssim world; ``z`` is the centre height in the
    road frame."""
    yaw = yaw_from_sumo_angle(angle_deg)
    T = planar_pose(x - 0.5 * length * math.cos(yaw), y - 0.5 * length * math.sin(yaw), z, yaw)
    return T if T_world_road is None else np.asarray(T_world_road, np.float64) @ T


def world_to_sumo(T_world_object: np.ndarray, length: float, T_world_road: np.ndarray | None = None
                  ) -> tuple[float, float, float]:
    """(x, y, angle_deg) of the front bumper in the road (SUMO) frame for a box centre pose."""
    T = np.asarray(T_world_object, np.float64)
    if T_world_road is not None:
        T = np.linalg.solve(np.asarray(T_world_road, np.float64), T)
    yaw = yaw_of(T)
    return (float(T[0, 3] + 0.5 * length * math.cos(yaw)), float(T[1, 3] + 0.5 * length * math.sin(yaw)),
            sumo_angle_from_yaw(yaw))


# ------------------------------------------------------------------ the road
@dataclass
class RoadLayout:
    """A straight two-way road (see the module docstring); lengths in metres."""

    x_start: float
    x_end: float
    lanes_per_direction: int = 1
    lane_width: float = 3.5
    speed_limit: float = 13.9                       # m/s
    T_world_road: np.ndarray = field(default_factory=lambda: np.eye(4))

    def __post_init__(self) -> None:
        self.T_world_road = np.asarray(self.T_world_road, np.float64)
        if not self.x_end - self.x_start >= 10.0:
            raise ValueError(f"road layout: x_end - x_start must be >= 10 m, got {self.x_start}..{self.x_end}")
        if self.lanes_per_direction < 1 or self.lane_width <= 0 or self.speed_limit <= 0:
            raise ValueError(f"road layout: need lanes_per_direction >= 1, lane_width > 0, speed_limit > 0; "
                             f"got {self.lanes_per_direction}, {self.lane_width}, {self.speed_limit}")
        if self.T_world_road.shape != (4, 4):
            raise ValueError(f"road layout: T_world_road must be 4x4, got {self.T_world_road.shape}")

    def lane_centre(self, lane: int, direction: int = 1) -> float:
        """Road-frame y of lane ``lane`` (0 = outermost) of the +x (1) or -x (-1) traffic."""
        y = (self.lanes_per_direction - lane - 0.5) * self.lane_width
        return -y if direction > 0 else y

    def locate(self, x: float, y: float, yaw: float) -> tuple[int, int] | None:
        """(direction, lane) of a road-frame position and heading, None when it is off the
        lanes or not heading along the road (within 30 degrees)."""
        if not self.x_start <= x <= self.x_end:
            return None
        c = math.cos(yaw)
        if abs(c) < math.cos(math.radians(30)):
            return None
        direction = 1 if c > 0 else -1
        for lane in range(self.lanes_per_direction):
            if abs(y - self.lane_centre(lane, direction)) <= 0.5 * self.lane_width:
                return direction, lane
        return None

    def to_dict(self) -> dict:
        return {"x_start": self.x_start, "x_end": self.x_end, "lanes_per_direction": self.lanes_per_direction,
                "lane_width": self.lane_width, "speed_limit": self.speed_limit,
                "T_world_road": self.T_world_road.tolist()}


def layout_from_synth(world_cfg, speed_limit: float = 13.9) -> RoadLayout:
    """The synthetic town's street (``gssim.synth.config.WorldConfig``): identity frame."""
    half = float(world_cfg.road_length) / 2
    return RoadLayout(-half, half, int(world_cfg.lanes_per_direction), float(world_cfg.lane_width), speed_limit)


def layout_for_scene(scene, road_length: float = 400.0, lane_width: float = 3.5) -> RoadLayout:
    """The road of a scene: the synthetic town's config when the scene's source log holds
    one (``log.json`` key ``synth``), else a one-lane-each-way road along the recorded ego
    track's start heading, the ego in the +x lane, ``road_length`` metres long from 20 m
    behind the ego's start."""
    src = scene.meta.get("source_log")
    if src and (Path(src) / "log.json").is_file():
        synth = json.loads((Path(src) / "log.json").read_text()).get("synth")
        if isinstance(synth, dict) and isinstance(synth.get("config"), dict):
            from gssim.synth.config import config_from_dict
            return layout_from_synth(config_from_dict(synth["config"]).world)
    T0 = scene.ego_track.at(scene.time_range[0], clamp=True)
    yaw = yaw_of(T0)
    # Ego lane centre is at road y = -lane_width / 2: the road origin is half a lane to its left.
    origin = T0[:3, 3] + 0.5 * lane_width * np.array([-math.sin(yaw), math.cos(yaw), 0.0])
    T_world_road = planar_pose(origin[0], origin[1], origin[2], yaw)
    return RoadLayout(-20.0, road_length - 20.0, 1, lane_width, T_world_road=T_world_road)


def _tool(name: str) -> str:
    """Path of a SUMO binary: next to the Python executable, in $SUMO_HOME/bin, or on PATH."""
    candidates = [Path(sys.executable).parent / name]
    if os.environ.get("SUMO_HOME"):
        candidates.append(Path(os.environ["SUMO_HOME"]) / "bin" / name)
    for c in candidates:
        if c.is_file():
            return str(c)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"SUMO's {name} not found (looked in {[str(c) for c in candidates]} and PATH); "
                                f"install the sim extra: pip install -e .[sim]")
    return found


def write_network(layout: RoadLayout, folder: str | Path) -> Path:
    """Build ``folder/road.net.xml`` with netconvert from plain node/edge XML of the layout
    (edges ``fwd`` along +x and ``bwd`` along -x).  Returns the network path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    nodes = (f'<nodes>\n  <node id="W" x="{layout.x_start:.3f}" y="0" type="priority"/>\n'
             f'  <node id="E" x="{layout.x_end:.3f}" y="0" type="priority"/>\n</nodes>\n')
    lanes = f'numLanes="{layout.lanes_per_direction}" speed="{layout.speed_limit:.3f}" width="{layout.lane_width:.3f}"'
    edges = (f'<edges>\n  <edge id="fwd" from="W" to="E" {lanes}/>\n'
             f'  <edge id="bwd" from="E" to="W" {lanes}/>\n</edges>\n')
    (folder / "road.nod.xml").write_text(nodes)
    (folder / "road.edg.xml").write_text(edges)
    (folder / "layout.json").write_text(json.dumps(layout.to_dict(), indent=1))
    net = folder / "road.net.xml"
    cmd = [_tool("netconvert"), "--node-files", str(folder / "road.nod.xml"), "--edge-files",
           str(folder / "road.edg.xml"), "--output-file", str(net), "--offset.disable-normalization", "true",
           "--no-turnarounds", "true", "--no-warnings", "true"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not net.is_file():
        raise RuntimeError(f"netconvert failed ({proc.returncode}) building {net}: {proc.stderr.strip()[-2000:]}")
    return net


# ------------------------------------------------------------------ the simulation
@dataclass
class VehicleState:
    """A SUMO vehicle in gssim's world: box centre pose T_world_object (4, 4), speed (m/s),
    box size (length, width, height), lane id."""

    id: str
    T_world_object: np.ndarray
    speed: float
    size: np.ndarray
    lane: str


_ACTIVE: list = []          # the bridge that holds this process's libsumo simulation


def _libsumo():
    try:
        import libsumo
    except ImportError as exc:
        raise ImportError(f"the SUMO bridge needs libsumo ({exc}); "
                          f"install the sim extra: pip install -e .[sim]") from None
    return libsumo


class SumoBridge:
    """A running SUMO simulation of a ``RoadLayout`` network, stepped ``step_length`` seconds
    at a time; poses go in and out in the gssim world frame.

    >>> with SumoBridge(layout, folder, step_length=0.1, seed=3) as sumo:
    ...     sumo.add_vehicle("car_1", direction=1, lane=0, x=30.0, speed=8.0)
    ...     sumo.step(); sumo.vehicles()["car_1"].T_world_object
    """

    def __init__(self, layout: RoadLayout, folder: str | Path, step_length: float = 0.1, seed: int = 0,
                 ground_z: float = 0.0) -> None:
        if not step_length > 0:
            raise ValueError(f"SumoBridge: step_length must be > 0, got {step_length}")
        self.layout, self.step_length, self.seed, self.ground_z = layout, float(step_length), int(seed), ground_z
        self.net = write_network(layout, folder)
        self.sizes: dict[str, np.ndarray] = {}
        self.ts = None

    # --- life cycle
    def start(self) -> "SumoBridge":
        if _ACTIVE:
            raise RuntimeError("SumoBridge: a SUMO simulation is already running in this process (libsumo holds "
                               "one); close it first")
        ts = _libsumo()
        ts.start(["sumo", "--net-file", str(self.net), "--step-length", f"{self.step_length}", "--seed",
                  str(self.seed), "--no-step-log", "true", "--no-warnings", "true", "--collision.action", "warn",
                  "--begin", "0"])
        _ACTIVE.append(self)
        self.ts = ts
        for direction, rid in ROUTES.items():
            ts.route.add(rid, [EDGES[direction]])
        return self

    def close(self) -> None:
        if self.ts is not None:
            self.ts.close()
            self.ts = None
            _ACTIVE.remove(self)

    def __enter__(self) -> "SumoBridge":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _running(self):
        if self.ts is None:
            raise RuntimeError("SumoBridge: not started (use start() or a with block)")
        return self.ts

    @property
    def time(self) -> float:
        return float(self._running().simulation.getTime())

    # --- vehicles
    def add_vehicle(self, vid: str, direction: int, lane: int, x: float, speed: float,
                    size=(4.5, 1.9, 1.5), hold_speed: bool = False) -> None:
        """Insert a vehicle on the ``direction`` (+1 / -1) carriageway, lane ``lane``, its box
        centre at road-frame ``x``, driving at ``speed`` (kept constant when ``hold_speed``;
        SUMO's car-following model drives it otherwise).  It appears after the next step."""
        ts = self._running()
        lay = self.layout
        if direction not in EDGES or not 0 <= lane < lay.lanes_per_direction:
            raise ValueError(f"vehicle {vid}: direction must be 1 or -1 and lane in [0, {lay.lanes_per_direction}),"
                             f" got {direction}, {lane}")
        size = np.asarray(size, np.float64)
        front = x + direction * size[0] / 2
        pos = front - lay.x_start if direction > 0 else lay.x_end - front
        if not size[0] <= pos <= lay.x_end - lay.x_start:
            raise ValueError(f"vehicle {vid}: x={x:.1f} puts it off the road [{lay.x_start}, {lay.x_end}]")
        tid = f"type_{vid}"
        ts.vehicletype.copy("DEFAULT_VEHTYPE", tid)
        ts.vehicletype.setLength(tid, float(size[0]))
        ts.vehicletype.setWidth(tid, float(size[1]))
        ts.vehicletype.setHeight(tid, float(size[2]))
        ts.vehicletype.setMinGap(tid, 2.0)
        ts.vehicletype.setMaxSpeed(tid, max(lay.speed_limit * 1.5, speed + 1.0))
        ts.vehicle.add(vid, ROUTES[direction], typeID=tid, depart="now", departLane=str(lane),
                       departPos=f"{pos:.3f}", departSpeed=f"{max(speed, 0.0):.3f}")
        if hold_speed:
            ts.vehicle.setSpeedMode(vid, 0)
            ts.vehicle.setSpeed(vid, max(speed, 0.0))
        self.sizes[vid] = size

    def add_ego(self, T_world_ego: np.ndarray, speed: float, size=(4.5, 1.9, 1.5)) -> None:
        """Insert the ego (id ``ego``) at its pose; the driving stack moves it from then on
        (``move_ego``), SUMO only reports it to the other vehicles."""
        T_road = np.linalg.solve(self.layout.T_world_road, np.asarray(T_world_ego, np.float64))
        where = self.layout.locate(T_road[0, 3], T_road[1, 3], yaw_of(T_road))
        if where is None:
            raise ValueError(f"ego at road-frame ({T_road[0, 3]:.1f}, {T_road[1, 3]:.1f}) is not on a lane of the "
                             f"road {self.layout.to_dict()}")
        self.add_vehicle(EGO_ID, where[0], where[1], T_road[0, 3], speed, size)
        ts = self._running()
        ts.vehicle.setSpeedMode(EGO_ID, 0)
        ts.vehicle.setLaneChangeMode(EGO_ID, 0)

    def move_ego(self, T_world_ego: np.ndarray, speed: float) -> None:
        """Place the ego for the next step (``moveToXY``, mapped onto its road) at ``speed``."""
        ts = self._running()
        x, y, angle = world_to_sumo(T_world_ego, self.sizes[EGO_ID][0], self.layout.T_world_road)
        ts.vehicle.moveToXY(EGO_ID, "", -1, x, y, angle, keepRoute=1)
        ts.vehicle.setPreviousSpeed(EGO_ID, max(float(speed), 0.0))

    def spawn_traffic(self, n: int, seed: int, size=(4.5, 1.9, 1.5), speed_range=(5.0, 11.0),
                      keep_clear: tuple[float, float] | None = None, spacing: float = 12.0,
                      prefix: str = "traffic") -> list[str]:
        """Insert ``n`` vehicles at seeded random lanes and positions on both carriageways,
        at least ``spacing`` apart in a lane; ``keep_clear`` (x_min, x_max), road frame,
        stays free of new vehicles in every +x lane (the ego's start).  Returns their ids."""
        rng = np.random.default_rng(seed)
        lay = self.layout
        placed: dict[tuple[int, int], list[float]] = {}
        ids = []
        L = float(size[0])
        for k in range(40 * max(n, 1)):
            if len(ids) == n:
                break
            direction = 1 if rng.uniform() < 0.5 else -1
            lane = int(rng.integers(lay.lanes_per_direction))
            x = float(rng.uniform(lay.x_start + L + 1.0, lay.x_end - L - 1.0))
            if keep_clear is not None and direction > 0 and keep_clear[0] - L <= x <= keep_clear[1] + L:
                continue
            if any(abs(x - o) < spacing for o in placed.get((direction, lane), [])):
                continue
            vid = f"{prefix}_{len(ids)}"
            self.add_vehicle(vid, direction, lane, x, float(rng.uniform(*speed_range)), size)
            placed.setdefault((direction, lane), []).append(x)
            ids.append(vid)
        if len(ids) < n:
            log.warning("spawn_traffic: placed %d of %d vehicles (road too short for the spacing)", len(ids), n)
        return ids

    def step(self) -> None:
        """Advance SUMO by one step."""
        self._running().simulationStep()

    def vehicles(self) -> dict[str, VehicleState]:
        """Every vehicle now in the simulation, in gssim's world frame."""
        ts = self._running()
        out = {}
        for vid in ts.vehicle.getIDList():
            size = self.sizes.get(vid)
            if size is None:
                size = np.array([ts.vehicle.getLength(vid), ts.vehicle.getWidth(vid), ts.vehicle.getHeight(vid)])
            x, y = ts.vehicle.getPosition(vid)
            T = sumo_to_world(x, y, ts.vehicle.getAngle(vid), size[0], self.ground_z + size[2] / 2,
                              self.layout.T_world_road)
            out[vid] = VehicleState(vid, T, float(ts.vehicle.getSpeed(vid)), size, ts.vehicle.getLaneID(vid))
        return out


# ------------------------------------------------------------------ SUMO vehicles -> scene nodes
class TrafficMapper:
    """Which scene node shows which SUMO vehicle.

    Scene actors (class car) on a lane at the start follow their SUMO counterparts (same
    id); SUMO-only traffic is shown by a pool of asset nodes added to the scene (``traffic_k``),
    hidden while unused.  ``actor_poses`` gives ``Scene.render``'s ``actors`` argument.
    """

    def __init__(self, scene) -> None:
        self.scene = scene
        self.bound: dict[str, str] = {}             # SUMO id -> node id
        self.pool: list[str] = []                   # asset node ids for SUMO-only traffic
        self.assigned: dict[str, str] = {}          # SUMO id -> pool node id

    def bind_scene_actors(self, bridge: SumoBridge, t: float, classes=("car",), dt: float = 0.1,
                          hold_speed: bool = False) -> list[str]:
        """Insert every scene actor of ``classes`` that is on a lane at time t into SUMO with
        its size and speed (from its track; kept when ``hold_speed``); returns the bound ids."""
        lay = bridge.layout
        for node in self.scene.nodes:
            if node.kind != "actor" or node.cls not in classes or node.track is None:
                continue
            T0 = node.pose_at(t)
            if T0 is None:
                continue
            T_road = np.linalg.solve(lay.T_world_road, T0)
            where = lay.locate(T_road[0, 3], T_road[1, 3], yaw_of(T_road))
            if where is None:
                continue
            T1 = node.track.at(t + dt, clamp=True) if node.track.covers(t + dt) else node.track.at(t - dt, clamp=True)
            speed = abs(float(np.linalg.norm(T1[:3, 3] - T0[:3, 3]))) / dt
            size = np.asarray(node.size if node.size is not None else (4.5, 1.9, 1.5), np.float64)
            bridge.add_vehicle(node.id, where[0], where[1], T_road[0, 3], speed, size, hold_speed)
            self.bound[node.id] = node.id
        return sorted(self.bound)

    def add_asset_pool(self, asset, n: int, prefix: str = "traffic") -> list[str]:
        """Add ``n`` asset nodes (``<prefix>_k``, sharing one surfel field) to the scene to
        show SUMO-only vehicles."""
        from gssim.data.poses import PoseTrack
        from gssim.edit.edits import asset_node
        from gssim.recon.scene import Node
        if n < 1:
            return list(self.pool)
        t0, t1 = self.scene.time_range
        park = planar_pose(0.0, 0.0, -1000.0, 0.0)       # never shown at its own track: always posed or hidden
        track = PoseTrack(np.array([t0, max(t1, t0 + 1.0)]), np.stack([park, park]), name=f"{prefix} pool")
        first, _ = asset_node(self.scene, asset, f"{prefix}_0", track, None, None)
        nodes = list(self.scene.nodes)
        for k in range(n):
            nid = f"{prefix}_{k}"
            nodes.append(Node(nid, "asset", first.field, first.cls, first.size.copy(), track))
            self.pool.append(nid)
        self.scene.set_nodes(nodes)
        return list(self.pool)

    def actor_poses(self, states: dict[str, VehicleState]) -> dict[str, np.ndarray | None]:
        """{node id: T_world_object or None (hidden)}: bound actors at their SUMO poses (hidden
        once their vehicle left); each SUMO-only vehicle (but the ego) keeps one pool node
        while it is in the simulation."""
        poses: dict[str, np.ndarray | None] = {}
        for vid, nid in self.bound.items():
            poses[nid] = states[vid].T_world_object if vid in states else None
        self.assigned = {v: n for v, n in self.assigned.items() if v in states}
        free = [n for n in self.pool if n not in self.assigned.values()]
        for vid in sorted(states):
            if vid == EGO_ID or vid in self.bound or vid in self.assigned:
                continue
            if not free:
                log.debug("no pool node left for SUMO vehicle %s", vid)
                continue
            self.assigned[vid] = free.pop(0)
        for vid, nid in self.assigned.items():
            poses[nid] = states[vid].T_world_object
        for nid in free:
            poses[nid] = None
        return poses
