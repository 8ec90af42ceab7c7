"""`gssim bench render`: camera rasterizer throughput, native vs the torch reference.

Also, in the same run: a moving rolling-shutter camera against a still one, the growth of
cost with the scene around the same view (1x and 10x street, with view culling and
spatial chunks), a training-sized step (forward + backward of a 320x180 image), and a
peer (gsplat's 2DGS torch path on the same surfels and camera)."""
from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import time

import torch

from gssim.bench import median_time, preparation_times
from gssim.bench.street import long_street, street_camera_pose, street_surfels
from gssim.core.surfels import Surfels
from gssim.render.api import rasterize, render
from gssim.render.culling import SurfelChunks
from gssim.render.pipeline import build_rays, prepare_surfels
from gssim.sensors import FisheyeCamera, PinholeCamera
from gssim.sensors.base import Sensor


def _camera(model: str, width: int, height: int, **kw) -> Sensor:
    if model == "pinhole":
        return PinholeCamera(width, height, 0.625 * width, 0.625 * width, width / 2, height / 2, **kw)
    return FisheyeCamera(width, height, 0.3 * width, 0.3 * width, width / 2, height / 2,
                         distortion=[0.02, 0.005, 0.0, 0.0], **kw)


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


def time_render(scene, cam: Sensor, T, T_end=None, repeats: int = 3, backward: bool = False,
                cull: bool = True) -> dict:
    """Median seconds of ``gssim.render`` end to end (rays to images) and, with
    ``backward``, of the backward pass of a loss on every output (forward off the clock)."""
    with torch.no_grad():
        fwd = median_time(lambda: render(scene, cam, T, T_end, backend="cpu", cull=cull), repeats)
    out = {"fwd": fwd, "pixels": cam.rows * cam.cols}
    if backward:
        s = scene.surfels if isinstance(scene, SurfelChunks) else scene
        leaves = [getattr(s, f).detach().requires_grad_(True)
                  for f in ("means", "quats", "scales", "opacities", "features")]
        ls = Surfels(*leaves)
        times = []
        for i in range(repeats + 1):
            o = render(ls, cam, T, T_end, backend="cpu", cull=cull)
            loss = o.color.sum() + o.alpha.sum() + 0.01 * o.depth.sum() + o.normal.sum()
            t0 = time.perf_counter()
            torch.autograd.grad(loss, leaves)
            if i:
                times.append(time.perf_counter() - t0)
        out["bwd"] = statistics.median(times)
    return out


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
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: the CUDA backend and gsplat's CUDA rasterization_2dgs on a GPU (gssim/bench/gpu.py)")
    p.add_argument("--surfels", type=int, default=None, help="surfels in the street scene (100000; cuda: 1000000)")
    p.add_argument("--width", type=int, default=None, help="image width (640; cuda: 1920)")
    p.add_argument("--height", type=int, default=None, help="image height (360; cuda: 1080)")
    p.add_argument("--models", default="pinhole,fisheye", help="comma-separated: pinhole, fisheye")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--ref-width", type=int, default=64, help="image width of the reference comparison")
    p.add_argument("--ref-surfels", type=int, default=4000, help="surfels of the reference comparison")
    p.add_argument("--rolling-shutter", type=float, default=0.03,
                   help="readout (s) of a moving rolling-shutter camera whose preparation is also timed (0: skip)")
    p.add_argument("--memory", action="store_true", help="also measure peak memory of a 1M-surfel 1280x720 forward")
    p.add_argument("--no-moving", action="store_true", help="skip the moving rolling-shutter camera")
    p.add_argument("--growth", type=int, default=10, help="growth case: the street this many times as long (0: skip)")
    p.add_argument("--far", type=float, default=200.0, help="far plane (m) of the camera in the growth case's "
                                                           "second measurement")
    p.add_argument("--train-size", default="320x180", help="image of the training-sized step ('' to skip)")
    p.add_argument("--peer", action="store_true", help="also time gsplat's 2DGS torch path on the same input")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    if args.device == "cuda":
        from gssim.bench.gpu import render_main
        return render_main(args)
    args.surfels, args.width, args.height = args.surfels or 100_000, args.width or 640, args.height or 360
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
            rs_cam = _camera(model, args.width, args.height, rolling_shutter_s=args.rolling_shutter)
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
    if not args.no_moving:
        report_moving(surfels, args.width, args.height, args.repeats)
    if args.growth > 1:
        report_growth(args.surfels, args.growth, args.width, args.height, args.far, args.repeats)
    if args.train_size:
        w, h = (int(v) for v in args.train_size.lower().split("x"))
        cam = _camera("pinhole", w, h)
        r = time_render(surfels, cam, street_camera_pose(), repeats=args.repeats, backward=True)
        print(f"  training-sized step ({w}x{h} pinhole, {args.surfels} surfels): forward {r['fwd'] * 1e3:.1f} ms "
              f"+ backward {r['bwd'] * 1e3:.1f} ms = {(r['fwd'] + r['bwd']) * 1e3:.1f} ms "
              f"({r['pixels'] / (r['fwd'] + r['bwd']) / 1e6:.2f} MP/s forward+backward)")
    if args.peer:
        report_peer(args.ref_surfels, args.ref_width, args.height * args.ref_width // args.width, args.repeats)
    if args.memory:
        base, peak = peak_memory_forward(1_000_000, 1280, 720)
        print(f"  peak resident memory, 1M surfels 1280x720 native forward: {peak:.2f} GB for the process "
              f"({base:.2f} GB with torch loaded and the surfels built, {peak - base:.2f} GB more for the render)")


def report_moving(surfels: Surfels, width: int, height: int, repeats: int) -> None:
    """A rolling-shutter camera (30 ms readout) on a car at 15 m/s turning at 0.3 rad/s,
    against the same camera still."""
    T = street_camera_pose()
    still = time_render(surfels, _camera("pinhole", width, height), T, repeats=repeats, backward=True)
    rs = _camera("pinhole", width, height, rolling_shutter_s=0.03)
    moving = time_render(surfels, rs, T, moving_pose(T, 15.0 * 0.03, math.degrees(0.3 * 0.03)), repeats=repeats,
                         backward=True)
    print(f"  moving rolling shutter (30 ms readout, 15 m/s, 0.3 rad/s): forward {moving['fwd'] * 1e3:.1f} ms, "
          f"backward {moving['bwd'] * 1e3:.1f} ms; still pinhole forward {still['fwd'] * 1e3:.1f} ms, backward "
          f"{still['bwd'] * 1e3:.1f} ms -> moving / still = {moving['fwd'] / still['fwd']:.2f}x forward, "
          f"{moving['bwd'] / still['bwd']:.2f}x backward")


def report_growth(n: int, factor: int, width: int, height: int, far: float, repeats: int) -> None:
    """The same view of the street and of the street ``factor`` times as long around it."""
    T = street_camera_pose()
    small, big = long_street(1, n), long_street(factor, n)
    chunks = SurfelChunks(big)
    for far_m in (math.inf, far):
        cam = _camera("pinhole", width, height, far=far_m)
        base = time_render(small, cam, T, repeats=repeats)["fwd"]
        plain = time_render(big, cam, T, repeats=repeats, cull=False)["fwd"]
        culled = time_render(big, cam, T, repeats=repeats)["fwd"]
        chunked = time_render(chunks, cam, T, repeats=repeats)["fwd"]
        print(f"  growth, far plane {far_m:g} m: {n} surfels {base * 1e3:.1f} ms; {factor}x street ({factor * n} "
              f"surfels): without culling {plain * 1e3:.1f} ms ({plain / base:.2f}x), view culling "
              f"{culled * 1e3:.1f} ms ({culled / base:.2f}x), {len(chunks)} chunks {chunked * 1e3:.1f} ms "
              f"({chunked / base:.2f}x)")


def report_peer(n: int, width: int, height: int, repeats: int) -> None:
    """gssim's native backend against gssim's peer, gsplat's 2DGS torch path, on one input."""
    from gssim.bench.gsplat_peer import time_gsplat_2dgs
    surfels = street_surfels(n, seed=0)
    cam = _camera("pinhole", width, max(1, height))
    T = street_camera_pose()
    ours = time_render(surfels, cam, T, repeats=repeats, backward=True)
    peer = time_gsplat_2dgs(surfels, cam, T, repeats=max(1, repeats // 2), budget_s=120.0)
    print(f"  peer: gsplat 1.5.3 2DGS torch path on the CPU ({cam.cols}x{cam.rows}, {n} surfels): forward "
          f"{peer['fwd'] * 1e3:.1f} ms, backward {peer['bwd'] * 1e3:.1f} ms; gssim native forward "
          f"{ours['fwd'] * 1e3:.2f} ms, backward {ours['bwd'] * 1e3:.2f} ms -> gssim / gsplat = "
          f"{peer['fwd'] / ours['fwd']:.0f}x forward, {peer['bwd'] / ours['bwd']:.0f}x backward")
