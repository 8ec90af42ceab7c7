"""`gssim bench lidar`: spinning-LiDAR sweeps of a street scene.

Measures, in one run and on one machine:

* the native CPU backend, forward (``gssim.render``, everything from rays to range
  images) and backward (gradients of a loss on every output w.r.t. every Surfels
  tensor), in megarays per second, for a 128 x 2048 and a 32 x 1024 sweep;
* the torch reference on a sweep small enough for its dense rays x records tensors, with
  the native backend on the same input (ratio = same work);
* open3d's ``RaycastingScene`` on the equivalent triangle mesh (every surfel's support
  rectangle as two triangles), the way mesh-based LiDAR simulators cast rays;
* a sweep taken while the car drives at 15 m/s and turns at 0.3 rad/s, against a still one;
* the growth of cost with the scene around the same pose (1x and 10x street, view culling
  by range and spatial chunks).
"""
from __future__ import annotations

import argparse
import logging
import math
import statistics
import time
from dataclasses import dataclass

import torch

from gssim.bench import median_time, preparation_times
from gssim.bench.street import long_street
from gssim.core.surfels import Surfels
from gssim.render.culling import SurfelChunks
from gssim.render import native, render
from gssim.render.pipeline import build_rays
from gssim.sensors.base import ALPHA_MIN
from gssim.sensors.lidar import SpinningLidar

log = logging.getLogger(__name__)

# (label, preset, beams expected, columns)
SWEEPS = {"128x2048": ("vls-128", 2048), "32x1024": ("vlp-32c", 1024), "64x2048": ("hdl-64e", 2048)}


@dataclass
class Timing:
    """Median seconds over repeats and the rays per call."""

    seconds: float
    rays: int

    @property
    def mrays(self) -> float:
        return self.rays / self.seconds / 1e6


def lidar_pose(x: float = 40.0, height: float = 1.9) -> torch.Tensor:
    """(4, 4) float64 pose of a roof LiDAR on the street (LiDAR frame = world axes)."""
    T = torch.eye(4, dtype=torch.float64)
    T[:3, 3] = torch.tensor([x, 0.0, height], dtype=torch.float64)
    return T


def moving_pose(T: torch.Tensor, metres: float = 1.0, yaw_deg: float = 3.0) -> torch.Tensor:
    """The LiDAR pose at the end of a sweep: ``metres`` forward, turned ``yaw_deg`` about z."""
    a = math.radians(yaw_deg)
    T1 = T.clone()
    T1[:3, :3] = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0],
                               [0.0, 0.0, 1.0]], dtype=torch.float64) @ T[:3, :3]
    T1[0, 3] += metres
    return T1


def street_scene(n: int, seed: int) -> Surfels:
    from gssim.bench.street import street_surfels
    return street_surfels(n, seed=seed, channels=3)


def _loss(out) -> torch.Tensor:
    return out.range.sum() * 1e-2 + out.alpha.sum() + out.features.sum() + out.normal.sum() + \
        out.median_range.sum() * 1e-2


def time_forward(surfels: Surfels, lidar, T, backend: str, repeats: int) -> Timing:
    with torch.no_grad():
        render(surfels, lidar, T, backend=backend)          # warm-up
        sec = median_time(lambda: render(surfels, lidar, T, backend=backend), repeats)
    return Timing(sec, lidar.rows * lidar.cols)


def time_forward_split(surfels: Surfels, lidar, T, repeats: int) -> tuple[float, float, int]:
    """Median seconds of the forward's two halves on the native backend: preparation
    (surfel geometry, projection, footprint binning) and compositing (native op); and the
    number of footprint records."""
    from gssim.render.api import rasterize
    from gssim.render.pipeline import prepare_surfels
    prep, comp = [], []
    with torch.no_grad():
        grid = build_rays(lidar, T)
        for _ in range(repeats):
            t0 = time.perf_counter()
            geom = prepare_surfels(surfels, lidar, grid)
            t1 = time.perf_counter()
            rasterize(grid, geom, lidar, "cpu")
            comp.append(time.perf_counter() - t1)
            prep.append(t1 - t0)
    return statistics.median(prep), statistics.median(comp), int(geom.records.shape[0])


def time_backward(surfels: Surfels, lidar, T, backend: str, repeats: int) -> Timing:
    """Median time of the backward pass alone (forward run outside the clock)."""
    params = [getattr(surfels, f).detach().clone().requires_grad_(True)
              for f in ("means", "quats", "scales", "opacities", "features")]
    s = Surfels(*params)
    times = []
    for i in range(repeats + 1):
        loss = _loss(render(s, lidar, T, backend=backend))
        t0 = time.perf_counter()
        torch.autograd.grad(loss, params)
        if i:  # first one is a warm-up
            times.append(time.perf_counter() - t0)
    return Timing(statistics.median(times), lidar.rows * lidar.cols)


def surfel_mesh(surfels: Surfels) -> tuple[torch.Tensor, torch.Tensor]:
    """Triangle mesh of the surfels' support rectangles (where alpha >= ALPHA_MIN).

    Returns vertices (4N, 3) float32 and triangles (2N, 3) int32.
    """
    rot = surfels.rotations().detach()
    opac = surfels.opacities.detach().clamp(min=ALPHA_MIN * 1.0001)
    k = torch.sqrt(2 * torch.log(opac / ALPHA_MIN))
    eu = (k * surfels.scales[:, 0].detach())[:, None] * rot[..., 0]
    ev = (k * surfels.scales[:, 1].detach())[:, None] * rot[..., 1]
    m = surfels.means.detach()
    verts = torch.stack([m - eu - ev, m + eu - ev, m + eu + ev, m - eu + ev], 1).reshape(-1, 3)
    base = torch.arange(len(surfels), dtype=torch.int32)[:, None] * 4
    tris = torch.cat([base + torch.tensor([0, 1, 2], dtype=torch.int32),
                      base + torch.tensor([0, 2, 3], dtype=torch.int32)], 0)
    return verts.float().contiguous(), tris.contiguous()


def time_open3d(surfels: Surfels, lidar, T, repeats: int) -> tuple[Timing, float, float]:
    """Ray casting of the equivalent mesh with open3d: (timing, BVH build s, hit fraction)."""
    import open3d as o3d
    verts, tris = surfel_mesh(surfels)
    t0 = time.perf_counter()
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(verts.numpy()), o3d.core.Tensor(tris.numpy().astype("uint32")))
    dirs = lidar.ray_directions().double().reshape(-1, 3)
    Td = torch.as_tensor(T, dtype=torch.float64)
    d_world = dirs @ Td[:3, :3].T
    rays = torch.cat([Td[:3, 3].expand_as(d_world), d_world], 1).float().numpy()
    rays_o3d = o3d.core.Tensor(rays)
    scene.cast_rays(rays_o3d)                                 # builds the BVH
    build = time.perf_counter() - t0
    sec = median_time(lambda: scene.cast_rays(rays_o3d), repeats)
    t_hit = scene.cast_rays(rays_o3d)["t_hit"].numpy()
    hit = float((t_hit < lidar.t_max).mean())
    return Timing(sec, rays.shape[0]), build, hit


def run(n_surfels: int = 200_000, seed: int = 0, sweeps: tuple[str, ...] = ("128x2048", "32x1024"),
        repeats: int = 3, ref_shape: tuple[int, int] = (16, 128), ref_surfels: int = 2000,
        open3d: bool = True, backward: bool = True, moving: bool = True, growth: int = 10, report=print) -> dict:
    """Run the benchmark; ``report`` receives one line of text per measurement.  ``growth``:
    the long street is this many times the scene (0 or 1: skip)."""
    if not native.available():
        raise RuntimeError(f"gssim bench lidar: the native extension is not built ({native.NATIVE_ERROR})")
    for name in sweeps:
        if name not in SWEEPS:
            raise ValueError(f"gssim bench lidar: unknown sweep {name!r}; expected one of {sorted(SWEEPS)}")
    T = lidar_pose()
    t0 = time.perf_counter()
    surfels = street_scene(n_surfels, seed)
    report(f"gssim bench lidar: street scene, {n_surfels} surfels (seed {seed}, built in "
           f"{time.perf_counter() - t0:.1f} s), LiDAR at x={float(T[0, 3]):g} m, h={float(T[2, 3]):g} m; "
           f"torch threads {torch.get_num_threads()}; median of {repeats}")
    results: dict = {"surfels": n_surfels, "sweeps": {}}
    for name in sweeps:
        preset, cols = SWEEPS[name]
        lidar = SpinningLidar.preset(preset, azimuth_resolution_deg=360.0 / cols)
        row = {}
        fwd = time_forward(surfels, lidar, T, "cpu", repeats)
        row["forward"] = fwd
        line = (f"{name} sweep ({preset}, {lidar.rows * lidar.cols} rays): native cpu forward "
                f"{fwd.mrays:.2f} Mrays/s ({fwd.seconds * 1e3:.1f} ms)")
        if backward:
            bwd = time_backward(surfels, lidar, T, "cpu", repeats)
            row["backward"] = bwd
            line += f", backward {bwd.mrays:.2f} Mrays/s ({bwd.seconds * 1e3:.1f} ms)"
        report(line)
        prep, comp, n_rec = time_forward_split(surfels, lidar, T, repeats)
        row["split"] = (prep, comp, n_rec)
        report(f"{name} sweep: forward split: preparation {prep * 1e3:.1f} ms (geometry, projection, binning of "
               f"{n_rec} footprint records), native compositing {comp * 1e3:.1f} ms "
               f"({lidar.rows * lidar.cols / comp / 1e6:.2f} Mrays/s)")
        nat, ref = preparation_times(surfels, lidar, build_rays(lidar, T), repeats)
        # A sweep moving 1 m and turning 3 degrees (10 m/s, a bend, 10 Hz).
        nat_m, ref_m = preparation_times(surfels, lidar, build_rays(lidar, T, moving_pose(T)), repeats)
        row["preparation"] = {"native": nat, "torch": ref, "moving_native": nat_m, "moving_torch": ref_m}
        report(f"{name} sweep: preparation, alternating runs: native {nat * 1e3:.1f} ms vs torch reference path "
               f"{ref * 1e3:.1f} ms ({ref / nat:.1f}x); moving sweep (1 m, 3 deg) native {nat_m * 1e3:.1f} ms vs "
               f"{ref_m * 1e3:.1f} ms ({ref_m / nat_m:.1f}x)")
        if open3d:
            o3, build, hit = time_open3d(surfels, lidar, T, repeats)
            row["open3d"] = o3
            report(f"{name} sweep: open3d RaycastingScene on the equivalent mesh ({2 * n_surfels} triangles): "
                   f"{o3.mrays:.2f} Mrays/s ({o3.seconds * 1e3:.1f} ms, BVH build {build:.2f} s, "
                   f"{hit * 100:.0f}% rays hit) -> native forward / open3d = {fwd.mrays / o3.mrays:.2f}x")
        results["sweeps"][name] = row

    if moving or growth > 1:
        preset, cols = SWEEPS[sweeps[0]]
        lidar = SpinningLidar.preset(preset, azimuth_resolution_deg=360.0 / cols)
    if moving:
        # 15 m/s along x and 0.3 rad/s of yaw over the 0.1 s sweep.
        T_end = moving_pose(T, 15.0 * lidar.sweep_duration_s, math.degrees(0.3 * lidar.sweep_duration_s))
        with torch.no_grad():
            mov = median_time(lambda: render(surfels, lidar, T, T_end, backend="cpu"), repeats)
        still = results["sweeps"][sweeps[0]]["forward"]
        results["moving"] = Timing(mov, lidar.rows * lidar.cols)
        report(f"{sweeps[0]} sweep while driving (15 m/s, 0.3 rad/s): forward {results['moving'].mrays:.2f} Mrays/s "
               f"({mov * 1e3:.1f} ms) -> moving / still = {mov / still.seconds:.2f}x")
    if growth > 1:
        small, big = long_street(1, n_surfels, seed), long_street(growth, n_surfels, seed)
        chunks = SurfelChunks(big)
        with torch.no_grad():
            base = median_time(lambda: render(small, lidar, T, backend="cpu"), repeats)
            plain = median_time(lambda: render(big, lidar, T, backend="cpu", cull=False), repeats)
            culled = median_time(lambda: render(big, lidar, T, backend="cpu"), repeats)
            chunked = median_time(lambda: render(chunks, lidar, T, backend="cpu"), repeats)
        results["growth"] = {"base": base, "plain": plain, "culled": culled, "chunked": chunked}
        report(f"growth, {sweeps[0]} sweep (max range {lidar.max_range:g} m): {n_surfels} surfels {base * 1e3:.1f} ms; "
               f"{growth}x street ({growth * n_surfels} surfels): without culling {plain * 1e3:.1f} ms "
               f"({plain / base:.2f}x), view culling {culled * 1e3:.1f} ms ({culled / base:.2f}x), {len(chunks)} "
               f"chunks {chunked * 1e3:.1f} ms ({chunked / base:.2f}x)")

    # The torch reference is dense over rays x records: compare on a small sweep and scene.
    B, A = ref_shape
    elev = torch.linspace(15.0, -25.0, B).tolist()
    small = SpinningLidar(elev, 360.0 / A, min_range=1.0, max_range=120.0)
    sub = street_scene(ref_surfels, seed)
    ref_f = time_forward(sub, small, T, "torch", 1)
    nat_f = time_forward(sub, small, T, "cpu", repeats)
    line = (f"reference comparison, {B}x{A} sweep of a {ref_surfels}-surfel street scene: torch reference forward "
            f"{ref_f.mrays:.4f} Mrays/s ({ref_f.seconds * 1e3:.0f} ms), native {nat_f.mrays:.3f} Mrays/s "
            f"-> native / reference = {ref_f.seconds / nat_f.seconds:.1f}x")
    results["reference"] = {"forward": ref_f, "native_forward": nat_f}
    if backward:
        ref_b = time_backward(sub, small, T, "torch", 1)
        nat_b = time_backward(sub, small, T, "cpu", repeats)
        results["reference"].update(backward=ref_b, native_backward=nat_b)
        line += (f"; backward reference {ref_b.seconds * 1e3:.0f} ms, native {nat_b.seconds * 1e3:.1f} ms "
                 f"-> {ref_b.seconds / nat_b.seconds:.1f}x")
    report(line)
    return results


def _shape(text: str) -> tuple[int, int]:
    try:
        b, a = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected BEAMSxCOLUMNS such as 16x128, got {text!r}") from err
    if b < 1 or a < 1:
        raise argparse.ArgumentTypeError(f"sweep shape {text!r} needs at least 1 beam and 1 column")
    return b, a


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``lidar`` on the ``gssim bench`` subparsers."""
    p = subparsers.add_parser("lidar", help="spinning-LiDAR sweeps: native vs torch reference vs open3d mesh ray casting",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: the CUDA backend on a GPU, still and moving sweeps (gssim/bench/gpu.py)")
    p.add_argument("--surfels", type=int, default=200_000, help="surfels in the street scene (default 200000)")
    p.add_argument("--seed", type=int, default=0, help="scene seed")
    p.add_argument("--sweeps", default="128x2048,32x1024",
                   help=f"comma-separated sweeps from {sorted(SWEEPS)} (default 128x2048,32x1024)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median)")
    p.add_argument("--ref-shape", type=_shape, default=(16, 128), help="sweep for the reference comparison")
    p.add_argument("--ref-surfels", type=int, default=2000, help="surfels for the reference comparison")
    p.add_argument("--no-open3d", action="store_true", help="skip the open3d mesh ray casting")
    p.add_argument("--no-backward", action="store_true", help="skip backward timings")
    p.add_argument("--no-moving", action="store_true", help="skip the sweep taken while driving")
    p.add_argument("--growth", type=int, default=10, help="growth case: the street this many times as long (0: skip)")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    """Entry of ``gssim bench lidar``; prints one line per measurement."""
    if args.surfels < 1 or args.ref_surfels < 1 or args.repeats < 1:
        raise SystemExit("gssim bench lidar: --surfels, --ref-surfels and --repeats must be >= 1")
    sweeps = tuple(s.strip() for s in args.sweeps.split(",") if s.strip())
    unknown = [s for s in sweeps if s not in SWEEPS]
    if unknown:
        raise SystemExit(f"gssim bench lidar: unknown sweep {unknown[0]!r}; expected one of {sorted(SWEEPS)}")
    if args.device == "cuda":
        from gssim.bench.gpu import lidar_main
        lidar_main(args)
        return 0
    try:
        run(args.surfels, args.seed, sweeps, args.repeats, args.ref_shape, args.ref_surfels,
            open3d=not args.no_open3d, backward=not args.no_backward, moving=not args.no_moving, growth=args.growth)
    except (RuntimeError, ValueError) as err:
        raise SystemExit(str(err)) from err
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    parser = argparse.ArgumentParser(prog="gssim bench")
    add_parser(parser.add_subparsers(dest="bench", required=True))
    ns = parser.parse_args()
    raise SystemExit(ns.func(ns))
