"""Quaternions, pose interpolation and rigidity checks."""
import math

import pytest
import torch

from gssim.core.transforms import (check_rigid, interpolate_pose, invert_pose, quat_to_rotmat, rotmat_to_quat,
                                   transform_points)


def test_quaternion_round_trip():
    q = torch.randn(100, 4, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)
    R = quat_to_rotmat(q)
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(100, 3, 3))
    torch.testing.assert_close(rotmat_to_quat(R), q)


def test_rotation_about_z():
    a = 0.3
    q = torch.tensor([math.cos(a / 2), 0, 0, math.sin(a / 2)], dtype=torch.float64)
    expected = torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]],
                            dtype=torch.float64)
    torch.testing.assert_close(quat_to_rotmat(q), expected)


def test_interpolate_pose_halfway():
    T0 = torch.eye(4, dtype=torch.float64)
    T1 = torch.eye(4, dtype=torch.float64)
    T1[:3, :3] = quat_to_rotmat(torch.tensor([math.cos(0.5), 0, 0, math.sin(0.5)], dtype=torch.float64))
    T1[:3, 3] = torch.tensor([2.0, -4.0, 1.0])
    mid = interpolate_pose(T0, T1, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(mid[0], T0)
    torch.testing.assert_close(mid[2], T1)
    torch.testing.assert_close(mid[1, :3, 3], torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    half = quat_to_rotmat(torch.tensor([math.cos(0.25), 0, 0, math.sin(0.25)], dtype=torch.float64))
    torch.testing.assert_close(mid[1, :3, :3], half)


def test_invert_and_transform():
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3] = quat_to_rotmat(torch.tensor([0.5, 0.5, 0.5, 0.5], dtype=torch.float64))
    T[:3, 3] = torch.tensor([1.0, 2.0, 3.0])
    p = torch.randn(10, 3, dtype=torch.float64)
    torch.testing.assert_close(transform_points(invert_pose(T), transform_points(T, p)), p)


@pytest.mark.parametrize("bad, msg", [
    (torch.eye(3), "4x4"),
    (torch.full((4, 4), float("nan")), "NaN"),
    (torch.diag(torch.tensor([1.0, 1.0, -1.0, 1.0])), "orthonormal"),
    (torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]), "last row"),
])
def test_check_rigid_names_the_problem(bad, msg):
    with pytest.raises(ValueError, match=msg):
        check_rigid(bad, "T_world_ego")
