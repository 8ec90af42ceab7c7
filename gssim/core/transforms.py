"""Rigid transforms and quaternions (w, x, y, z), in torch.

Poses are 4x4 matrices ``T_a_b`` mapping points of frame b into frame a.
"""
from __future__ import annotations

import torch

Tensor = torch.Tensor


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices of unit quaternions.

    quats: (..., 4) (w, x, y, z), unit norm.  Returns (..., 3, 3).
    """
    w, x, y, z = quats.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def rotmat_to_quat(rot: Tensor) -> Tensor:
    """Unit quaternions (w, x, y, z) with w >= 0 of rotation matrices (..., 3, 3)."""
    m = rot
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # Four candidate solutions; pick the numerically best per matrix (Shepperd's method).
    cands = torch.stack([
        torch.stack([1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + 2 * m[..., 0, 0] - trace, m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 + 2 * m[..., 1, 1] - trace, m[..., 1, 2] + m[..., 2, 1]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], 1 + 2 * m[..., 2, 2] - trace], -1),
    ], -2)
    diag = torch.stack([trace, m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]], -1)
    best = diag.argmax(-1, keepdim=True)
    q = torch.gather(cands, -2, best[..., None].expand(best.shape + (4,))).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def quat_slerp(q0: Tensor, q1: Tensor, s: Tensor) -> Tensor:
    """Spherical interpolation between unit quaternions q0, q1 (4,) at fractions s (M,)."""
    dot = (q0 * q1).sum()
    q1 = torch.where(dot < 0, -q1, q1)
    dot = dot.abs().clamp(max=1.0)
    theta = torch.arccos(dot)
    s = s[:, None]
    if float(theta) < 1e-6:
        q = (1 - s) * q0 + s * q1
    else:
        sin_t = torch.sin(theta)
        q = (torch.sin((1 - s) * theta) * q0 + torch.sin(s * theta) * q1) / sin_t
    return q / q.norm(dim=-1, keepdim=True)


def interpolate_pose(T0: Tensor, T1: Tensor, s: Tensor) -> Tensor:
    """Poses between T0 (s=0) and T1 (s=1): translation lerp, rotation slerp.

    T0, T1: (4, 4); s: (M,) fractions.  Returns (M, 4, 4).
    """
    q = quat_slerp(rotmat_to_quat(T0[:3, :3]), rotmat_to_quat(T1[:3, :3]), s)
    out = torch.zeros(s.shape[0], 4, 4, dtype=T0.dtype, device=T0.device)
    out[:, :3, :3] = quat_to_rotmat(q)
    out[:, :3, 3] = (1 - s[:, None]) * T0[:3, 3] + s[:, None] * T1[:3, 3]
    out[:, 3, 3] = 1
    return out


def check_rigid(T: Tensor, name: str = "pose", tol: float = 1e-4) -> None:
    """Raise ValueError unless T is a finite (4, 4) rigid transform."""
    if tuple(T.shape) != (4, 4):
        raise ValueError(f"{name}: expected a 4x4 matrix, got shape {tuple(T.shape)}")
    if not torch.isfinite(T).all():
        raise ValueError(f"{name}: contains NaN or inf")
    R = T[:3, :3].double()
    eye = torch.eye(3, dtype=torch.float64, device=T.device)
    if (R @ R.T - eye).abs().max() > tol or abs(float(torch.linalg.det(R)) - 1) > tol:
        raise ValueError(f"{name}: rotation part is not orthonormal with det +1")
    bottom = T[3].double().cpu()
    if (bottom - torch.tensor([0, 0, 0, 1.0], dtype=torch.float64)).abs().max() > tol:
        raise ValueError(f"{name}: last row must be [0, 0, 0, 1], got {bottom.tolist()}")


def invert_pose(T: Tensor) -> Tensor:
    """Inverse of rigid transforms (..., 4, 4)."""
    R = T[..., :3, :3]
    t = T[..., :3, 3:]
    out = torch.zeros_like(T)
    out[..., :3, :3] = R.transpose(-1, -2)
    out[..., :3, 3:] = -R.transpose(-1, -2) @ t
    out[..., 3, 3] = 1
    return out


def transform_points(T: Tensor, points: Tensor) -> Tensor:
    """Apply a (4, 4) transform to points (..., 3)."""
    return points @ T[:3, :3].T + T[:3, 3]
