"""LiDAR rendering through ``gssim.render``: analytic range images, the azimuth seam, a
sensor moving during the sweep, native vs torch reference, returns and point clouds."""
from __future__ import annotations

import math

import pytest
import torch

import gssim
from gssim.core.transforms import interpolate_pose
from gssim.render import render
from gssim.render import native
from gssim.render.lidar_returns import LidarReturnDecoder, incidence_cosine, to_point_cloud, world_ray_directions
from gssim.sensors import SolidStateLidar, SpinningLidar

ELEV = [15.0, 9.0, 5.0, 3.0, 2.0, 1.0, 0.5, 0.0, -0.5, -1.5, -3.0, -6.0, -10.0, -16.0, -25.0]
BACKENDS = ["torch"] + (["cpu"] if native.available() else [])
# Quaternion (w, x, y, z) turning the surfel normal (third axis) onto +x; t_u -> -z, t_v -> +y.
FACING_X = [math.cos(math.pi / 4), 0.0, math.sin(math.pi / 4), 0.0]


def small_lidar(**kw) -> SpinningLidar:
    args = dict(elevations_deg=ELEV, azimuth_resolution_deg=1.5, min_range=0.5, max_range=60.0)
    args.update(kw)
    return SpinningLidar(**args)


def wall(x: float, half_height_sigma: float = 0.3, width_sigma: float = 200.0, channels: int = 2):
    """One big surfel in the plane x = const facing the sensor (sigma along z and y)."""
    return gssim.Surfels(torch.tensor([[x, 0.0, 0.0]]), torch.tensor([FACING_X]),
                         torch.tensor([[half_height_sigma, width_sigma]]), torch.tensor([1.0]),
                         torch.ones(1, channels))


def beam_grid(lidar):
    el = torch.deg2rad(torch.tensor(lidar.elevations_deg, dtype=torch.float64))[:, None]
    az = lidar.column_azimuths()[None, :]
    return el.expand(lidar.shape), az.expand(lidar.shape)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wall_range_is_d_over_cos(backend):
    lidar = small_lidar()
    d = 10.0
    out = render(wall(d), lidar, torch.eye(4), backend=backend)
    assert out.range.shape == (15, 240) and out.features.shape == (15, 240, 2) and out.normal.shape == (15, 240, 3)
    el, az = beam_grid(lidar)
    t = d / (torch.cos(el) * torch.cos(az))                   # range along each ray
    z = t * torch.sin(el)                                      # hit height on the wall
    front = torch.cos(az) > 0
    reach = 3.33 * 0.3                                         # alpha >= 1/255 within 3.33 sigma
    hits = front & (t < lidar.t_max) & (z.abs() < reach - 0.05)
    misses = ~front | (t > lidar.t_max) | (z.abs() > reach + 0.05)
    assert hits.sum() > 40 and misses.sum() > 2000
    assert (out.alpha[hits] > 0).all()
    assert torch.allclose(out.range[hits].double(), t[hits], rtol=1e-5, atol=1e-5)
    assert torch.allclose(out.median_range[hits].double(), t[hits], rtol=1e-5, atol=1e-5)
    # Beam 7 (elevation 0) hits at every forward azimuth with t < t_max: d / cos(azimuth).
    row0 = hits[7]
    assert row0.sum() == int(((torch.cos(az[7]) > 0) & (t[7] < lidar.t_max)).sum())
    assert torch.allclose(out.range[7][row0].double(), d / torch.cos(az[7][row0]), rtol=1e-5)
    assert (out.alpha[misses] == 0).all() and (out.range[misses] == 0).all()
    n = out.normal[hits]
    assert torch.allclose(n, torch.tensor([-1.0, 0.0, 0.0]).expand_as(n), atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_flat_wall_at_50m_within_1mm(backend):
    lidar = SpinningLidar.preset("vls-128", azimuth_resolution_deg=0.25, max_range=120.0)
    out = render(wall(50.0, half_height_sigma=200.0), lidar, torch.eye(4), backend=backend)
    el, az = beam_grid(lidar)
    t = 50.0 / (torch.cos(el) * torch.cos(az))
    sel = (az.abs() < math.radians(40)) & (t < 110)
    assert sel.sum() > 128 * 300
    err = (out.range.double()[sel] - t[sel]).abs().max().item()
    assert err <= 1e-3, f"max range error {err * 1000:.3f} mm"


@pytest.mark.parametrize("backend", BACKENDS)
def test_surfel_across_the_seam_renders_on_both_sides(backend):
    lidar = small_lidar()
    B, A = lidar.shape
    # A surfel straight behind (azimuth 180 deg = the seam), facing the sensor.
    s = gssim.Surfels(torch.tensor([[-8.0, 0.0, 0.0]]), torch.tensor([FACING_X]), torch.tensor([[0.4, 0.4]]),
                      torch.tensor([0.9]), torch.ones(1, 1))
    out = render(s, lidar, torch.eye(4), backend=backend)
    cols = (out.alpha[7] > 0).nonzero()[:, 0]
    assert 0 in cols.tolist() and A - 1 in cols.tolist()
    assert set(cols.tolist()) <= set(range(0, 8)) | set(range(A - 8, A))
    # Symmetric about the seam: column j and column A-1-j see the same.
    assert torch.allclose(out.alpha[:, :8], out.alpha[:, -8:].flip(1), atol=1e-5)
    el, az = beam_grid(lidar)
    t = 8.0 / (torch.cos(el) * torch.cos(az)).abs()
    hit = out.alpha > 0
    assert torch.allclose(out.range[hit].double(), t[hit], rtol=1e-5)
    # A tiny surfel on the seam is seen only through the low-pass filter: the wrapped copy
    # must measure the filter distance across the seam (equal on both sides).
    tiny = gssim.Surfels(torch.tensor([[-8.0, 0.0, 0.0]]), torch.tensor([FACING_X]),
                         torch.tensor([[0.002, 0.002]]), torch.tensor([1.0]), torch.ones(1, 1))
    out = render(tiny, lidar, torch.eye(4), backend=backend)
    a0, a1 = out.alpha[7, 0].item(), out.alpha[7, A - 1].item()
    assert a0 > 0.3 and a0 == pytest.approx(a1, rel=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_moving_sensor_sweep_uses_per_column_poses(backend):
    lidar = small_lidar(spin_hz=10.0)
    d = 20.0
    T0 = torch.eye(4, dtype=torch.float64)
    T1 = torch.eye(4, dtype=torch.float64)
    yaw = math.radians(4.0)                      # turning left while driving forward 2 m
    T1[:2, :2] = torch.tensor([[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]])
    T1[0, 3], T1[1, 3] = 2.0, 0.3
    out = render(wall(d), lidar, T0, T1, backend=backend)
    static = render(wall(d), lidar, T0, backend=backend)
    # Prediction: column j has the pose interpolated at fraction (j + 0.5) / A.
    fr = (torch.arange(lidar.cols, dtype=torch.float64) + 0.5) / lidar.cols
    poses = interpolate_pose(T0, T1, fr)
    dirs = lidar.ray_directions()[7].double()              # elevation-0 beam
    dw = (poses[:, :3, :3] @ dirs[:, :, None])[:, :, 0]
    t = (d - poses[:, 0, 3]) / dw[:, 0]
    hit = out.alpha[7] > 0
    assert hit.sum() > 60
    assert torch.allclose(out.range[7][hit].double(), t[hit], rtol=1e-5)
    assert (t[hit] > 0).all() and (t[hit] < lidar.t_max).all()
    # The sweep differs visibly from a static one late in the sweep.
    late = hit & static.alpha[7].bool() & (fr > 0.6)
    assert ((out.range[7][late] - static.range[7][late]).abs() > 0.5).any()
    # world_ray_directions gives the same per-column directions.
    assert torch.allclose(world_ray_directions(lidar, T0, T1)[7].double(), dw, atol=1e-6)


def random_scene(n: int, seed: int, channels: int = 3):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) * 2 - 1) * torch.tensor([12.0, 12.0, 3.0])
    means[:8] = means[:8] * 0.15 + torch.tensor([-6.0, 0.0, 0.0])   # a cluster across the seam
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(torch.rand(n, 2, generator=g) * 3 - 3.0)      # 0.05 .. 1 m
    opac = torch.rand(n, generator=g) * 0.9 + 0.1
    feats = torch.rand(n, channels, generator=g)
    return [t.requires_grad_(True) for t in (means, quats, scales, opac, feats)]


@pytest.mark.skipif(not native.available(), reason="native extension not built")
@pytest.mark.parametrize("moving", [False, True])
def test_native_matches_reference_values_and_gradients(moving):
    lidar = small_lidar()
    T0 = torch.eye(4, dtype=torch.float64)
    T0[2, 3] = 0.2
    T1 = T0.clone()
    T1[0, 3] = 1.0
    g = torch.Generator().manual_seed(5)
    weights = {k: torch.randn(shape, generator=g) for k, shape in
               (("range", (15, 240)), ("median_range", (15, 240)), ("alpha", (15, 240)),
                ("features", (15, 240, 3)), ("normal", (15, 240, 3)))}
    results = {}
    for backend in ("torch", "cpu"):
        params = random_scene(150, seed=2)
        s = gssim.Surfels(*params)
        out = render(s, lidar, T0, T1 if moving else None, backend=backend)
        loss = sum((getattr(out, k) * w).sum() for k, w in weights.items() if k != "median_range")
        grads = torch.autograd.grad(loss, params)
        results[backend] = ({k: getattr(out, k).detach() for k in weights}, grads)
    (vt, gt), (vc, gc) = results["torch"], results["cpu"]
    assert (vt["alpha"] > 0).sum() > 500
    for k in weights:
        assert torch.allclose(vt[k], vc[k], atol=2e-4, rtol=1e-4), f"{k}: max diff {(vt[k] - vc[k]).abs().max()}"
    for name, a, b in zip(("means", "quats", "scales", "opacities", "features"), gt, gc):
        scale = a.abs().max().clamp(min=1.0)
        assert torch.allclose(a, b, atol=2e-3 * float(scale), rtol=1e-3), f"d/d{name}: max diff {(a - b).abs().max()}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_solid_state_wall(backend):
    ss = SolidStateLidar(90.0, 20.0, 1.0, 1.0, min_range=0.3, max_range=80.0)
    out = render(wall(15.0, half_height_sigma=100.0), ss, torch.eye(4), backend=backend)
    d = ss.ray_directions().double()
    t = 15.0 / d[..., 0]
    assert (out.alpha > 0.98).all()
    assert torch.allclose(out.range.double(), t, rtol=2e-6)


# --- returns and point clouds ---------------------------------------------------------
def test_decoder_shapes_ranges_and_gradients():
    torch.manual_seed(0)
    dec = LidarReturnDecoder(in_channels=4, hidden=16, max_range=60.0)
    feats = torch.rand(15, 240, 4, requires_grad=True)
    alpha = torch.rand(15, 240)
    alpha[0] = 0.0
    cos_i = torch.rand(15, 240)
    rng = torch.rand(15, 240) * 60
    inten, drop = dec(feats, alpha, cos_i, rng)
    assert inten.shape == (15, 240) and drop.shape == (15, 240)
    assert (inten >= 0).all() and (inten <= 1).all() and (drop >= 0).all() and (drop <= 1).all()
    assert torch.equal(drop[0], torch.ones(240))       # nothing crossed: always dropped
    (inten.sum() + drop.sum()).backward()
    assert feats.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="channels"):
        dec(torch.rand(15, 240, 3), alpha, cos_i, rng)
    with pytest.raises(ValueError, match="cos_incidence"):
        dec(feats, alpha, cos_i[:, :10], rng)


def test_decoder_learns_incidence_dependent_intensity():
    torch.manual_seed(1)
    dec = LidarReturnDecoder(in_channels=1, hidden=16)
    opt = torch.optim.Adam(dec.parameters(), lr=2e-2)
    cos_i = torch.rand(512)
    target = 0.8 * cos_i                              # Lambertian-like return
    alpha = torch.ones(512)
    for _ in range(150):
        inten, _ = dec(torch.ones(512, 1), alpha, cos_i, torch.full((512,), 10.0))
        loss = ((inten - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 1e-3


def test_incidence_cosine_of_wall():
    lidar = small_lidar()
    out = render(wall(10.0), lidar, torch.eye(4), backend="torch")
    cos_i = incidence_cosine(out.normal, lidar, torch.eye(4))
    el, az = beam_grid(lidar)
    hit = out.alpha > 0
    assert torch.allclose(cos_i[hit].double(), (torch.cos(el) * torch.cos(az))[hit], atol=1e-5)
    assert (cos_i[~hit] == 0).all()


def test_point_cloud_layout_threshold_and_seed():
    lidar = small_lidar(spin_hz=10.0)
    out = render(wall(10.0), lidar, torch.eye(4), backend="torch")
    hit = out.alpha >= 1e-3
    inten = torch.full((15, 240), 0.25)
    pc = to_point_cloud(out, lidar, intensity=inten)
    assert pc.dtype == torch.float32 and pc.shape == (int(hit.sum()), 6)
    assert torch.allclose(pc[:, 0], torch.full_like(pc[:, 0], 10.0), atol=1e-4)   # on the wall plane
    assert torch.allclose(pc[:, 3], torch.full_like(pc[:, 3], 0.25))
    rows, cols = hit.nonzero().unbind(1)
    assert torch.equal(pc[:, 4], rows.float())
    assert torch.allclose(pc[:, 5], (cols.float() + 0.5) / 240 * 0.1)
    assert (pc[:, 5] >= 0).all() and (pc[:, 5] <= 0.1).all()
    # Deterministic threshold.
    drop = torch.zeros(15, 240)
    drop[:, :120] = 0.9
    pc_t = to_point_cloud(out, lidar, drop, threshold=0.5)
    assert pc_t.shape[0] == int(hit[:, 120:].sum()) and (pc_t[:, 1] <= 0).all()  # only right half kept
    # Bernoulli with a seed: reproducible, about the right fraction.
    drop = torch.full((15, 240), 0.3)
    a = to_point_cloud(out, lidar, drop, seed=7)
    b = to_point_cloud(out, lidar, drop, seed=7)
    c = to_point_cloud(out, lidar, drop, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    frac = a.shape[0] / pc.shape[0]
    assert 0.6 < frac < 0.8
    with pytest.raises(ValueError, match="drop_prob"):
        to_point_cloud(out, lidar, torch.zeros(3, 3))


def test_point_cloud_motion_compensation():
    lidar = small_lidar(spin_hz=10.0)
    T0 = torch.eye(4, dtype=torch.float64)
    T1 = torch.eye(4, dtype=torch.float64)
    T1[0, 3] = 2.0
    out = render(wall(20.0), lidar, T0, T1, backend="torch")
    raw = to_point_cloud(out, lidar)
    comp = to_point_cloud(out, lidar, T_world_sensor=T0, T_world_sensor_end=T1)
    # In the start frame every point lies on the wall x = 20; uncompensated ones do not.
    assert torch.allclose(comp[:, 0], torch.full_like(comp[:, 0], 20.0), atol=1e-3)
    assert (raw[:, 0] < 19.5).any()
    assert torch.equal(raw[:, 3:], comp[:, 3:])


@pytest.mark.parametrize("backend", BACKENDS)
def test_scanning_solid_state_moving_wall(backend):
    """A column-scanning solid-state unit driving towards a wall: column j sees it from
    the pose at fraction (j + 0.5) / cols; time offsets span one frame."""
    ss = SolidStateLidar(60.0, 10.0, 2.0, 2.0, min_range=0.3, max_range=80.0, scan="columns", frame_hz=20.0)
    T0 = torch.eye(4, dtype=torch.float64)
    T1 = torch.eye(4, dtype=torch.float64)
    T1[0, 3] = 1.5
    out = render(wall(12.0, half_height_sigma=100.0), ss, T0, T1, backend=backend)
    fr = (torch.arange(ss.cols, dtype=torch.float64) + 0.5) / ss.cols
    d = ss.ray_directions().double()
    t = (12.0 - 1.5 * fr)[None, :] / d[..., 0]
    assert torch.allclose(out.range.double(), t, rtol=1e-5)
    pc = to_point_cloud(out, ss, T_world_sensor=T0, T_world_sensor_end=T1)
    assert pc.shape == (ss.rows * ss.cols, 6)
    assert torch.allclose(pc[:, 0], torch.full_like(pc[:, 0], 12.0), atol=1e-3)
    assert pc[:, 5].max().item() == pytest.approx((ss.cols - 0.5) / ss.cols / 20.0, rel=1e-5)


def _support(surfels):
    """Support corners, bounding radius and filter radius as the render pipeline builds them."""
    from gssim.sensors.base import ALPHA_MIN
    rot = surfels.rotations().detach()
    k = torch.sqrt(2 * torch.log(surfels.opacities.detach() / ALPHA_MIN))
    eu = (k * surfels.scales[:, 0].detach())[:, None] * rot[..., 0]
    ev = (k * surfels.scales[:, 1].detach())[:, None] * rot[..., 1]
    m = surfels.means.detach()
    corners = torch.stack([m + eu + ev, m + eu - ev, m - eu - ev, m - eu + ev], 1)
    return corners, k * surfels.scales.detach().norm(dim=-1), k / math.sqrt(2)


@pytest.mark.parametrize("yaw_deg, dx", [(0.0, 3.0), (5.0, 3.0), (-10.0, 2.0)])
def test_moving_sweep_footprints_lose_nothing(yaw_deg, dx):
    """The pipeline's footprints of a sweep taken while the sensor drives and turns lose
    nothing against records covering the whole grid."""
    from gssim.render.api import rasterize
    from gssim.render.pipeline import build_rays, prepare_surfels
    lidar = small_lidar()
    T0 = torch.eye(4, dtype=torch.float64)
    T0[2, 3] = 0.2
    T1 = T0.clone()
    y = math.radians(yaw_deg)
    T1[:2, :2] = torch.tensor([[math.cos(y), -math.sin(y)], [math.sin(y), math.cos(y)]], dtype=torch.float64)
    T1[0, 3] = dx
    for seed in (1, 4):
        s = gssim.Surfels(*[p.detach() for p in random_scene(300, seed=seed)])
        with torch.no_grad():
            grid = build_rays(lidar, T0, T1)
            geom = prepare_surfels(s, lidar, grid)
            n = len(s)
            valid = (geom.means2d.abs() < 1e8).all(-1)
            got = rasterize(grid, geom, lidar, "torch")
            geom.records = lidar.footprints(torch.zeros(n, 4, 3), torch.zeros(n, 3), torch.full((n,), 1e9),
                                            geom.means2d, valid, torch.zeros(n))   # every cell, shifts by centre
            want = rasterize(grid, geom, lidar, "torch")
        for a, b in zip(got, want):
            assert torch.allclose(a, b, atol=1e-5), f"seed {seed}: max diff {(a - b).abs().max()}"
    corners, radius, fr = _support(s)
    with pytest.raises(ValueError, match="motion"):
        lidar.footprints(corners, s.means, radius, geom.means2d, valid, fr, motion=(-1.0, 0.0))
