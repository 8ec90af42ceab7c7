"""The SUMO bridge on a tiny network (a straight road, one lane each way): the frame
mapping round-trips, vehicles appear where SUMO puts them in gssim's frame, and a SUMO
vehicle mapped to a scene actor (or a pool asset) moves its surfels in the render."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gssim.data.poses import PoseTrack
from gssim.recon.appearance import Appearance, Sky
from gssim.recon.scene import Node, Scene, SensorSpec
from gssim.sensors import PinholeCamera, SpinningLidar
from gssim.sim.stack import AccStack, Observation
from gssim.sim.sumo_bridge import (EGO_ID, RoadLayout, SumoBridge, TrafficMapper, layout_for_scene, layout_from_synth,
                                   planar_pose, sumo_angle_from_yaw, sumo_to_world, world_to_sumo,
                                   yaw_from_sumo_angle, yaw_of)
from tests.data.conftest import pose
from tests.edit.test_edits import box_field, explicit, make_asset, trained_decoder

pytest.importorskip("libsumo")

CAR_SIZE = np.array([4.0, 1.9, 1.5])
CAM_POSE = np.array([[0, 0, 1, 1.6], [-1, 0, 0, 0], [0, -1, 0, 1.5], [0, 0, 0, 1]], np.float64)  # x forward
EGO_Y = -1.75                    # the +x lane of a 3.5 m two-lane road centred on y = 0


def tiny_road_scene(car_x: float = 30.0, car_speed: float = 0.0) -> Scene:
    """A flat road x in [-10, 110], y in [-6, 6], one 48x27 camera and a 15-beam LiDAR on the
    ego (driving +x at 8 m/s in the lane y = -1.75 for 1 s), one car actor ``car_1`` in the
    ego's lane at ``car_x`` moving at ``car_speed``."""
    s = 0.5
    X, Y = np.meshgrid(np.arange(-10, 110, s), np.arange(-6, 6.01, s), indexing="ij")
    road = np.stack([X.ravel(), Y.ravel(), np.zeros(X.size)], 1)
    bg = explicit(road, np.repeat([[0, 0, 1.0]], len(road), 0), s * 0.6, (0.35, 0.35, 0.35))
    bg.lidar.data[:, 0] = 0.2
    cam = PinholeCamera(48, 27, 24.0, 24.0, 24.0, 13.5)
    lidar = SpinningLidar([float(e) for e in range(1, -14, -1)], 0.5, min_range=0.5, max_range=60.0)
    sensors = {"cam": SensorSpec("cam", "camera", cam, CAM_POSE, cam.to_dict()),
               "lidar": SensorSpec("lidar", "lidar", lidar, pose(x=0.5, z=1.8), lidar.to_dict())}
    ego = PoseTrack([0.0, 1.0], [pose(0.0, EGO_Y), pose(8.0, EGO_Y)], name="ego")
    car = box_field(CAR_SIZE, (0.1, 0.8, 0.1))
    car.lidar.data[:, 0] = 0.6
    track = PoseTrack([0.0, 1.0], [pose(car_x, EGO_Y, 0.75), pose(car_x + car_speed, EGO_Y, 0.75)], name="car")
    nodes = [Node("background", "background", bg), Node("car_1", "actor", car, "car", CAR_SIZE, track)]
    return Scene(sensors, ego, nodes, Appearance(["cam"], 4), Sky(4, 8), {"lidar": trained_decoder()},
                 {"name": "tiny-road", "source_log": None})


def rendered_gap(scene: Scene, T_ego: np.ndarray, actors: dict) -> float | None:
    """Bumper-to-obstacle distance the ACC stack measures in the rendered LiDAR."""
    frames = scene.render(0.0, sensors=["lidar"], T_world_ego=T_ego, actors=actors)
    stack = AccStack()
    spec = scene.sensors["lidar"]
    obs = Observation(0.0, frames, {"lidar": spec.sensor}, {"lidar": spec.T_ego_sensor}, 0.0, T_ego)
    return stack.obstacle_gap(obs)


def test_frame_mapping_round_trips():
    rng = np.random.default_rng(0)
    assert sumo_angle_from_yaw(0.0) == pytest.approx(90.0)          # east
    assert sumo_angle_from_yaw(math.pi / 2) == pytest.approx(0.0)    # north
    assert yaw_from_sumo_angle(180.0) == pytest.approx(-math.pi / 2)  # south
    T_world_road = planar_pose(5.0, -3.0, 0.2, 0.7)
    for _ in range(20):
        x, y, yaw, L = rng.uniform(-50, 50), rng.uniform(-50, 50), rng.uniform(-math.pi, math.pi), rng.uniform(3, 12)
        for T_wr in (None, T_world_road):
            T = planar_pose(x, y, 0.2 if T_wr is not None else 0.0, yaw)
            sx, sy, angle = world_to_sumo(T, L, T_wr)
            back = sumo_to_world(sx, sy, angle, L, 0.0, T_wr)
            assert np.allclose(back, T, atol=1e-9)
    # The front bumper is half a length ahead of the centre.
    sx, sy, angle = world_to_sumo(planar_pose(10.0, 2.0, 0.0, math.pi / 2), 4.0)
    assert (sx, sy, angle) == pytest.approx((10.0, 4.0, 0.0))


def test_layout_from_ego_track():
    lay = layout_for_scene(tiny_road_scene())
    assert lay.lanes_per_direction == 1
    assert np.allclose(lay.T_world_road[:3, 3], [0.0, 0.0, 0.0]), "road centre line half a lane left of the ego"
    assert lay.locate(5.0, EGO_Y, 0.0) == (1, 0)
    assert lay.locate(5.0, 1.75, math.pi) == (-1, 0)
    assert lay.locate(5.0, 1.75, 0.0) is None, "wrong way in the -x lane"


def test_layout_matches_the_synthetic_street():
    from gssim.synth.config import WorldConfig
    from gssim.synth.world import StreetLayout
    w = WorldConfig(road_length=200.0, lanes_per_direction=2, lane_width=3.2)
    lay = layout_from_synth(w)
    street = StreetLayout(2, 3.2, 2 * 3.2 + w.parking_width, 0.0, 0.0, -100.0, 100.0)
    assert (lay.x_start, lay.x_end) == (street.x_min, street.x_max)
    for d in (1, -1):
        for lane in range(2):
            assert lay.lane_centre(lane, d) == pytest.approx(street.lane_centre(lane, d))
            assert lay.locate(0.0, street.lane_centre(lane, d), 0.0 if d > 0 else math.pi) == (d, lane)


def test_vehicles_appear_where_sumo_puts_them(tmp_path):
    lay = RoadLayout(-20.0, 180.0, 2, 3.5)
    import libsumo
    with SumoBridge(lay, tmp_path, step_length=0.1, seed=1) as sumo:
        lanes = {lid: libsumo.lane.getShape(lid) for lid in libsumo.lane.getIDList() if not lid.startswith(":")}
        # SUMO's lanes lie where the layout (and gssim.synth) puts them.
        for d, edge in ((1, "fwd"), (-1, "bwd")):
            for lane in range(2):
                ys = [p[1] for p in lanes[f"{edge}_{lane}"]]
                assert np.allclose(ys, lay.lane_centre(lane, d))
        sumo.add_vehicle("a", 1, 0, 20.0, 0.0, (4.0, 1.8, 1.5), hold_speed=True)
        sumo.add_vehicle("b", -1, 1, 60.0, 6.0, (5.0, 2.0, 1.6), hold_speed=True)
        sumo.step()
        st = sumo.vehicles()
        assert set(st) == {"a", "b"}
        a, b = st["a"], st["b"]
        assert np.allclose(a.T_world_object[:3, 3], [20.0, lay.lane_centre(0, 1), 0.75], atol=1e-6)
        assert yaw_of(a.T_world_object) == pytest.approx(0.0, abs=1e-6)
        assert np.allclose(b.T_world_object[:3, 3], [60.0, lay.lane_centre(1, -1), 0.8], atol=1e-6)
        assert abs(yaw_of(b.T_world_object)) == pytest.approx(math.pi, abs=1e-6)
        # The centre is half a length behind SUMO's front bumper.
        fx, fy = libsumo.vehicle.getPosition("b")
        assert (fx, fy) == pytest.approx((57.5, lay.lane_centre(1, -1)))
        for _ in range(10):
            sumo.step()
        st = sumo.vehicles()
        assert st["b"].T_world_object[0, 3] == pytest.approx(60.0 - 6.0 * 1.0, abs=1e-6), "drives -x at 6 m/s"
        assert st["a"].T_world_object[0, 3] == pytest.approx(20.0)
        # The ego, moved by the stack, is where it is put.
        sumo.add_ego(planar_pose(0.0, lay.lane_centre(0, 1), 0.0, 0.0), 5.0)
        sumo.step()
        sumo.move_ego(planar_pose(0.5, lay.lane_centre(0, 1), 0.0, 0.0), 5.0)
        sumo.step()
        ego = sumo.vehicles()[EGO_ID]
        assert ego.T_world_object[0, 3] == pytest.approx(0.5, abs=1e-6) and ego.speed == pytest.approx(5.0)
        with pytest.raises(RuntimeError, match="already running"):
            SumoBridge(lay, tmp_path / "second").start()
    with pytest.raises(ValueError, match="off the road"):
        with SumoBridge(lay, tmp_path / "third") as sumo:
            sumo.add_vehicle("far", 1, 0, 500.0, 5.0)


def test_sumo_vehicle_moves_the_actor_in_the_render(tmp_path):
    scene = tiny_road_scene(car_x=30.0, car_speed=4.0)
    lay = layout_for_scene(scene)
    T_ego = planar_pose(0.0, EGO_Y, 0.0, 0.0)
    front = 2.3                                     # AccStack's default bumper offset
    mapper = TrafficMapper(scene)
    with SumoBridge(lay, tmp_path, step_length=0.1, seed=0) as sumo:
        assert mapper.bind_scene_actors(sumo, 0.0, hold_speed=True) == ["car_1"]
        mapper.add_asset_pool(make_asset("pool_car", tuple(CAR_SIZE)), 1)
        sumo.step()
        states = sumo.vehicles()
        assert states["car_1"].speed == pytest.approx(4.0, abs=1e-6), "speed from the actor's track"
        x0 = states["car_1"].T_world_object[0, 3]
        assert x0 == pytest.approx(30.0, abs=1e-6)
        poses = mapper.actor_poses(states)
        assert poses["traffic_0"] is None, "an unused pool node is hidden"
        gap0 = rendered_gap(scene, T_ego, poses)
        for _ in range(20):
            sumo.step()
        states = sumo.vehicles()
        x1 = states["car_1"].T_world_object[0, 3]
        assert x1 == pytest.approx(38.0, abs=1e-6)
        gap1 = rendered_gap(scene, T_ego, mapper.actor_poses(states))
        # The rendered LiDAR sees the car's rear where SUMO has it.
        assert gap0 == pytest.approx(x0 - CAR_SIZE[0] / 2 - front, abs=0.4)
        assert gap1 == pytest.approx(x1 - CAR_SIZE[0] / 2 - front, abs=0.4)
        # A SUMO-only vehicle is shown by the pool asset, in front of the actor.
        sumo.add_vehicle("extra", 1, 0, 20.0, 0.0, tuple(CAR_SIZE), hold_speed=True)
        sumo.step()
        poses = mapper.actor_poses(sumo.vehicles())
        assert poses["traffic_0"] is not None and poses["traffic_0"][0, 3] == pytest.approx(20.0)
        assert rendered_gap(scene, T_ego, poses) == pytest.approx(20.0 - CAR_SIZE[0] / 2 - front, abs=0.4)
