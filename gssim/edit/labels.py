"""Labels of any rendered frame of a scene (edited or not), for every actor and inserted asset.

``labels_for(scene, t, sensor_id)`` renders the frame's surfels once more with one-hot
"which node" features instead of colours (the same surfels, sensor and poses as
``Scene.render``, so the labels line up with the rendered pixels and points), and
labels each cell with the node of largest blending weight: the first visible surface
of an opaque scene.  Shadow surfels of inserted assets count as background.

Per-cell values: instance 0 = nothing (sky, no return), 1 = static background, k >= 2 =
the actor or asset whose ``instance`` is k (stable within a scene: 2 + its position among
the non-background nodes).  Semantic ids are ``CLASSES`` indices (0 none, 1 background).

Every actor present at t gets a 3D box in the world and sensor frames (centre, size,
rotation quaternion (w, x, y, z), yaw, 8 corners), and, for cameras, its visible 2D box
(from the instance mask) and the 2D box of its projected corners (when all are in front
of the camera); for LiDARs, per-point instance and semantic labels of the rendered
points (the scene's own point cloud: same drops, same order).

``write_labels(labels, folder, frame)`` writes ``<sensor>/<frame:06d>.json`` and, for
cameras, ``_instance.png`` (16-bit) and ``_semantic.png`` (8-bit); for LiDARs
``_points.npy`` (M, 8): the log layout plus instance and semantic id.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gssim.core.surfels import Surfels
from gssim.core.transforms import rotmat_to_quat
from gssim.edit.edits import node_of_surfel, shadow_rows
from gssim.recon.scene import Scene
from gssim.render import render as render_surfels

CLASSES = ("none", "background", "car", "truck", "bus", "pedestrian", "cyclist", "motorcycle", "bicycle", "other")
NOTHING, BACKGROUND = 0, 1
CHANNELS_PER_RENDER = 8
_CORNERS = np.array([[sx, sy, sz] for sx in (1, -1) for sy in (1, -1) for sz in (1, -1)], np.float64) / 2


def semantic_id(cls: str) -> int:
    """Index of a class in CLASSES ("other" for a class not listed)."""
    return CLASSES.index(cls) if cls in CLASSES else CLASSES.index("other")


@dataclass
class Box3D:
    """An oriented box: centre (3,), size (3,) l, w, h, quat (4,) w, x, y, z, yaw (rad, about
    the frame's z), corners (8, 3)."""

    centre: np.ndarray
    size: np.ndarray
    quat: np.ndarray
    yaw: float
    corners: np.ndarray

    @classmethod
    def of(cls, T: np.ndarray, size: np.ndarray) -> "Box3D":
        R = T[:3, :3]
        q = rotmat_to_quat(torch.as_tensor(R[None], dtype=torch.float64))[0].numpy()
        corners = (_CORNERS * size) @ R.T + T[:3, 3]
        return cls(T[:3, 3].copy(), np.asarray(size, np.float64), q, float(np.arctan2(R[1, 0], R[0, 0])), corners)

    def to_dict(self) -> dict:
        return {"centre": self.centre.tolist(), "size": self.size.tolist(), "quat": self.quat.tolist(),
                "yaw": self.yaw, "corners": self.corners.tolist()}


@dataclass
class Instance:
    """One actor or asset in a frame.  box2d / box2d_projected: [x0, y0, x1, y1] pixel
    edges (cameras; None when not visible / not wholly in front); cells: labelled pixels
    or LiDAR points."""

    id: str
    kind: str
    cls: str
    instance: int
    semantic: int
    box_world: Box3D
    box_sensor: Box3D
    cells: int = 0
    box2d: list[float] | None = None
    box2d_projected: list[float] | None = None

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "class": self.cls, "instance": self.instance,
                "semantic": self.semantic, "box3d_world": self.box_world.to_dict(),
                "box3d_sensor": self.box_sensor.to_dict(), "cells": self.cells, "box2d": self.box2d,
                "box2d_projected": self.box2d_projected}


@dataclass
class FrameLabels:
    """Labels of one frame.  instance / semantic: (H, W) or (B, A) int64 per cell;
    points (M, 6), point_instance / point_semantic (M,) for LiDARs (None for cameras)."""

    sensor_id: str
    t: float
    sensor_type: str
    T_world_sensor: np.ndarray
    instances: list[Instance]
    instance: torch.Tensor
    semantic: torch.Tensor
    points: torch.Tensor | None = None
    point_instance: torch.Tensor | None = None
    point_semantic: torch.Tensor | None = None
    classes: tuple = field(default=CLASSES)

    def to_dict(self) -> dict:
        return {"sensor": self.sensor_id, "t": self.t, "type": self.sensor_type,
                "T_world_sensor": self.T_world_sensor.tolist(), "classes": list(self.classes),
                "instance_values": {"0": "nothing", "1": "background", ">=2": "instances[].instance"},
                "instances": [i.to_dict() for i in self.instances]}


def _node_weights(scene: Scene, t: float, sid: str, T0, T1, backend: str) -> tuple[torch.Tensor, list]:
    """(cells..., 1 + K) blending weight of the background and of each of the K actor
    nodes in view, and those nodes."""
    sensor = scene._spec(sid).sensor
    comp = scene.compose(t, sid, T0, T1, sensor=sensor, channels="lidar")
    nodes, idx, rows = node_of_surfel(comp.parts)
    shadows = shadow_rows(scene)
    actors = [n for n in nodes if n.kind != "background"]
    slot_of_node = torch.tensor([0 if n.kind == "background" else 1 + actors.index(n) for n in nodes],
                                dtype=torch.long)
    slot = slot_of_node[idx] if len(idx) else idx
    for k, n in enumerate(nodes):
        if n.id in shadows:
            slot[(idx == k) & (rows >= shadows[n.id])] = 0
    s = comp.surfels
    K = 1 + len(actors)
    out = []
    for c0 in range(0, K, CHANNELS_PER_RENDER):
        c1 = min(c0 + CHANNELS_PER_RENDER, K)
        onehot = torch.zeros(len(s.means), c1 - c0)
        sel = (slot >= c0) & (slot < c1)
        onehot[torch.nonzero(sel).squeeze(1), slot[sel] - c0] = 1.0
        r = render_surfels(Surfels(s.means, s.quats, s.scales, s.opacities, onehot), sensor, T0, T1, backend=backend)
        out.append(r.color if hasattr(r, "color") else r.features)
    return torch.cat(out, -1), actors


def _box2d(mask: torch.Tensor) -> list[float] | None:
    ij = torch.nonzero(mask)
    if not len(ij):
        return None
    (r0, c0), (r1, c1) = ij.min(0).values.tolist(), ij.max(0).values.tolist()
    return [float(c0), float(r0), float(c1 + 1), float(r1 + 1)]


def labels_for(scene: Scene, t: float, sensor_id: str, backend: str = "auto") -> FrameLabels:
    """Labels of the frame ``Scene.render(t, [sensor_id])`` gives (see the module docstring)."""
    spec = scene._spec(sensor_id)
    sensor = spec.sensor
    T0, T1 = scene._readout_poses(sensor_id, t, None, None)
    ids = [n.id for n in scene.nodes if n.kind != "background"]
    with torch.no_grad():
        weights, actors = _node_weights(scene, t, sensor_id, T0, T1, backend)
        alpha = weights.sum(-1)
        best = weights.argmax(-1)
        inst_of_slot = torch.tensor([BACKGROUND] + [2 + ids.index(n.id) for n in actors], dtype=torch.long)
        sem_of_slot = torch.tensor([BACKGROUND] + [semantic_id(n.cls) for n in actors], dtype=torch.long)
        points = p_inst = p_sem = None
        if spec.type == "camera":
            hit = alpha > 0.5
        else:
            frame, _, out = scene.render_lidar(sensor_id, t, backend=backend, T0=T0, T1=T1)
            rng = out.median_range
            hit = (out.alpha >= 1e-3) & (rng > 0) & torch.isfinite(rng) & (frame.drop_prob < 0.5)
            points = frame.points
            if int(hit.sum()) != len(points):
                raise RuntimeError(f"labels_for: {int(hit.sum())} labelled rays but {len(points)} rendered points")
        instance = torch.where(hit, inst_of_slot[best], torch.full_like(best, NOTHING))
        semantic = torch.where(hit, sem_of_slot[best], torch.full_like(best, NOTHING))
        if points is not None:
            p_inst, p_sem = instance[hit], semantic[hit]
    T_sensor_world = np.linalg.inv(T0)
    instances = []
    for k, node in enumerate(n for n in scene.nodes if n.kind != "background"):
        T = node.pose_at(t)
        if T is None or node.size is None:
            continue
        inst = Instance(node.id, node.kind, node.cls, 2 + k, semantic_id(node.cls), Box3D.of(T, node.size),
                        Box3D.of(T_sensor_world @ T, node.size))
        mask = instance == 2 + k
        inst.cells = int(mask.sum())
        if spec.type == "camera":
            inst.box2d = _box2d(mask)
            uv, ok = sensor.project(torch.as_tensor(inst.box_sensor.corners, dtype=torch.float32))
            if bool(ok.all()):
                lo, hi = uv.min(0).values, uv.max(0).values
                box = [float(lo[0].clamp(0, sensor.cols)), float(lo[1].clamp(0, sensor.rows)),
                       float(hi[0].clamp(0, sensor.cols)), float(hi[1].clamp(0, sensor.rows))]
                inst.box2d_projected = box if box[2] > box[0] and box[3] > box[1] else None
        instances.append(inst)
    return FrameLabels(sensor_id, float(t), spec.type, np.asarray(T0, np.float64), instances, instance, semantic,
                       points, p_inst, p_sem)


def write_labels(labels: FrameLabels, folder: str | Path, frame: int) -> list[Path]:
    """Write one frame's labels under ``folder/<sensor>/`` (see the module docstring)."""
    base = Path(folder) / labels.sensor_id
    base.mkdir(parents=True, exist_ok=True)
    stem = f"{frame:06d}"
    written = [base / f"{stem}.json"]
    written[0].write_text(json.dumps(labels.to_dict(), indent=1))
    if labels.sensor_type == "camera":
        inst = labels.instance.numpy().astype(np.uint16)
        Image.fromarray(inst).save(base / f"{stem}_instance.png")
        Image.fromarray(labels.semantic.numpy().astype(np.uint8)).save(base / f"{stem}_semantic.png")
        written += [base / f"{stem}_instance.png", base / f"{stem}_semantic.png"]
    else:
        pts = torch.cat([labels.points, labels.point_instance[:, None].float(), labels.point_semantic[:, None].float()],
                        1)
        np.save(base / f"{stem}_points.npy", pts.numpy().astype(np.float32))
        written.append(base / f"{stem}_points.npy")
    return written


def write_scene_labels(scene: Scene, folder: str | Path, times: list[float] | None = None,
                       sensors: list[str] | None = None, backend: str = "auto") -> int:
    """Labels of every sensor (or ``sensors``) at every recorded frame time (or ``times``);
    frame k is the k-th time.  Returns the number of frames written."""
    times = [float(t) for t in (scene.ego_track.times if times is None else times)]
    sensors = list(scene.sensors) if sensors is None else sensors
    for k, t in enumerate(times):
        for sid in sensors:
            write_labels(labels_for(scene, t, sid, backend), folder, k)
    (Path(folder) / "labels.json").write_text(json.dumps({"scene": scene.name, "times": times, "sensors": sensors,
                                                          "classes": list(CLASSES)}, indent=1))
    return len(times) * len(sensors)
