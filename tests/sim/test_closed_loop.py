"""A short closed loop on the tiny road: the ACC stack brakes for a stopped car ahead
(no collision), SUMO traffic is shown by pool assets, the outputs are written; the
metrics are computed as defined."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gssim.edit.assets import save_asset
from gssim.edit.edits import footprints_overlap
from gssim.sim.closed_loop import (ClosedLoopConfig, lead_ttc, run_closed_loop, summarize,
                                   write_outputs)
from gssim.sim.stack import AccConfig, AccStack
from gssim.sim.sumo_bridge import VehicleState, planar_pose
from tests.edit.test_edits import make_asset
from tests.sim.test_sumo_bridge import CAR_SIZE, rendered_gap, tiny_road_scene

pytest.importorskip("libsumo")


def test_stack_brakes_for_a_stopped_car(tmp_path):
    save_asset(make_asset("pool_car", tuple(CAR_SIZE)), tmp_path / "library")
    scene = tiny_road_scene(car_x=26.0, car_speed=0.0)
    cfg = ClosedLoopConfig(steps=70, rate_hz=10.0, seed=2, traffic=2, asset="pool_car",
                           library=str(tmp_path / "library"), actor_speed="recorded", strip_every=10)
    stack = AccStack(AccConfig(target_speed=10.0))
    rollout = run_closed_loop(scene, stack, cfg, work_dir=tmp_path / "net")
    m = rollout.metrics
    assert m["steps"] == 70 and m["sim_time_s"] == pytest.approx(7.0) and m["ended"] == "all steps run"
    assert m["collisions"] == 0
    speeds = [r["speed"] for r in rollout.records]
    assert speeds[0] == pytest.approx(8.0, abs=1e-6), "starts at the recorded ego speed"
    assert speeds[-1] < 0.5, "stopped behind the car"
    stop_x = rollout.records[-1]["x"]
    gap = 26.0 - CAR_SIZE[0] / 2 - stop_x - 4.5 / 2
    assert 0.5 < gap < 8.0, f"stopped {gap:.2f} m behind the car"
    assert m["min_gap_m"] == pytest.approx(min(r["gap"] for r in rollout.records))
    assert m["min_ttc_s"] is not None and m["min_ttc_s"] > 0.5
    assert m["max_speed"] == pytest.approx(max(speeds)) and m["mean_speed"] == pytest.approx(np.mean(speeds))
    assert m["distance_m"] == pytest.approx(stop_x - rollout.records[0]["x"], abs=1e-6)
    assert "car_1" in rollout.tracks and any(v.startswith("traffic_") for v in rollout.tracks)
    # The stack saw the car in the rendered LiDAR: its gap estimate follows SUMO's truth.
    assert all(r["accel"] <= 1.5 + 1e-9 for r in rollout.records)
    assert len(rollout.camera_rows) == 70 and rollout.camera_rows[0].shape == (27, 48, 3)
    paths = write_outputs(rollout, tmp_path / "out", fps=1.0, video=False)
    assert json.loads(paths["metrics"].read_text())["collisions"] == 0
    for key in ("strip", "birds_eye", "trajectory"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0
    from PIL import Image
    assert Image.open(paths["strip"]).size == (48, 7 * 27), "a row every 10 steps"


def test_without_braking_it_collides(tmp_path):
    scene = tiny_road_scene(car_x=20.0, car_speed=0.0)
    cfg = ClosedLoopConfig(steps=30, rate_hz=10.0, traffic=0, actor_speed="recorded", cameras=[])

    def blind(obs):
        from gssim.sim.stack import Command
        return Command(0.0)

    m = run_closed_loop(scene, blind, cfg, work_dir=tmp_path).metrics
    assert m["collisions"] == 1 and m["collided_with"] == ["car_1"]
    assert m["min_ttc_s"] == pytest.approx(0.0)
    assert m["mean_speed"] == pytest.approx(8.0) and m["distance_m"] == pytest.approx(8.0 * 2.9)


def test_metrics_by_hand():
    ego = planar_pose(0.0, 0.0, 0.0, 0.0)
    size = np.array([4.0, 2.0, 1.5])
    ahead = VehicleState("a", planar_pose(14.0, 0.5, 0.75, 0.0), 2.0, size, "fwd_0")
    beside = VehicleState("b", planar_pose(5.0, 3.0, 0.75, 0.0), 0.0, size, "fwd_1")
    oncoming = VehicleState("c", planar_pose(30.0, 0.0, 0.75, math.pi), 5.0, size, "bwd_0")
    ttc, gap, vid = lead_ttc(ego, 7.0, size, {"a": ahead, "b": beside, "c": oncoming})
    assert vid == "a" and gap == pytest.approx(10.0) and ttc == pytest.approx(10.0 / 5.0)
    ttc, gap, vid = lead_ttc(ego, 7.0, size, {"c": oncoming})
    assert gap == pytest.approx(26.0) and ttc == pytest.approx(26.0 / 12.0)
    assert lead_ttc(ego, 1.0, size, {"a": ahead})[0] == math.inf, "not closing"
    assert footprints_overlap(ego, size, planar_pose(3.9, 1.9, 0, 0.0), size)
    assert not footprints_overlap(ego, size, planar_pose(4.1, 0.0, 0, 0.0), size)
    assert footprints_overlap(ego, size, planar_pose(3.0, 2.0, 0, math.pi / 4), size), "rotated corner inside"
    records = [{"x": 0.0, "y": 0.0, "speed": 2.0, "ttc": None, "gap": None},
               {"x": 3.0, "y": 4.0, "speed": 4.0, "ttc": 3.0, "gap": 12.0, "emergency": True},
               {"x": 3.0, "y": 4.0, "speed": 0.0, "ttc": 1.5, "gap": 6.0}]
    m = summarize(records, {"a"}, 0.5)
    assert m == {"steps": 3, "sim_time_s": 1.5, "distance_m": 5.0, "mean_speed": 2.0, "max_speed": 4.0,
                 "min_ttc_s": 1.5, "min_gap_m": 6.0, "collisions": 1, "collided_with": ["a"], "emergency_steps": 1}


def test_stack_sees_tall_obstacles_only():
    scene = tiny_road_scene()
    T_ego = planar_pose(0.0, -1.75, 0.0, 0.0)
    car = planar_pose(15.0, -1.75, 0.75, 0.0)
    bump = planar_pose(15.0, -1.75, 0.75 - 1.1, 0.0)           # the box sunk into the road: 0.4 m high
    assert rendered_gap(scene, T_ego, {"car_1": car}) == pytest.approx(15.0 - 2.0 - 2.3, abs=0.4)
    assert rendered_gap(scene, T_ego, {"car_1": bump}) is None
    assert rendered_gap(scene, T_ego, {"car_1": None}) is None, "the road alone is no obstacle"


def test_run_ends_at_the_end_of_the_road(tmp_path):
    from gssim.sim.sumo_bridge import RoadLayout
    scene = tiny_road_scene()
    cfg = ClosedLoopConfig(steps=40, traffic=0, bind_actors=False, cameras=[])
    rollout = run_closed_loop(scene, AccStack(AccConfig(target_speed=8.0)), cfg, layout=RoadLayout(-10.0, 20.0),
                              work_dir=tmp_path)
    m = rollout.metrics
    assert m["ended"] == "ego reached the end of the road" and m["steps"] < 40
    assert rollout.records[-1]["x"] <= 20.0 - 4.5 / 2
