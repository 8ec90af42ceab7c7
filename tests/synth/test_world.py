"""The procedural world and its presets: determinism, layout, config validation."""
from __future__ import annotations

import numpy as np
import pytest

from gssim.synth import build_world, config_from_dict, load_preset
from gssim.synth.materials import MATERIAL_IDS


def test_world_is_deterministic(tiny_preset):
    a = build_world(config_from_dict(tiny_preset))
    b = build_world(config_from_dict(tiny_preset))
    np.testing.assert_array_equal(a.static_vertices, b.static_vertices)
    np.testing.assert_array_equal(a.static_material, b.static_material)
    assert [x.id for x in a.actors] == [x.id for x in b.actors]
    for x, y in zip(a.actors, b.actors):
        np.testing.assert_array_equal(x.track.poses, y.track.poses)
    tiny_preset["seed"] = 4
    c = build_world(config_from_dict(tiny_preset))
    assert c.static_vertices.shape != a.static_vertices.shape or not np.allclose(c.static_vertices,
                                                                                 a.static_vertices)


def test_world_has_every_kind_of_thing(tiny_preset):
    w = build_world(config_from_dict(tiny_preset))
    mats = set(np.unique(w.static_material).tolist())
    for name in ("ground", "asphalt", "marking", "concrete", "paving", "facade", "metal", "bark", "foliage"):
        assert MATERIAL_IDS[name] in mats, name
    classes = [a.cls for a in w.actors]
    assert classes.count("pedestrian") == 2
    moving_cars = [a for a in w.actors if a.cls == "car" and a.moving]
    assert len(moving_cars) == 3 and any(not a.moving for a in w.actors)
    for a in w.actors:
        # Box size is the mesh extent and the mesh is centred on the box.
        np.testing.assert_allclose(a.vertices.max(0) - a.vertices.min(0), a.size, atol=1e-9)
        np.testing.assert_allclose((a.vertices.max(0) + a.vertices.min(0)) / 2, 0, atol=1e-9)
        T = a.poses(0.0)
        bottom = T[2, 3] - a.size[2] / 2
        assert abs(bottom - (0.0 if a.cls == "car" else 0.15)) < 1e-6  # on the road / on the sidewalk
    lay = w.layout
    assert lay.lane_centre(0, +1) < 0 < lay.lane_centre(0, -1)   # right-hand traffic, y left


def test_presets_load_and_small_is_small():
    small, medium, large = (load_preset(n) for n in ("small", "medium", "large"))
    assert [c.id for c in small.cameras] == ["cam_front", "cam_front_left", "cam_front_right"]
    assert all((c.width, c.height) == (320, 180) for c in small.cameras)
    assert small.lidar.n_beams == 32 and small.lidar.azimuth_resolution_deg == 0.4
    assert small.trajectory.frames <= 25
    assert any(c.model == "fisheye" for c in medium.cameras)
    assert large.trajectory.frames > medium.trajectory.frames > small.trajectory.frames


def test_config_errors_name_the_key(tiny_preset):
    bad = dict(tiny_preset, world=dict(tiny_preset["world"], lanes=2))
    with pytest.raises(ValueError, match=r"preset.world: unknown keys \['lanes'\]"):
        config_from_dict(bad)
    bad = dict(tiny_preset, trajectory=dict(tiny_preset["trajectory"], frames=400))
    with pytest.raises(ValueError, match="outside the road"):
        config_from_dict(bad)
    with pytest.raises(FileNotFoundError, match="built-in presets are"):
        load_preset("tiny-nonexistent")


def test_cli_writes_a_log_from_a_preset_file(tmp_path, tiny_preset):
    import argparse
    import json

    from gssim.data import load_log
    from gssim.synth.cli import add_parser

    preset = tmp_path / "tiny.json"
    tiny_preset["trajectory"]["frames"] = 2
    tiny_preset["lidar"] = None
    preset.write_text(json.dumps(tiny_preset))
    parser = argparse.ArgumentParser(prog="gssim")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["synth", "--preset", str(preset), "--quiet", "--shift-lateral", "1.5",
                              str(tmp_path / "out")])
    assert args.func(args) == 0
    log = load_log(tmp_path / "out")
    assert len(log.frames) == 2 and log.name == "tiny-shift+1.5"
    assert (tmp_path / "out" / "contact_sheet.png").is_file()
    # A second run into the same folder refuses without --overwrite.
    assert args.func(args) == 2
    bad = parser.parse_args(["synth", "--preset", "nope", str(tmp_path / "x")])
    assert bad.func(bad) == 2
