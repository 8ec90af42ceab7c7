"""Exact ray casting of the world at per-ray times (open3d RaycastingScene).

Static triangles live in one scene in the world frame.  Each actor has its own scene in
its object frame: a ray taken at time t is moved into the actor's frame at t (its track
interpolated per ray), so moving actors are exactly where their tracks say for every
ray, also within a rolling-shutter readout or a LiDAR sweep.  Rays are culled against
each actor's bounding sphere before casting.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

from gssim.synth.world import World


@dataclass
class Hits:
    """Nearest hits of N rays (misses: t = inf, material = object = -1).

    t (N,) float64 ray distance; normal (N, 3) world-frame unit face normal (outward);
    material (N,) int32; object (N,) int32 (row of ``World.params``);
    local_point / local_normal (N, 3) in the object frame (world frame for static).
    """

    t: np.ndarray
    normal: np.ndarray
    material: np.ndarray
    object: np.ndarray
    local_point: np.ndarray
    local_normal: np.ndarray

    @property
    def hit(self) -> np.ndarray:
        return np.isfinite(self.t)


def _scene(vertices: np.ndarray, faces: np.ndarray) -> o3d.t.geometry.RaycastingScene:
    scene = o3d.t.geometry.RaycastingScene()
    if len(faces):
        scene.add_triangles(o3d.core.Tensor(np.ascontiguousarray(vertices, np.float32)),
                            o3d.core.Tensor(np.ascontiguousarray(faces, np.uint32)))
    return scene


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def _rays(origins: np.ndarray, dirs: np.ndarray) -> o3d.core.Tensor:
    return o3d.core.Tensor(np.ascontiguousarray(np.concatenate([origins, dirs], 1), np.float32))


class RayCaster:
    """Casts rays (origins, directions, times) into a ``World``."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._static = _scene(world.static_vertices, world.static_faces)
        self._actors = [(a, _scene(a.vertices, a.faces), float(np.linalg.norm(a.size)) / 2 + 0.05)
                        for a in world.actors]

    def _actor_frames(self, actor, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        T = actor.poses(times)
        return T[:, :3, :3], T[:, :3, 3]

    def cast(self, origins: np.ndarray, dirs: np.ndarray, times: np.ndarray, time_index: np.ndarray) -> Hits:
        """Nearest hits of rays (N, 3) origins and unit dirs, world frame.

        times: (K,) distinct ray times (s); time_index: (N,) index into ``times`` per ray.
        """
        n = len(origins)
        origins = np.asarray(origins, np.float64)
        dirs = np.asarray(dirs, np.float64)
        times = np.atleast_1d(np.asarray(times, np.float64))
        time_index = np.asarray(time_index, np.int64)
        out = Hits(np.full(n, np.inf), np.zeros((n, 3)), np.full(n, -1, np.int32), np.full(n, -1, np.int32),
                   np.zeros((n, 3)), np.zeros((n, 3)))
        if n == 0:
            return out
        res = self._static.cast_rays(_rays(origins, dirs))
        t = res["t_hit"].numpy().astype(np.float64)
        hit = np.isfinite(t)
        prim = res["primitive_ids"].numpy()[hit].astype(np.int64)
        nrm = _unit(res["primitive_normals"].numpy()[hit].astype(np.float64))
        out.t[hit] = t[hit]
        out.normal[hit] = nrm
        out.local_normal[hit] = nrm
        out.material[hit] = self.world.static_material[prim]
        out.object[hit] = self.world.static_object[prim]
        out.local_point[hit] = origins[hit] + t[hit, None] * dirs[hit]
        for actor, scene, radius in self._actors:
            R, p = self._actor_frames(actor, times)
            # Cull against the bounding sphere in the world frame (cheap, all rays).
            oc = origins - p[time_index]
            b = (oc * dirs).sum(1)
            disc = b * b - ((oc * oc).sum(1) - radius * radius)
            cand = disc >= 0
            if not cand.any():
                continue
            sq = np.sqrt(np.maximum(disc, 0))
            cand &= (sq - b > 0) & (-b - sq < out.t)
            if not cand.any():
                continue
            idx = np.flatnonzero(cand)
            Ri = R[time_index[idx]]
            lo = np.einsum("nji,nj->ni", Ri, oc[idx])      # R^T (o - p)
            ld = np.einsum("nji,nj->ni", Ri, dirs[idx])
            r = scene.cast_rays(_rays(lo, ld))
            ta = r["t_hit"].numpy().astype(np.float64)
            better = np.isfinite(ta) & (ta < out.t[idx])
            if not better.any():
                continue
            sel = idx[better]
            prim = r["primitive_ids"].numpy()[better].astype(np.int64)
            ln = _unit(r["primitive_normals"].numpy()[better].astype(np.float64))
            out.t[sel] = ta[better]
            out.local_normal[sel] = ln
            out.normal[sel] = np.einsum("nij,nj->ni", Ri[better], ln)
            out.local_point[sel] = lo[better] + ta[better, None] * ld[better]
            out.material[sel] = actor.material[prim]
            out.object[sel] = actor.object_id
        return out

    def occluded(self, origins: np.ndarray, dirs: np.ndarray, times: np.ndarray, time_index: np.ndarray
                 ) -> np.ndarray:
        """(N,) bool: whether anything lies along each ray (shadow rays)."""
        return self.cast(origins, dirs, times, time_index).hit
