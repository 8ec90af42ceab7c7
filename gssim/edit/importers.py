"""Assets from outside the procedural library: mesh files, Gaussian-splat PLYs, scene actors.

Axes.  Assets live in the object box frame (x forward, y left, z up).  A file's up and
forward axes are given as signed file axes ("x", "-z", ...) or detected:

- glTF / GLB: +Y up and the front facing +Z, as the glTF 2.0 specification defines them.
- other meshes (OBJ, PLY, STL, ...) and splat PLYs: which file axis is up and which is
  forward is the assignment whose extents best match the class's typical proportions
  (length, width, height; compared in log scale, up to one common scale, so files in any
  unit work): e.g. a car's longest horizontal extent is its length, a pedestrian's
  longest extent is its height.  Signs cannot be told from extents: the detected axes
  are taken in their positive direction (pass ``--up=-y`` for a y-down capture).
  Class "other" keeps the file's axes (z up, x forward).
- a stated axis always wins; when only one is stated, the other comes from the rules
  above (among the remaining file axes).

The asset is then centred on its bounding box, sized by it, and rests on its bottom
centre.
"""
from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import torch
import trimesh

from gssim.core.transforms import quat_to_rotmat, rotmat_to_quat
from gssim.data.convert.common import CLASSES
from gssim.edit.assets import Asset, AssetError
from gssim.edit.meshes import MaterialMesh
from gssim.edit.surfelize import FitConfig, asset_from_mesh
from gssim.recon.fields import SH_C0, sh_to_rgb
from gssim.recon.scene_files import bake_field, load_scene
from gssim.recon.scene_io import SceneFormatError

AXES = {"x": (1.0, 0.0, 0.0), "-x": (-1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "-y": (0.0, -1.0, 0.0),
        "z": (0.0, 0.0, 1.0), "-z": (0.0, 0.0, -1.0)}
GLTF_AXES = ("y", "z")   # (up, forward): glTF 2.0 is +Y up, the front of an asset faces +Z
# Typical length, width, height (m) per class: the proportions that detect a file's axes.
CLASS_PROPORTIONS = {"car": (4.5, 1.9, 1.6), "truck": (8.0, 2.5, 3.2), "bus": (11.0, 2.6, 3.2),
                     "trailer": (9.0, 2.5, 3.5), "construction_vehicle": (6.5, 2.6, 3.0),
                     "motorcycle": (2.1, 0.8, 1.4), "bicycle": (1.7, 0.6, 1.1), "cyclist": (1.8, 0.6, 1.7),
                     "pedestrian": (0.5, 0.6, 1.75), "animal": (1.0, 0.4, 0.8), "traffic_cone": (0.4, 0.4, 0.7),
                     "barrier": (2.0, 0.5, 1.0)}
DEFAULT_REFLECTIVITY = 0.3   # LiDAR reflectivity of imported surfaces (files carry none)
NOMINAL_RANGE_M = 10.0       # range at which a scene's LiDAR decoder is asked for reflectivity
MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl", ".off")


def check_class(cls: str) -> str:
    if cls not in CLASSES:
        raise AssetError(f"unknown class {cls!r}; classes are {', '.join(CLASSES)}")
    return cls


def axis_rotation(up: str, forward: str) -> np.ndarray:
    """R (3, 3) taking file coordinates to the object frame: rows forward, left = up x
    forward, up."""
    for key, value in (("up", up), ("forward", forward)):
        if value not in AXES:
            raise AssetError(f"--{key} must be one of {', '.join(AXES)}, got {value!r}")
    u, f = np.array(AXES[up]), np.array(AXES[forward])
    if abs(u @ f) > 0:
        raise AssetError(f"up ({up}) and forward ({forward}) must be different file axes")
    return np.stack([f, np.cross(u, f), u])


def detect_axes(points: np.ndarray, cls: str, up: str | None = None, forward: str | None = None) -> tuple[str, str]:
    """(up, forward) file axes of points (N, 3) whose extents best match the class's
    proportions (see the module docstring); ``up`` or ``forward``, when given, is kept
    and only the other is detected."""
    if cls not in CLASS_PROPORTIONS:
        up = up or ("x" if forward and forward.lstrip("-") == "z" else "z")
        return up, forward or next(a for a in "xyz" if a != up.lstrip("-"))
    ext = np.log(np.maximum(np.ptp(points, axis=0), 1e-6))
    prior = np.log(CLASS_PROPORTIONS[cls])
    best, best_cost = None, np.inf
    for fwd, left, upi in itertools.permutations(range(3)):
        if (up and "xyz"[upi] != up.lstrip("-")) or (forward and "xyz"[fwd] != forward.lstrip("-")):
            continue
        d = ext[[fwd, left, upi]] - prior
        cost = float(((d - d.mean()) ** 2).sum())
        if cost < best_cost - 1e-9:
            best, best_cost = (up or "xyz"[upi], forward or "xyz"[fwd]), cost
    return best


def _file_axes(path: Path, points: np.ndarray, cls: str, up: str | None, forward: str | None) -> tuple[str, str]:
    if up is not None and forward is not None:
        return up, forward
    if path.suffix.lower() in (".glb", ".gltf"):   # glTF's axes fill in what is not stated, unless they clash
        gltf_up, gltf_forward = GLTF_AXES
        if up is None and (forward is None or forward.lstrip("-") != gltf_up):
            up = gltf_up
        if forward is None and up.lstrip("-") != gltf_forward:
            forward = gltf_forward
        if up is not None and forward is not None:
            return up, forward
    return detect_axes(points, cls, up, forward)


def safe_name(text: str) -> str:
    """An asset name made of ``text`` (other characters become '_')."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:64].lstrip("_.-")
    return name or "imported"


def is_splat_ply(path: Path) -> bool:
    """A PLY whose vertices carry Gaussian-splat properties (f_dc_0, scale_0, rot_0)."""
    if path.suffix.lower() != ".ply":
        return False
    with open(path, "rb") as f:
        header = f.read(1 << 16).split(b"end_header")[0]
    return all(re.search(rb"property\s+\w+\s+" + p + rb"\s", header) for p in (b"f_dc_0", b"scale_0", b"rot_0"))


def read_mesh(path: Path) -> MaterialMesh:
    """The triangles of a mesh file (every geometry of a glTF scene, placed by its node
    transform) with face colours (grey where the file has none) and the default reflectivity."""
    try:
        loaded = trimesh.load(str(path))
    except Exception as exc:  # trimesh raises many types on a bad file
        raise AssetError(f"{path}: not a readable mesh: {type(exc).__name__}: {exc}") from None
    if isinstance(loaded, trimesh.Scene):
        geoms = []
        for node in loaded.graph.nodes_geometry:
            T, geom_name = loaded.graph[node]
            g = loaded.geometry[geom_name].copy()
            g.apply_transform(T)
            geoms.append(g)
    else:
        geoms = [loaded]
    parts = []
    for g in geoms:
        if not isinstance(g, trimesh.Trimesh) or len(g.faces) == 0:
            continue
        visual = g.visual.to_color() if hasattr(g.visual, "to_color") else g.visual
        colors = np.asarray(visual.face_colors, np.float64)[:, :3] / 255.0
        parts.append(MaterialMesh(np.asarray(g.vertices, np.float64), np.asarray(g.faces, np.int64), colors,
                                  np.full(len(g.faces), DEFAULT_REFLECTIVITY)))
    if not parts:
        raise AssetError(f"{path}: the file holds no triangles (an empty mesh or a point cloud)")
    mesh = MaterialMesh.concatenate(parts)
    if not mesh.face_areas().sum() > 0 or not np.all(np.isfinite(mesh.vertices)):
        raise AssetError(f"{path}: the mesh has no surface area or non-finite vertices")
    return mesh


def import_mesh(path, cls: str, name: str | None = None, up: str | None = None, forward: str | None = None,
                scale: float = 1.0, cfg: FitConfig | None = None, progress=None) -> Asset:
    """An asset of a mesh file (glTF/GLB, OBJ, PLY, STL through trimesh): sampled into
    surfels and fitted to its ray-cast views (``cfg.steps``, 0 for none)."""
    path = Path(path)
    check_class(cls)
    if not path.is_file():
        raise AssetError(f"{path}: no such file")
    if not scale > 0:
        raise AssetError(f"--scale must be > 0, got {scale}")
    mesh = read_mesh(path)
    up, forward = _file_axes(path, mesh.vertices, cls, up, forward)
    mesh = mesh.transformed(axis_rotation(up, forward), scale=scale)
    source = f"mesh:{path.name} (up {up}, forward {forward}, scale {scale:g})"
    return asset_from_mesh(name or safe_name(path.stem), cls, mesh, source, cfg or FitConfig(steps=60), progress)


def import_splat_ply(path, cls: str, name: str | None = None, up: str | None = None, forward: str | None = None,
                     scale: float = 1.0) -> Asset:
    """An asset of a standard 3DGS PLY: each 3D Gaussian flattened to a surfel along its
    thinnest axis (the two largest scales become the surfel's, the smallest axis its
    normal); colour = 0.5 + SH_C0 * f_dc (clipped to [0, 1]); opacity = sigmoid(logit)."""
    path = Path(path)
    check_class(cls)
    if not path.is_file():
        raise AssetError(f"{path}: no such file")
    if not scale > 0:
        raise AssetError(f"--scale must be > 0, got {scale}")
    try:
        raw = trimesh.load(str(path)).metadata["_ply_raw"]["vertex"]["data"]
        col = lambda *k: np.stack([np.asarray(raw[c], np.float64) for c in k], 1)  # noqa: E731
        means, f_dc = col("x", "y", "z"), col("f_dc_0", "f_dc_1", "f_dc_2")
        logit, log_s, rot = col("opacity")[:, 0], col("scale_0", "scale_1", "scale_2"), col("rot_0", "rot_1", "rot_2", "rot_3")
    except Exception as exc:  # trimesh or a missing property
        raise AssetError(f"{path}: not a readable Gaussian-splat PLY (x y z f_dc_0..2 opacity scale_0..2 "
                         f"rot_0..3): {type(exc).__name__}: {exc}") from None
    if len(means) == 0:
        raise AssetError(f"{path}: the splat file holds no Gaussians")
    if not all(np.all(np.isfinite(a)) for a in (means, f_dc, logit, log_s, rot)) or np.any(np.linalg.norm(rot, axis=1) == 0):
        raise AssetError(f"{path}: non-finite values or zero rotations in the Gaussians")
    up, forward = _file_axes(path, means, cls, up, forward)
    R = axis_rotation(up, forward)
    means = scale * means @ R.T
    lo, hi = means.min(0), means.max(0)
    means -= (lo + hi) / 2
    q = torch.from_numpy(rot / np.linalg.norm(rot, axis=1, keepdims=True))
    axes = torch.from_numpy(R) @ quat_to_rotmat(q)                       # (N, 3, 3) columns: Gaussian axes
    s = torch.from_numpy(scale * np.exp(log_s))
    order = torch.argsort(s, dim=1, descending=True)                     # largest, middle, thinnest
    s = torch.gather(s, 1, order)
    axes = torch.gather(axes, 2, order[:, None, :].expand(-1, 3, -1))
    t_u, t_v = axes[..., 0], axes[..., 1]
    rotm = torch.stack([t_u, t_v, torch.linalg.cross(t_u, t_v)], -1)   # right-handed; normal = thinnest axis
    size = np.maximum(hi - lo, 1e-3)
    f32 = lambda a: torch.as_tensor(a).float().contiguous()  # noqa: E731
    n = len(means)
    return Asset(name=name or safe_name(path.stem), cls=cls, size=size, contact=np.array([0.0, 0.0, -size[2] / 2]),
                 means=f32(means), quats=f32(rotmat_to_quat(rotm)), scales=f32(s[:, :2]).clamp(min=1e-6),
                 opacities=f32(1 / (1 + np.exp(-logit))), colors=f32(np.clip(0.5 + SH_C0 * f_dc, 0, 1)),
                 reflectivity=torch.full((n,), DEFAULT_REFLECTIVITY),
                 source=f"splat:{path.name} (up {up}, forward {forward}, scale {scale:g})")


def import_file(path, cls: str, **kwargs) -> Asset:
    """A splat PLY or a mesh file (see ``import_splat_ply`` and ``import_mesh``)."""
    path = Path(path)
    check_class(cls)
    up, forward = kwargs.get("up"), kwargs.get("forward")
    if up is not None and forward is not None:
        axis_rotation(up, forward)   # stated axes are checked before the file is read
    if not path.is_file():
        raise AssetError(f"{path}: no such file")
    try:
        splat = is_splat_ply(path)
    except OSError as exc:
        raise AssetError(f"{path}: unreadable ({exc.strerror})") from None
    if splat:
        kwargs.pop("cfg", None)
        kwargs.pop("progress", None)
        return import_splat_ply(path, cls, **kwargs)
    return import_mesh(path, cls, **kwargs)


def extract_actor(scene_path, actor_id: str, name: str | None = None, camera_id: str | None = None) -> Asset:
    """The asset of a reconstructed actor: its field baked into explicit surfels (with the
    appearance of ``camera_id``, default the mean), colours from the SH DC term,
    reflectivity = the scene LiDAR decoder's intensity at normal incidence and
    ``NOMINAL_RANGE_M`` (``DEFAULT_REFLECTIVITY`` if the scene has no decoder)."""
    try:
        scene = load_scene(scene_path)
    except (SceneFormatError, OSError) as exc:
        raise AssetError(f"{scene_path}: not a readable scene: {exc}") from None
    actors = [n for n in scene.nodes if n.kind == "actor"]
    node = next((n for n in actors if n.id == actor_id), None)
    if node is None:
        raise AssetError(f"scene {scene_path} has no actor {actor_id!r}; actors are "
                         f"{', '.join(n.id for n in actors) or 'none'}")
    cls = node.cls if node.cls in CLASSES else "other"
    with torch.no_grad():
        baked = bake_field(node.field, scene.appearance.embedding(camera_id).detach())
        dec = baked.decode(torch.arange(baked.n_rows), None)
        if len(dec) == 0:
            raise AssetError(f"scene {scene_path}: actor {actor_id!r} has no visible surfels")
        colors = sh_to_rgb(dec.sh[:, :1], torch.zeros_like(dec.means)).clamp(0, 1)
        if len(scene.lidar_decoders) and dec.lidar.shape[1] > 0:
            decoder = next(iter(scene.lidar_decoders.values()))
            ones = torch.ones(len(dec))
            reflectivity, _ = decoder(dec.lidar, ones, ones, ones * NOMINAL_RANGE_M)
        else:
            reflectivity = torch.full((len(dec),), DEFAULT_REFLECTIVITY)
    size = np.asarray(node.size, np.float64)
    return Asset(name=name or safe_name(f"{scene.name}_{actor_id}"), cls=cls, size=size, contact=np.array([0.0, 0.0, -size[2] / 2]),
                 means=dec.means.float().contiguous(), quats=dec.quats.float().contiguous(),
                 scales=dec.scales.float().contiguous(), opacities=dec.opacities.float().contiguous(),
                 colors=colors.float().contiguous(), reflectivity=reflectivity.float().clamp(0, 1).contiguous(),
                 source=f"scene:{scene_path}#{actor_id}")
