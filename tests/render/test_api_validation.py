"""The render API at its edges: every malformed argument is a named error raised before
any work, and extreme-but-valid surfels render correctly with finite gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import gssim
from gssim.render import native

BACKENDS = ["torch"] + (["cpu"] if native.available("cpu") else [])
N = 2


def fields(**kw):
    f = dict(means=torch.tensor([[0.0, 0.0, 3.0], [0.3, -0.2, 4.0]]),
             quats=torch.tensor([[0.9, 0.3, -0.2, 0.1], [1.0, 0.0, 0.2, 0.0]]),
             scales=torch.tensor([[0.5, 0.3], [0.4, 0.6]]), opacities=torch.tensor([0.8, 0.6]),
             features=torch.tensor([[1.0, 0.5, 0.2], [0.1, 0.9, 0.3]]))
    f.update(kw)
    return f


def surfels(**kw):
    return gssim.Surfels(**fields(**kw))


def camera():
    return gssim.PinholeCamera(16, 12, 12.0, 12.0, 8.0, 6.0)


EYE = torch.eye(4, dtype=torch.float64)

# (id, Surfels fields to replace, error type, message substring)
BAD_SURFELS = [
    ("means-meta", dict(means=torch.zeros(N, 3, device="meta")), ValueError, "Surfels.means: on the meta device"),
    ("quats-meta", dict(quats=torch.zeros(N, 4, device="meta")), ValueError, "Surfels.quats: on the meta device"),
    ("all-meta", {k: v.to("meta") for k, v in fields().items()}, ValueError, "Surfels.means: on the meta device"),
    ("scales-2x3", dict(scales=torch.ones(N, 3)), ValueError, "Surfels.scales: expected shape (N, 2) with N=2"),
    ("quats-2x2", dict(quats=torch.ones(N, 2)), ValueError, "Surfels.quats: expected shape (N, 4) with N=2"),
    ("opacities-2x1", dict(opacities=torch.ones(N, 1)), ValueError, "Surfels.opacities: expected shape (N,) with N=2"),
    ("means-3d", dict(means=torch.zeros(N, 3, 1)), ValueError, "Surfels.means: expected shape (N, 3)"),
    ("features-1d", dict(features=torch.zeros(N)), ValueError, "Surfels.features: expected shape (N, C)"),
    ("scales-1e-40", dict(scales=torch.full((N, 2), 1e-40)), ValueError, "Surfels.MIN_SCALE"),
    ("scales-1e-12", dict(scales=torch.tensor([[1.0, 1e-12], [1.0, 1.0]])), ValueError, "must be >= 1e-09"),
    ("scales-zero", dict(scales=torch.zeros(N, 2)), ValueError, "Surfels.scales"),
    ("quats-zero", dict(quats=torch.tensor([[0.0, 0, 0, 0], [1.0, 0, 0, 0]])), ValueError, "zero quaternion"),
    ("quats-inf", dict(quats=torch.tensor([[float("inf"), 0, 0, 0], [1.0, 0, 0, 0]])), ValueError, "NaN or inf"),
    ("means-float64", dict(means=torch.zeros(N, 3, dtype=torch.float64)), TypeError, "expected float32"),
    ("means-list", dict(means=[[0.0, 0.0, 3.0]] * N), TypeError, "expected a torch.Tensor"),
]


@pytest.mark.parametrize("bad, error, match", [r[1:] for r in BAD_SURFELS], ids=[r[0] for r in BAD_SURFELS])
def test_malformed_surfels_are_named(bad, error, match):
    with pytest.raises(error) as info:
        surfels(**bad)
    assert match in str(info.value)
    assert "(N, N)" not in str(info.value)


def _pose_with(t):
    T = np.eye(4)
    T[:3, 3] = t
    return T


# (id, render keyword arguments replacing the defaults, error type, message substring)
BAD_CALLS = [
    ("background-nan", dict(background=torch.tensor([float("nan"), 0.0, 0.0])), ValueError,
     "background must be finite; channel 0 is nan"),
    ("background-inf", dict(background=[0.0, 0.0, float("inf")]), ValueError, "channel 2 is inf"),
    ("background-string", dict(background="black"), TypeError, "background must be numbers"),
    ("background-bools", dict(background=torch.tensor([True, False, True])), TypeError, "dtype torch.bool"),
    ("background-complex", dict(background=torch.zeros(3, dtype=torch.complex64)), TypeError, "complex64"),
    ("background-meta", dict(background=torch.zeros(3, device="meta")), ValueError, "background is on the meta"),
    ("background-objects", dict(background=[None, 0.0, 0.0]), TypeError, "background must hold real numbers"),
    ("background-4-channels", dict(background=torch.zeros(4)), ValueError, "background must have shape (3,)"),
    ("pose-string", dict(T_world_sensor="identity"), TypeError, "T_world_sensor must be numbers"),
    ("pose-bools", dict(T_world_sensor=torch.eye(4, dtype=torch.bool)), TypeError, "dtype torch.bool"),
    ("pose-strings-in-lists", dict(T_world_sensor=[["1", "0", "0", "0"]] * 4), TypeError, "real numbers"),
    ("pose-meta", dict(T_world_sensor=torch.eye(4, device="meta")), ValueError, "T_world_sensor is on the meta"),
    ("pose-none", dict(T_world_sensor=None), TypeError, "T_world_sensor is required"),
    ("pose-3x3", dict(T_world_sensor=np.eye(3)), ValueError, "4x4"),
    ("pose-nan", dict(T_world_sensor=_pose_with([np.nan, 0, 0])), ValueError, "NaN or inf"),
    ("pose-translation-1e30", dict(T_world_sensor=_pose_with([1e30, 0, 0])), ValueError,
     "LIMITS.max_coordinate_m"),
    ("pose-end-string", dict(T_world_sensor_end="later"), TypeError, "T_world_sensor_end must be numbers"),
    ("pose-end-translation-1e300", dict(T_world_sensor_end=_pose_with([0, 0, 1e300])), ValueError,
     "T_world_sensor_end translation reaches 1e+300 m"),
    ("backend-bool", dict(backend=True), ValueError, "backend must be one of"),
    ("backend-none", dict(backend=None), ValueError, "backend must be one of"),
    ("sensor-string", dict(sensor="cam_front"), TypeError, "sensor must be a gssim sensor"),
    ("surfels-dict", dict(surfels=fields()), TypeError, "surfels must be gssim.Surfels"),
]


@pytest.mark.parametrize("kw, error, match", [r[1:] for r in BAD_CALLS], ids=[r[0] for r in BAD_CALLS])
def test_malformed_render_arguments_are_named(kw, error, match):
    args = dict(surfels=surfels(), sensor=camera(), T_world_sensor=EYE)
    args.update(kw)
    with pytest.raises(error) as info:
        gssim.render(**args)
    assert match in str(info.value)


def test_surfels_reassigned_to_the_meta_device_are_refused_by_render():
    s = surfels()
    for name in ("means", "quats", "scales", "opacities", "features"):
        setattr(s, name, getattr(s, name).to("meta"))
    with pytest.raises(ValueError, match="surfels are on the meta device"):
        gssim.render(s, camera(), EYE)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale", [1e20, 1e-20, 1e-35, 3e37])
def test_quaternion_scale_does_not_change_the_rotation(backend, scale):
    """q and q * scale are the same rotation: the norm must neither overflow (x 1e20 in
    float32) nor underflow (x 1e-20)."""
    ref = gssim.render(surfels(), camera(), EYE, backend=backend)
    scaled = gssim.render(surfels(quats=fields()["quats"] * scale), camera(), EYE, backend=backend)
    assert ref.alpha.max() > 0.5
    for name in ("color", "alpha", "depth", "normal"):
        torch.testing.assert_close(getattr(scaled, name), getattr(ref, name), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale", [gssim.Surfels.MIN_SCALE, 1e-6, 1e6])
def test_extreme_valid_scales_have_finite_gradients(backend, scale):
    f = {k: v.clone().requires_grad_(True) for k, v in fields(scales=torch.full((N, 2), scale)).items()}
    out = gssim.render(gssim.Surfels(**f), camera(), EYE, backend=backend, background=np.array([0.1, 0.2, 0.3]))
    loss = out.color.sum() + out.depth.sum() + out.alpha.sum() + out.normal.sum()
    loss.backward()
    for name, t in f.items():
        assert t.grad is not None and torch.isfinite(t.grad).all(), name
    assert all(torch.isfinite(getattr(out, k)).all() for k in ("color", "alpha", "depth", "normal"))


def test_poses_of_other_kinds_are_accepted():
    ref = gssim.render(surfels(), camera(), EYE, backend="torch")
    for pose in (np.eye(4), np.eye(4, dtype=np.float32), torch.eye(4), np.eye(4, dtype=np.int64).tolist()):
        out = gssim.render(surfels(), camera(), pose, backend="torch", background=[0, 0, 0])
        torch.testing.assert_close(out.color, ref.color)


def test_sensor_arguments_of_the_wrong_type_are_refused():
    with pytest.raises(TypeError, match="width must be a whole number, got bool"):
        gssim.PinholeCamera(True, True, 10.0, 10.0, 0.5, 0.5)
    with pytest.raises(TypeError, match="clockwise must be True or False"):
        gssim.SpinningLidar([0.0, 1.0], 1.0, clockwise="false")
