"""Export of a scene's composed surfels as a standard Gaussian-splat PLY."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gssim.recon.fields import SH_C0, quat_multiply
from gssim.recon.ply import write_gaussian_ply
from gssim.recon.scene import Scene
from gssim.recon.scene_files import load_scene
from gssim.core.transforms import rotmat_to_quat


def world_surfels(scene: Scene, t: float) -> dict[str, torch.Tensor]:
    """All surfels of the scene at time t in the world frame, decoded with the mean
    appearance: means, quats, scales, opacities, sh (N, S, 3) (SH in the world frame
    only for degree 0 and rigid nodes without rotation; higher bands are rotated by
    evaluating nothing: they are dropped for moving actors)."""
    emb = scene.appearance.embedding(None)
    parts = []
    with torch.no_grad():
        for node in scene.nodes:
            T = np.eye(4) if node.track is None else node.pose_at(t)
            if T is None or node.field.n_rows == 0:
                continue
            dec = node.field.decode(torch.arange(node.field.n_rows), emb)
            Tt = torch.as_tensor(T, dtype=torch.float32)
            means = dec.means @ Tt[:3, :3].T + Tt[:3, 3]
            quats = dec.quats if node.track is None else quat_multiply(
                rotmat_to_quat(Tt[None, :3, :3])[0].expand_as(dec.quats), dec.quats)
            sh = dec.sh if node.track is None else dec.sh[:, :1]
            parts.append((means, quats, dec.scales, dec.opacities, sh))
    degree_one = any(p[4].shape[1] == 1 for p in parts)
    out = {k: torch.cat([p[i] for p in parts]) for i, k in enumerate(("means", "quats", "scales", "opacities"))}
    out["sh"] = torch.cat([p[4][:, :1] if degree_one else p[4] for p in parts])
    return out


def export_ply(scene_path, ply_path, t: float | None = None) -> int:
    """Write the scene at time t (default: its start) to ``ply_path``; returns the surfel count."""
    scene = load_scene(scene_path)
    t = scene.time_range[0] if t is None else float(t)
    s = world_surfels(scene, t)
    colors = 0.5 + SH_C0 * s["sh"][:, 0]
    rest = s["sh"][:, 1:] if s["sh"].shape[1] > 1 else None
    write_gaussian_ply(Path(ply_path), s["means"], s["quats"], s["scales"], s["opacities"], colors, rest)
    return int(s["means"].shape[0])
