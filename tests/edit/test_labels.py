"""Labels against known geometry: the hand-made scene of test_edits (a box-shaped car on
a road before a wall) with an inserted box asset."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gssim.edit.edits import apply_edits
from gssim.edit.labels import BACKGROUND, CLASSES, NOTHING, labels_for, write_scene_labels
from tests.edit.test_edits import at, library, make_scene  # noqa: F401  (library is a fixture)


def edited_scene(library):  # noqa: F811
    return apply_edits(make_scene(), [{"op": "insert", "asset": "red_box", "id": "ins",
                                       "trajectory": at(9.0, -4.0, 20.0)}], library)


def inside_box(points_world: np.ndarray, T: np.ndarray, size, grow=0.0) -> np.ndarray:
    """Points (N, 3) inside the box of ``size`` at pose T grown by ``grow`` (scalar or (N,)) metres."""
    local = (points_world - T[:3, 3]) @ T[:3, :3]
    return np.all(np.abs(local) <= np.asarray(size) / 2 + np.reshape(grow, (-1, 1)), axis=1)


def test_camera_masks_and_boxes_match_the_projection_of_the_boxes(library):  # noqa: F811
    scene = edited_scene(library)
    t = 0.4
    lab = labels_for(scene, t, "cam")
    frame = scene.render(t, sensors=["cam"])["cam"]
    cam = scene.sensors["cam"].sensor
    assert lab.instance.shape == (40, 64) and lab.semantic.shape == (40, 64)
    assert bool((lab.instance == NOTHING).eq(frame.alpha <= 0.5).all()), "nothing exactly where the sky shows"
    by_id = {i.id: i for i in lab.instances}
    assert set(by_id) == {"car_1", "ins"}
    for nid in ("car_1", "ins"):
        inst = by_id[nid]
        node = scene.node(nid)
        T = node.track.at(t)
        assert np.allclose(inst.box_world.centre, T[:3, 3]) and np.allclose(inst.box_world.size, node.size)
        T_sw = np.linalg.inv(scene.sensor_pose("cam", t))
        assert np.allclose(inst.box_sensor.centre, (T_sw @ T)[:3, 3])
        assert inst.semantic == CLASSES.index("car")
        # The mask is the box's projection: every labelled pixel's ray meets the box, and
        # the visible 2D box is the projected box (both unoccluded and inside the image).
        mask = lab.instance == inst.instance
        assert inst.cells == int(mask.sum()) > 30
        rays = cam.ray_directions()[mask].double().numpy()
        depth = frame.median_depth[mask].double().numpy()
        pts_cam = rays / rays[:, 2:3] * depth[:, None]
        T_ws = scene.sensor_pose("cam", t)
        pts = pts_cam @ T_ws[:3, :3].T + T_ws[:3, 3]
        # Within about a pixel (1/40 rad, and the renderer's one-cell filter) of the box.
        assert inside_box(pts, T, node.size, grow=0.05 * depth + 0.1).mean() > 0.98
        # (Surfels centred on the box edges spill about 1 sigma = 0.12 m, plus the one-pixel filter.)
        assert np.allclose(inst.box2d, inst.box2d_projected, atol=2.5), (inst.box2d, inst.box2d_projected)
    # The inserted car's shadow is labelled background, not the car.
    shadow_px = (lab.instance == BACKGROUND) & (frame.color.mean(-1) < 0.3)
    assert shadow_px.any()


def test_lidar_point_labels_match_box_containment(library):  # noqa: F811
    scene = edited_scene(library)
    t = 0.4
    lab = labels_for(scene, t, "lidar")
    pts = scene.render(t, sensors=["lidar"])["lidar"].points
    assert torch.equal(lab.points, pts), "the labels are for the scene's own rendered points"
    assert lab.point_instance.shape == (len(pts),)
    T_ws = scene.sensor_pose("lidar", t)
    world = pts[:, :3].double().numpy() @ T_ws[:3, :3].T + T_ws[:3, 3]
    by_id = {i.id: i for i in lab.instances}
    rng = pts[:, :3].norm(dim=1).double().numpy()
    for nid in ("car_1", "ins"):
        node = scene.node(nid)
        T = node.track.at(t)
        labelled = (lab.point_instance == by_id[nid].instance).numpy()
        assert labelled.sum() > 5 and by_id[nid].cells == labelled.sum()
        # Labelled points lie on the box, within 1.5 beam spacings (4 degrees: 0.07 * range; the
        # renderer's one-cell filter puts a silhouette ray's point beside the box) ...
        assert inside_box(world[labelled], T, node.size, grow=0.1 * rng[labelled] + 0.1).all()
        # ... and every point on the box (off the road) is labelled with it.
        on_box = inside_box(world, T, node.size, grow=0.3) & (world[:, 2] > 0.2)   # (moves 0.1 m in a sweep)
        assert on_box.sum() > 5 and labelled[on_box].all()
    assert set(lab.point_semantic.unique().tolist()) <= {BACKGROUND, CLASSES.index("car")}


def test_unedited_scene_labels_and_files(library, tmp_path):  # noqa: F811
    scene = make_scene()
    n = write_scene_labels(scene, tmp_path / "labels", times=[0.0, 1.0])
    assert n == 4
    meta = json.loads((tmp_path / "labels" / "cam" / "000001.json").read_text())
    assert [i["id"] for i in meta["instances"]] == ["car_1"] and meta["classes"][2] == "car"
    inst = np.array(Image.open(tmp_path / "labels" / "cam" / "000001_instance.png"))
    assert inst.shape == (40, 64) and set(np.unique(inst)) <= {0, 1, 2}
    pts = np.load(tmp_path / "labels" / "lidar" / "000000_points.npy")
    assert pts.shape[1] == 8 and (pts[:, 6] == 2).sum() > 0
    # A hidden actor is not labelled in any cell but still has its 3D box.
    hidden = labels_for(apply_edits(scene, [{"op": "move", "actor": "car_1", "offset": [23.0, 0.0]}], library),
                        0.0, "cam")       # behind the wall
    car = hidden.instances[0]
    assert car.cells == 0 and car.box2d is None and car.box2d_projected is not None


def test_labels_of_a_time_outside_a_track_omit_the_actor(library):  # noqa: F811
    scene = apply_edits(make_scene(), [{"op": "retime", "actor": "car_1", "shift": 1.5}], library)
    lab = labels_for(scene, 0.5, "cam")
    assert lab.instances == [] and not (lab.instance >= 2).any()
    with pytest.raises(KeyError, match="no sensor"):
        labels_for(scene, 0.5, "radar")
