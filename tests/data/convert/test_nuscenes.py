"""nuScenes converter: a miniature dataset in the real layout (tests/data/convert/nuscenes_fixture.py),
converted and checked against what was written."""
from __future__ import annotations

import argparse
import json
import math
import shutil

import numpy as np
import pytest

pytest.importorskip("nuscenes")

from gssim.data.convert import cli, converter  # noqa: E402
from gssim.data.convert.common import ConvertError  # noqa: E402
from gssim.data.convert.nuscenes import convert  # noqa: E402
from gssim.data.reader import load_log  # noqa: E402

from . import nuscenes_fixture as fx  # noqa: E402


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(truth, log) of the miniature scene converted once."""
    root = tmp_path_factory.mktemp("nuscenes")
    truth = fx.write_nuscenes(root / "data", n_keyframes=2)
    out = convert(root / "data", fx.SCENE, root / "log", progress=False)
    return truth, load_log(out)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("nuscenes_template") / "data"
    return fx.write_nuscenes(root, n_keyframes=2), root


@pytest.fixture
def dataset(template, tmp_path):
    """A fresh copy of the miniature dataset to break; returns (truth, root)."""
    truth, src = template
    shutil.copytree(src, tmp_path / "data")
    return truth, tmp_path / "data"


def t_us(log, t: float) -> float:
    return log.extra["source"]["time_origin_us"] + t * 1e6


def frame_of(log, sid: str, ts_us: float) -> int:
    """Index of the frame holding sensor ``sid`` at source time ``ts_us``."""
    hits = [i for i, f in enumerate(log.frames) if sid in (f.cameras if sid.startswith("cam") else f.lidars)
            and abs(t_us(log, f.t) - ts_us) < 0.5]
    assert len(hits) == 1, (sid, ts_us, hits)
    return hits[0]


def test_log_is_valid_and_complete(converted):
    truth, log = converted
    assert sorted(log.sensors) == sorted(["lidar_top"] + [c.lower() for c in fx.CAMERAS])
    n_images = sum(len(f.cameras) for f in log.frames)
    n_sweeps = sum(len(f.lidars) for f in log.frames)
    assert n_images == len(truth.images) and n_sweeps == len(truth.lidar)
    assert log.extra["source"]["scene"] == fx.SCENE and log.extra["source"]["version"] == fx.VERSION
    assert log.frames[0].t == 0.0
    for i in range(len(log.frames)):
        for sid in log.frames[i].cameras:
            assert log.image(i, sid).shape == (fx.H, fx.W, 3)
        for sid in log.frames[i].lidars:
            log.lidar_points(i, sid)   # values validated by the reader (ranges, beams, times)


def test_timestamps_kept(converted):
    """Camera frames at the image timestamp; LiDAR frames at the sweep start (timestamp - 50 ms)."""
    truth, log = converted
    for im in truth.images:
        frame_of(log, im["channel"].lower(), im["timestamp"])
    for sw in truth.lidar:
        frame_of(log, "lidar_top", sw["timestamp"] - fx.SWEEP_US)
    times = np.array([f.t for f in log.frames])
    assert np.all(np.diff(times) > 0)


def test_camera_model_and_pose(converted):
    truth, log = converted
    for ch, (yaw, f) in fx.CAMERAS.items():
        cam = log.sensor(ch.lower())
        assert cam.model == "pinhole" and (cam.width, cam.height) == (fx.W, fx.H)
        assert cam.fx == pytest.approx(f) and cam.fy == pytest.approx(f * 1.01)
        assert (cam.cx, cam.cy) == pytest.approx((fx.CX + 0.5, fx.CY + 0.5))
        assert cam.rolling_shutter_s == 0.0
        np.testing.assert_allclose(log.sensors[ch.lower()].T_ego_sensor, fx.t_ego_cam(yaw), atol=1e-9)


def test_world_point_lands_on_its_pixel(converted):
    """Each landmark drawn into a source image projects, through the converted intrinsics
    and the frame's camera pose, to the same place (gssim pixel centres at j + 0.5), and
    the converted image is bright there."""
    import torch

    truth, log = converted
    n = 0
    for im in truth.images:
        sid = im["channel"].lower()
        i = frame_of(log, sid, im["timestamp"])
        T = log.frame_sensor_pose(i, sid)
        cam = log.sensor(sid)
        img = log.image(i, sid)
        for world, u_nus, v_nus in im["marks"]:
            p = np.linalg.inv(T) @ np.append(world, 1.0)
            uv, ok = cam.project(torch.tensor(p[None, :3], dtype=torch.float64))
            assert bool(ok[0])
            u, v = uv[0].tolist()
            assert abs(u - (u_nus + 0.5)) < 1e-6 and abs(v - (v_nus + 0.5)) < 1e-6
            assert img[int(math.floor(v)), int(math.floor(u))].min() > 150
            n += 1
    assert n >= 20


def test_lidar_points_return_to_world(converted):
    """Points read back through the frame's sensor pose are where the fixture put them
    (written in the sensor frame at the sweep end, stored at the sweep start: a rigid
    move, so float32 storage is the only error)."""
    truth, log = converted
    for sw in truth.lidar:
        i = frame_of(log, "lidar_top", sw["timestamp"] - fx.SWEEP_US)
        world = log.lidar_points_world(i, "lidar_top")
        assert world.shape == sw["world"].shape   # empty rows and ego-roof hits dropped, nothing else
        np.testing.assert_allclose(world, sw["world"], atol=1e-3)
        pts = log.lidar_points(i, "lidar_top")
        np.testing.assert_allclose(pts[:, 3], sw["intensity"], atol=1e-6)
        # on the known geometry: the ground z = 0 or the cylinder wall
        on_ground = np.abs(world[:, 2]) < 1e-3
        on_wall = np.abs(np.linalg.norm(world[:, :2] - fx.CYL_CENTER, axis=1) - fx.CYL_RADIUS) < 1e-3
        assert np.all(on_ground | on_wall)


def test_lidar_beams_times_and_model(converted):
    """Beam = ring; the estimated elevation table matches the rings; per-point times from
    the azimuth match the firing times (the seam is estimated from the file order)."""
    truth, log = converted
    lidar = log.sensor("lidar_top")
    assert lidar.rows == 32 and lidar.spin_hz == 20.0 and lidar.clockwise
    assert abs((lidar.azimuth_start_deg - fx.SEAM_DEG + 180) % 360 - 180) < 0.05
    np.testing.assert_allclose(lidar.elevations_deg, fx.ELEV_DEG, atol=0.01)
    # LiDAR axes: x forward, y left (nuScenes x right, y forward): T_ego_sensor = T_ego_lidar_nus @ R_z(90)
    np.testing.assert_allclose(log.sensors["lidar_top"].T_ego_sensor[:3, :3],
                               fx.T_EGO_LIDAR[:3, :3] @ fx.R_NUS_FWD, atol=1e-9)
    worst = 0.0
    for sw in truth.lidar:
        i = frame_of(log, "lidar_top", sw["timestamp"] - fx.SWEEP_US)
        pts = log.lidar_points(i, "lidar_top")
        np.testing.assert_array_equal(pts[:, 4], sw["ring"])
        t_point = t_us(log, log.frames[i].t) + pts[:, 5].astype(np.float64) * 1e6
        worst = max(worst, float(np.abs(t_point - sw["fire_us"]).max()))
        assert pts[:, 5].min() >= 0 and pts[:, 5].max() < 0.05
    assert worst < 10.0, f"per-point time off by {worst:.1f} us"


def test_range_image_columns_match_firing(converted):
    """The reader's range image puts each return in the column fired at its time."""
    truth, log = converted
    lidar = log.sensor("lidar_top")
    sw = truth.lidar[5]
    i = frame_of(log, "lidar_top", sw["timestamp"] - fx.SWEEP_US)
    ri = log.range_image(i, "lidar_top")
    assert ri.valid.sum() == len(sw["world"]) and ri.n_collisions == 0
    cols = np.flatnonzero(ri.valid.any(axis=0))
    fired = (sw["fire_us"] - (sw["timestamp"] - fx.SWEEP_US)) / fx.SWEEP_US * lidar.cols
    assert np.all(np.abs(cols[:, None] + 0.5 - np.unique(fired)[None, :]).min(axis=1) < 1.5)


def test_actor_boxes(converted):
    truth, log = converted
    expect = {"vehicle.car": "car", "human.pedestrian.adult": "pedestrian", "vehicle.bicycle": "cyclist"}
    assert sorted(log.actors) == sorted(truth.boxes)
    for inst, boxes in truth.boxes.items():
        a = log.actors[inst]
        assert a.cls == expect[truth.classes[inst]] and a.extra["category"] == truth.classes[inst]
        for b in boxes:
            box = log.actor_box(inst, (b["timestamp"] - log.extra["source"]["time_origin_us"]) * 1e-6)
            w, l, h = b["wlh"]
            np.testing.assert_allclose(box.size, [l, w, h])
            np.testing.assert_allclose(box.T_world_object[:3, 3], b["center"], atol=1e-9)
            R = box.T_world_object[:3, :3]
            assert math.atan2(R[1, 0], R[0, 0]) == pytest.approx(b["yaw"], abs=1e-9)
            assert R[2, 2] == pytest.approx(1.0)
        # between keyframes the reader interpolates (the fixture's boxes move linearly)
        mid = (boxes[0]["timestamp"] + boxes[1]["timestamp"]) / 2
        box = log.actor_box(inst, (mid - log.extra["source"]["time_origin_us"]) * 1e-6)
        np.testing.assert_allclose(box.T_world_object[:3, 3], (boxes[0]["center"] + boxes[1]["center"]) / 2,
                                   atol=1e-6)


def test_ego_pose_exact_at_captures(converted):
    truth, log = converted
    for im in truth.images[::5]:
        i = frame_of(log, im["channel"].lower(), im["timestamp"])
        np.testing.assert_allclose(log.frames[i].T_world_ego, fx.ego_pose_at(im["timestamp"]), atol=1e-9)
    for sw in truth.lidar:   # sweep start: interpolated between ego poses ~10 ms apart (arc at 8 m/s)
        i = frame_of(log, "lidar_top", sw["timestamp"] - fx.SWEEP_US)
        np.testing.assert_allclose(log.frames[i].T_world_ego[:3, 3], fx.ego_pose_at(sw["timestamp"] - fx.SWEEP_US)
                                   [:3, 3], atol=2e-3)


def test_cli_by_scene_token_without_sweeps_folder(dataset, tmp_path):
    """``gssim convert --from nuscenes`` with the scene token; without sweeps/ only the
    2 Hz keyframes are converted."""
    truth, root = dataset
    shutil.rmtree(root / "sweeps")
    assert converter("nuscenes") is convert
    args = argparse.Namespace(source_format="nuscenes", source=str(root), scene=truth.scene_token,
                              out=str(tmp_path / "log"), no_progress=True)
    cli.main(args)
    log = load_log(tmp_path / "log")
    assert log.name == fx.SCENE and log.extra["source"]["keyframes_only"] is True
    assert sum(len(f.lidars) for f in log.frames) == sum(sw["key"] for sw in truth.lidar) == 2
    assert sum(len(f.cameras) for f in log.frames) == sum(im["key"] for im in truth.images) == 2 * len(fx.CAMERAS)


# --- errors name the file and the field ---------------------------------------------

def edit_table(root, table: str, fn) -> None:
    path = root / fx.VERSION / f"{table}.json"
    recs = json.loads(path.read_text())
    fn(recs)
    path.write_text(json.dumps(recs))


def expect_error(root, tmp_path, *words, scene=fx.SCENE):
    with pytest.raises(ConvertError) as e:
        convert(root, scene, tmp_path / "log", progress=False)
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    return e.value


def test_missing_table(dataset, tmp_path):
    _, root = dataset
    (root / fx.VERSION / "ego_pose.json").unlink()
    expect_error(root, tmp_path, "v1.0-mini/ego_pose.json", "missing")


def test_missing_version_folder(dataset, tmp_path):
    _, root = dataset
    shutil.rmtree(root / fx.VERSION)
    expect_error(root, tmp_path, "v1.0-mini", "v1.0-trainval", "no version folder")


def test_unknown_scene(dataset, tmp_path):
    _, root = dataset
    expect_error(root, tmp_path, "scene-9999", "scene-0061", "scene.json", scene="scene-9999")


def test_missing_lidar_sweep(dataset, tmp_path):
    truth, root = dataset
    rel = truth.lidar[3]["filename"]
    (root / rel).unlink()
    expect_error(root, tmp_path, rel, "missing")


def test_missing_image(dataset, tmp_path):
    truth, root = dataset
    rel = truth.images[4]["filename"]
    (root / rel).unlink()
    expect_error(root, tmp_path, rel, "missing")


def test_missing_map_mask(dataset, tmp_path):
    _, root = dataset
    png = next((root / "maps").glob("*.png"))
    png.unlink()
    expect_error(root, tmp_path, f"maps/{png.name}", "map mask")


@pytest.mark.parametrize("table, key", [("sample_annotation", "size"), ("sample_annotation", "rotation"),
                                        ("sample_data", "calibrated_sensor_token"), ("sample_data", "filename"),
                                        ("calibrated_sensor", "camera_intrinsic"), ("ego_pose", "translation"),
                                        ("instance", "category_token"), ("sample", "timestamp")])
def test_missing_field(dataset, tmp_path, table, key):
    _, root = dataset

    def drop(recs):
        for r in recs:
            if table != "calibrated_sensor" or r["camera_intrinsic"]:
                del r[key]
                break
    edit_table(root, table, drop)
    err = expect_error(root, tmp_path, f"{table}.json", key)
    assert err.field is not None and key in err.field


def test_dangling_token(dataset, tmp_path):
    _, root = dataset
    edit_table(root, "sample_annotation", lambda recs: recs[0].update(instance_token="f" * 32))
    expect_error(root, tmp_path, "sample_annotation.json", "instance_token", "f" * 32)


def test_path_outside_source(dataset, tmp_path):
    truth, root = dataset
    (root.parent / "outside.pcd.bin").write_bytes((root / truth.lidar[2]["filename"]).read_bytes())
    edit_table(root, "sample_data", lambda recs: next(r for r in recs if r["filename"] == truth.lidar[2]["filename"])
               .update(filename="../outside.pcd.bin"))
    expect_error(root, tmp_path, "../outside.pcd.bin", "not a path inside")


def test_table_not_json(dataset, tmp_path):
    _, root = dataset
    path = root / fx.VERSION / "sample_annotation.json"
    path.write_bytes(path.read_bytes()[:-40])
    expect_error(root, tmp_path, "v1.0-mini/sample_annotation.json", "not valid JSON")


def test_truncated_lidar_file(dataset, tmp_path):
    truth, root = dataset
    rel = truth.lidar[1]["filename"]
    data = (root / rel).read_bytes()
    (root / rel).write_bytes(data[:-8])
    expect_error(root, tmp_path, rel, "float32")


def test_agrees_with_the_devkit(converted):
    """The devkit's own reading of the same files (LidarPointCloud, get_box, view_points,
    the calibrated_sensor / ego_pose chain) gives the same world points, boxes and pixels."""
    from nuscenes.nuscenes import NuScenes
    from nuscenes.utils.data_classes import LidarPointCloud
    from nuscenes.utils.geometry_utils import view_points
    from pyquaternion import Quaternion

    truth, log = converted
    nusc = NuScenes(fx.VERSION, str(truth.root), verbose=False)

    def to_global(points, sd):          # sensor -> ego -> global, as the devkit tutorials do
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        ep = nusc.get("ego_pose", sd["ego_pose_token"])
        p = Quaternion(cs["rotation"]).rotation_matrix @ points + np.array(cs["translation"])[:, None]
        return Quaternion(ep["rotation"]).rotation_matrix @ p + np.array(ep["translation"])[:, None]

    sample = nusc.sample[0]
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    pc = LidarPointCloud.from_file(str(truth.root / sd["filename"]))
    xyz = pc.points[:3].astype(np.float64)
    keep = np.linalg.norm(xyz, axis=0) >= 1.0
    ref = to_global(xyz[:, keep], sd).T
    i = frame_of(log, "lidar_top", sd["timestamp"] - fx.SWEEP_US)
    np.testing.assert_allclose(log.lidar_points_world(i, "lidar_top"), ref, atol=1e-3)

    for atok in sample["anns"]:
        box = nusc.get_box(atok)
        ours = log.actor_box(nusc.get("sample_annotation", atok)["instance_token"],
                             (sample["timestamp"] - log.extra["source"]["time_origin_us"]) * 1e-6)
        np.testing.assert_allclose(ours.T_world_object[:3, 3], box.center, atol=1e-9)
        np.testing.assert_allclose(ours.T_world_object[:3, :3], box.orientation.rotation_matrix, atol=1e-9)
        np.testing.assert_allclose(ours.size, [box.wlh[1], box.wlh[0], box.wlh[2]])
        np.testing.assert_allclose(np.sort(ours.corners(), axis=0), np.sort(box.corners().T, axis=0), atol=1e-9)

    import torch
    for ch in fx.CAMERAS:
        sd = nusc.get("sample_data", sample["data"][ch])
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        ep = nusc.get("ego_pose", sd["ego_pose_token"])
        p = np.array(truth.landmarks).T                                   # global -> ego -> camera
        p = Quaternion(ep["rotation"]).rotation_matrix.T @ (p - np.array(ep["translation"])[:, None])
        p = Quaternion(cs["rotation"]).rotation_matrix.T @ (p - np.array(cs["translation"])[:, None])
        front = p[2] > 1.0
        uv_dev = view_points(p[:, front], np.array(cs["camera_intrinsic"]), normalize=True)[:2].T
        sid = ch.lower()
        i = frame_of(log, sid, sd["timestamp"])
        T = log.frame_sensor_pose(i, sid)
        q = (np.array(truth.landmarks)[front] - T[:3, 3]) @ T[:3, :3]
        uv, _ = log.sensor(sid).project(torch.tensor(q, dtype=torch.float64))
        np.testing.assert_allclose(uv.numpy(), uv_dev + 0.5, atol=1e-6)
