"""The measured check of an insert against the synthetic ground truth.

On a scene reconstructed from a synthetic log (``gssim synth``), take an actor of the
generator's world, make an asset from its ground-truth mesh (surfels sampled on the
triangles, coloured with the generator's albedo lit by its sun and sky without cast
shadows other than its own, LiDAR reflectivity from its materials), and ``replace`` the reconstructed actor
with it (same x, y and heading; height snapped to the reconstructed road; soft shadow
added).  Then compare, on frames where the object is in view:

- camera PSNR inside the object's mask (ground-truth object ids of the ray-cast world
  with the object): the edited render vs the ground-truth image; also with the asset
  lit by the scene's shadows at its place (what relighting would have to give), for the
  reconstruction itself (the actor as trained) and with the actor removed, for scale;
- camera PSNR in the object's cast-shadow region (pixels where the ground truth with and
  without the object differ, off the object), edited with and without our shadow;
- LiDAR range error on the rays whose ground-truth return is the object: median and
  mean absolute error of the rendered median range, and the share of those rays that
  return.

``measure_insert`` returns the figures as a dict; ``gssim edit-check`` prints them.
"""
from __future__ import annotations

import json
import logging
import math
import tempfile
from pathlib import Path

import numpy as np
import torch

from gssim.edit.assets import Asset, save_asset
from gssim.edit.edits import apply_edits
from gssim.recon.fields import normal_to_quat
from gssim.recon.scene import Scene

log = logging.getLogger(__name__)


def _world_of(source_log: Path):
    from gssim.synth.config import config_from_dict
    from gssim.synth.world import build_world

    try:
        d = json.loads((source_log / "log.json").read_text())
        cfg = config_from_dict(d["synth"]["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{source_log}: not a synthetic log with generator metadata ({exc})") from None
    tr = cfg.trajectory
    return cfg, build_world(cfg, track_times=np.arange(tr.frames + 1) / tr.fps)


def asset_from_actor(world, actor, light, shadows: str = "self", spacing: float = 0.035, seed: int = 0,
                     name: str | None = None) -> Asset:
    """An asset of a generator actor's mesh: area-weighted surfel samples, lit colours
    (sun and sky of ``light``, the actor's orientation at its first pose) and material
    reflectivity.  shadows: "self" (only the object shades itself: a placeable asset) or
    "scene" (also the world's shadows at its place: what relighting would have to give)."""
    from gssim.synth.materials import evaluate
    from gssim.synth.raycast import RayCaster
    from gssim.synth.world import World

    v, f = actor.vertices, actor.faces
    tri = v[f]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    n = int(max(500, area.sum() / spacing ** 2))
    rng = np.random.default_rng(seed)
    face = rng.choice(len(f), n, p=area / area.sum())
    u, w = rng.random(n), rng.random(n)
    flip = u + w > 1
    u[flip], w[flip] = 1 - u[flip], 1 - w[flip]
    t = tri[face]
    pts = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + w[:, None] * (t[:, 2] - t[:, 0])
    nrm = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    params = world.params.take(np.full(n, actor.object_id))
    albedo, refl = evaluate(actor.material[face], pts, nrm, params)
    T = actor.track.poses[0]
    n_world = nrm @ T[:3, :3].T
    if shadows == "self":
        world = World(np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32),
                      world.params, world.object_names, [actor], world.layout)
    origins = (pts + 2e-3 * nrm) @ T[:3, :3].T + T[:3, 3]
    sun = np.broadcast_to(light.sun_dir, origins.shape)
    lit = (n_world @ light.sun_dir > 0) & ~RayCaster(world).occluded(origins, sun, np.array([actor.track.t_start]),
                                                                      np.zeros(n, np.int64))
    rgb = light.shade(albedo, n_world, lit)
    s = math.sqrt(area.sum() / n)
    return Asset(name=name or f"gt_{actor.id}", cls=actor.cls, size=actor.size, contact=(0, 0, -actor.size[2] / 2),
                 means=torch.as_tensor(pts, dtype=torch.float32),
                 quats=normal_to_quat(torch.as_tensor(nrm, dtype=torch.float32)),
                 scales=torch.full((n, 2), 0.9 * s), opacities=torch.full((n,), 0.98),
                 colors=torch.as_tensor(rgb, dtype=torch.float32),
                 reflectivity=torch.as_tensor(np.clip(refl, 0, 1), dtype=torch.float32),
                 source=f"synth-mesh:{actor.id}")


def _psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float | None:
    if not bool(mask.any()):
        return None
    mse = float(((a - b) ** 2)[mask].mean())
    return 10 * math.log10(1.0 / max(mse, 1e-10))


def _mean(values: list) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def measure_insert(scene: Scene, actor_id: str, frames: list[int] | None = None, min_pixels: int = 50,
                   backend: str = "auto") -> dict:
    """Replace ``actor_id`` by its ground-truth asset and measure it (see the module docstring).

    frames: indices of the scene's ego-track times to use (default: every frame where the
    object covers at least ``min_pixels`` pixels of some camera).
    """
    from gssim.synth.raycast import RayCaster
    from gssim.synth.render import render_camera, render_lidar
    from gssim.synth.shading import Light

    src = scene.meta.get("source_log")
    if not src:
        raise ValueError(f"scene {scene.name!r} records no source log")
    cfg, world = _world_of(Path(src))
    actor = next((a for a in world.actors if a.id == actor_id), None)
    if actor is None:
        raise ValueError(f"actor {actor_id!r} is not in the synthetic world of {src}")
    light = Light.from_config(cfg.lighting)
    without = type(world)(world.static_vertices, world.static_faces, world.static_material, world.static_object,
                          world.params, world.object_names, [a for a in world.actors if a.id != actor_id],
                          world.layout)
    cast_with, cast_without = RayCaster(world), RayCaster(without)
    with tempfile.TemporaryDirectory() as lib:
        save_asset(asset_from_actor(world, actor, light), lib)
        save_asset(asset_from_actor(world, actor, light, "scene", name=f"gt_{actor_id}_scene_lit"), lib)
        edit = {"op": "replace", "actor": actor_id, "asset": f"gt_{actor_id}"}
        edited = apply_edits(scene, [edit], lib)
        edited_flat = apply_edits(scene, [{**edit, "shadow": False}], lib)
        edited_lit = apply_edits(scene, [{**edit, "asset": f"gt_{actor_id}_scene_lit"}], lib)
    removed = apply_edits(scene, [{"op": "remove", "actor": actor_id}])
    cams = [s for s, spec in scene.sensors.items() if spec.type == "camera"]
    lidars = [s for s, spec in scene.sensors.items() if spec.type == "lidar"]
    times = scene.ego_track.times
    frames = list(range(len(times))) if frames is None else frames
    rows, used = [], []
    for i in frames:
        t = float(times[i])
        for sid in cams:
            sensor = scene.sensors[sid].sensor
            T0, T1 = scene._readout_poses(sid, t, None, None)
            T1 = T0 if T1 is None else T1
            gt = render_camera(cast_with, light, sensor, T0, T1, t)
            mask = torch.as_tensor(gt.object == actor.object_id)
            if int(mask.sum()) < min_pixels:
                continue
            gt0 = render_camera(cast_without, light, sensor, T0, T1, t)
            truth = torch.as_tensor(gt.rgb)
            shadow = torch.as_tensor(np.abs(gt.rgb - gt0.rgb).max(-1) > 0.02) & ~mask
            r = {s: sc.render(t, sensors=[sid], backend=backend)[sid].color.clamp(0, 1)
                 for s, sc in (("edited", edited), ("flat", edited_flat), ("lit", edited_lit), ("recon", scene),
                               ("removed", removed))}
            rows.append({"frame": i, "sensor": sid, "pixels": int(mask.sum()), "shadow_pixels": int(shadow.sum()),
                         "psnr_edited": _psnr(r["edited"], truth, mask),
                         "psnr_edited_scene_lit": _psnr(r["lit"], truth, mask),
                         "psnr_recon": _psnr(r["recon"], truth, mask),
                         "psnr_removed": _psnr(r["removed"], truth, mask),
                         "psnr_shadow_edited": _psnr(r["edited"], truth, shadow),
                         "psnr_shadow_no_shadow": _psnr(r["flat"], truth, shadow)})
            if i not in used:
                used.append(i)
    errs, errs_recon, n_rays, n_ret = [], [], 0, 0
    for i in used:
        t = float(times[i])
        for sid in lidars:
            sensor = scene.sensors[sid].sensor
            T0, T1 = scene._readout_poses(sid, t, None, None)
            T1 = T0 if T1 is None else T1
            gt = render_lidar(cast_with, sensor, T0, T1, t)
            obj = np.full(gt.valid.size, -1)
            obj[np.flatnonzero(gt.valid.reshape(-1))] = gt.object
            on = torch.as_tensor(obj.reshape(gt.valid.shape) == actor.object_id)
            truth = torch.as_tensor(gt.range)
            for sc, out in ((edited, errs), (scene, errs_recon)):
                fr = sc.render(t, sensors=[sid], backend=backend)[sid]
                ret = on & (fr.drop_prob < 0.5) & (fr.alpha > 1e-3)
                out.extend((fr.median_range - truth)[ret].abs().tolist())
                if sc is edited:
                    n_rays += int(on.sum())
                    n_ret += int(ret.sum())
    return {
        "scene": scene.name, "actor": actor_id, "frames": used, "views": len(rows),
        "asset_surfels": int(edited.meta["edits"][-1]["surfels"]["object"]),
        "ground_z": edited.meta["edits"][-1]["ground_z"],
        "gt_box_bottom_z": float(actor.track.poses[0, 2, 3] - actor.size[2] / 2),
        "light": edited.meta["edits"][-1]["light"],
        "camera": {k: _mean([r[k] for r in rows]) for k in ("psnr_edited", "psnr_edited_scene_lit", "psnr_recon",
                                                             "psnr_removed", "psnr_shadow_edited",
                                                             "psnr_shadow_no_shadow")},
        "lidar": {"rays_on_object": n_rays, "returned": n_ret,
                  "median_abs_range_error_m": float(np.median(errs)) if errs else None,
                  "mean_abs_range_error_m": float(np.mean(errs)) if errs else None,
                  "recon_median_abs_range_error_m": float(np.median(errs_recon)) if errs_recon else None},
        "per_view": rows,
    }
