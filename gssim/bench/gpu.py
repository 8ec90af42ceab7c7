"""`gssim bench render|lidar --device cuda`: the CUDA backend's throughput on a GPU.

Camera: street surfels (default 1M) through a 1920x1080 pinhole camera, ``gssim.render``
end to end (rays, preparation, binning, compositing), forward and backward; in the same
run gsplat's CUDA ``rasterization_2dgs`` (gsplat 1.5.3, RGB + expected depth) on the same
surfels and camera, and the ratio of the two.  LiDAR: a 128x2048 sweep (VLS-128) of the
LiDAR street scene, forward and backward, still and while driving.  Times are medians of
CUDA-synchronised wall clock after a warm-up run."""
from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Callable

import torch

from gssim.core.surfels import Surfels
from gssim.render import native, render


def require_cuda() -> torch.device:
    """The GPU to benchmark on, or SystemExit saying why there is none."""
    if not torch.cuda.is_available():
        raise SystemExit(f"gssim bench --device cuda: torch {torch.__version__} sees no CUDA GPU")
    if not native.available("cuda"):
        raise SystemExit("gssim bench --device cuda: this build of gssim has no CUDA kernels; install a CUDA torch "
                         "and a CUDA toolkit, then `pip install --no-build-isolation -e .` (setup.py builds them)")
    return torch.device("cuda")


def cuda_time(fn: Callable[[], object], repeats: int, setup: Callable[[], object] | None = None) -> float:
    """Median seconds of fn() (after one warm-up run), synchronised; setup() runs off the clock."""
    times = []
    for i in range(repeats + 1):
        if setup is not None:
            setup()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _leaves(surfels: Surfels) -> list[torch.Tensor]:
    return [getattr(surfels, f).detach().clone().requires_grad_(True)
            for f in ("means", "quats", "scales", "opacities", "features")]


def forward_backward(render_fn: Callable[[list[torch.Tensor]], torch.Tensor], surfels: Surfels,
                     repeats: int) -> tuple[float, float]:
    """Median seconds of a no-grad forward and of the backward of render_fn's loss."""
    leaves = _leaves(surfels)
    with torch.no_grad():
        fwd = cuda_time(lambda: render_fn(leaves), repeats)
    state = {}

    def build():
        state["loss"] = render_fn(leaves)

    bwd = cuda_time(lambda: torch.autograd.grad(state["loss"], leaves, allow_unused=True), repeats, setup=build)
    return fwd, bwd


def render_main(args: argparse.Namespace) -> None:
    """``gssim bench render --device cuda``."""
    from gssim.bench.gsplat_peer import gsplat_inputs
    from gssim.bench.render import _camera
    from gssim.bench.street import street_camera_pose, street_surfels

    dev = require_cuda()
    n = args.surfels or 1_000_000
    width, height = args.width or 1920, args.height or 1080
    cam = _camera("pinhole", width, height)
    T = street_camera_pose()
    surfels = street_surfels(n).to(dev)
    print(f"gssim bench render --device cuda: {torch.cuda.get_device_name(dev)}, {n} street surfels, "
          f"{width}x{height} pinhole, median of {args.repeats}")
    mp = width * height / 1e6

    def ours(leaves):
        out = render(Surfels(*leaves), cam, T, backend="cuda")
        return out.color.sum() + out.depth.mean()

    fwd, bwd = forward_backward(ours, surfels, args.repeats)
    print(f"  gssim cuda   : forward {fwd * 1e3:8.2f} ms {mp / fwd:8.1f} MP/s | backward {bwd * 1e3:8.2f} ms "
          f"{mp / bwd:8.1f} MP/s")
    try:
        from gsplat import rasterization_2dgs
    except ImportError as err:
        print(f"  peer skipped: gsplat is not installed ({err}); `pip install gsplat==1.5.3`")
        return

    def peer(leaves):
        a = gsplat_inputs(Surfels(*leaves), cam, T)
        a["viewmats"], a["Ks"] = a["viewmats"].to(dev), a["Ks"].to(dev)
        colors, alphas, *_ = rasterization_2dgs(**a, render_mode="RGB+ED")
        return colors[..., :3].sum() + colors[..., 3].mean()

    p_fwd, p_bwd = forward_backward(peer, surfels, args.repeats)
    print(f"  gsplat 2DGS  : forward {p_fwd * 1e3:8.2f} ms {mp / p_fwd:8.1f} MP/s | backward {p_bwd * 1e3:8.2f} ms "
          f"{mp / p_bwd:8.1f} MP/s")
    print(f"  gssim / gsplat time ratio: forward {fwd / p_fwd:.2f}, backward {bwd / p_bwd:.2f} "
          f"(<= 1.0: gssim not slower)")


def lidar_main(args: argparse.Namespace) -> None:
    """``gssim bench lidar --device cuda``."""
    from gssim.bench.lidar import SWEEPS, lidar_pose, moving_pose, street_scene
    from gssim.sensors.lidar import SpinningLidar

    dev = require_cuda()
    T = lidar_pose()
    surfels = street_scene(args.surfels, args.seed).to(dev)
    print(f"gssim bench lidar --device cuda: {torch.cuda.get_device_name(dev)}, {args.surfels} surfels, "
          f"median of {args.repeats}")
    for name in (s.strip() for s in args.sweeps.split(",") if s.strip()):
        preset, cols = SWEEPS[name]
        lidar = SpinningLidar.preset(preset, azimuth_resolution_deg=360.0 / cols)
        rays = lidar.rows * lidar.cols / 1e6
        T_end = moving_pose(T, 15.0 * lidar.sweep_duration_s, math.degrees(0.3 * lidar.sweep_duration_s))
        for label, end in (("still", None), ("driving 15 m/s", T_end)):
            def sweep(leaves, end=end):
                out = render(Surfels(*leaves), lidar, T, end, backend="cuda")
                return out.range.sum() + out.features.sum()

            fwd, bwd = forward_backward(sweep, surfels, args.repeats)
            print(f"  {name} {label:15s}: forward {fwd * 1e3:8.2f} ms {rays / fwd:7.1f} Mrays/s | backward "
                  f"{bwd * 1e3:8.2f} ms {rays / bwd:7.1f} Mrays/s")
