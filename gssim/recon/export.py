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


def rotate_sh(sh: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """SH coefficients (N, S, 3) of a node rotated by R (3, 3) into the world frame.

    Band 0 is invariant; band 1 (basis -y, z, -x) turns like a vector; band 2 is set to
    zero (its rotation is not implemented), which keeps the mean colour and band 1.
    """
    out = sh.clone()
    if sh.shape[1] > 1:
        P = torch.tensor([[0.0, -1, 0], [0, 0, 1], [-1, 0, 0]], dtype=sh.dtype)  # band-1 basis = C1 * P d
        M = P @ R.to(sh.dtype) @ P.T
        out[:, 1:4] = torch.einsum("ij,njc->nic", M, sh[:, 1:4])
    out[:, 4:] = 0
    return out


def world_surfels(scene: Scene, t: float) -> dict[str, torch.Tensor]:
    """All surfels of the scene at time t in the world frame, decoded with the mean
    appearance: means (N, 3), quats (N, 4), scales (N, 2), opacities (N,), sh (N, S, 3)
    (actors' SH turned by their pose, see ``rotate_sh``)."""
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
            if node.track is None:
                quats, sh = dec.quats, dec.sh
            else:
                q_obj = rotmat_to_quat(Tt[None, :3, :3])[0]
                quats, sh = quat_multiply(q_obj.expand_as(dec.quats), dec.quats), rotate_sh(dec.sh, Tt[:3, :3])
            parts.append((means, quats, dec.scales, dec.opacities, sh))
    return {k: torch.cat([p[i] for p in parts]) for i, k in enumerate(("means", "quats", "scales", "opacities", "sh"))}


def export_ply(scene_path, ply_path, t: float | None = None) -> int:
    """Write the scene at time t (default: its start) to ``ply_path``; returns the surfel count."""
    scene = load_scene(scene_path)
    t = scene.time_range[0] if t is None else float(t)
    s = world_surfels(scene, t)
    colors = 0.5 + SH_C0 * s["sh"][:, 0]
    rest = s["sh"][:, 1:] if s["sh"].shape[1] > 1 else None
    write_gaussian_ply(Path(ply_path), s["means"], s["quats"], s["scales"], s["opacities"], colors, rest)
    return int(s["means"].shape[0])
