"""Scenes built by hand: actors follow their tracks, renders agree across save/load and
baking, and scene files that are damaged or do not match give named errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import safetensors.torch
import torch

import gssim
from gssim.data.poses import PoseTrack
from gssim.recon.appearance import Appearance, Sky
from gssim.recon.fields import ExplicitField, NeuralField, quat_multiply
from gssim.recon.scene import Node, Scene, SensorSpec
from gssim.recon.scene_files import bake_scene, load_scene, save_scene
from gssim.recon.scene_io import SceneFormatError
from gssim.core.transforms import quat_to_rotmat
from gssim.render.lidar_returns import LidarReturnDecoder
from gssim.sensors import PinholeCamera, SpinningLidar
from tests.conftest import tree_digest
from tests.data.conftest import pose

CAM_POSE = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 1.5], [0, 0, 0, 1]], np.float64)  # x forward


def wall(n: int, x: float, seed: int, kind: str = "neural"):
    """A field of surfels on the plane x = ``x`` (facing -x), 6 m wide and 3 m high."""
    g = torch.Generator().manual_seed(seed)
    pts = torch.stack([torch.full((n,), x), torch.rand(n, generator=g) * 6 - 3, torch.rand(n, generator=g) * 3], 1)
    normals = torch.tensor([[-1.0, 0, 0]]).expand(n, 3)
    spacing = torch.full((n,), 0.3)
    if kind == "neural":
        return NeuralField.from_points(pts, normals, spacing, n_offsets=3, feature_dim=8, hidden=16)
    return ExplicitField.from_points(pts, normals, spacing, torch.rand(n, 3, generator=g))


def make_scene(kind: str = "neural") -> Scene:
    cam = PinholeCamera(64, 40, 40.0, 40.0, 32.0, 20.0)
    lidar = SpinningLidar([5.0, 0.0, -5.0, -10.0], 4.0, min_range=0.5, max_range=40.0)
    sensors = {"cam": SensorSpec("cam", "camera", cam, CAM_POSE, cam.to_dict()),
               "lidar": SensorSpec("lidar", "lidar", lidar, pose(z=1.8), lidar.to_dict())}
    ego = PoseTrack([0.0, 1.0], [pose(), pose(x=2.0)], name="ego")
    car = NeuralField.from_points(torch.tensor([[0.0, 0, 0], [1.0, 0, 0.3], [-1, 0.5, 0]]),
                                  torch.tensor([[-1.0, 0, 0]]).expand(3, 3), torch.full((3,), 0.4),
                                  n_offsets=3, feature_dim=8, hidden=16) if kind == "neural" else \
        ExplicitField.from_points(torch.tensor([[0.0, 0, 0], [1.0, 0, 0.3], [-1, 0.5, 0]]),
                                  torch.tensor([[-1.0, 0, 0]]).expand(3, 3), torch.full((3,), 0.4),
                                  torch.rand(3, 3))
    track = PoseTrack([0.0, 1.0], [pose(8, 1, 0.8), pose(10, -1, 0.8, yaw=0.5)], name="car track")
    nodes = [Node("background", "background", wall(300, 12.0, 0, kind)),
             Node("car_1", "actor", car, "car", np.array([4.0, 2.0, 1.5]), track)]
    app = Appearance(["cam"], 8)
    with torch.no_grad():
        app.embeddings.normal_(0, 0.3)
    decoders = {"lidar": LidarReturnDecoder(4, 8, 40.0)}
    return Scene(sensors, ego, nodes, app, Sky(4, 8), decoders, {"name": "hand-made", "source_log": None})


def test_actor_surfels_follow_the_track():
    scene = make_scene()
    car = scene.node("car_1")
    for t in (0.0, 0.37, 1.0):
        comp = scene.compose(t, "cam", scene.sensor_pose("cam", t), channels="rgb")
        assert [n.id for n, *_ in comp.parts] == ["background", "car_1"], "both nodes are in view"
        local = comp.parts[1][1]                      # the car's surfels in its own frame
        assert len(local) == 3 * car.field.n_rows
        T = torch.as_tensor(car.track.at(t), dtype=torch.float32)
        world = comp.surfels.means[-len(local):]
        assert torch.allclose(world, local.means @ T[:3, :3].T + T[:3, 3], atol=1e-5)
        R_world = quat_to_rotmat(comp.surfels.quats[-len(local):])
        assert torch.allclose(R_world, T[:3, :3] @ quat_to_rotmat(local.quats), atol=1e-5)
    # Between track samples the box pose is interpolated, so the car moves continuously.
    x = [float(scene.compose(t, "cam", scene.sensor_pose("cam", t)).surfels.means[-1, 0].detach()) for t in (0.0, 0.5, 1.0)]
    assert x[0] < x[1] < x[2]


def test_actor_poses_can_be_overridden_and_hidden():
    scene = make_scene()
    t = 0.5
    hidden = scene.compose(t, "cam", scene.sensor_pose("cam", t), actors={"car_1": None})
    assert all(n.id != "car_1" for n, *_ in hidden.parts)
    moved = scene.compose(t, "cam", scene.sensor_pose("cam", t), actors={"car_1": pose(9, 0, 0.8)})
    car_means = [d for n, d, _, _ in moved.parts if n.id == "car_1"][0].means
    assert torch.allclose(moved.surfels.means[-len(car_means):], car_means + torch.tensor([9.0, 0, 0.8]), atol=1e-5)
    with pytest.raises(KeyError, match="no actors"):
        scene.compose(t, "cam", scene.sensor_pose("cam", t), actors={"truck_9": None})


def test_render_gives_every_sensor_in_the_contract_layout():
    scene = make_scene()
    frames = scene.render(0.25)
    cam, lid = frames["cam"], frames["lidar"]
    assert cam.color.shape == (40, 64, 3) and cam.depth.shape == (40, 64) and cam.normal.shape == (40, 64, 3)
    assert lid.range.shape == lid.drop_prob.shape == lid.intensity.shape == (4, 90)
    assert lid.points.shape[1] == 6
    # The wall at x = 12 m is seen straight ahead: depth of the centre pixel, range of a level beam.
    ego_x = float(scene.ego_track.at(0.25)[0, 3])
    assert abs(float(cam.depth[20, 32]) - (12.0 - ego_x)) < 0.3
    assert torch.all((lid.points[:, 4] >= 0) & (lid.points[:, 4] < 4))


def test_sensor_moving_with_the_ego_sees_the_actor_move_with_its_box():
    scene = make_scene()
    with torch.no_grad():
        a = scene.render(0.0, sensors=["cam"])["cam"]
        b = scene.render(0.0, sensors=["cam"], actors={"car_1": None})["cam"]
    assert (a.color - b.color).abs().max() > 0.05, "the actor shows in the image"


@pytest.mark.parametrize("kind", ["neural", "explicit"])
def test_save_load_render_is_identical(tmp_path, kind):
    scene = make_scene(kind)
    save_scene(scene, tmp_path / "s")
    again = gssim.load_scene(tmp_path / "s")
    for t in (0.0, 0.6):
        a, b = scene.render(t), again.render(t)
        assert torch.equal(a["cam"].color, b["cam"].color)
        assert torch.equal(a["lidar"].range, b["lidar"].range)
        assert torch.equal(a["lidar"].points, b["lidar"].points)


def test_baked_render_matches_the_neural_one(tmp_path):
    scene = make_scene("neural")
    baked = bake_scene(scene, "cam")
    assert all(n.field.kind == "explicit" for n in baked.nodes)
    for t in (0.0, 0.8):
        a = scene.render(t)
        b = baked.render(t)
        assert torch.allclose(a["cam"].color, b["cam"].color, atol=2e-4)
        assert torch.allclose(a["lidar"].range, b["lidar"].range, atol=1e-3)
    # Stored with the scene (mean appearance) and loaded back in place of the decoders.
    save_scene(scene, tmp_path / "s", with_baked=True)
    from_disk = load_scene(tmp_path / "s", baked=True)
    assert all(n.field.kind == "explicit" for n in from_disk.nodes)
    ref = bake_scene(scene, None).render(0.3)["cam"].color
    assert torch.allclose(from_disk.render(0.3)["cam"].color, ref, atol=2e-4)


def _damage_tensor(path, name, value):
    tensors = safetensors.torch.load_file(str(path))
    if value is None:
        del tensors[name]
    else:
        tensors[name] = value
    safetensors.torch.save_file(tensors, str(path))


DAMAGE = [
    ("wrong shape", lambda d, root: _damage_tensor(root / d["nodes"][0]["tensors"], "features", torch.zeros(5, 2)),
     "tensor 'features'", "expected shape"),
    ("missing tensor", lambda d, root: _damage_tensor(root / d["nodes"][0]["tensors"], "offsets", None),
     "tensor 'offsets'", "missing"),
    ("extra tensor", lambda d, root: _damage_tensor(root / d["nodes"][1]["tensors"], "stowaway", torch.zeros(2)),
     "safetensors", "unexpected tensors"),
    ("NaN", lambda d, root: _damage_tensor(root / d["nodes"][0]["tensors"], "anchors",
                                           torch.full((300, 3), float("nan"))), "tensor 'anchors'", "NaN"),
    ("rows do not match", lambda d, root: d["nodes"][0].update(rows=7), "tensor 'anchors'", "expected shape"),
    ("unknown field kind", lambda d, root: d["nodes"][0]["field"].update(kind="voxels"), "field", "unknown field kind"),
    ("sky config", lambda d, root: d.update(sky={"height": 3}), "scene.json", "sky"),
    ("decoder shape", lambda d, root: d["lidar_decoders"]["lidar"].update(hidden=9), "lidar_decoders.lidar.mlp",
     "expected shape"),
    ("truncated node file", lambda d, root: (root / d["nodes"][1]["tensors"]).write_bytes(
        (root / d["nodes"][1]["tensors"]).read_bytes()[:100]), "nodes/0001_car_1.safetensors", "safetensors"),
    ("missing scene tensors", lambda d, root: (root / "scene.safetensors").unlink(), "scene.safetensors", "missing"),
]


@pytest.mark.parametrize("damage", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damaged_scene_files_give_named_errors_and_change_nothing(tmp_path, damage):
    _, hurt, where, what = damage
    root = tmp_path / "s"
    save_scene(make_scene(), root)
    d = json.loads((root / "scene.json").read_text())
    hurt(d, root)
    (root / "scene.json").write_text(json.dumps(d))
    before = tree_digest(root)
    with pytest.raises(SceneFormatError) as err:
        load_scene(root)
    assert where in str(err.value) and what in str(err.value)
    assert tree_digest(root) == before, "loading never writes"


def test_quat_multiply_composes_rotations():
    g = torch.Generator().manual_seed(1)
    a = torch.nn.functional.normalize(torch.randn(10, 4, generator=g), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(10, 4, generator=g), dim=-1)
    assert torch.allclose(quat_to_rotmat(quat_multiply(a, b)), quat_to_rotmat(a) @ quat_to_rotmat(b), atol=1e-5)


def test_view_culling_keeps_what_a_turning_rolling_shutter_camera_sees(monkeypatch):
    """The camera turns 70 degrees during its readout: the wall it ends on is outside the
    field of view it starts with, and must still be drawn (culling widens by the motion)."""
    scene = make_scene()
    cam = PinholeCamera(64, 40, 40.0, 40.0, 32.0, 20.0, rolling_shutter_s=0.05)
    T0, T1 = pose(yaw=-1.2) @ CAM_POSE, pose(x=0.5, yaw=0.0) @ CAM_POSE
    with torch.no_grad():
        culled, _, _ = scene.render_camera("cam", 0.0, sensor=cam, T0=T0, T1=T1)
        monkeypatch.setattr(Scene, "_visible_rows", staticmethod(lambda fld, *a, **k: torch.arange(fld.n_rows)))
        everything, _, _ = scene.render_camera("cam", 0.0, sensor=cam, T0=T0, T1=T1)
    assert float(everything.alpha.max()) > 0.5, "the wall is in the late rows"
    assert torch.allclose(culled.color, everything.color, atol=1e-5)


def test_a_crop_camera_renders_its_slice_of_the_image_and_culls_to_its_frustum(monkeypatch):
    """A crop (the same camera with its principal point moved) sees exactly its slice of the
    whole image, and the frustum test decodes fewer rows for it than for the whole image."""
    scene = make_scene()
    cam = scene.sensors["cam"].sensor
    crop = PinholeCamera(24, 16, cam.fx, cam.fy, cam.cx - 36, cam.cy - 4)
    decoded = []
    visible = Scene._visible_rows

    def counted(*a, **k):
        rows = visible(*a, **k)
        decoded.append(rows.numel())
        return rows
    monkeypatch.setattr(Scene, "_visible_rows", staticmethod(counted))
    with torch.no_grad():
        whole, _, _ = scene.render_camera("cam", 0.0)
        n_whole = sum(decoded)
        decoded.clear()
        part, _, _ = scene.render_camera("cam", 0.0, sensor=crop)
    assert sum(decoded) < n_whole
    assert torch.allclose(part.color, whole.color[4:20, 36:60], atol=1e-5)
    assert torch.allclose(part.depth, whole.depth[4:20, 36:60], atol=1e-4)
