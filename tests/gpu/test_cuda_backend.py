"""The CUDA backend on a GPU (skipped without one): the same values and gradients as the
CPU backend and the torch reference for every sensor model, still and moving; the same
preparation records; a million surfels at 1920x1080; a few hundred training steps."""
from __future__ import annotations

import math

import pytest
import torch

import gssim
from gssim.bench.street import street_camera_pose, street_surfels
from gssim.render import native, pipeline
from gssim.render.pipeline import build_rays, prepare_surfels
from tests.render.test_native_prep import MOVING, coverage, moved, pose, random_surfels, records_of, sensors
from tests.render.test_rasterize import assert_grads_match, assert_images_match

pytestmark = pytest.mark.skipif(not (torch.cuda.is_available() and native.available("cuda")),
                                reason="needs a CUDA GPU and a build of gssim with its CUDA kernels")

CUDA = torch.device("cuda")
FIELDS = ("means", "quats", "scales", "opacities", "features")


def render_with_grads(surfels, sensor, T, T_end, backend, device):
    leaves = [getattr(surfels, f).detach().to(device).clone().requires_grad_(True) for f in FIELDS]
    out = gssim.render(gssim.Surfels(*leaves), sensor, T, T_end, backend=backend)
    values = {k: v for k, v in vars(out).items()}
    gen = torch.Generator().manual_seed(3)
    loss = sum((v * torch.rand(v.shape, generator=gen).to(device)).sum() for v in values.values())
    grads = torch.autograd.grad(loss, leaves)
    return {k: v.detach().cpu() for k, v in values.items()}, [g.cpu() for g in grads]


def image_shape(v: torch.Tensor) -> torch.Tensor:
    return v if v.dim() == 3 else v[..., None]


CASES = [(name, False) for name in sensors()] + [(name, True) for name in MOVING]


@pytest.mark.parametrize("name,moving", CASES)
def test_cuda_matches_cpu_backend(name, moving):
    sensor = MOVING[name]() if moving else sensors()[name]
    lidar = getattr(sensor, "kind", "camera") == "lidar"
    T = pose(11, lidar)
    surfels = random_surfels(800, 11, T, lidar)
    T_end = moved(T, 11) if moving else None
    cpu_vals, cpu_grads = render_with_grads(surfels, sensor, T, T_end, "cpu", "cpu")
    cu_vals, cu_grads = render_with_grads(surfels, sensor, T, T_end, "cuda", CUDA)
    assert float(cpu_vals["alpha"].max()) > 0.5
    for key in cpu_vals:
        assert_images_match(image_shape(cu_vals[key]), image_shape(cpu_vals[key]), key)
    for field, a, b in zip(FIELDS, cu_grads, cpu_grads):
        assert_grads_match(a, b, field)


@pytest.mark.parametrize("name", ["pinhole", "fisheye", "spinning"])
def test_cuda_matches_torch_reference(name):
    sensor = sensors()[name]
    lidar = getattr(sensor, "kind", "camera") == "lidar"
    T = pose(12, lidar)
    surfels = random_surfels(200, 12, T, lidar)
    ref_vals, ref_grads = render_with_grads(surfels, sensor, T, None, "torch", CUDA)
    cu_vals, cu_grads = render_with_grads(surfels, sensor, T, None, "cuda", CUDA)
    for key in ref_vals:
        assert_images_match(image_shape(cu_vals[key]), image_shape(ref_vals[key]), key)
    for field, a, b in zip(FIELDS, cu_grads, ref_grads):
        assert_grads_match(a, b, field)


@pytest.mark.parametrize("name,moving", CASES)
def test_cuda_preparation_matches_cpu(name, moving, monkeypatch):
    """CUDA footprint records cover every cell the torch reference's do, and are the CPU
    backend's (the same double-precision maths; libm and FMA rounding may move a box edge
    that sits on a cell boundary, so a few records may differ)."""
    sensor = MOVING[name]() if moving else sensors()[name]
    lidar = getattr(sensor, "kind", "camera") == "lidar"
    T = pose(13, lidar)
    surfels = random_surfels(1000, 13, T, lidar)
    grid = build_rays(sensor, T, moved(T, 13) if moving else None)
    cpu = records_of(surfels, sensor, grid, True, monkeypatch)
    ref = records_of(surfels, sensor, grid, False, monkeypatch)
    monkeypatch.setattr(pipeline, "USE_NATIVE_PREP", True)
    with torch.no_grad():
        cu = prepare_surfels(surfels.to(CUDA), sensor, grid)
    assert cu.records.device.type == "cuda"
    rec = cu.records.cpu()
    n, rows, cols = len(surfels), sensor.rows, sensor.cols
    assert not (coverage(ref, n, rows, cols) & ~coverage(rec, n, rows, cols)).any()
    if rec.shape == cpu.shape:
        assert (rec == cpu).all(1).float().mean() >= 0.99
    else:
        assert abs(rec.shape[0] - cpu.shape[0]) <= max(2, cpu.shape[0] // 100)


def test_auto_backend_picks_cuda_for_cuda_tensors():
    sensor = sensors()["pinhole"]
    T = pose(14, False)
    s = random_surfels(300, 14, T, False).to(CUDA)
    a = gssim.render(s, sensor, T, backend="auto")
    b = gssim.render(s, sensor, T, backend="cuda")
    assert a.color.device.type == "cuda" and torch.equal(a.color, b.color)


def test_a_million_surfels_at_1080p():
    """1.2M street surfels, 1920x1080: tens of millions of tile pairs, no index overflow;
    the image equals the CPU backend's."""
    cam = gssim.PinholeCamera(1920, 1080, 1200.0, 1200.0, 960.0, 540.0)
    T = street_camera_pose()
    surfels = street_surfels(1_200_000, seed=2)
    with torch.no_grad():
        cu = gssim.render(surfels.to(CUDA), cam, T, backend="cuda")
        cpu = gssim.render(surfels, cam, T, backend="cpu")
        grid = build_rays(cam, T)
        rec = prepare_surfels(surfels.to(CUDA), cam, grid).records
    r = rec.long()
    pairs = int(((r[:, 2] // 16 - r[:, 1] // 16 + 1) * (r[:, 4] // 16 - r[:, 3] // 16 + 1)).sum())
    assert pairs > 5_000_000
    assert float(cpu.alpha.mean()) > 0.5
    for key in ("color", "alpha", "depth", "normal"):
        assert_images_match(image_shape(getattr(cu, key).cpu()), image_shape(getattr(cpu, key)), key)


def test_training_a_tiny_scene_on_cuda():
    """Three hundred Adam steps fitting perturbed surfels to renders of the true ones, on
    the GPU: the loss falls and the image PSNR rises."""
    cams = [gssim.PinholeCamera(96, 64, 80.0, 80.0, 48.0, 32.0)]
    T0 = street_camera_pose()
    poses = []
    for dx in (0.0, 0.5, 1.0):
        T = T0.clone()
        T[0, 3] += dx
        poses.append(T)
    truth = street_surfels(3000, seed=3).to(CUDA)
    with torch.no_grad():
        targets = [gssim.render(truth, cams[0], T, backend="cuda").color for T in poses]
    gen = torch.Generator().manual_seed(4)
    noise = lambda t, s: t + s * torch.randn(t.shape, generator=gen).to(CUDA)  # noqa: E731
    params = [noise(truth.means, 0.05), truth.quats.clone(), noise(truth.scales.log(), 0.3),
              noise(torch.logit(truth.opacities.clamp(1e-4, 1 - 1e-4)), 0.5), torch.rand_like(truth.features)]
    params = [p.detach().requires_grad_(True) for p in params]
    opt = torch.optim.Adam(params, lr=0.01)

    def psnr() -> float:
        with torch.no_grad():
            s = gssim.Surfels(params[0], params[1], params[2].exp(), params[3].sigmoid(), params[4])
            mse = torch.stack([(gssim.render(s, cams[0], T, backend="cuda").color - t).pow(2).mean()
                               for T, t in zip(poses, targets)]).mean()
        return float(-10 * torch.log10(mse))

    before = psnr()
    losses = []
    for step in range(300):
        T, target = poses[step % 3], targets[step % 3]
        s = gssim.Surfels(params[0], params[1], params[2].exp(), params[3].sigmoid(), params[4])
        loss = (gssim.render(s, cams[0], T, backend="cuda").color - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    after = psnr()
    assert math.isfinite(after)
    assert sum(losses[-30:]) < 0.5 * sum(losses[:30])
    assert after > before + 3.0
