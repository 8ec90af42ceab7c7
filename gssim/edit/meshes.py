"""Coloured triangle meshes for assets: procedural recipes and mesh files.

A ``MaterialMesh`` is a triangle mesh with a colour and a LiDAR reflectivity per face.
Procedural assets are recipes (``assets/recipes.json``): a shared table of materials
(``color`` RGB in [0, 1], ``reflectivity`` in [0, 1]) and, per asset, a class and a list
of parts, each a primitive in the recipe frame (x forward, y left, z up, z = 0 on the ground)::

    {"shape": "box", "size": [l, w, h], "at": [x, y, z], "material": "paint"}
    {"shape": "cylinder", "radius": r, "height": h, "axis": "x|y|z", "at": [...], "material": ...}
    {"shape": "frustum", "r_bottom": r0, "r_top": r1, "height": h, "at": [...], ...}   (z axis)
    {"shape": "sphere", "radius": r, "at": [...], "material": ...}

``at`` is the part's centre; any part may add ``"rot_deg": [rx, ry, rz]`` (applied in
x, y, z order about the part's centre).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from gssim.data.convert.common import CLASSES

RECIPES_FILE = Path(__file__).resolve().parent.parent.parent / "assets" / "recipes.json"
SHAPES = ("box", "cylinder", "frustum", "sphere")
_AXIS_ROT = {"z": np.eye(3), "x": np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], float),
             "y": np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)}


class RecipeError(ValueError):
    """A recipe that cannot be built: names the recipe, part and field."""


@dataclass
class MaterialMesh:
    """Triangles with a colour and reflectivity per face.

    vertices: (V, 3) float64; faces: (F, 3) int64; face_colors: (F, 3) RGB in [0, 1];
    face_reflectivity: (F,) in [0, 1].
    """

    vertices: np.ndarray
    faces: np.ndarray
    face_colors: np.ndarray
    face_reflectivity: np.ndarray

    @property
    def bounds(self) -> np.ndarray:
        """(2, 3) lower and upper corner."""
        return np.stack([self.vertices.min(0), self.vertices.max(0)])

    def face_normals(self) -> np.ndarray:
        """(F, 3) unit normals (right-hand rule on the vertex order; zero for degenerate faces)."""
        tri = self.vertices[self.faces]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        norm = np.linalg.norm(n, axis=1, keepdims=True)
        return np.where(norm > 0, n / np.where(norm > 0, norm, 1), 0.0)

    def face_areas(self) -> np.ndarray:
        tri = self.vertices[self.faces]
        return 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)

    def transformed(self, R: np.ndarray, t: np.ndarray | None = None, scale: float = 1.0) -> "MaterialMesh":
        """The mesh with vertices ``scale * R v + t`` (faces flipped if R reflects)."""
        v = scale * self.vertices @ np.asarray(R, float).T + (0 if t is None else np.asarray(t, float))
        faces = self.faces if np.linalg.det(R) > 0 else self.faces[:, ::-1]
        return MaterialMesh(v, faces.copy(), self.face_colors, self.face_reflectivity)

    def centred(self) -> "MaterialMesh":
        """The mesh moved so that its bounding box is centred on the origin."""
        return self.transformed(np.eye(3), -self.bounds.mean(0))

    @staticmethod
    def concatenate(parts: list["MaterialMesh"]) -> "MaterialMesh":
        offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
        return MaterialMesh(np.concatenate([p.vertices for p in parts]),
                            np.concatenate([p.faces + o for p, o in zip(parts, offsets)]),
                            np.concatenate([p.face_colors for p in parts]),
                            np.concatenate([p.face_reflectivity for p in parts]))


def _rotation_deg(r: list[float]) -> np.ndarray:
    rx, ry, rz = np.radians(r)
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def _primitive(part: dict) -> trimesh.Trimesh:
    shape = part["shape"]
    if shape == "box":
        return trimesh.creation.box(extents=part["size"])
    if shape == "sphere":
        return trimesh.creation.icosphere(subdivisions=2, radius=part["radius"])
    if shape == "cylinder":
        m = trimesh.creation.cylinder(radius=part["radius"], height=part["height"], sections=20)
        m.vertices = m.vertices @ _AXIS_ROT[part.get("axis", "z")].T
        return m
    if shape == "frustum":   # a cylinder whose radius varies linearly from bottom to top
        h = part["height"]
        m = trimesh.creation.cylinder(radius=1.0, height=h, sections=24)
        s = part["r_bottom"] + (part["r_top"] - part["r_bottom"]) * (m.vertices[:, 2:3] / h + 0.5)
        m.vertices = np.concatenate([m.vertices[:, :2] * s, m.vertices[:, 2:]], 1)
        return m
    raise KeyError(shape)


def recipe_mesh(name: str, recipe: dict, materials: dict) -> MaterialMesh:
    """The mesh of a recipe (see the module docstring), in the recipe frame."""
    parts = recipe.get("parts") or []
    if not parts:
        raise RecipeError(f"recipe {name}: no parts")
    meshes = []
    for i, part in enumerate(parts):
        where = f"recipe {name}, part {i}"
        if part.get("shape") not in SHAPES:
            raise RecipeError(f"{where}: shape must be one of {SHAPES}, got {part.get('shape')!r}")
        mat = materials.get(part.get("material"))
        if mat is None:
            raise RecipeError(f"{where}: unknown material {part.get('material')!r} (materials: {sorted(materials)})")
        try:
            m = _primitive(part)
        except KeyError as exc:
            raise RecipeError(f"{where}: missing field {exc}") from None
        R = _rotation_deg(part.get("rot_deg", [0, 0, 0]))
        v = np.asarray(m.vertices, float) @ R.T + np.asarray(part.get("at", [0, 0, 0]), float)
        F = len(m.faces)
        meshes.append(MaterialMesh(v, np.asarray(m.faces, np.int64), np.tile(np.asarray(mat["color"], float), (F, 1)),
                                   np.full(F, float(mat["reflectivity"]))))
    return MaterialMesh.concatenate(meshes)


def load_recipes(path: str | Path = RECIPES_FILE) -> dict[str, tuple[str, MaterialMesh]]:
    """{name: (class, mesh in the recipe frame)} of a recipes file ({"materials", "assets"})."""
    data = json.loads(Path(path).read_text())
    materials = data.get("materials", {})
    out = {}
    for name, r in data.get("assets", {}).items():
        if r.get("class") not in CLASSES:
            raise RecipeError(f"recipe {name}: class {r.get('class')!r} is not one of {CLASSES}")
        out[name] = (r["class"], recipe_mesh(name, r, materials))
    return out
