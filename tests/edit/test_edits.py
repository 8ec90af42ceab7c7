"""Edit operations on a hand-made scene: a road (with a raised strip), a wall, one moving
car.  Inserted assets follow their trajectories on the road surface, occlude and are
occluded in every sensor, removals leave marked holes, edits survive save/load, and bad
edits give named errors without touching the source scene."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from gssim.core.transforms import quat_to_rotmat
from gssim.data.poses import PoseTrack
from gssim.edit.assets import Asset, save_asset
from gssim.edit.edits import EditError, apply_edits, box_surfels, edit_scene, edited_region, load_edits
from gssim.recon.appearance import Appearance, Sky
from gssim.recon.fields import ExplicitField
from gssim.recon.scene import Node, Scene, SensorSpec
from gssim.recon.scene_files import load_scene, save_scene
from gssim.render.lidar_returns import LidarReturnDecoder
from gssim.sensors import PinholeCamera, SpinningLidar
from tests.conftest import tree_digest
from tests.data.conftest import pose

CAM_POSE = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 1.5], [0, 0, 0, 1]], np.float64)  # x forward
KERB_Y, KERB_Z = 4.0, 0.3        # the road is raised to KERB_Z for y > KERB_Y
ROAD, WALL, CAR, RED = (0.35, 0.35, 0.35), (0.2, 0.3, 0.8), (0.1, 0.8, 0.1), (0.9, 0.1, 0.1)


def explicit(means, normals, spacing, color, lidar=0.0) -> ExplicitField:
    n = len(means)
    f = ExplicitField.from_points(torch.as_tensor(means, dtype=torch.float32),
                                  torch.as_tensor(normals, dtype=torch.float32), torch.full((n,), spacing),
                                  torch.as_tensor(color, dtype=torch.float32).expand(n, 3), sh_degree=0)
    with torch.no_grad():
        f.opacity_logits.fill_(5.0)
        f.lidar.fill_(lidar)
    return f


def background(side_wall: bool = False) -> ExplicitField:
    """The road (raised for y > KERB_Y), a wall across it at x = 30 and, with ``side_wall``,
    a 6 m wall along it at y = 9.9 (x 0..20) that shades the raised strip from a sun on the left."""
    s = 0.4
    X, Y = np.meshgrid(np.arange(-10, 40, s), np.arange(-8, 10, s), indexing="ij")
    road = np.stack([X.ravel(), Y.ravel(), np.where(Y.ravel() > KERB_Y, KERB_Z, 0.0)], 1)
    Yw, Zw = np.meshgrid(np.arange(-8, 10, s), np.arange(0, 6, s), indexing="ij")
    wall = np.stack([np.full(Yw.size, 30.0), Yw.ravel(), Zw.ravel()], 1)
    wall_n = np.repeat([[-1.0, 0, 0]], len(wall), 0)
    if side_wall:
        Xs, Zs = np.meshgrid(np.arange(0, 20, s), np.arange(0, 6, s), indexing="ij")
        side = np.stack([Xs.ravel(), np.full(Xs.size, 9.9), Zs.ravel()], 1)
        wall, wall_n = np.concatenate([wall, side]), np.concatenate([wall_n, np.repeat([[0, -1.0, 0]], len(side), 0)])
    means = np.concatenate([road, wall])
    normals = np.concatenate([np.repeat([[0, 0, 1.0]], len(road), 0), wall_n])
    colors = np.concatenate([np.repeat([ROAD], len(road), 0), np.repeat([WALL], len(wall), 0)])
    f = explicit(means, normals, s * 0.6, torch.as_tensor(colors, dtype=torch.float32))
    with torch.no_grad():
        f.lidar[:, 0] = 0.2          # reflectivity of the road and wall
    return f


def box_field(size, color) -> ExplicitField:
    b = box_surfels(np.eye(4), size, spacing=0.2)
    normals = quat_to_rotmat(b.quats)[:, :, 2]
    return explicit(b.means, normals, 0.2 * 0.6, color)


_DECODER = {}


def trained_decoder() -> LidarReturnDecoder:
    """A LiDAR decoder trained (once) on the synthetic return model: channel 0 holds the
    reflectivity, intensity = reflectivity * cos(incidence), nothing dropped."""
    if "d" not in _DECODER:
        torch.manual_seed(0)
        dec = LidarReturnDecoder(4, 16, 40.0)
        opt = torch.optim.Adam(dec.parameters(), lr=0.01)
        for _ in range(400):
            refl, cos, rng = torch.rand(512), torch.rand(512) * 0.9 + 0.1, torch.rand(512) * 35 + 2
            feats = torch.zeros(512, 4)
            feats[:, 0] = refl
            inten, drop = dec(feats, torch.ones(512), cos, rng)
            loss = ((inten - refl * cos) ** 2).mean() + 0.1 * drop.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        _DECODER["d"] = dec.state_dict()
    dec = LidarReturnDecoder(4, 16, 40.0)
    dec.load_state_dict(_DECODER["d"])
    return dec


def make_scene(side_wall: bool = False) -> Scene:
    cam = PinholeCamera(64, 40, 40.0, 40.0, 32.0, 20.0)
    lidar = SpinningLidar([2.0, 0.0, -2.0, -5.0, -8.0, -12.0], 4.0, min_range=0.5, max_range=40.0)
    sensors = {"cam": SensorSpec("cam", "camera", cam, CAM_POSE, cam.to_dict()),
               "lidar": SensorSpec("lidar", "lidar", lidar, pose(z=1.8), lidar.to_dict())}
    ego = PoseTrack([0.0, 2.0], [pose(), pose(x=2.0)], name="ego")
    car_size = np.array([4.0, 2.0, 1.5])
    track = PoseTrack([0.0, 2.0], [pose(12, 0, 0.75), pose(14, 0, 0.75)], name="car track")
    nodes = [Node("background", "background", background(side_wall)),
             Node("car_1", "actor", box_field(car_size, CAR), "car", car_size, track)]
    decoders = {"lidar": trained_decoder()}
    return Scene(sensors, ego, nodes, Appearance(["cam"], 4), Sky(4, 8), decoders,
                 {"name": "edit-test", "source_log": None})


def make_asset(name="red_box", size=(4.0, 1.8, 1.5), color=RED, refl=0.6) -> Asset:
    b = box_surfels(np.eye(4), size, spacing=0.2)
    n = len(b.means)
    return Asset(name=name, cls="car", size=size, contact=(0, 0, -size[2] / 2), means=b.means, quats=b.quats,
                 scales=torch.full((n, 2), 0.12), opacities=torch.full((n,), 0.98),
                 colors=torch.tensor(color).expand(n, 3).contiguous(), reflectivity=torch.full((n,), refl),
                 source="test:box")


@pytest.fixture()
def library(tmp_path):
    lib = tmp_path / "library"
    save_asset(make_asset(), lib)
    save_asset(make_asset("cube", (1.0, 1.0, 1.0), (0.9, 0.9, 0.1), 0.3), lib)
    return lib


def at(x, y, heading=0.0, **kw):
    return {"at": {"x": x, "y": y, "heading_deg": heading}, **kw}


def node_world_means(scene, nid, t, rows=None):
    node = scene.node(nid)
    T = torch.as_tensor(node.track.at(t), dtype=torch.float32)
    m = node.field.means.detach()
    m = m if rows is None else m[rows]
    return m @ T[:3, :3].T + T[:3, 3]


# --------------------------------------------------------------------------- insert
def test_insert_sits_on_the_road_and_follows_its_path(library):
    scene = make_scene()
    path = [[2.0, -3.0], [10.0, -3.0], [10.0, 5.0]]
    edited = apply_edits(scene, [{"op": "insert", "asset": "red_box", "id": "ins",
                                  "trajectory": {"path": path, "speed": 8.0, "start_time": 0.0}},
                                 {"op": "insert", "asset": "cube", "trajectory": at(5.0, 7.0)}], library)
    assert [n.id for n in scene.nodes] == ["background", "car_1"], "the source scene is unchanged"
    node = edited.node("ins")
    assert node.kind == "asset" and node.cls == "car"
    n_obj = edited.meta["edits"][0]["surfels"]["object"]
    for t in (0.0, 0.5, 1.0, 1.5):
        s = 8.0 * t
        xy = np.array([2.0 + s, -3.0]) if s <= 8 else np.array([10.0, -3.0 + (s - 8)])
        T = node.track.at(t)
        assert np.allclose(T[:2, 3], xy, atol=0.05), f"on the path at t={t}"
        heading = math.atan2(T[1, 0], T[0, 0])
        assert abs(heading - (0.0 if s < 7.9 else math.pi / 2)) < 0.05, "heading along the path"
        world = node_world_means(edited, "ins", t, slice(0, n_obj))
        assert abs(float(world[:, 2].min())) < 0.02, "bottom on the road (z = 0), not floating or sunken"
    assert node.track.t_end == pytest.approx(2.0), "the path is driven until the scene ends"
    # The cube stands on the raised strip (z = 0.3) for the whole scene.
    cube = edited.node("cube_0")
    assert (cube.track.t_start, cube.track.t_end) == (0.0, 2.0)
    n_cube = edited.meta["edits"][1]["surfels"]["object"]
    assert float(node_world_means(edited, "cube_0", 1.0, slice(0, n_cube))[:, 2].min()) == pytest.approx(KERB_Z, abs=0.02)


def test_inserted_object_hides_the_road_and_wall_in_every_sensor(library):
    scene = make_scene()
    edited = apply_edits(scene, [{"op": "insert", "asset": "red_box", "id": "ins", "trajectory": at(9.0, -3.5)}],
                         library)
    a, b = scene.render(0.0), edited.render(0.0)
    # Camera: the car's centre projects to a red pixel at its depth.
    p = torch.tensor([[3.5, 1.5 - 0.75, 9.0 - 2.0]])        # camera frame (x right, y down, z forward): near face
    uv, _ = scene.sensors["cam"].sensor.project(p)
    col, row = int(uv[0, 0]), int(uv[0, 1])
    assert torch.allclose(b["cam"].color[row, col], torch.tensor(RED), atol=0.08)
    assert float(b["cam"].depth[row, col]) == pytest.approx(9.0 - 2.0, abs=0.3)
    assert float(a["cam"].depth[row, col]) > 9.0, "before the insert the ray reached the road or wall further away"
    # LiDAR: the beam at 0 degrees towards the car returns at the car's near face.
    lid = scene.sensors["lidar"].sensor
    az = math.degrees(math.atan2(-3.5, 9.0))
    dirs = lid.ray_directions()[1]
    c = int(torch.argmin(((torch.rad2deg(torch.atan2(dirs[:, 1], dirs[:, 0])) - az).abs())))
    r_near = (9.0 - 2.0) / math.cos(math.radians(az))
    assert float(b["lidar"].median_range[1, c]) == pytest.approx(r_near, rel=0.08)
    assert float(a["lidar"].median_range[1, c]) > r_near + 5
    # Its LiDAR intensity is the asset's reflectivity times the incidence cosine.
    cos_inc = math.cos(math.radians(abs(az)))
    assert float(b["lidar"].intensity[1, c]) == pytest.approx(0.6 * cos_inc, abs=0.08)
    assert float(b["lidar"].drop_prob[1, c]) < 0.5


def test_inserted_object_is_hidden_behind_an_actor_in_front(library):
    scene = make_scene()
    edited = apply_edits(scene, [{"op": "insert", "asset": "red_box", "id": "ins", "trajectory": at(20.0, 1.5)}],
                         library)
    a, b = scene.render(0.0), edited.render(0.0)
    cam = scene.sensors["cam"].sensor
    uv, _ = cam.project(torch.tensor([[0.0, 0.5, 10.0]]))   # the car in front (x 10..14), below the horizon
    col, row = int(uv[0, 0]), int(uv[0, 1])
    assert torch.allclose(b["cam"].color[row, col], a["cam"].color[row, col], atol=1e-4), "the car in front stays"
    assert torch.allclose(b["cam"].color[row, col], torch.tensor(CAR), atol=0.08)
    assert torch.equal(b["lidar"].median_range[:, 0], a["lidar"].median_range[:, 0]), "straight ahead: still the car"
    # Beside the car in front, the inserted one shows.
    changed = (b["cam"].color - a["cam"].color).abs().sum(-1) > 0.1
    assert changed.any() and not changed[row, col]


# --------------------------------------------------------------------------- remove / replace / move / retime
def test_remove_changes_its_pixels_and_the_hole_mask_covers_them(library):
    scene = make_scene()
    edited = apply_edits(scene, [{"op": "remove", "actor": "car_1"}], library)
    assert [n.id for n in edited.nodes] == ["background"]
    a, b = scene.render(0.5)["cam"], edited.render(0.5)["cam"]
    changed = (a.color - b.color).abs().sum(-1) > 0.05
    assert changed.sum() > 20
    mask = edited_region(edited, 0.5, "cam")
    assert bool(mask.hole[changed].all()), "every changed pixel is in the hole"
    assert mask.hole.sum() < 2.0 * changed.sum(), "and the hole is not much larger"
    assert not mask.inserted.any()
    lmask = edited_region(edited, 0.5, "lidar")
    assert lmask.hole.shape == scene.sensors["lidar"].sensor.shape and lmask.hole.any()
    rec = edited.meta["edits"][0]
    assert rec["op"] == "remove" and len(rec["hole"]["track"]) == 2


def test_replace_keeps_the_track_and_snaps_the_asset(library):
    scene = make_scene()
    old = scene.node("car_1").track
    for fit, length in ((False, 1.0), (True, 4.0)):     # the asset's own size, or scaled to the actor's length
        edited = apply_edits(scene, [{"op": "replace", "actor": "car_1", "asset": "cube", "fit": fit}], library)
        node = edited.node("car_1")
        assert node.kind == "asset" and np.allclose(node.size, length)
        assert edited.meta["edits"][0]["scale"] == pytest.approx(length)
        assert np.array_equal(node.track.times, old.times)
        assert np.allclose(node.track.poses[:, :2, :], old.poses[:, :2, :]), "same x, y and heading"
        assert np.allclose(node.track.poses[:, 2, 3], length / 2, atol=0.02), "its bottom on the road"
    mask = edited_region(edited, 0.0, "cam")
    assert mask.inserted.any() and mask.hole.any()


def test_move_and_retime(library):
    scene = make_scene()
    edited = apply_edits(scene, [{"op": "move", "actor": "car_1", "offset": [0.0, 6.0]},
                                 {"op": "retime", "actor": "car_1", "shift": 0.5, "scale": 2.0}], library)
    tr = edited.node("car_1").track
    assert np.allclose(tr.times, [0.5, 4.5])
    assert np.allclose(tr.at(2.5)[:3, 3], [13.0, 6.0, KERB_Z + 0.75], atol=0.02), "moved onto the raised strip"
    assert edited.node("car_1").pose_at(0.2) is None, "not there before its new start"
    moved = apply_edits(scene, [{"op": "move", "actor": "car_1",
                                 "trajectory": {"poses": [{"t": 0.0, "x": 5.0, "y": -2.0},
                                                          {"t": 1.0, "x": 5.0, "y": 2.0}]}}], library)
    T = moved.node("car_1").track.at(0.5)
    assert np.allclose(T[:3, 3], [5.0, 0.0, 0.75], atol=0.02)
    assert math.atan2(T[1, 0], T[0, 0]) == pytest.approx(math.pi / 2), "heading along the motion"


def test_shadow_falls_away_from_the_synthetic_sun_and_lidar_ignores_it(library, tmp_path):
    scene = make_scene()
    # A synthetic log's lighting metadata: the sun to the left (+y), 40 degrees up.
    lighting = {"sun_azimuth_deg": 90.0, "sun_elevation_deg": 40.0, "sun_intensity": 0.8, "ambient": 0.45}
    (tmp_path / "log.json").write_text(json.dumps({"synth": {"config": {"lighting": lighting}}}))
    scene.meta["source_log"] = str(tmp_path)
    edits = [{"op": "insert", "asset": "cube", "id": "c", "trajectory": at(8.0, 0.0)}]
    edited = apply_edits(scene, edits, library)
    no_shadow = apply_edits(scene, [{**edits[0], "shadow": False}], library)
    rec = edited.meta["edits"][0]
    assert rec["light"]["source"] == "synth-metadata" and rec["surfels"]["shadow"] > 0
    assert no_shadow.meta["edits"][0]["surfels"]["shadow"] == 0
    strength = rec["light"]["strength"]
    assert strength == pytest.approx(0.8 * math.sin(math.radians(40)) / (0.45 + 0.8 * math.sin(math.radians(40))))
    cam = scene.sensors["cam"].sensor
    a = no_shadow.render(0.0, sensors=["cam"])["cam"].color
    b = edited.render(0.0, sensors=["cam"])["cam"].color

    def pixel(y):
        uv, _ = cam.project(torch.tensor([[-y, 1.5, 8.0]]))
        return int(uv[0, 1]), int(uv[0, 0])
    right, left = pixel(-1.1), pixel(1.4)
    ratio = float(b[right].mean() / a[right].mean())
    assert ratio == pytest.approx(1 - strength, abs=0.15), "the shadow side is darkened as the sun is blocked"
    assert float(b[left].mean() / a[left].mean()) > 0.93, "the sunny side is (almost) not"
    la, lb = no_shadow.render(0.0, sensors=["lidar"])["lidar"], edited.render(0.0, sensors=["lidar"])["lidar"]
    d = (la.median_range - lb.median_range).abs()
    assert float((d > 0.05).float().mean()) < 0.01 and float(d.max()) < 0.25, \
        "LiDAR does not see the shadow (up to a ray grazing the object's silhouette)"
    assert torch.allclose(la.intensity, lb.intensity, atol=0.05)


def test_an_object_in_the_scenes_shadow_is_dimmed(library, tmp_path):
    scene = make_scene(side_wall=True)
    lighting = {"sun_azimuth_deg": 90.0, "sun_elevation_deg": 40.0, "sun_intensity": 0.8, "ambient": 0.45}
    (tmp_path / "log.json").write_text(json.dumps({"synth": {"config": {"lighting": lighting}}}))
    scene.meta["source_log"] = str(tmp_path)
    edited = apply_edits(scene, [{"op": "insert", "asset": "cube", "id": "shaded", "trajectory": at(8.0, 6.5)},
                                 {"op": "insert", "asset": "cube", "id": "sunny", "trajectory": at(8.0, -4.0)}],
                         library)
    shaded, sunny = edited.meta["edits"]
    assert shaded["sun_visibility"] < 0.2 and sunny["sun_visibility"] > 0.8
    top = {}
    for nid in ("shaded", "sunny"):
        fld = edited.node(nid).field
        n = shaded["surfels"]["object"]
        up = quat_to_rotmat(fld.quats[:n].detach())[:, 2, 2] > 0.99
        top[nid] = (0.5 + 0.28209479177387814 * fld.sh[:n][up, 0]).detach().mean(0)
    strength = shaded["light"]["strength"]
    assert torch.allclose(top["shaded"] / top["sunny"], torch.full((3,), 1 - strength), atol=0.1), \
        "the top of the shaded cube loses the sun's share of its light"


# --------------------------------------------------------------------------- files
def test_save_load_render_identical_and_edits_compose_across_saves(library, tmp_path):
    scene = make_scene()
    save_scene(scene, tmp_path / "src")
    edits = [{"op": "insert", "asset": "red_box", "id": "ins", "trajectory": at(8.0, -3.5, 10.0)},
             {"op": "remove", "actor": "car_1"}]
    (tmp_path / "edits.json").write_text(json.dumps(edits))
    edited = edit_scene(tmp_path / "src", tmp_path / "edits.json", tmp_path / "out", library)
    again = load_scene(tmp_path / "out")
    assert [(n.id, n.kind) for n in again.nodes] == [("background", "background"), ("ins", "asset")]
    assert [e["op"] for e in again.meta["edits"]] == ["insert", "remove"]
    for t in (0.0, 1.3):
        a, b = edited.render(t), again.render(t)
        assert torch.equal(a["cam"].color, b["cam"].color)
        assert torch.equal(a["lidar"].points, b["lidar"].points)
    assert torch.equal(edited_region(edited, 0.5, "cam").any, edited_region(again, 0.5, "cam").any)
    # The recorded edits (with what was derived) replay onto the source scene to the same result.
    replay = apply_edits(scene, again.meta["edits"], library)
    assert torch.allclose(replay.render(0.7)["cam"].color, again.render(0.7)["cam"].color, atol=1e-3)
    # A loaded edited scene takes more edits: moving the inserted asset keeps its contact on the road.
    more = apply_edits(again, [{"op": "move", "actor": "ins", "offset": [0.0, 11.0]}], library)
    assert more.node("ins").track.poses[0, 2, 3] == pytest.approx(KERB_Z + 0.75, abs=0.02)
    assert len(more.meta["edits"]) == 3


# --------------------------------------------------------------------------- bad input
BAD = [
    ("unknown asset", [{"op": "insert", "asset": "spaceship", "trajectory": at(8, 0)}], "edit 0 (insert)",
     "unknown asset 'spaceship'"),
    ("time outside", [{"op": "insert", "asset": "cube",
                       "trajectory": {"poses": [{"t": 1.0, "x": 5, "y": 0}, {"t": 3.0, "x": 9, "y": 0}]}}],
     "edit 0 (insert)", "outside the scene's time range"),
    ("path start outside", [{"op": "insert", "asset": "cube",
                             "trajectory": {"path": [[0, 0], [5, 0]], "speed": 2, "start_time": -1}}],
     "edit 0 (insert)", "outside the scene's time range"),
    ("off extent", [{"op": "insert", "asset": "cube", "trajectory": at(200.0, 0.0)}], "edit 0 (insert)",
     "off the scene's extent"),
    ("overlapping inserts", [{"op": "insert", "asset": "cube", "id": "a", "trajectory": at(6.0, -4.0)},
                             {"op": "insert", "asset": "red_box", "id": "b",
                              "trajectory": {"path": [[0, -4.0], [20, -4.0]], "speed": 5.0}}],
     "edit 1 (insert)", "'b' overlaps 'a'"),
    ("insert onto an actor", [{"op": "insert", "asset": "cube", "trajectory": at(12.0, 0.0)}], "edit 0 (insert)",
     "overlaps 'car_1'"),
    ("unknown actor", [{"op": "remove", "actor": "car_1"}, {"op": "move", "actor": "car_1", "offset": [1, 0]}],
     "edit 1 (move)", "unknown actor 'car_1'"),
    ("background", [{"op": "remove", "actor": "background"}], "edit 0 (remove)", "not an actor"),
    ("missing field", [{"op": "insert", "asset": "cube"}], "edit 0 (insert)", "missing field 'trajectory'"),
    ("wrong type", [{"op": "retime", "actor": "car_1", "shift": "soon"}], "edit 0 (retime)",
     "field 'shift' must be a finite number"),
    ("bad offset", [{"op": "move", "actor": "car_1", "offset": [1]}], "edit 0 (move)", "'offset' must be"),
    ("unknown op", [{"op": "explode", "actor": "car_1"}], "edit 0 (explode)", "unknown op"),
    ("misspelt field", [{"op": "insert", "asset": "cube", "trajectroy": at(8, 0)}], "edit 0 (insert)",
     "unknown fields ['trajectroy']"),
    ("not an object", [["insert"]], "edit 0", "expected an object"),
    ("bad path point", [{"op": "insert", "asset": "cube", "trajectory": {"path": [[0, 0], [1, "x"]], "speed": 1}}],
     "edit 0 (insert)", "trajectory.path[1]"),
    ("retime out", [{"op": "retime", "actor": "car_1", "shift": 10.0}], "edit 0 (retime)", "outside the scene"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_edits_name_the_edit_and_leave_the_source_untouched(library, tmp_path, case):
    _, edits, where, what = case
    save_scene(make_scene(), tmp_path / "src")
    before = tree_digest(tmp_path / "src")
    (tmp_path / "edits.json").write_text(json.dumps(edits))
    with pytest.raises(EditError) as err:
        edit_scene(tmp_path / "src", tmp_path / "edits.json", tmp_path / "out", library)
    assert str(err.value).startswith(where + ":") and what in str(err.value), str(err.value)
    assert tree_digest(tmp_path / "src") == before
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text,what", [("[{\"op\": \"remove\",}]", "invalid JSON at line 1"),
                                       ("{\"op\": \"remove\"}", "expected a list of edits")])
def test_malformed_edit_files(tmp_path, text, what):
    (tmp_path / "e.json").write_text(text)
    with pytest.raises(EditError, match=what):
        load_edits(tmp_path / "e.json")


def test_out_must_not_be_the_source(library, tmp_path):
    save_scene(make_scene(), tmp_path / "src")
    before = tree_digest(tmp_path / "src")
    with pytest.raises(EditError, match="must not be the source"):
        edit_scene(tmp_path / "src", [{"op": "remove", "actor": "car_1"}], tmp_path / "src", library)
    assert tree_digest(tmp_path / "src") == before
