"""Mesh to surfels: surface sampling, ground truth by ray casting, and fitting.

1. ``sample_surfels``: points on the mesh surface that some orbit viewpoint sees
   (hidden faces, e.g. inside overlapping parts, get none), thinned to an even spacing
   (greedy Poisson-disk); each becomes a surfel in the face's plane (normal = face
   normal), sized from the local spacing, coloured by its face, with its face's
   reflectivity.
2. ``ground_truth``: cameras and flash LiDARs on orbits around the object; the mesh is
   ray-cast (open3d) for flat-shaded colour (the face colour: the albedo) and coverage,
   supersampled 3 x 3 per pixel so edges are anti-aliased as the surfels render them,
   and for LiDAR range (one ray per cell).
3. ``fit_surfels``: Adam on colours, opacities, scales and small in-plane offsets of
   the means (the sampled planes are the mesh's faces: they stay on them) through ``gssim.render`` (cpu backend): L1 colour + alpha on the camera views, range
   + alpha on the LiDAR views.  ``evaluate`` measures held-out views (PSNR over a grey
   background, LiDAR range error and coverage agreement).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import open3d as o3d
import torch
from scipy.spatial import cKDTree

import gssim
from gssim.core.surfels import Surfels
from gssim.core.transforms import quat_to_rotmat
from gssim.edit.assets import Asset
from gssim.edit.meshes import MaterialMesh
from gssim.edit.views import framing_camera, framing_lidar, look_at, orbit_eye
from gssim.recon.fields import normal_to_quat

Tensor = torch.Tensor
log = logging.getLogger(__name__)

EVAL_BACKGROUND = 0.5   # grey under held-out images for PSNR
SUPERSAMPLE = 3         # ground-truth camera rays per pixel side
INIT_SCALE = 0.7        # initial surfel scale in units of the local spacing (overlapping, hole-free discs)


@dataclass
class FitConfig:
    """Settings of the mesh-to-surfels conversion (defaults: a library asset in seconds)."""

    surfels: int = 3000            # target number of surfels
    steps: int = 150               # Adam steps (0: no fitting)
    image: int = 64                # camera views are image x image pixels
    lidar_cells: int = 64          # LiDAR views are cells x cells rays
    cameras_per_step: int = 2
    lr_color: float = 0.1
    lr_opacity: float = 0.1
    lr_scale: float = 0.03
    lr_offset: float = 0.1
    max_offset: float = 0.5        # in-plane offsets stay within this fraction of the local spacing
    alpha_weight: float = 0.5
    range_weight: float = 1.0
    opaque_weight: float = 0.02    # pull opacities towards 1 (mesh surfaces are opaque; no holes up close)
    seed: int = 0


@dataclass
class SampledSurfels:
    """Initial surfels of a mesh (numpy, object frame): means (N, 3), normals (N, 3),
    spacing (N,) metres, colors (N, 3), reflectivity (N,)."""

    means: np.ndarray
    normals: np.ndarray
    spacing: np.ndarray
    colors: np.ndarray
    reflectivity: np.ndarray


@dataclass
class View:
    """A sensor at a pose with the mesh's ray-cast ground truth.  Cameras: rgb (H, W, 3)
    premultiplied flat face colour, mask (H, W) covered fraction.  LiDARs: range (B, A) along the ray (0 on
    a miss), mask (B, A)."""

    kind: str
    sensor: object
    T_world_sensor: np.ndarray
    mask: Tensor
    rgb: Tensor | None = None
    range: Tensor | None = None


class MeshRaycaster:
    """Ray casting against a MaterialMesh (open3d RaycastingScene)."""

    def __init__(self, mesh: MaterialMesh) -> None:
        self.mesh = mesh
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)),
                                 o3d.core.Tensor(mesh.faces.astype(np.uint32)))

    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance to the first hit (R,) (inf on a miss) and the face hit (R,) (-1 on a miss)
        of rays origins (R, 3) along unit dirs (R, 3)."""
        rays = np.concatenate([origins, dirs], 1).astype(np.float32)
        ans = self.scene.cast_rays(o3d.core.Tensor(rays))
        t = ans["t_hit"].numpy().astype(np.float64)
        face = ans["primitive_ids"].numpy().astype(np.int64)
        miss = ~np.isfinite(t)
        face[miss] = -1
        return t, face


def bounding_radius(mesh: MaterialMesh) -> float:
    """Radius of the sphere around the origin that holds the mesh."""
    return float(np.linalg.norm(mesh.vertices, axis=1).max())


def _visibility_eyes(radius: float) -> np.ndarray:
    return np.array([orbit_eye(radius, az, el) for el in (2.0, 15.0, 40.0, 75.0) for az in range(0, 360, 24)])


def _thin(points: np.ndarray, radius: float, order: np.ndarray) -> np.ndarray:
    """Indices of a greedy Poisson-disk subset: no two kept points closer than ``radius``."""
    neighbours = cKDTree(points).query_ball_point(points, radius)
    blocked = np.zeros(len(points), bool)
    keep = []
    for i in order:
        if not blocked[i]:
            keep.append(i)
            blocked[neighbours[i]] = True
    return np.asarray(keep, np.int64)


def sample_surfels(mesh: MaterialMesh, n: int, seed: int = 0, oversample: int = 6) -> SampledSurfels:
    """About ``n`` evenly spaced surfels on the visible surface of a centred mesh."""
    rng = np.random.default_rng(seed)
    areas = mesh.face_areas()
    if not areas.sum() > 0:
        raise ValueError("mesh has no surface area")
    m = oversample * n
    face = rng.choice(len(areas), size=m, p=areas / areas.sum())
    r1, r2 = rng.random(m), rng.random(m)
    flip = r1 + r2 > 1
    r1, r2 = np.where(flip, 1 - r1, r1), np.where(flip, 1 - r2, r2)
    tri = mesh.vertices[mesh.faces[face]]
    points = tri[:, 0] + r1[:, None] * (tri[:, 1] - tri[:, 0]) + r2[:, None] * (tri[:, 2] - tri[:, 0])
    normals = mesh.face_normals()[face]
    # Visible: the segment to some orbit eye is free (the point leaves along it by 1 mm).
    rc = MeshRaycaster(mesh)
    eyes = _visibility_eyes(bounding_radius(mesh))
    seen = np.zeros(m, bool)
    for eye in eyes:
        d = eye - points
        dist = np.linalg.norm(d, axis=1)
        d /= dist[:, None]
        t, _ = rc.cast(points + 1e-3 * d, d)
        seen |= (t >= dist - 2e-3) & (np.abs((d * normals).sum(1)) > 0.02)
    if not seen.any():
        raise ValueError("no surface point of the mesh is visible from outside")
    points, normals, face = points[seen], normals[seen], face[seen]
    visible_area = areas.sum() * seen.mean()
    # Spacing of about n disks over the visible area, corrected once by the count it gives.
    order = rng.permutation(len(points))
    radius = math.sqrt(visible_area / (1.6 * n))
    keep = _thin(points, radius, order)
    radius *= math.sqrt(len(keep) / n)
    keep = _thin(points, radius, order)
    points, normals, face = points[keep], normals[keep], face[keep]
    dist, _ = cKDTree(points).query(points, k=min(4, len(points)))
    spacing = dist[:, 1:].mean(1) if len(points) > 1 else np.full(1, radius)
    return SampledSurfels(points, normals, spacing, mesh.face_colors[face], mesh.face_reflectivity[face])


def _cast_grid(sensor, T: np.ndarray, rc: MeshRaycaster) -> tuple[np.ndarray, np.ndarray]:
    """Hit distance and face of every ray of a sensor at a pose, in its grid shape."""
    dirs_s = sensor.ray_directions().double().numpy()
    dirs = dirs_s.reshape(-1, 3) @ T[:3, :3].T
    t, face = rc.cast(np.broadcast_to(T[:3, 3], dirs.shape), dirs)
    return t.reshape(dirs_s.shape[:2]), face.reshape(dirs_s.shape[:2])


def camera_view(size: int, T: np.ndarray, rc: MeshRaycaster) -> View:
    """A camera view whose ground truth is supersampled (SUPERSAMPLE^2 rays per pixel):
    rgb is the mean of colour x hit, mask the covered fraction (anti-aliased edges)."""
    k = SUPERSAMPLE
    _, face = _cast_grid(framing_camera(size * k), T, rc)
    hit = face >= 0
    rgb = np.zeros((*face.shape, 3))
    rgb[hit] = rc.mesh.face_colors[face[hit]]
    pool = lambda a: a.reshape(size, k, size, k, *a.shape[2:]).mean((1, 3))  # noqa: E731
    return View("camera", framing_camera(size), T, torch.from_numpy(pool(hit.astype(np.float64))).float(),
                rgb=torch.from_numpy(pool(rgb)).float())


def lidar_view(sensor, T: np.ndarray, rc: MeshRaycaster) -> View:
    """A LiDAR view: one ray per cell, range along it (0 on a miss), hit mask."""
    t, face = _cast_grid(sensor, T, rc)
    hit = face >= 0
    return View("lidar", sensor, T, torch.from_numpy(hit.astype(np.float32)),
                range=torch.from_numpy(np.where(hit, t, 0.0).astype(np.float32)))


def ground_truth(mesh: MaterialMesh, cfg: FitConfig) -> dict[str, list[View]]:
    """Ray-cast views of a centred mesh: "train_cameras" (2 rings of 12 and one of 8 from
    high above), "train_lidars" (a ring of 8 at a low elevation), and held-out "test_cameras" (8, at azimuths and
    elevations between the training ones), "test_cameras_2x" (the same at twice the
    resolution) and "test_lidars" (4)."""
    rc = MeshRaycaster(mesh)
    radius = bounding_radius(mesh)
    lidar_dist = float(np.linalg.norm(orbit_eye(radius, 0, 0)))
    lidar = framing_lidar(radius, lidar_dist, cfg.lidar_cells)

    def ring(kind, elevations, azimuths, image=cfg.image):
        poses = [look_at(orbit_eye(radius, az, el), np.zeros(3), kind) for el in elevations for az in azimuths]
        return [camera_view(image, T, rc) if kind == "camera" else lidar_view(lidar, T, rc) for T in poses]

    held_out = ((20.0, 50.0), np.arange(15, 360, 90.0))
    return {"train_cameras": (ring("camera", (8.0, 32.0), np.arange(0, 360, 30.0))
                              + ring("camera", (62.0,), np.arange(0, 360, 45.0))),
            "train_lidars": ring("lidar", (10.0,), np.arange(0, 360, 45.0)),
            "test_cameras": ring("camera", *held_out),
            "test_cameras_2x": ring("camera", *held_out, image=2 * cfg.image),
            "test_lidars": ring("lidar", (18.0,), np.arange(22.5, 360, 90.0))}


def initial_tensors(s: SampledSurfels) -> dict[str, Tensor]:
    """Asset tensors (means, quats, scales, opacities, colors, reflectivity) of sampled surfels."""
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))  # noqa: E731
    n = len(s.means)
    return {"means": f32(s.means), "quats": normal_to_quat(f32(s.normals)),
            "scales": f32(np.repeat(INIT_SCALE * s.spacing[:, None], 2, 1)), "opacities": torch.full((n,), 0.9),
            "colors": f32(s.colors), "reflectivity": f32(s.reflectivity)}


def _render_view(t: dict[str, Tensor], view: View):
    """Render asset tensors through a view's sensor (colours for a camera, reflectivity for a LiDAR)."""
    feats = t["colors"] if view.kind == "camera" else t["reflectivity"][:, None]
    surf = Surfels(t["means"], t["quats"], t["scales"], t["opacities"], feats)
    return gssim.render(surf, view.sensor, view.T_world_sensor, backend="cpu")


def view_loss(t: dict[str, Tensor], view: View, cfg: FitConfig, scale: float) -> Tensor:
    """L1 colour (premultiplied) + alpha for a camera; range (in units of ``scale``) on rays
    both hit + alpha for a LiDAR."""
    out = _render_view(t, view)
    alpha_loss = (out.alpha - view.mask).abs().mean()
    if view.kind == "camera":
        return (out.color - view.rgb).abs().mean() + cfg.alpha_weight * alpha_loss
    both = (view.mask > 0) & (out.alpha > 0.05)
    rng_loss = ((out.range - view.range).abs()[both].sum() / max(int(both.sum()), 1)) / scale
    return cfg.range_weight * rng_loss + cfg.alpha_weight * alpha_loss


def psnr(a: Tensor, b: Tensor) -> float:
    """Peak signal-to-noise ratio (dB) of two images in [0, 1]."""
    mse = float(((a - b) ** 2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-10))


def evaluate(t: dict[str, Tensor], views: dict[str, list[View]]) -> dict[str, float]:
    """Held-out quality: mean PSNR (dB, over a grey background) of "test_cameras" and of
    "test_cameras_2x" (twice the resolution: holes between surfels show there), median
    |range error| (m) of "test_lidars" on rays that hit both the mesh and the surfels
    (alpha > 0.5), and the coverage IoU of those rays."""
    bg = EVAL_BACKGROUND
    result = {}
    with torch.no_grad():
        for key, out_key in (("test_cameras", "psnr"), ("test_cameras_2x", "psnr_2x")):
            values = []
            for v in views.get(key, []):
                out = _render_view(t, v)
                img = out.color + (1 - out.alpha)[..., None] * bg
                values.append(psnr(img, v.rgb + (1 - v.mask)[..., None] * bg))
            if values:
                result[out_key] = float(np.mean(values))
        errors, inter, union = [], 0, 0
        for v in views.get("test_lidars", []):
            out = _render_view(t, v)
            hit, gt = out.alpha > 0.5, v.mask > 0
            errors.append((out.median_range - v.range).abs()[hit & gt])
            inter += int((hit & gt).sum())
            union += int((hit | gt).sum())
    if errors:
        err = torch.cat(errors)
        result["range_error_m"] = float(err.median()) if len(err) else float("inf")
        result["coverage_iou"] = inter / max(union, 1)
    return result


def fit_surfels(init: dict[str, Tensor], spacing: np.ndarray, views: dict[str, list[View]], cfg: FitConfig,
                progress=None) -> dict[str, Tensor]:
    """Fitted copies of the asset tensors (quats and reflectivity are kept).

    progress: optional callable(step) after each step."""
    n = init["means"].shape[0]
    c_logit = torch.logit(init["colors"].clamp(0.02, 0.98)).requires_grad_()
    o_logit = torch.logit(init["opacities"].clamp(0.02, 0.98)).requires_grad_()
    log_s = init["scales"].log().requires_grad_()
    raw_off = torch.zeros(n, 2, requires_grad=True)
    reach = torch.from_numpy(cfg.max_offset * spacing.astype(np.float32))[:, None]
    tangents = quat_to_rotmat(init["quats"])[:, :, :2]      # (N, 3, 2): t_u, t_v; means move in their plane
    opt = torch.optim.Adam([{"params": [c_logit], "lr": cfg.lr_color}, {"params": [o_logit], "lr": cfg.lr_opacity},
                            {"params": [log_s], "lr": cfg.lr_scale}, {"params": [raw_off], "lr": cfg.lr_offset}])
    scale = float(init["means"].norm(dim=1).max())

    def current() -> dict[str, Tensor]:
        offset = (tangents @ torch.tanh(raw_off)[:, :, None])[:, :, 0]
        return {"means": init["means"] + reach * offset, "quats": init["quats"],
                "scales": log_s.exp(), "opacities": torch.sigmoid(o_logit), "colors": torch.sigmoid(c_logit),
                "reflectivity": init["reflectivity"]}

    rng = np.random.default_rng(cfg.seed)
    cams, lidars = views["train_cameras"], views["train_lidars"]
    for step in range(cfg.steps):
        opt.zero_grad()
        t = current()
        picks = rng.choice(len(cams), size=min(cfg.cameras_per_step, len(cams)), replace=False)
        loss = sum(view_loss(t, cams[i], cfg, scale) for i in picks) / len(picks)
        loss = loss + view_loss(t, lidars[step % len(lidars)], cfg, scale)
        loss = loss + cfg.opaque_weight * (1 - t["opacities"]).mean()
        loss.backward()
        opt.step()
        if progress is not None:
            progress(step)
    with torch.no_grad():
        return {k: v.detach().clone().contiguous() for k, v in current().items()}


@dataclass
class MeshFit:
    """Result of ``surfelize``: the asset tensors, the held-out quality before/after, and
    how many held-out views of each kind measured it."""

    tensors: dict[str, Tensor]
    before: dict[str, float]
    after: dict[str, float]
    steps: int
    held_out: dict[str, int]

    def report(self) -> dict:
        r = lambda d: {k: round(v, 4) for k, v in d.items()}  # noqa: E731
        return {"steps": self.steps, "held_out_views": self.held_out, "before": r(self.before), "after": r(self.after)}


def surfelize(mesh: MaterialMesh, cfg: FitConfig | None = None, progress=None) -> MeshFit:
    """Surfels of a centred mesh, sampled then fitted to its ray-cast views."""
    cfg = cfg or FitConfig()
    # One thread: the renders are tiny (threads cost more than they give) and the
    # gradient sums then add in a fixed order, so a build is bit-reproducible.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sampled = sample_surfels(mesh, cfg.surfels, cfg.seed)
        init = initial_tensors(sampled)
        views = ground_truth(mesh, cfg)
        before = evaluate(init, views)
        fitted = fit_surfels(init, sampled.spacing, views, cfg, progress) if cfg.steps > 0 else init
        after = evaluate(fitted, views) if cfg.steps > 0 else before
    finally:
        torch.set_num_threads(threads)
    held_out = {k: len(views[k]) for k in ("test_cameras", "test_cameras_2x", "test_lidars")}
    return MeshFit(fitted, before, after, cfg.steps, held_out)


def asset_from_mesh(name: str, cls: str, mesh: MaterialMesh, source: str, cfg: FitConfig,
                    progress=None) -> Asset:
    """An asset of a mesh in the object frame (x forward, y left, z up): centred on its
    bounding box, sized by it, resting on its bottom centre; surfels sampled and fitted."""
    lo, hi = mesh.bounds
    mesh = mesh.centred()
    fit = surfelize(mesh, cfg, progress)
    size = np.maximum(hi - lo, 1e-3)   # a flat mesh still has a (thin) box
    return Asset(name=name, cls=cls, size=size, contact=np.array([0.0, 0.0, -size[2] / 2]), source=source,
                 fit=fit.report(), **fit.tensors)
