"""`gssim bench render`: camera rasterizer throughput, native vs the torch reference."""
from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import time

import torch

from gssim.bench import median_time, preparation_times
from gssim.bench.street import street_camera_pose, street_surfels
from gssim.core.surfels import Surfels
from gssim.render.api import rasterize
from gssim.render.pipeline import build_rays, prepare_surfels
from gssim.sensors import FisheyeCamera, PinholeCamera
from gssim.sensors.base import Sensor


def _camera(model: str, width: int, height: int, rolling_shutter_s: float = 0.0) -> Sensor:
    if model == "pinhole":
        return PinholeCamera(width, height, 0.625 * width, 0.625 * width, width / 2, height / 2,
                             rolling_shutter_s=rolling_shutter_s)
    return FisheyeCamera(width, height, 0.3 * width, 0.3 * width, width / 2, height / 2,
                         distortion=[0.02, 0.005, 0.0, 0.0], rolling_shutter_s=rolling_shutter_s)


def moving_pose(T: torch.Tensor, metres: float = 0.3, yaw_deg: float = 1.0) -> torch.Tensor:
    """The camera pose at the end of a readout: ``metres`` forward and turned ``yaw_deg``
    about the world z axis (a car at 10 m/s turning, over a 30 ms readout)."""
    a = math.radians(yaw_deg)
    turn = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]],
                        dtype=torch.float64)
    T1 = T.clone()
    T1[:3, :3] = turn @ T[:3, :3]
    T1[0, 3] += metres
    return T1


def time_backend(surfels: Surfels, cam: Sensor, backend: str, repeats: int) -> dict:
    """Median forward and backward seconds of one backend, and the work it did."""
    T = street_camera_pose()
    grid = build_rays(cam, T)
    params = [surfels.means, surfels.quats, surfels.scales, surfels.opacities, surfels.features]
    leaves = [p.detach().requires_grad_(True) for p in params]
    s = Surfels(*leaves)
    gen = torch.Generator().manual_seed(0)
    weights = [torch.rand(cam.rows * cam.cols, *shape, generator=gen) for shape in ((s.features.shape[1],), (), (),
                                                                                     (3,), ())]

    def forward():
        geom = prepare_surfels(s, cam, grid)
        return geom, rasterize(grid, geom, cam, backend)

    def loss_of(outs):
        return sum((o * w).sum() for o, w in zip(outs, weights))

    with torch.no_grad():
        t_fwd = median_time(forward, repeats)
        geom, _ = forward()
    t_prep, t_prep_torch = preparation_times(s, cam, grid, repeats)
    with torch.no_grad():
        t_raster = median_time(lambda: rasterize(grid, geom, cam, backend), repeats)
    state = {}

    def make_graph():
        state["loss"] = loss_of(forward()[1])

    def backward():
        torch.autograd.grad(state["loss"], leaves)

    times = []
    for _ in range(repeats + 1):
        make_graph()
        t0 = time.perf_counter()
        backward()
        times.append(time.perf_counter() - t0)
    t_bwd = statistics.median(times[1:])
    pairs = int(((geom.records[:, 2] - geom.records[:, 1] + 1) * (geom.records[:, 4] - geom.records[:, 3] + 1))
                .sum()) if geom.records.shape[0] else 0
    return {"fwd": t_fwd, "bwd": t_bwd, "prep": t_prep, "prep_torch": t_prep_torch, "raster": t_raster, "pixels": cam.rows * cam.cols, "records": geom.records.shape[0],
            "pairs": pairs, "dense_pairs": cam.rows * cam.cols * geom.records.shape[0]}


def peak_memory_forward(n: int, width: int, height: int) -> tuple[float, float]:
    """Peak resident memory (GB) of a fresh process before and after a no-grad native
    forward of n street surfels at width x height (measured in a child process)."""
    # VmHWM (peak resident set) of the child's own address space; ru_maxrss would carry
    # the parent's peak over the exec.
    code = (
        "import torch\n"
        "def hwm():\n"
        "    return int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"
        "from gssim.bench.render import _camera\n"
        "from gssim.bench.street import street_camera_pose, street_surfels\n"
        "from gssim.render.api import rasterize\n"
        "from gssim.render.pipeline import build_rays, prepare_surfels\n"
        f"surfels = street_surfels({n}, seed=1)\n"
        "base = hwm()\n"
        f"cam = _camera('pinhole', {width}, {height})\n"
        "with torch.no_grad():\n"
        "    grid = build_rays(cam, street_camera_pose())\n"
        "    rasterize(grid, prepare_surfels(surfels, cam, grid), cam, 'cpu')\n"
        "print(base, hwm())\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    base_kb, peak_kb = (int(v) for v in out.stdout.split()[-2:])
    return base_kb / 1024 ** 2, peak_kb / 1024 ** 2


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("render", help="camera rasterizer throughput (native vs torch reference)")
    p.add_argument("--surfels", type=int, default=100_000, help="surfels in the street scene")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--models", default="pinhole,fisheye", help="comma-separated: pinhole, fisheye")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--ref-width", type=int, default=64, help="image width of the reference comparison")
    p.add_argument("--ref-surfels", type=int, default=4000, help="surfels of the reference comparison")
    p.add_argument("--rolling-shutter", type=float, default=0.03,
                   help="readout (s) of a moving rolling-shutter camera whose preparation is also timed (0: skip)")
    p.add_argument("--memory", action="store_true", help="also measure peak memory of a 1M-surfel 1280x720 forward")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    print(f"gssim bench render: {args.surfels} street surfels, {args.width}x{args.height}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    surfels = street_surfels(args.surfels)
    for model in args.models.split(","):
        cam = _camera(model, args.width, args.height)
        r = time_backend(surfels, cam, "cpu", args.repeats)
        mp = r["pixels"] / 1e6
        print(f"  {model:8s} native cpu : forward {r['fwd'] * 1e3:8.1f} ms  {mp / r['fwd']:7.2f} MP/s | "
              f"backward {r['bwd'] * 1e3:8.1f} ms  {mp / r['bwd']:7.2f} MP/s | bwd/fwd {r['bwd'] / r['fwd']:.2f} | "
              f"{r['records']} visible surfels, {r['pairs'] / r['pixels']:.1f} footprint cells/pixel")
        print(f"  {model:8s} forward split: preparation (geometry, projection, footprints) "
              f"{r['prep'] * 1e3:.1f} ms (torch reference path {r['prep_torch'] * 1e3:.1f} ms -> "
              f"{r['prep_torch'] / r['prep']:.1f}x) | native compositing op {r['raster'] * 1e3:.1f} ms = "
              f"{mp / r['raster']:.2f} MP/s")
        if args.rolling_shutter > 0:
            rs_cam = _camera(model, args.width, args.height, args.rolling_shutter)
            T = street_camera_pose()
            grid = build_rays(rs_cam, T, moving_pose(T))
            nat, ref = preparation_times(surfels, rs_cam, grid, args.repeats)
            print(f"  {model:8s} rolling shutter ({args.rolling_shutter * 1e3:g} ms readout, moving 0.3 m and 1 deg): "
                  f"preparation {nat * 1e3:.1f} ms (torch reference path {ref * 1e3:.1f} ms -> {ref / nat:.1f}x)")
        # Same input for both backends: a small image of a subset the dense reference can hold.
        rw = args.ref_width
        small_cam = _camera(model, rw, max(1, rw * args.height // args.width))
        small = street_surfels(args.ref_surfels, seed=0)
        nat = time_backend(small, small_cam, "cpu", args.repeats)
        ref = time_backend(small, small_cam, "torch", max(1, args.repeats // 2))
        print(f"  {model:8s} same input ({small_cam.cols}x{small_cam.rows}, {args.ref_surfels} surfels, "
              f"{ref['dense_pairs'] / 1e6:.1f} M ray-surfel pairs): reference forward {ref['fwd'] * 1e3:.1f} ms, "
              f"backward {ref['bwd'] * 1e3:.1f} ms; native forward {nat['fwd'] * 1e3:.2f} ms, backward "
              f"{nat['bwd'] * 1e3:.2f} ms -> native/reference speed-up forward {ref['fwd'] / nat['fwd']:.0f}x, "
              f"backward {ref['bwd'] / nat['bwd']:.0f}x; compositing ops alone {ref['raster'] / nat['raster']:.0f}x")
        print(f"  {model:8s} per ray-surfel pair: reference {ref['dense_pairs'] / ref['fwd'] / 1e6:.1f} M pairs/s "
              f"forward; native at full size {r['pixels'] * r['records'] / r['fwd'] / 1e6:.0f} M pairs/s "
              f"(dense-equivalent) -> {r['pixels'] * r['records'] / r['fwd'] / (ref['dense_pairs'] / ref['fwd']):.0f}x")
    if args.memory:
        base, peak = peak_memory_forward(1_000_000, 1280, 720)
        print(f"  peak resident memory, 1M surfels 1280x720 native forward: {peak:.2f} GB for the process "
              f"({base:.2f} GB with torch loaded and the surfels built, {peak - base:.2f} GB more for the render)")
