"""The CUDA backend's sources (cuda_ext/cuda/*.cu and cuda_bindings.cpp), compiled against
an emulated CUDA runtime (tests/render/cuda_emulation/) and run on the CPU: binning,
forward and backward compositing and render preparation must give what the CPU backend
gives, for every sensor model, instant and moving.  This checks the kernels' logic (their
indexing, batching, barriers, warp sums and atomics) where no GPU is at hand; tests/gpu/
runs the same comparisons on a real GPU."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils import cpp_extension

import gssim
from gssim.render import native, pipeline
from gssim.render.pipeline import build_rays, prepare_surfels
from tests.render.test_rasterize import assert_grads_match, assert_images_match
from tests.render.test_native_prep import MOVING, moved, pose, random_surfels, sensors

pytestmark = pytest.mark.skipif(not (native.available() and native.footprints_available()),
                                reason="native extension not built")

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent / "cuda_emulation"


@pytest.fixture(scope="module")
def emu():
    """torch.ops.gssim_emu: the CUDA operators on the emulated runtime (CPU tensors);
    built once into torch's extension cache (rebuilt when a source changes)."""
    # Contract to FMAs where the CPU has them, as the CPU backend's vector code does (and
    # as nvcc does), so that rounding, and with it cut-off decisions, match it closely.
    cpuinfo = Path("/proc/cpuinfo")
    fma = cpuinfo.is_file() and " fma " in cpuinfo.read_text()
    flags = ["-O2", "-std=c++20"] + (["-mavx2", "-mfma", "-ffp-contract=fast"] if fma else [])
    cpp_extension.load(name="gssim_cuda_emulated" + ("_fma" if fma else ""), sources=[str(HERE / "emulated_ops.cpp")],
                       extra_include_paths=[str(ROOT / "cuda_ext" / "include"), str(ROOT / "cuda_ext"), str(HERE)],
                       extra_cflags=flags, is_python_module=False)
    return torch.ops.gssim_emu


def raster_args(surfels, sensor, T, T_end=None):
    grid = build_rays(sensor, T, T_end)
    with torch.no_grad():
        g = prepare_surfels(surfels, sensor, grid)
    th, tw = sensor.tile_shape
    return (grid.rays_o, grid.rays_d, grid.rows, grid.cols, g.means.detach(), g.axis_u.contiguous(),
            g.axis_v.contiguous(), g.normals.contiguous(), g.opacities.detach(), g.features.detach(),
            g.means2d.contiguous(), g.depth_keys, g.records, th, tw, sensor.t_min, sensor.t_max)


def case(name: str, moving: bool, n: int = 400, channels: int = 3):
    sensor = MOVING[name]() if moving else sensors()[name]
    lidar = getattr(sensor, "kind", "camera") == "lidar"
    T = pose(5, lidar)
    s = random_surfels(n, 5, T, lidar)
    if channels != 3:
        s = gssim.Surfels(s.means, s.quats, s.scales, s.opacities,
                          torch.rand(n, channels, generator=torch.Generator().manual_seed(1)))
    return raster_args(s, sensor, T, moved(T, 5) if moving else None)


CASES = [("pinhole", False), ("opencv", False), ("fisheye", False), ("spinning", False),
         ("spinning-unsorted-ccw", False), ("solid-state", False), ("pinhole", True), ("spinning", True),
         ("solid-state-rows", True)]


def check_forward(emu, args):
    cpu = torch.ops.gssim.rasterize_fwd(*args)
    cu = emu.rasterize_fwd(*args)
    rows, cols = args[2], args[3]
    for name, a, b in zip(("color", "alpha", "t", "normal", "median"), cpu[:5], cu[:5]):
        # The same sums; float rounding differs where the CPU build contracts to FMAs (and
        # may flip a cut-off or the filter branch on a few cells): the tolerance of the CPU
        # backend against the torch reference.
        assert_images_match(b.reshape(rows, cols, -1), a.reshape(rows, cols, -1), name)
    # The same front-to-back list per tile: the same positions saved for the backward pass.
    assert torch.equal(cpu[6], cu[6])                       # tile_offsets
    assert torch.equal(cpu[5][cpu[7].long()], cu[7])        # entries: CPU ranks -> records
    assert torch.equal(cpu[8], cu[8]) and torch.equal(cpu[9], cu[9])  # last, median_pos
    assert float(cpu[1].max()) > 0.5                        # the case renders something
    return cpu, cu


@pytest.mark.parametrize("name,moving", CASES)
def test_forward_and_backward_match_the_cpu_backend(emu, name, moving):
    args = case(name, moving)
    cpu, cu = check_forward(emu, args)
    gen = torch.Generator().manual_seed(2)
    grads = [torch.randn(t.shape, generator=gen) for t in cpu[:5]]
    saved = lambda out: (*out[5:8], out[1], *out[8:])  # noqa: E731  order, offsets, entries, alpha, last, median
    d_cpu = torch.ops.gssim.rasterize_bwd(*args, *saved(cpu), *grads)
    d_cu = emu.rasterize_bwd(*args, *saved(cu), *grads)
    names = ("means", "axis_u", "axis_v", "normals", "opacities", "features", "means2d")
    for name_, a, b in zip(names, d_cpu, d_cu):
        if name_ == "means2d" and not moving and float(a.abs().max()) == 0:
            continue  # no ray took the low-pass filter branch
        # Sums of the same terms in another order (warp sums, atomics), of rays whose
        # rounding differs where the CPU build contracts to FMAs: the tolerance of the CPU
        # backend against the torch reference.
        assert_grads_match(b, a, name_)


@pytest.mark.parametrize("channels", [1, 7, 40])
def test_channel_counts(emu, channels):
    check_forward(emu, case("pinhole", False, n=200, channels=channels))


def test_limits_give_clear_errors(emu):
    args = list(case("pinhole", False, n=50, channels=65))
    with pytest.raises(RuntimeError, match="at most 64 channels"):
        emu.rasterize_fwd(*args)
    args = list(case("pinhole", False, n=50))
    args[13], args[14] = 64, 32
    with pytest.raises(RuntimeError, match="at most 1024 cells"):
        emu.rasterize_fwd(*args)


def test_no_records(emu):
    args = list(case("pinhole", False, n=50))
    args[12] = args[12][:0]
    out = emu.rasterize_fwd(*args)
    assert float(out[1].abs().max()) == 0 and out[7].numel() == 0
    assert torch.equal(out[6], torch.zeros_like(out[6]))


def test_render_through_the_emulated_ops_matches_the_reference(emu, monkeypatch):
    """gssim.render with the CUDA ops in place of the CPU ones (autograd, saved state):
    values and gradients as the torch reference gives them."""
    sensor = MOVING["pinhole"]()
    T = pose(6, False)
    s = random_surfels(300, 6, T, False)
    outs = []
    for backend in ("cpu", "torch"):
        with monkeypatch.context() as m:
            if backend == "cpu":
                m.setattr(torch.ops.gssim, "rasterize_fwd", emu.rasterize_fwd)
                m.setattr(torch.ops.gssim, "rasterize_bwd", emu.rasterize_bwd)
            leaves = [t.detach().clone().requires_grad_(True) for t in (s.means, s.quats, s.scales, s.opacities,
                                                                        s.features)]
            out = gssim.render(gssim.Surfels(*leaves), sensor, T, moved(T, 6), backend=backend)
            loss = (out.color * torch.linspace(0, 1, 3)).sum() + out.depth.sum() + out.alpha.sum()
            outs.append((out.color.detach(), out.depth.detach(), torch.autograd.grad(loss, leaves)))
    (c0, d0, g0), (c1, d1, g1) = outs
    assert torch.allclose(c0, c1, atol=1e-5) and torch.allclose(d0, d1, atol=1e-4)
    for a, b in zip(g0, g1):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4 * float(b.abs().max()))


@pytest.mark.parametrize("name,moving", CASES + [("fisheye", True), ("spinning-unsorted-ccw", True)])
def test_preparation_matches_the_cpu_backend(emu, name, moving, monkeypatch):
    """Footprint records and moving sensors' cell poses from the CUDA kernels: identical."""
    calls = {"footprints": 0, "moving_pose_index": 0}

    def compare(op):
        real = getattr(torch.ops.gssim, op)

        def both(*a):
            out = real(*a)
            assert torch.equal(getattr(emu, op)(*a), out), op
            calls[op] += 1
            return out
        return both

    monkeypatch.setattr(pipeline, "USE_NATIVE_PREP", True)
    for op in calls:
        monkeypatch.setattr(torch.ops.gssim, op, compare(op))
    sensor = MOVING[name]() if moving else sensors()[name]
    lidar = getattr(sensor, "kind", "camera") == "lidar"
    T = pose(7, lidar)
    s = random_surfels(600, 7, T, lidar)
    with torch.no_grad():
        prepare_surfels(s, sensor, build_rays(sensor, T, moved(T, 7) if moving else None))
    assert calls["footprints"] == 1
    assert calls["moving_pose_index"] == (1 if moving else 0)
