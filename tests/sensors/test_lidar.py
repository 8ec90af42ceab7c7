"""LiDAR ray grids: construction, presets, projection, and angle-space footprints.

Footprints are checked by brute force against the torch reference rasterizer: for
random surfels, every cell where a surfel's alpha reaches ALPHA_MIN must lie in one of
its records (with the column shift that the record gives it), and no cell may lie in two.
"""
from __future__ import annotations

import math

import pytest
import torch

from gssim.core.transforms import quat_to_rotmat
from gssim.render.reference import rasterize_reference
from gssim.sensors import SolidStateLidar, SpinningLidar, lidar_from_dict
from gssim.sensors.base import ALPHA_MIN

# A small non-uniform table (dense near the horizon), top beam first.
ELEV = [15.0, 9.0, 5.0, 3.0, 2.0, 1.0, 0.5, 0.0, -0.5, -1.5, -3.0, -6.0, -10.0, -16.0, -25.0]


def small_lidar(**kw) -> SpinningLidar:
    args = dict(elevations_deg=ELEV, azimuth_resolution_deg=1.5, min_range=0.5, max_range=60.0)
    args.update(kw)
    return SpinningLidar(**args)


# --- construction -----------------------------------------------------------------
def test_grid_shape_and_directions():
    lidar = small_lidar()
    assert lidar.shape == (15, 240) and lidar.kind == "lidar" and not lidar.is_instant
    d = lidar.ray_directions()
    assert d.shape == (15, 240, 3) and d.dtype == torch.float32
    assert torch.allclose(d.norm(dim=-1), torch.ones(15, 240), atol=1e-6)
    el = torch.rad2deg(torch.asin(d[..., 2].double()))
    assert torch.allclose(el[:, 0], torch.tensor(ELEV, dtype=torch.float64), atol=1e-4)
    # Clockwise from 180 deg: column 0 just below +180, the middle column just left of +x.
    az = torch.rad2deg(lidar.column_azimuths())
    assert az[0].item() == pytest.approx(180 - 0.75)
    assert az[119].item() == pytest.approx(0.75) and az[120].item() == pytest.approx(-0.75)
    assert az[-1].item() == pytest.approx(-180 + 0.75)
    assert torch.equal(lidar.depth_scale(), torch.ones(15, 240))
    assert (lidar.t_min, lidar.t_max) == (0.5, 60.0)


def test_counter_clockwise_and_start():
    lidar = small_lidar(clockwise=False, azimuth_start_deg=0.0)
    az = torch.rad2deg(lidar.column_azimuths())
    assert az[0].item() == pytest.approx(0.75) and az[1].item() == pytest.approx(2.25)
    assert az[-1].item() == pytest.approx(-0.75)


def test_cell_fractions_follow_firing_order():
    lidar = small_lidar(spin_hz=20.0)
    f = lidar.cell_fractions()
    assert f.shape == (15, 240)
    assert torch.allclose(f[3], (torch.arange(240) + 0.5) / 240)
    assert torch.equal(f[0], f[14])
    assert torch.allclose(lidar.cell_times(), f / 20.0)
    assert lidar.sweep_duration_s == pytest.approx(0.05)


@pytest.mark.parametrize("kwargs, match", [
    (dict(elevations_deg=[]), "empty"),
    (dict(elevations_deg=[1.0, 1.0]), "repeated"),
    (dict(elevations_deg=[95.0]), "inside"),
    (dict(azimuth_resolution_deg=0.7), "whole columns"),
    (dict(azimuth_resolution_deg=-1.0), "azimuth_resolution_deg"),
    (dict(min_range=0.0), "min_range"),
    (dict(min_range=5.0, max_range=2.0), "max_range"),
    (dict(spin_hz=0.0), "spin_hz"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_lidar(**kwargs)


def test_presets_are_non_uniform_tables():
    assert SpinningLidar.preset_names() == ["hdl-64e", "vlp-32c", "vls-128"]
    for name, beams in (("vlp-32c", 32), ("hdl-64e", 64), ("vls-128", 128)):
        lidar = SpinningLidar.preset(name)
        e = torch.tensor(lidar.elevations_deg)
        assert lidar.rows == beams
        assert (e[1:] < e[:-1]).all(), f"{name}: presets list the top beam first"
        gaps = e[:-1] - e[1:]
        assert gaps.max() > 1.4 * gaps.min(), f"{name}: expected a non-uniform layout"
    vls = SpinningLidar.preset("vls-128", azimuth_resolution_deg=360 / 2048)
    assert vls.shape == (128, 2048)
    assert vls.elevations_deg[0] == pytest.approx(15.0) and vls.elevations_deg[-1] == pytest.approx(-25.0)
    assert SpinningLidar.preset("vlp-32c").elevations_deg[0] == pytest.approx(15.0)
    with pytest.raises(ValueError, match="unknown preset"):
        SpinningLidar.preset("hdl-33")


def test_dict_round_trip():
    lidar = small_lidar(clockwise=False, azimuth_start_deg=-90.0, spin_hz=5.0)
    d = lidar.to_dict()
    assert d["type"] == "lidar" and d["model"] == "spinning" and d["elevations_deg"] == ELEV
    again = lidar_from_dict(d)
    assert again.to_dict() == d
    assert torch.equal(again.ray_directions(), lidar.ray_directions())
    ss = SolidStateLidar(60, 20, 0.5, 0.5, scan="rows")
    assert lidar_from_dict(ss.to_dict()).to_dict() == ss.to_dict()
    with pytest.raises(ValueError, match="unknown"):
        lidar_from_dict({"model": "flash"})
    with pytest.raises(ValueError, match="azimuth_resolution_deg"):
        lidar_from_dict({"model": "spinning", "elevations_deg": [0.0]})


# --- projection ---------------------------------------------------------------------
@pytest.mark.parametrize("kw", [{}, dict(clockwise=False, azimuth_start_deg=37.0),
                                dict(elevations_deg=list(reversed(ELEV)))])
def test_project_ray_directions_gives_cell_centres(kw):
    lidar = small_lidar(**kw)
    d = lidar.ray_directions().double() * 7.0
    grid, valid = lidar.project(d.reshape(-1, 3))
    assert valid.all()
    i, j = torch.meshgrid(torch.arange(15.0), torch.arange(240.0), indexing="ij")
    assert torch.allclose(grid[:, 0], (j + 0.5).reshape(-1).double(), atol=1e-6)
    assert torch.allclose(grid[:, 1], (i + 0.5).reshape(-1).double(), atol=1e-6)


def test_project_interpolates_elevation_table_and_is_differentiable():
    lidar = small_lidar()
    # Halfway (in elevation) between beams 0 (15 deg) and 1 (9 deg) -> row 1.0.
    p = torch.tensor([[math.cos(math.radians(12)), 0.0, math.sin(math.radians(12))]], dtype=torch.float64)
    grid, valid = lidar.project(p * 10)
    assert valid.all() and grid[0, 1].item() == pytest.approx(1.0)
    assert grid[0, 0].item() == pytest.approx(120.0)  # azimuth 0 is the boundary of columns 119 and 120
    pts = torch.randn(20, 3, dtype=torch.float64) * 5
    pts.requires_grad_(True)
    torch.autograd.gradcheck(lambda x: lidar.project(x)[0], (pts,))
    # Points on the rotation axis have no azimuth.
    _, valid = lidar.project(torch.tensor([[0.0, 0.0, 3.0]]))
    assert not valid.any()


def test_unsorted_table_projects_to_nearest_beam_row():
    table = [0.0, -10.0, 5.0, -2.0, 10.0]
    lidar = SpinningLidar(table, 2.0)
    d = lidar.ray_directions().double()
    grid, _ = lidar.project(d.reshape(-1, 3))
    rows = grid[:, 1].reshape(5, -1)
    assert torch.allclose(rows, (torch.arange(5.0)[:, None] + 0.5).double().expand(5, 180), atol=1e-6)


# --- footprints --------------------------------------------------------------------
def random_surfels(n: int, seed: int, spread: float = 15.0):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) * 2 - 1) * torch.tensor([spread, spread, spread / 3])
    near = torch.rand(n, generator=g) < 0.2                  # some surfels close to the sensor
    means = torch.where(near[:, None], means / spread * 2.0, means)
    quats = torch.randn(n, 4, generator=g)
    quats = quats / quats.norm(dim=-1, keepdim=True)
    scales = torch.exp(torch.rand(n, 2, generator=g) * 5 - 4.0)   # 0.018 .. 2.7 m
    opac = torch.rand(n, generator=g) * 0.95 + 0.05
    return means, quats, scales, opac


def footprint_inputs(lidar, means, quats, scales, opac):
    """What the render pipeline gives ``footprints``: support rectangle, bounding sphere, filter disc."""
    R = quat_to_rotmat(quats)
    tu, tv, n = R[..., 0], R[..., 1], R[..., 2]
    k = torch.sqrt(2 * torch.log(255 * opac).clamp(min=0))            # alpha >= 1/255 inside
    su, sv = (k * scales[:, 0])[:, None], (k * scales[:, 1])[:, None]
    corners = torch.stack([means + a * su * tu + b * sv * tv for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))], 1)
    radius = k * scales.norm(dim=-1)
    fr = torch.sqrt(torch.log(255 * opac).clamp(min=0))
    m2, v2 = lidar.project(means)
    return corners, means, radius, m2, v2, fr, (tu / scales[:, :1], tv / scales[:, 1:], n)


def single_alpha(lidar, means, au, av, n, opac, m2, idx, shift):
    """(B, A) alpha of surfel idx alone over the whole grid with a given column shift."""
    B, A = lidar.shape
    dirs = lidar.ray_directions().reshape(-1, 3)
    rec = torch.tensor([[0, 0, B - 1, 0, A - 1, shift]], dtype=torch.int32)
    s = slice(idx, idx + 1)
    out = rasterize_reference(torch.zeros_like(dirs), dirs, B, A, means[s], au[s], av[s], n[s], opac[s],
                              torch.ones(1, 1), m2[s], torch.ones(1), rec, lidar.t_min, lidar.t_max)
    return out[1].reshape(B, A)


def check_conservative(lidar, means, quats, scales, opac):
    B, A = lidar.shape
    corners, centre, radius, m2, v2, fr, (au, av, n) = footprint_inputs(lidar, means, quats, scales, opac)
    m2_far = torch.where(v2[:, None], m2, torch.full_like(m2, -1e6))
    rec = lidar.footprints(corners, centre, radius, m2_far, v2, fr)
    assert rec.dtype == torch.int32 and rec.shape[1] == 6
    assert (rec[:, 1] <= rec[:, 2]).all() and (rec[:, 3] <= rec[:, 4]).all()
    assert (rec[:, 1] >= 0).all() and (rec[:, 2] < B).all() and (rec[:, 3] >= 0).all() and (rec[:, 4] < A).all()
    covered_cells = 0
    for i in range(means.shape[0]):
        mine = rec[rec[:, 0] == i]
        cover = torch.zeros(B, A, dtype=torch.int64)
        shift_of = torch.zeros(B, A, dtype=torch.int64)
        for _, r0, r1, c0, c1, sh in mine.tolist():
            cover[r0:r1 + 1, c0:c1 + 1] += 1
            shift_of[r0:r1 + 1, c0:c1 + 1] = sh
        assert cover.max() <= 1, f"surfel {i}: a cell lies in two of its records"
        alphas = {s: single_alpha(lidar, means, au, av, n, opac, m2_far, i, s) for s in (-A, 0, A)}
        touched = torch.stack([a >= ALPHA_MIN for a in alphas.values()]).any(0)
        missing = touched & (cover == 0)
        assert not missing.any(), (f"surfel {i} (mean {means[i].tolist()}, scales {scales[i].tolist()}) touches "
                                   f"{int(missing.sum())} cells outside its records, e.g. {missing.nonzero()[:3].tolist()}")
        # Inside a record the surfel must still reach those cells with the record's shift.
        got = torch.where(shift_of == A, alphas[A], torch.where(shift_of == -A, alphas[-A], alphas[0]))
        assert (got[touched] >= ALPHA_MIN).all(), f"surfel {i}: a wrapped record has the wrong column shift"
        covered_cells += int(touched.sum())
    assert covered_cells > 0
    return rec


@pytest.mark.parametrize("kw", [{}, dict(clockwise=False, azimuth_start_deg=60.0),
                                dict(elevations_deg=[0.0, -10.0, 5.0, -2.0, 10.0, -20.0, 2.0])])
def test_footprints_are_conservative(kw):
    lidar = small_lidar(**kw)
    means, quats, scales, opac = random_surfels(120, seed=len(kw) + 3)
    check_conservative(lidar, means, quats, scales, opac)


@pytest.mark.parametrize("seed, spread", [(206, 6.0), (211, 6.0), (100, 15.0)])
def test_footprints_are_conservative_for_flat_surfels(seed, spread):
    """Near-horizontal surfels (road-like, seen at grazing angles), close and far.  Seeds
    206 and 211 hold surfels whose highest direction lies inside an edge, not at a corner."""
    lidar = small_lidar()
    means, _, scales, opac = random_surfels(60, seed=seed, spread=spread)
    g = torch.Generator().manual_seed(seed)
    quats = torch.tensor([[1.0, 0, 0, 0]]) + 0.05 * torch.randn(60, 4, generator=g)
    quats = quats / quats.norm(dim=-1, keepdim=True)
    check_conservative(lidar, means, quats, scales, opac)


def test_footprints_close_to_sensor_and_poles():
    lidar = small_lidar()
    means = torch.tensor([[0.3, 0.1, 0.0],    # sensor inside the bounding sphere
                          [0.0, 0.0, 4.0],    # straight above
                          [0.2, -0.1, -3.0],  # below, near the axis
                          [1.2, 0.4, 0.9],    # near and large
                          [-0.8, 0.01, 0.2]])  # near, behind (seam)
    quats = torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0], [0.9, 0.3, 0.1, 0.0], [0.7, 0.0, 0.7, 0.0],
                          [0.7, 0.0, 0.7, 0.0]])
    quats = quats / quats.norm(dim=-1, keepdim=True)
    scales = torch.tensor([[0.5, 0.4], [1.0, 1.0], [0.6, 0.3], [0.5, 0.5], [0.3, 0.3]])
    opac = torch.tensor([0.9, 0.8, 0.7, 1.0, 0.9])
    check_conservative(lidar, means, quats, scales, opac)


def test_seam_surfel_emits_two_records_with_shifts():
    lidar = small_lidar()
    B, A = lidar.shape
    # A small surfel straight behind (azimuth 180 deg, the seam), facing the sensor.
    means = torch.tensor([[-10.0, 0.0, 0.0]])
    quats = torch.tensor([[math.cos(math.pi / 4), 0.0, math.sin(math.pi / 4), 0.0]])  # normal along x
    scales = torch.tensor([[0.2, 0.2]])
    opac = torch.tensor([1.0])
    rec = check_conservative(lidar, means, quats, scales, opac)
    assert rec.shape[0] == 2
    cols = {int(r[5]): (int(r[3]), int(r[4])) for r in rec}
    m2, _ = lidar.project(means)
    if m2[0, 0] < A / 2:   # centre projected onto the first columns: the copy on the last has +A
        assert set(cols) == {0, A} and cols[0][0] == 0 and cols[A][1] == A - 1
    else:
        assert set(cols) == {0, -A} and cols[0][1] == A - 1 and cols[-A][0] == 0
    # Nudged to either side of the seam, the surfel still covers both ends of the grid.
    for y in (0.05, -0.05):
        rec = check_conservative(lidar, means + torch.tensor([[0.0, y, 0.0]]), quats, scales, opac)
        assert rec[:, 3].min() == 0 and rec[:, 4].max() == A - 1


def test_footprints_respect_range_limits():
    lidar = small_lidar()
    means = torch.tensor([[100.0, 0.0, 0.0], [0.1, 0.1, 0.0], [10.0, 0.0, 0.0]])
    quats = torch.tensor([[1.0, 0, 0, 0]] * 3)
    scales = torch.tensor([[0.1, 0.1], [0.01, 0.01], [0.1, 0.1]])
    opac = torch.ones(3)
    corners, centre, radius, m2, v2, fr, _ = footprint_inputs(lidar, means, quats, scales, opac)
    valid = v2 & torch.tensor([False, False, True])  # the pipeline drops centres out of range
    rec = lidar.footprints(corners, centre, radius, m2, valid, fr)
    assert set(rec[:, 0].tolist()) == {2}


def test_footprint_records_are_tight_for_small_surfels():
    lidar = small_lidar()
    means = torch.tensor([[20.0, 0.0, 0.0]])
    quats = torch.tensor([[math.cos(math.pi / 4), 0.0, math.sin(math.pi / 4), 0.0]])
    scales = torch.tensor([[0.05, 0.05]])
    opac = torch.tensor([1.0])
    corners, centre, radius, m2, v2, fr, _ = footprint_inputs(lidar, means, quats, scales, opac)
    rec = lidar.footprints(corners, centre, radius, m2, v2, fr)
    assert rec.shape[0] == 1
    _, r0, r1, c0, c1, sh = rec[0].tolist()
    assert sh == 0 and r1 - r0 <= 6 and c1 - c0 <= 6 and r0 <= 7 <= r1 and c0 <= 119 and 120 <= c1


# --- solid-state --------------------------------------------------------------------
def test_solid_state_grid():
    ss = SolidStateLidar(120.0, 30.0, 1.0, 0.5, min_range=0.3, max_range=80.0, scan="columns", frame_hz=20.0)
    assert ss.shape == (60, 120) and ss.kind == "lidar" and not ss.is_instant
    d = ss.ray_directions().double()
    az = torch.rad2deg(torch.atan2(d[..., 1], d[..., 0]))
    el = torch.rad2deg(torch.asin(d[..., 2]))
    assert az[0, 0].item() == pytest.approx(59.5) and az[0, -1].item() == pytest.approx(-59.5)
    assert el[0, 0].item() == pytest.approx(14.75) and el[-1, 0].item() == pytest.approx(-14.75)
    grid, valid = ss.project(d.reshape(-1, 3) * 3)
    i, j = torch.meshgrid(torch.arange(60.0), torch.arange(120.0), indexing="ij")
    assert valid.all() and torch.allclose(grid[:, 0], (j + 0.5).reshape(-1).double(), atol=1e-6)
    assert torch.allclose(grid[:, 1], (i + 0.5).reshape(-1).double(), atol=1e-6)
    assert torch.allclose(ss.cell_fractions()[0], (torch.arange(120) + 0.5) / 120)
    assert SolidStateLidar(10, 10, 1, 1).is_instant
    assert torch.equal(SolidStateLidar(10, 10, 1, 1).cell_fractions(), torch.zeros(10, 10))
    assert torch.allclose(SolidStateLidar(10, 10, 1, 1, scan="rows").cell_fractions()[:, 0], (torch.arange(10) + 0.5) / 10)
    with pytest.raises(ValueError, match="horizontal_fov_deg"):
        SolidStateLidar(200.0, 30.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="whole number"):
        SolidStateLidar(100.0, 30.0, 0.7, 1.0)
    with pytest.raises(ValueError, match="scan"):
        SolidStateLidar(100.0, 30.0, 1.0, 1.0, scan="spiral")


def test_solid_state_footprints_are_conservative():
    ss = SolidStateLidar(100.0, 40.0, 2.0, 1.0, min_range=0.3, max_range=60.0)
    means, quats, scales, opac = random_surfels(100, seed=11)
    means[:, 0] = means[:, 0].abs() * 0.8 - 2.0   # mostly in front, some behind / beside
    corners, centre, radius, m2, v2, fr, (au, av, n) = footprint_inputs(ss, means, quats, scales, opac)
    m2 = torch.where(v2[:, None], m2, torch.full_like(m2, -1e6))
    rec = ss.footprints(corners, centre, radius, m2, v2, fr)
    B, A = ss.shape
    hit = 0
    for i in range(means.shape[0]):
        cover = torch.zeros(B, A, dtype=torch.bool)
        for _, r0, r1, c0, c1, _sh in rec[rec[:, 0] == i].tolist():
            cover[r0:r1 + 1, c0:c1 + 1] = True
        a = single_alpha(ss, means, au, av, n, opac, m2, i, 0)
        assert not ((a >= ALPHA_MIN) & ~cover).any(), f"surfel {i} touches cells outside its records"
        hit += int((a >= ALPHA_MIN).sum())
    assert hit > 0


def test_generic_binning_from_param_box_is_conservative():
    """Sensor.footprints (param boxes; seam-straddlers widened to the full turn) stays
    conservative with the spinning LiDAR's support_param_box."""
    from gssim.sensors.base import Sensor
    lidar = small_lidar()
    means, quats, scales, opac = random_surfels(60, seed=21)
    corners, centre, radius, m2, v2, fr, (au, av, n) = footprint_inputs(lidar, means, quats, scales, opac)
    m2 = torch.where(v2[:, None], m2, torch.full_like(m2, -1e6))
    rec = Sensor.footprints(lidar, corners, centre, radius, m2, v2, fr)
    B, A = lidar.shape
    for i in range(60):
        cover = torch.zeros(B, A, dtype=torch.bool)
        for _, r0, r1, c0, c1, _sh in rec[rec[:, 0] == i].tolist():
            cover[r0:r1 + 1, c0:c1 + 1] = True
        a = single_alpha(lidar, means, au, av, n, opac, m2, i, 0)
        assert not ((a >= ALPHA_MIN) & ~cover).any(), f"surfel {i} touches cells outside its records"
