"""A first scene from a log: accumulated LiDAR points split between the background and
the actors whose boxes hold them, thinned to a voxel grid, with surface normals, spacing
and the colours the cameras see at each point."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from gssim.data.rangeimage import COL_TIME
from gssim.data.reader import Log

log = logging.getLogger(__name__)


@dataclass
class PointSet:
    """Points of one node in its own frame: xyz (N, 3), normals (N, 3), spacing (N,) m,
    colours (N, 3) in [0, 1] (NaN where no camera saw the point), intensity (N,)."""

    xyz: np.ndarray
    normals: np.ndarray
    spacing: np.ndarray
    colors: np.ndarray
    intensity: np.ndarray


def held_out(index: int, holdout_every: int) -> bool:
    """True for frames kept out of training: ``index % N == N // 2`` (N = 0: none)."""
    return holdout_every > 0 and index % holdout_every == holdout_every // 2


def _voxel_mean(xyz: np.ndarray, attrs: np.ndarray, voxel: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean position (V, 3) and attributes (V, k) of the points in each occupied voxel."""
    keys = np.floor(xyz / voxel).astype(np.int64)
    _, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    out = np.zeros((counts.shape[0], 3 + attrs.shape[1]))
    np.add.at(out, inv, np.concatenate([xyz, attrs], 1))
    out /= counts[:, None]
    return out[:, :3], out[:, 3:]


def _normals_and_spacing(xyz: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """PCA normals (N, 3) of the k nearest neighbours and the mean distance to the 3 nearest."""
    n = xyz.shape[0]
    if n < 4:
        return np.tile([0.0, 0.0, 1.0], (n, 1)), np.full(n, 0.1)
    k = min(k, n)
    dist, idx = cKDTree(xyz).query(xyz, k=k)
    nb = torch.from_numpy(xyz[idx])                                   # (N, k, 3)
    cov = torch.einsum("nki,nkj->nij", nb - nb.mean(1, keepdim=True), nb - nb.mean(1, keepdim=True))
    _, vecs = torch.linalg.eigh(cov)
    spacing = dist[:, 1:4].mean(1)
    return vecs[:, :, 0].numpy(), spacing


def accumulate_points(log_: Log, frames: list[int], margin: float = 0.15
                      ) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """World xyz (N, 3) and intensity (N,) of background returns over ``frames``, and per
    actor its returns in its own frame (xyz, intensity).  A return inside an actor's box
    (grown by ``margin``, posed at the return's own time) belongs to that actor."""
    bg_xyz, bg_int = [], []
    actor_pts: dict[str, list] = {a: [] for a in log_.actors}
    for i in frames:
        t = log_.frames[i].t
        for sid in log_.frames[i].lidars:
            pts = log_.lidar_points(i, sid)
            world = log_.lidar_points_world(i, sid)
            times = t + pts[:, COL_TIME].astype(np.float64)
            taken = np.zeros(len(pts), bool)
            for aid, actor in log_.actors.items():
                tr = actor.track
                if tr.t_end < times.min() or tr.t_start > times.max():
                    continue
                centre = tr.at(np.clip(t, tr.t_start, tr.t_end))[:3, 3]
                coarse = np.linalg.norm(world - centre, axis=1) < np.linalg.norm(actor.size) / 2 + margin + 3.0
                sel = np.nonzero(coarse & ~taken)[0]
                if not len(sel):
                    continue
                T = tr.at(np.clip(times[sel], tr.t_start, tr.t_end), clamp=True)   # (m, 4, 4)
                local = np.einsum("mji,mj->mi", T[:, :3, :3], world[sel] - T[:, :3, 3])
                inside = np.all(np.abs(local) <= actor.size / 2 + margin, axis=1)
                if inside.any():
                    actor_pts[aid].append((local[inside], pts[sel[inside], 3]))
                    taken[sel[inside]] = True
            bg_xyz.append(world[~taken])
            bg_int.append(pts[~taken, 3])
    actors = {a: (np.concatenate([p[0] for p in v]), np.concatenate([p[1] for p in v]))
              for a, v in actor_pts.items() if v}
    return np.concatenate(bg_xyz), np.concatenate(bg_int), actors


def observe_colors(log_: Log, frames: list[int], xyz: np.ndarray, track=None, max_views: int = 12) -> np.ndarray:
    """Mean colour (N, 3) of a node's points (N, 3) over the camera images of ``frames``
    where they project inside the image in front of the camera (NaN where never seen).

    track: the node's PoseTrack (points in its object frame, posed at each frame's time),
    or None for world points.  Occlusion is not modelled: this is a starting colour.
    """
    acc = np.zeros((xyz.shape[0], 3))
    cnt = np.zeros(xyz.shape[0])
    local = torch.from_numpy(xyz).float()
    views = [(i, sid) for i in frames for sid in log_.frames[i].cameras
             if track is None or track.covers(log_.frames[i].t)]
    step = max(1, len(views) // max_views)
    for i, sid in views[::step]:
        cam = log_.sensor(sid)
        T = torch.from_numpy(log_.frame_sensor_pose(i, sid)).float()
        if track is None:
            pts = local
        else:
            T_obj = torch.from_numpy(track.at(log_.frames[i].t)).float()
            pts = local @ T_obj[:3, :3].T + T_obj[:3, 3]
        p = (pts - T[:3, 3]) @ T[:3, :3]
        uv, ok = cam.project(p)
        ok = ok & (p[:, 2] > 0.5) & torch.isfinite(uv).all(1)
        ok &= (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
        if not ok.any():
            continue
        img = log_.image(i, sid, dtype=np.float32)
        sel = ok.numpy()
        u = uv[ok, 0].long().numpy()
        v = uv[ok, 1].long().numpy()
        acc[sel] += img[v, u]
        cnt[sel] += 1
    with np.errstate(invalid="ignore"):
        return acc / cnt[:, None]


def node_points(xyz: np.ndarray, intensity: np.ndarray, voxel: float, viewpoints: np.ndarray | None = None,
                lod_distance: float = 15.0) -> PointSet:
    """Thin points to one per voxel, with normals and spacing (colours left NaN).

    With ``viewpoints`` (V, 3) (the sensor path), the voxel doubles with every doubling of
    a point's distance to the nearest viewpoint beyond ``lod_distance`` metres: far
    surfaces, small in every image, get fewer anchors.
    """
    level = np.zeros(len(xyz), np.int64)
    if viewpoints is not None and len(viewpoints):
        dist, _ = cKDTree(viewpoints).query(xyz)
        level = np.floor(np.log2(np.maximum(dist / lod_distance, 1.0))).astype(np.int64)
    parts = []
    for lv in np.unique(level):
        sel = level == lv
        parts.append(_voxel_mean(xyz[sel], intensity[sel, None], voxel * 2.0 ** lv) + (voxel * 2.0 ** lv,))
    v_xyz = np.concatenate([p[0] for p in parts])
    v_int = np.concatenate([p[1] for p in parts])[:, 0]
    v_size = np.concatenate([np.full(len(p[0]), p[2]) for p in parts])
    normals, spacing = _normals_and_spacing(v_xyz)
    spacing = np.clip(spacing, v_size * 0.25, v_size * 2)
    return PointSet(v_xyz, normals, spacing, np.full((len(v_xyz), 3), np.nan), v_int)
