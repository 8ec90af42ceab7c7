"""A Ray batch of three tiny rollouts on a local Ray: two run, one (a missing scene) is
a row with its error; the table is written.  One test: Ray's start-up costs seconds."""
from __future__ import annotations

import csv
import json

import pytest

from gssim.sim.batch import load_scenarios, run_batch, write_table
from tests.sim.test_sumo_bridge import tiny_road_scene

pytest.importorskip("libsumo")
ray = pytest.importorskip("ray")


def test_batch_of_tiny_rollouts_on_local_ray(tmp_path):
    tiny_road_scene(car_x=26.0).save(tmp_path / "scene")
    scenarios = {"defaults": {"scene": "scene", "closed_loop": {"steps": 8, "traffic": 0, "cameras": [],
                                                                 "actor_speed": "recorded"}},
                 "rollouts": [{"name": "slow", "seed": 1, "stack": {"target_speed": 6.0}},
                              {"name": "fast", "seed": 2, "stack": {"target_speed": 12.0}, "out": "runs/fast"},
                              {"name": "broken", "scene": "no_such_scene"}]}
    path = tmp_path / "scenarios.json"
    path.write_text(json.dumps(scenarios))
    specs = load_scenarios(path)
    assert [s["name"] for s in specs] == ["slow", "fast", "broken"]
    assert specs[0]["scene"] == str((tmp_path / "scene").resolve()) and specs[0]["closed_loop"]["steps"] == 8
    with pytest.raises(ValueError, match="unknown keys"):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps([{"scene": "scene", "sped": 3}]))
        load_scenarios(bad)
    try:
        rows = run_batch(specs, address="local", num_cpus=2)
    finally:
        ray.shutdown()
    assert [r["name"] for r in rows] == ["slow", "fast", "broken"]
    slow, fast, broken = rows
    assert slow["status"] == "ok" and fast["status"] == "ok", (slow["error"], fast["error"])
    assert slow["steps"] == 8 and slow["collisions"] == 0
    assert slow["distance_m"] > 0 and fast["max_speed"] >= slow["max_speed"]
    assert broken["status"] == "error" and "no_such_scene" in broken["error"]
    assert (tmp_path / "runs" / "fast" / "metrics.json").is_file()
    table = write_table(rows, tmp_path / "table.csv")
    with table.open() as fh:
        got = list(csv.DictReader(fh))
    assert [r["status"] for r in got] == ["ok", "ok", "error"] and got[0]["collisions"] == "0"
