"""Triangle-mesh building blocks of the synthetic world (trimesh primitives).

``MeshBuilder`` concatenates meshes and records a material id and an object id per
triangle.  Every primitive has outward-facing normals (counter-clockwise winding).
"""
from __future__ import annotations

import numpy as np
import trimesh

from gssim.synth.materials import MATERIAL_IDS


class MeshBuilder:
    """Accumulates triangles: vertices (V, 3) float64, faces (F, 3) int64, material (F,),
    object (F,)."""

    def __init__(self) -> None:
        self._verts: list[np.ndarray] = []
        self._faces: list[np.ndarray] = []
        self._mat: list[np.ndarray] = []
        self._obj: list[np.ndarray] = []
        self._n = 0

    def add(self, mesh: trimesh.Trimesh, material: str, obj: int) -> None:
        if material not in MATERIAL_IDS:
            raise ValueError(f"unknown material {material!r}; known: {sorted(MATERIAL_IDS)}")
        v = np.asarray(mesh.vertices, np.float64)
        f = np.asarray(mesh.faces, np.int64)
        self._verts.append(v)
        self._faces.append(f + self._n)
        self._mat.append(np.full(len(f), MATERIAL_IDS[material], np.int32))
        self._obj.append(np.full(len(f), obj, np.int32))
        self._n += len(v)

    def build(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self._verts:
            return np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32)
        return (np.concatenate(self._verts), np.concatenate(self._faces), np.concatenate(self._mat),
                np.concatenate(self._obj))


def box(lo, hi) -> trimesh.Trimesh:
    """Axis-aligned box between corners lo and hi (3,)."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    m = trimesh.creation.box(extents=hi - lo)
    m.apply_translation((lo + hi) / 2)
    return m


def quad_xy(x0: float, x1: float, y0: float, y1: float, z: float) -> trimesh.Trimesh:
    """Horizontal rectangle at height z, normal +z."""
    v = np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], np.float64)
    return trimesh.Trimesh(v, np.array([[0, 1, 2], [0, 2, 3]]), process=False)


def cylinder(radius: float, z0: float, z1: float, x: float = 0.0, y: float = 0.0, sections: int = 10
             ) -> trimesh.Trimesh:
    """Vertical cylinder between heights z0 and z1 centred at (x, y)."""
    m = trimesh.creation.cylinder(radius=radius, height=z1 - z0, sections=sections)
    m.apply_translation([x, y, (z0 + z1) / 2])
    return m


def cylinder_y(radius: float, width: float, centre, sections: int = 12) -> trimesh.Trimesh:
    """Cylinder with its axis along y (a wheel), centred at ``centre``."""
    m = trimesh.creation.cylinder(radius=radius, height=width, sections=sections)
    m.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    m.apply_translation(centre)
    return m


def ellipsoid(centre, radii, subdivisions: int = 1) -> trimesh.Trimesh:
    """Ellipsoid from a scaled icosphere."""
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    m.apply_scale(np.asarray(radii, np.float64))
    m.apply_translation(centre)
    return m
