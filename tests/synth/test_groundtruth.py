"""Ground-truth sanity: LiDAR returns lie on the meshes, a known wall has its colour under
known light (and shadow), moving actors are where their tracks say."""
from __future__ import annotations

import numpy as np
import pytest

from gssim.data import load_log
from gssim.sensors import PinholeCamera
from gssim.synth import RayCaster, build_world, config_from_dict, generate_log, render_camera, render_lidar
from gssim.synth.generate import ego_trajectory
from gssim.synth.geometry import MeshBuilder, box
from gssim.synth.materials import MATERIAL_IDS, ObjectParams, evaluate
from gssim.synth.rig import R_EGO_CAM, build_rig
from gssim.synth.shading import Light, sun_direction
from gssim.synth.world import ObjectTable, World


def wall_world() -> World:
    """A plain wall (albedo 0.6, 0.3, 0.2) facing -x at x = 10, and a block floating
    between it and a sun behind the camera, casting a shadow on the wall's left half."""
    objs, mb = ObjectTable(), MeshBuilder()
    mb.add(box([10, -6, -6], [10.5, 6, 6]), "plain", objs.add("wall", color=(0.6, 0.3, 0.2), pattern=(0.5, 0, 0, 0)))
    mb.add(box([4.5, 0.5, 2.5], [5.5, 3.0, 3.5]), "plain", objs.add("block", color=(0.1, 0.1, 0.1)))
    v, f, m, o = mb.build()
    return World(v, f, m, o, objs.params(), objs.names)


def test_wall_pixel_has_texture_colour_under_known_light():
    world = wall_world()
    light = Light(sun_direction(180.0, 30.0), sun_intensity=0.5, ambient=0.4)   # sun behind the camera
    cam = PinholeCamera(40, 30, 20.0, 20.0, 20.0, 15.0)
    T = np.eye(4)
    T[:3, :3] = R_EGO_CAM                                      # camera looks along world +x
    frame = render_camera(RayCaster(world), light, cam, T, T, 0.0)
    albedo = np.array([0.6, 0.3, 0.2])
    n_dot_l = np.cos(np.radians(30.0))                         # wall normal -x, sun at 30 deg elevation
    sunlit = albedo * (0.4 * 0.75 + 0.5 * n_dot_l)
    shadowed = albedo * (0.4 * 0.75)
    # Pixel column 23 looks at world y = -1.75 (sunlit), column 16 at y = +1.75 (in the block's shadow).
    np.testing.assert_allclose(frame.rgb[14, 23], sunlit, atol=1e-5)
    np.testing.assert_allclose(frame.rgb[14, 16], shadowed, atol=1e-5)
    dirs = cam.ray_directions().numpy()
    assert frame.depth[14, 23] == pytest.approx(10.0, abs=1e-4)   # camera z depth of the wall plane
    assert frame.object[14, 23] == 0 and frame.object[14, 16] == 0
    # Rays above the wall see the sky.
    assert frame.object[0, 0] == -1 and frame.depth[0, 0] == 0
    assert dirs.shape == (30, 40, 3)


def test_facade_texture_windows_and_wall():
    prm = ObjectParams(np.array([[0.7, 0.6, 0.5]] * 2), np.array([[0.2, 0.2, 0.25]] * 2),
                       np.array([[0.0, 3.0, 3.5, 1.2]] * 2), np.array([5, 5]))
    normal = np.array([[0.0, -1.0, 0.0]] * 2)                   # wall facing -y: u runs along -x ... any tangent
    u_centre = 1.5                                                # window centre at u = spacing / 2
    tangent = np.array([1.0, 0.0, 0.0])                         # (-n_y, n_x, 0)
    pts = np.array([tangent * u_centre + [0, 0, 3.5 * 1.55],    # 2nd floor, window centre height
                    tangent * 0.05 + [0, 0, 3.5 * 1.55]])       # between windows
    col, refl = evaluate(np.full(2, MATERIAL_IDS["facade"]), pts, normal, prm)
    assert refl[0] == pytest.approx(0.06) and refl[1] == pytest.approx(0.3)
    assert col[0].max() < 0.5 and col[1].mean() > 0.5          # dark glass vs light plaster


def distance_to_mesh(points: np.ndarray, V: np.ndarray, F: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Distance (M,) from points (M, 3) to the triangles whose plane they project inside
    (exact for points on the mesh; inf where no triangle is near), brute force in numpy."""
    a, b, c = V[F[:, 0]], V[F[:, 1]], V[F[:, 2]]
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    lo, hi = np.minimum(np.minimum(a, b), c) - 0.01, np.maximum(np.maximum(a, b), c) + 0.01
    v0, v1 = b - a, c - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    den = d00 * d11 - d01 * d01
    out = np.full(len(points), np.inf)
    for s in range(0, len(points), chunk):
        p = points[s:s + chunk]
        near = np.all((p[:, None] >= lo[None]) & (p[:, None] <= hi[None]), axis=2)   # (m, F)
        pi, ti = np.nonzero(near)
        v2 = p[pi] - a[ti]
        dist = np.abs((v2 * n[ti]).sum(1))
        d20, d21 = (v2 * v0[ti]).sum(1), (v2 * v1[ti]).sum(1)
        v = (d11[ti] * d20 - d01[ti] * d21) / den[ti]
        w = (d00[ti] * d21 - d01[ti] * d20) / den[ti]
        inside = (v >= -1e-6) & (w >= -1e-6) & (v + w <= 1 + 1e-6)
        best = np.full(len(p), np.inf)
        np.minimum.at(best, pi[inside], dist[inside])
        out[s:s + chunk] = best
    return out


@pytest.fixture
def tiny_world(tiny_preset):
    cfg = config_from_dict(tiny_preset)
    world = build_world(cfg)
    return cfg, world, RayCaster(world)


def _sweep(cfg, world, caster, t, noise=0.0, seed=0):
    rig = build_rig(cfg)
    lid = rig[-1]
    traj = ego_trajectory(cfg, world)
    T0 = traj.poses(t) @ lid.T_ego_sensor
    T1 = traj.poses(t + lid.sensor.sweep_duration_s) @ lid.T_ego_sensor
    lf = render_lidar(caster, lid.sensor, T0, T1, t, np.random.default_rng(seed), noise, 10.0, 0.002)
    return lid, T0, lf


def test_lidar_returns_lie_on_the_mesh(tiny_world):
    cfg, world, caster = tiny_world
    lid, T0, lf = _sweep(cfg, world, caster, 0.1)
    assert 0.3 < lf.valid.mean() < 1.0                                       # returns and drops
    static = lf.object < len(world.object_names) - len(world.actors)
    d = distance_to_mesh(lf.world_points[static], world.static_vertices, world.static_faces)
    assert static.sum() > 1000 and d.max() < 2e-3
    # The stored, motion-compensated sensor-frame points map back onto the same world points.
    world_from_file = lf.points[:, :3].astype(np.float64) @ T0[:3, :3].T + T0[:3, 3]
    np.testing.assert_allclose(world_from_file, lf.world_points, atol=2e-3)
    # Intensity in [0, 1], beams valid, time offsets within the sweep.
    assert lf.points[:, 3].min() >= 0 and lf.points[:, 3].max() <= 1
    assert lf.points[:, 4].max() < lid.sensor.rows and 0 <= lf.points[:, 5].min() and lf.points[:, 5].max() < 0.1
    # Range noise moves returns along their rays with the requested spread.
    _, _, noisy = _sweep(cfg, world, caster, 0.1, noise=0.05)
    err = np.linalg.norm(noisy.points[:, :3] - lf.points[:, :3], axis=1)
    assert 0.03 < np.sqrt(np.mean(err ** 2)) < 0.07


def test_moving_actors_are_where_their_tracks_say(tiny_world):
    cfg, world, caster = tiny_world
    t = 0.1
    lid, _, lf = _sweep(cfg, world, caster, t)
    first_actor = len(world.object_names) - len(world.actors)
    checked = 0
    for k, a in enumerate(world.actors):
        sel = lf.object == first_actor + k
        if not a.moving or sel.sum() < 5:
            continue
        dt = lf.points[sel, 5].astype(np.float64)
        T = a.track.at(t + dt, extrapolate=True)                               # box pose at each ray's time
        local = np.einsum("nji,nj->ni", T[:, :3, :3], lf.world_points[sel] - T[:, :3, 3])
        assert np.all(np.abs(local) <= a.size / 2 + 1e-3)
        checked += 1
    assert checked >= 1
    # Cameras: pixels of a moving actor back-project into its box at the frame time.
    rig = build_rig(cfg)
    traj = ego_trajectory(cfg, world)
    cam = rig[0]
    T = traj.poses(t) @ cam.T_ego_sensor
    frame = render_camera(caster, Light.from_config(cfg.lighting), cam.sensor, T, T, t)
    dirs = cam.sensor.ray_directions().numpy()
    for k, a in enumerate(world.actors):
        sel = frame.object == first_actor + k
        if not sel.any():
            continue
        p_cam = dirs[sel] * (frame.depth[sel] / dirs[sel][:, 2])[:, None]
        p_world = p_cam @ T[:3, :3].T + T[:3, 3]
        Ta = a.poses(t)
        local = (p_world - Ta[:3, 3]) @ Ta[:3, :3]
        assert np.all(np.abs(local) <= a.size / 2 + 1e-3)


def test_generated_log_matches_renderer_and_tracks(tmp_path, tiny_preset):
    cfg = config_from_dict(tiny_preset)
    res = generate_log(cfg, tmp_path / "log", show_progress=False)
    assert res.contact_sheet.is_file() and res.lidar_bev.is_file()
    log = load_log(res.root)
    assert log.camera_ids == ["cam_front", "cam_left"] and log.lidar_ids == ["lidar_top"]
    assert len(log.frames) == 3 and log.image(2, "cam_left").shape == (27, 48, 3)
    world = build_world(cfg, track_times=np.arange(4) / 10.0)
    for a in world.actors:                                                   # tracks in the log = world tracks
        np.testing.assert_allclose(log.actor_box(a.id, 0.15).T_world_object, a.poses(0.15), atol=1e-9)
        np.testing.assert_allclose(log.actors[a.id].size, a.size)
    # Re-binning the stored returns gives back the renderer's range image (returns and drops).
    _, _, lf = _sweep(cfg, world, RayCaster(world), 0.1)
    ri = log.range_image(1, "lidar_top")
    np.testing.assert_array_equal(ri.valid, lf.valid)
    np.testing.assert_allclose(ri.range[ri.valid], lf.range[lf.valid], atol=2e-3)
    assert ri.n_collisions == 0


def test_shifted_trajectory_renders_same_world(tmp_path, tiny_preset):
    tiny_preset["lidar"] = None
    cfg = config_from_dict(tiny_preset)
    base = load_log(generate_log(cfg, tmp_path / "a", previews=False, show_progress=False).root)
    shift = load_log(generate_log(cfg, tmp_path / "b", shift_lateral=3.5, previews=False,
                                  show_progress=False).root)
    for fa, fb in zip(base.frames, shift.frames):
        np.testing.assert_allclose(fb.T_world_ego[:3, 3] - fa.T_world_ego[:3, 3], [0, 3.5, 0], atol=1e-12)
    assert set(base.actors) == set(shift.actors)
    a0 = next(iter(base.actors))
    np.testing.assert_allclose(base.actors[a0].track.poses, shift.actors[a0].track.poses)
    assert not np.array_equal(base.image(1, "cam_front"), shift.image(1, "cam_front"))
    lc = load_log(generate_log(cfg, tmp_path / "c", shift_lateral=-3.5, lane_change=True, previews=False,
                               show_progress=False).root)
    ys = [f.T_world_ego[1, 3] - base.frames[i].T_world_ego[1, 3] for i, f in enumerate(lc.frames)]
    assert ys[0] == pytest.approx(0.0) and -3.5 <= min(ys) and ys == sorted(ys, reverse=True)
