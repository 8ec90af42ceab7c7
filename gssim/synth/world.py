"""The procedural driving world: a straight street with everything a driving log sees.

World frame: x along the street, y left, z up, ground at z = 0.  Traffic drives on the
right: lanes of the +x direction lie at y < 0, of the -x direction at y > 0.  Across the
street (from the centre line outwards, mirrored on both sides): driving lanes, a parking
strip, a curb, a sidewalk, then buildings set back on grass.

Static geometry (road, markings, curbs, sidewalks, buildings, poles, trees, parked cars)
is one triangle soup; every actor (moving cars, pedestrians, parked cars too, so their
boxes are labelled) has its own mesh in its object frame (origin at the box centre, x
forward, z up) and a pose track.  The same seed gives the same world.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from gssim.data.poses import PoseTrack
from gssim.synth.config import SynthConfig, WorldConfig
from gssim.synth.geometry import MeshBuilder, box, cylinder, cylinder_y, ellipsoid, quad_xy
from gssim.synth.materials import ObjectParams

logger = logging.getLogger(__name__)

FACADE_COLORS = np.array([[0.78, 0.72, 0.62], [0.62, 0.36, 0.28], [0.85, 0.82, 0.75], [0.55, 0.58, 0.62],
                          [0.72, 0.55, 0.40], [0.46, 0.30, 0.25], [0.80, 0.76, 0.55], [0.66, 0.70, 0.74]])
GLASS_COLORS = np.array([[0.12, 0.16, 0.22], [0.16, 0.2, 0.2], [0.1, 0.12, 0.16], [0.2, 0.22, 0.26]])
CAR_COLORS = np.array([[0.8, 0.1, 0.1], [0.1, 0.2, 0.6], [0.85, 0.85, 0.85], [0.1, 0.1, 0.1],
                       [0.5, 0.5, 0.52], [0.1, 0.4, 0.2], [0.9, 0.7, 0.1], [0.35, 0.2, 0.1]])
SHIRT_COLORS = np.array([[0.8, 0.2, 0.2], [0.2, 0.3, 0.7], [0.9, 0.9, 0.85], [0.2, 0.5, 0.3],
                         [0.9, 0.6, 0.1], [0.15, 0.15, 0.15]])


@dataclass
class Actor:
    """A rigid object with a pose track.

    vertices (V, 3) float64 and faces (F, 3) in the object frame (origin at the box
    centre); material (F,) ids; size (3,) = length, width, height of its box.
    """

    id: str
    cls: str
    size: np.ndarray
    vertices: np.ndarray
    faces: np.ndarray
    material: np.ndarray
    track: PoseTrack
    object_id: int
    moving: bool

    def poses(self, t: float | np.ndarray) -> np.ndarray:
        """T_world_object at t: (4, 4) or (M, 4, 4); constant velocity past the track ends."""
        return self.track.at(t, extrapolate=True)


@dataclass
class StreetLayout:
    """Lateral layout (m, y of the right-side edges; the left side mirrors them)."""

    lanes_per_direction: int
    lane_width: float
    road_half: float          # |y| of the road edge (lanes + parking)
    curb_outer: float
    sidewalk_outer: float
    x_min: float
    x_max: float

    def lane_centre(self, lane: int, direction: int = 1) -> float:
        """y of lane ``lane`` (0 = outermost) of the +x (direction 1) or -x (-1) traffic."""
        y = (self.lanes_per_direction - lane - 0.5) * self.lane_width
        return -y if direction > 0 else y


@dataclass
class World:
    """Static triangles, actors and per-object texture parameters.

    static_vertices (V, 3) float64, static_faces (F, 3) int64, static_material (F,) int32,
    static_object (F,) int32; params has one row per object id (static objects first,
    then actors); object_names[i] names object i.
    """

    static_vertices: np.ndarray
    static_faces: np.ndarray
    static_material: np.ndarray
    static_object: np.ndarray
    params: ObjectParams
    object_names: list[str]
    actors: list[Actor] = field(default_factory=list)
    layout: StreetLayout | None = None

    @property
    def n_triangles(self) -> int:
        return len(self.static_faces) + sum(len(a.faces) for a in self.actors)


class ObjectTable:
    """Collects per-object parameters while the world is built."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.rows: list[tuple] = []

    def add(self, name: str, color=(0.5, 0.5, 0.5), color2=(0.0, 0.0, 0.0), pattern=(0, 0, 0, 0), seed: int = 0
            ) -> int:
        self.names.append(name)
        self.rows.append((np.asarray(color, float), np.asarray(color2, float), np.asarray(pattern, float), int(seed)))
        return len(self.names) - 1

    def params(self) -> ObjectParams:
        return ObjectParams(np.array([r[0] for r in self.rows]).reshape(-1, 3),
                            np.array([r[1] for r in self.rows]).reshape(-1, 3),
                            np.array([r[2] for r in self.rows]).reshape(-1, 4),
                            np.array([r[3] for r in self.rows], np.int64))


def centred(mb: MeshBuilder) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mesh of ``mb`` moved so its bounding box centre is the origin; returns vertices,
    faces, materials, the box size (3,) and the offset that was removed (3,)."""
    v, f, m, _ = mb.build()
    lo, hi = v.min(0), v.max(0)
    c = (lo + hi) / 2
    return v - c, f, m, hi - lo, c


def car_mesh(length: float, width: float, height: float) -> MeshBuilder:
    """Car with its ground contact at z = 0: body, cabin, four wheels (object id 0)."""
    mb = MeshBuilder()
    r, tw = 0.32, 0.24
    zb = 0.62 * height
    mb.add(box([-length / 2, -width / 2, 0.22], [length / 2, width / 2, zb]), "car_paint", 0)
    mb.add(box([-0.32 * length, -width / 2 + 0.1, zb - 0.01], [0.2 * length, width / 2 - 0.1, height]),
           "car_cabin", 0)
    for sx in (-1, 1):
        for sy in (-1, 1):
            mb.add(cylinder_y(r, tw, [sx * (length / 2 - 0.8), sy * (width / 2 - tw / 2 - 0.02), r]), "rubber", 0)
    return mb


def pedestrian_mesh(height: float) -> MeshBuilder:
    """Standing person with feet at z = 0, facing +x: legs, torso, arms, head."""
    mb = MeshBuilder()
    hip, shoulder = 0.47 * height, 0.82 * height
    for sy in (-1, 1):
        mb.add(box([-0.08, sy * 0.11 - 0.07, 0.0], [0.08, sy * 0.11 + 0.07, hip]), "clothing", 0)
        mb.add(box([-0.06, sy * 0.25 - 0.05, hip + 0.05], [0.06, sy * 0.25 + 0.05, shoulder]), "clothing", 0)
    mb.add(box([-0.12, -0.2, hip], [0.12, 0.2, shoulder]), "clothing", 0)
    hr = 0.065 * height
    mb.add(ellipsoid([0, 0, height - hr], [hr * 0.9, hr * 0.85, hr], subdivisions=1), "skin", 0)
    return mb


def _linear_track(p0: np.ndarray, velocity: np.ndarray, yaw: float, times: np.ndarray) -> PoseTrack:
    c, s = np.cos(yaw), np.sin(yaw)
    T = np.tile(np.eye(4), (len(times), 1, 1))
    T[:, :3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    T[:, :3, 3] = p0 + times[:, None] * velocity
    return PoseTrack(times, T)


def build_world(cfg: SynthConfig, track_times: np.ndarray | None = None) -> World:
    """Build the world of ``cfg`` (deterministic in ``cfg.seed``).

    track_times: (K,) increasing times at which actor tracks are sampled (default: the
    frame times of ``cfg.trajectory`` plus one frame after the last).
    """
    w: WorldConfig = cfg.world
    tr = cfg.trajectory
    rng = np.random.default_rng(cfg.seed)
    if track_times is None:
        track_times = np.arange(tr.frames + 1) / tr.fps
    track_times = np.asarray(track_times, np.float64)
    n = w.lanes_per_direction
    road_half = n * w.lane_width + w.parking_width
    layout = StreetLayout(n, w.lane_width, road_half, road_half + w.curb_width,
                          road_half + w.curb_width + w.sidewalk_width, -w.road_length / 2, w.road_length / 2)
    x0, x1 = layout.x_min, layout.x_max
    objs = ObjectTable()
    mb = MeshBuilder()

    # Ground (slightly below the road so nothing is coplanar), road, markings.
    margin = 150.0
    mb.add(quad_xy(x0 - margin, x1 + margin, -margin - road_half, margin + road_half, -0.02), "ground",
           objs.add("ground", seed=int(rng.integers(1 << 30))))
    mb.add(quad_xy(x0, x1, -road_half, road_half, 0.0), "asphalt", objs.add("road", seed=int(rng.integers(1 << 30))))
    white = objs.add("marking_white", color=(0.9, 0.9, 0.88), seed=1)
    yellow = objs.add("marking_yellow", color=(0.88, 0.72, 0.15), seed=2)
    zm = 0.005
    for y in (-0.1, 0.1):  # double solid centre line
        mb.add(quad_xy(x0, x1, y - 0.06, y + 0.06, zm), "marking", yellow)
    for side in (-1, 1):
        y_edge = side * n * w.lane_width  # solid line between lanes and parking
        mb.add(quad_xy(x0, x1, y_edge - 0.075, y_edge + 0.075, zm), "marking", white)
        for k in range(1, n):  # dashed lane separators: 3 m dash, 6 m gap
            y = side * k * w.lane_width
            for xs in np.arange(x0, x1 - 3.0, 9.0):
                mb.add(quad_xy(xs, xs + 3.0, y - 0.06, y + 0.06, zm), "marking", white)
        # Parking slot ticks every 6 m.
        for xs in np.arange(x0, x1, 6.0):
            ya, yb = sorted((side * road_half, side * (road_half - 0.5)))
            mb.add(quad_xy(xs - 0.06, xs + 0.06, ya, yb, zm), "marking", white)

    # Curbs and sidewalks.
    curb = objs.add("curb", seed=3)
    walk = objs.add("sidewalk", color=(0.62, 0.6, 0.57), pattern=(1.0, 0, 0, 0), seed=4)
    for side in (-1, 1):
        ya, yb = sorted((side * road_half, side * layout.curb_outer))
        mb.add(box([x0, ya, 0.0], [x1, yb, w.curb_height]), "concrete", curb)
        ya, yb = sorted((side * layout.curb_outer, side * layout.sidewalk_outer))
        mb.add(box([x0, ya, 0.0], [x1, yb, w.curb_height]), "paving", walk)

    # Buildings.
    n_buildings = 0
    for side in (-1, 1):
        x = x0 - 10.0 + rng.uniform(0, 5)
        while x < x1 + 10.0:
            width = rng.uniform(*w.building_width)
            depth = rng.uniform(*w.building_depth)
            height = rng.uniform(*w.building_height)
            setback = rng.uniform(*w.building_setback)
            spacing = rng.uniform(2.2, 3.6)
            win_w = rng.uniform(0.9, min(1.8, spacing - 0.6))
            floor_h = rng.uniform(3.0, 3.8)
            kind = int(rng.integers(0, 3))
            oid = objs.add(f"building_{n_buildings}", color=FACADE_COLORS[rng.integers(len(FACADE_COLORS))],
                           color2=GLASS_COLORS[rng.integers(len(GLASS_COLORS))],
                           pattern=(kind, spacing, floor_h, win_w), seed=int(rng.integers(1 << 30)))
            y_near = side * (layout.sidewalk_outer + setback)
            ya, yb = sorted((y_near, y_near + side * depth))
            mb.add(box([x, ya, -0.02], [x + width, yb, height]), "facade", oid)
            n_buildings += 1
            x += width + rng.uniform(*w.building_gap)

    # Street lights and trees on the sidewalks.
    pole_oid = objs.add("poles", color=(0.35, 0.37, 0.4), seed=5)
    n_poles = n_trees = 0
    if w.pole_spacing > 0:
        for side in (-1, 1):
            y = side * (layout.curb_outer + 0.45)
            for x in np.arange(x0 + rng.uniform(0, w.pole_spacing), x1, w.pole_spacing):
                h = 6.5
                mb.add(cylinder(0.09, w.curb_height, h, x, y), "metal", pole_oid)
                arm = 1.6
                ya, yb = sorted((y, y - side * arm))
                mb.add(box([x - 0.05, ya, h - 0.12], [x + 0.05, yb, h - 0.02]), "metal", pole_oid)
                yl = y - side * arm
                mb.add(box([x - 0.25, yl - 0.15, h - 0.25], [x + 0.25, yl + 0.15, h - 0.05]), "metal", pole_oid)
                n_poles += 1
    if w.tree_spacing > 0:
        for side in (-1, 1):
            y_base = side * (layout.curb_outer + min(1.2, w.sidewalk_width / 2))
            x = x0 + rng.uniform(0, w.tree_spacing)
            while x < x1:
                y = y_base + rng.uniform(-0.2, 0.2)
                trunk_h = rng.uniform(2.2, 3.2)
                crown = rng.uniform(1.3, 2.2)
                tid = objs.add(f"tree_{n_trees}", color=(rng.uniform(0.15, 0.3), rng.uniform(0.35, 0.5),
                                                        rng.uniform(0.1, 0.2)), seed=int(rng.integers(1 << 30)))
                mb.add(cylinder(0.16, w.curb_height, trunk_h + 0.5, x, y, sections=8), "bark", tid)
                mb.add(ellipsoid([x, y, trunk_h + crown * 0.8], [crown, crown, crown * 1.15], subdivisions=2),
                       "foliage", tid)
                n_trees += 1
                x += w.tree_spacing * rng.uniform(0.7, 1.3)

    sv, sf, sm, so = mb.build()
    actors: list[Actor] = []

    def add_actor(aid: str, cls: str, mesh: MeshBuilder, oid: int, ground_xy: np.ndarray, velocity: np.ndarray,
                  yaw: float) -> None:
        v, f, m, size, offset = centred(mesh)
        c, s = np.cos(yaw), np.sin(yaw)
        # Box centre in the world: the mesh's ground point at ground_xy plus its rotated offset.
        centre = np.array([ground_xy[0] + c * offset[0] - s * offset[1],
                           ground_xy[1] + s * offset[0] + c * offset[1], ground_xy[2] + offset[2]])
        track = _linear_track(centre, velocity, yaw, track_times)
        track.name = f"actor {aid}"
        actors.append(Actor(aid, cls, size, v, f, m, track, oid, bool(np.any(velocity != 0))))

    def new_car(name: str) -> tuple[MeshBuilder, int]:
        length, width, height = rng.uniform(4.0, 4.9), rng.uniform(1.7, 1.95), rng.uniform(1.4, 1.7)
        col = CAR_COLORS[rng.integers(len(CAR_COLORS))] * rng.uniform(0.85, 1.1)
        oid = objs.add(name, color=np.clip(col, 0, 1), pattern=(-height / 2 + 0.4, 0, 0, 0),
                       seed=int(rng.integers(1 << 30)))
        return car_mesh(length, width, height), oid

    # Parked cars: slots of 6 m in the parking strips, facing the traffic of their side.
    n_parked = 0
    for side in (-1, 1):
        y = side * (n * w.lane_width + w.parking_width / 2 + 0.1)
        for xs in np.arange(x0 + 3.0, x1 - 3.0, 6.0):
            if rng.uniform() >= w.parked_car_fraction:
                continue
            mesh, oid = new_car(f"parked_car_{n_parked}")
            yaw = (0.0 if side < 0 else np.pi) + rng.uniform(-0.04, 0.04)
            add_actor(f"parked_car_{n_parked}", "car", mesh, oid, np.array([xs + rng.uniform(-0.4, 0.4), y, 0.0]),
                      np.zeros(3), yaw)
            n_parked += 1

    # Moving cars: the same lane as the ego (ahead, at about its speed) and the others.
    duration = float(track_times[-1] - track_times[0])
    ego_y = layout.lane_centre(tr.lane, +1)
    for k in range(w.moving_cars):
        mesh, oid = new_car(f"car_{k}")
        direction = 1 if k % 2 == 0 else -1
        lane = int(rng.integers(n))
        y = layout.lane_centre(lane, direction)
        if direction > 0 and abs(y - ego_y) < 1e-6:
            speed = tr.speed * rng.uniform(0.95, 1.05)
            xs = tr.start_x + 4.0 + rng.uniform(10.0, 30.0) + 8.0 * k
        elif direction > 0:
            speed = rng.uniform(0.6, 1.3) * max(tr.speed, 4.0)
            xs = tr.start_x + rng.uniform(-15.0, 40.0)
        else:
            speed = rng.uniform(6.0, 12.0)
            xs = tr.start_x + 20.0 + rng.uniform(0.0, 30.0 + (speed + tr.speed) * duration)
        velocity = np.array([direction * speed, 0.0, 0.0])
        add_actor(f"car_{k}", "car", mesh, oid, np.array([xs, y, 0.0]), velocity,
                  0.0 if direction > 0 else np.pi)

    # Pedestrians walking along the sidewalks.
    for k in range(w.pedestrians):
        side = -1 if k % 2 == 0 else 1
        height = rng.uniform(1.55, 1.9)
        oid = objs.add(f"pedestrian_{k}", color=SHIRT_COLORS[rng.integers(len(SHIRT_COLORS))],
                       color2=(rng.uniform(0.1, 0.3), rng.uniform(0.1, 0.3), rng.uniform(0.15, 0.45)),
                       pattern=(-height / 2 + 0.47 * height, rng.uniform(0.5, 1.05), 0, 0),
                       seed=int(rng.integers(1 << 30)))
        direction = 1 if rng.uniform() < 0.5 else -1
        speed = rng.uniform(1.0, 1.6)
        y = side * (layout.curb_outer + rng.uniform(1.8, max(1.9, w.sidewalk_width - 0.5)))
        xs = tr.start_x + rng.uniform(5.0, 25.0 + tr.speed * duration)
        mesh = pedestrian_mesh(height)
        add_actor(f"pedestrian_{k}", "pedestrian", mesh, oid, np.array([xs, y, w.curb_height]),
                  np.array([direction * speed, 0.0, 0.0]), 0.0 if direction > 0 else np.pi)

    world = World(sv, sf, sm, so, objs.params(), objs.names, actors, layout)
    logger.info("world: %d static triangles, %d buildings, %d poles, %d trees, %d actors (%d moving)",
                len(sf), n_buildings, n_poles, n_trees, len(actors), sum(a.moving for a in actors))
    return world
