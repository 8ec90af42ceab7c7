"""Native render preparation (gssim::footprints) against the torch reference: records
for every sensor model, instant and moving, on random surfels including nasty ones
(behind the camera, crossing its plane, huge, at the LiDAR seam, near the poles, at the
origin); rendered images and gradients through either path."""
from __future__ import annotations

import math

import pytest
import torch

import gssim
from gssim.core.transforms import interpolate_pose
from gssim.render import native, pipeline
from gssim.render.pipeline import build_rays, prepare_surfels
from gssim.sensors import FisheyeCamera, OpenCVCamera, PinholeCamera, SolidStateLidar, SpinningLidar

pytestmark = pytest.mark.skipif(not native.footprints_available(), reason="native extension not built")

ELEV_UNSORTED = [2.0, -1.0, 10.0, -15.0, 0.5, 5.0, -4.0, -24.0, 15.0, -8.0]
ELEV_SORTED = [15.0, 10.0, 6.0, 3.0, 1.0, 0.0, -1.0, -3.0, -6.0, -10.0, -16.0, -25.0]


def sensors() -> dict:
    return {
        "pinhole": PinholeCamera(64, 48, 40.0, 42.0, 31.0, 25.0),
        "opencv": OpenCVCamera(64, 48, 45.0, 45.0, 32.0, 24.0, distortion=[-0.2, 0.05, 0.001, -0.002, 0.0]),
        "fisheye": FisheyeCamera(64, 64, 18.0, 18.0, 32.0, 32.0, distortion=[0.01, 0.0005, 0.0, 0.0]),
        "spinning": SpinningLidar(ELEV_SORTED, 360.0 / 256, min_range=0.3, max_range=40.0),
        "spinning-unsorted-ccw": SpinningLidar(ELEV_UNSORTED, 360.0 / 200, min_range=0.3, max_range=40.0,
                                               clockwise=False, azimuth_start_deg=30.0),
        "solid-state": SolidStateLidar(100.0, 40.0, 2.0, 2.0, min_range=0.3, max_range=40.0),
    }


MOVING = {
    "pinhole": lambda: PinholeCamera(64, 48, 40.0, 42.0, 31.0, 25.0, rolling_shutter_s=0.03),
    "opencv": lambda: OpenCVCamera(64, 48, 45.0, 45.0, 32.0, 24.0, distortion=[-0.2, 0.05, 0.001, -0.002, 0.0],
                                   rolling_shutter_s=0.03),
    "fisheye": lambda: FisheyeCamera(64, 64, 18.0, 18.0, 32.0, 32.0, distortion=[0.01, 0.0005, 0.0, 0.0],
                                     rolling_shutter_s=0.03),
    "spinning": lambda: SpinningLidar(ELEV_SORTED, 360.0 / 256, min_range=0.3, max_range=40.0),
    "spinning-unsorted-ccw": lambda: SpinningLidar(ELEV_UNSORTED, 360.0 / 200, min_range=0.3, max_range=40.0,
                                                   clockwise=False, azimuth_start_deg=30.0),
    "solid-state-columns": lambda: SolidStateLidar(100.0, 40.0, 2.0, 2.0, min_range=0.3, max_range=40.0,
                                                   scan="columns"),
    "solid-state-rows": lambda: SolidStateLidar(100.0, 40.0, 2.0, 2.0, min_range=0.3, max_range=40.0, scan="rows"),
}


def pose(seed: int, lidar: bool) -> torch.Tensor:
    """A sensor-to-world pose a few metres from the origin, turned at random."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(4, generator=gen, dtype=torch.float64)
    q = q / q.norm()
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3] = gssim.core.transforms.quat_to_rotmat(q[None])[0]
    T[:3, 3] = torch.randn(3, generator=gen, dtype=torch.float64) * 5
    return T


def local_points(n: int, gen: torch.Generator, lidar: bool) -> torch.Tensor:
    """Sensor-frame surfel centres: ordinary ones, and nasty ones for the sensor kind."""
    u = lambda *s: torch.rand(*s, generator=gen)  # noqa: E731
    d = torch.randn(n, 3, generator=gen)
    d = d / d.norm(dim=-1, keepdim=True)
    p = d * (0.5 + 20 * u(n, 1) ** 2)
    k = n // 8
    p[:k] *= 0.02                                                    # at the origin
    if lidar:
        # At the seam (behind the sensor for the default start, and at 30 deg), near the poles.
        az = torch.where(u(k) < 0.5, torch.full((k,), math.pi), torch.full((k,), math.radians(30.0)))
        az = az + (u(k) - 0.5) * 0.05
        r = 1 + 10 * u(k)
        p[k:2 * k] = torch.stack([r * torch.cos(az), r * torch.sin(az), (u(k) - 0.5) * r * 0.5], -1)
        p[2 * k:3 * k, :2] *= 0.01
    else:
        p[k:2 * k, 2] = (u(k) - 0.5) * 0.2                          # crossing the camera plane
        p[2 * k:3 * k, 2] = -p[2 * k:3 * k, 2].abs()                 # behind the camera
    return p


def random_surfels(n: int, seed: int, T: torch.Tensor, lidar: bool) -> gssim.Surfels:
    gen = torch.Generator().manual_seed(seed)
    local = local_points(n, gen, lidar).double()
    means = (local @ T[:3, :3].T + T[:3, 3]).float()
    quats = torch.randn(n, 4, generator=gen)
    quats = quats / quats.norm(dim=-1, keepdim=True)
    scales = torch.exp(torch.randn(n, 2, generator=gen) * 1.2 - 2.5)
    scales[: n // 10] *= 60                                          # huge
    opac = torch.rand(n, generator=gen)
    opac[n // 10: n // 10 + n // 20] = 1e-3                          # below ALPHA_MIN
    return gssim.Surfels(means, quats, scales, opac, torch.rand(n, 3, generator=gen))


def coverage(records: torch.Tensor, n: int, rows: int, cols: int) -> torch.Tensor:
    """(n, rows, cols) bool: cells each surfel's records cover."""
    rec = records.long()
    rr, cc = torch.arange(rows), torch.arange(cols)
    in_r = (rr >= rec[:, 1:2]) & (rr <= rec[:, 2:3])
    in_c = (cc >= rec[:, 3:4]) & (cc <= rec[:, 4:5])
    boxes = (in_r[:, :, None] & in_c[:, None, :]).float()
    return torch.zeros(n, rows, cols).index_add_(0, rec[:, 0], boxes) > 0


def records_of(surfels, sensor, grid, use_native: bool, monkeypatch) -> torch.Tensor:
    monkeypatch.setattr(pipeline, "USE_NATIVE_PREP", use_native)
    with torch.no_grad():
        return prepare_surfels(surfels, sensor, grid).records


def check_contains(surfels, sensor, grid, monkeypatch):
    nat = records_of(surfels, sensor, grid, True, monkeypatch)
    ref = records_of(surfels, sensor, grid, False, monkeypatch)
    n, rows, cols = len(surfels), sensor.rows, sensor.cols
    assert nat.dtype == torch.int32 and nat.shape[1] == 6 and nat.is_contiguous()
    assert (nat[:, 1] <= nat[:, 2]).all() and (nat[:, 3] <= nat[:, 4]).all()
    assert (nat[:, 1] >= 0).all() and (nat[:, 2] < rows).all() and (nat[:, 3] >= 0).all() and (nat[:, 4] < cols).all()
    cov_n, cov_r = coverage(nat, n, rows, cols), coverage(ref, n, rows, cols)
    missed = cov_r & ~cov_n
    assert not missed.any(), f"native misses cells of surfels {missed.flatten(1).any(1).nonzero()[:, 0].tolist()}"
    # A surfel never covers a cell twice.
    counts = torch.zeros(n, rows, cols)
    rec = nat.long()
    for r in rec.tolist():
        counts[r[0], r[1]:r[2] + 1, r[3]:r[4] + 1] += 1
    assert counts.max() <= 1
    # Same surfels, and not much more area (the native boxes are only widened by rounding).
    assert set(ref[:, 0].tolist()) <= set(nat[:, 0].tolist())
    assert cov_n.sum() <= 1.1 * cov_r.sum() + 50
    return nat, ref


@pytest.mark.parametrize("name", list(sensors()))
@pytest.mark.parametrize("seed", [0, 1])
def test_instant_records_contain_reference(name, seed, monkeypatch):
    sensor = sensors()[name]
    lidar = getattr(sensor, "kind", "camera") == "lidar"
    T = pose(seed, lidar)
    surfels = random_surfels(1500, seed, T, lidar)
    nat, ref = check_contains(surfels, sensor, build_rays(sensor, T), monkeypatch)
    assert ref.shape[0] > 200


def moved(T: torch.Tensor, seed: int) -> torch.Tensor:
    """The pose at the end of the readout: a metre away and turned a few degrees."""
    delta = pose(seed + 100, False)
    delta[:3, 3] = delta[:3, 3] / delta[:3, 3].norm()
    half = interpolate_pose(torch.eye(4, dtype=torch.float64), delta, torch.tensor([0.05], dtype=torch.float64))[0]
    half[:3, 3] = delta[:3, 3]
    return T @ half


@pytest.mark.parametrize("name", list(MOVING))
@pytest.mark.parametrize("seed", [0, 1])
def test_moving_records_contain_reference(name, seed, monkeypatch):
    sensor = MOVING[name]()
    lidar = getattr(sensor, "kind", "camera") == "lidar"
    T = pose(seed, lidar)
    surfels = random_surfels(1000, seed, T, lidar)
    grid = build_rays(sensor, T, moved(T, seed))
    assert len(grid.cell_poses) > 1
    check_contains(surfels, sensor, grid, monkeypatch)


def render_both(surfels, sensor, T, T_end, monkeypatch):
    outs = []
    for use_native in (True, False):
        monkeypatch.setattr(pipeline, "USE_NATIVE_PREP", use_native)
        leaves = [t.detach().clone().requires_grad_(True) for t in
                  (surfels.means, surfels.quats, surfels.scales, surfels.opacities, surfels.features)]
        out = gssim.render(gssim.Surfels(*leaves), sensor, T, T_end, backend="cpu")
        values = [v for v in vars(out).values()]
        loss = sum((v.double() * (1 + torch.arange(v.numel(), dtype=torch.float64).reshape(v.shape) % 7)).sum()
                   for v in values)
        grads = torch.autograd.grad(loss, leaves)
        outs.append(([v.detach() for v in values], grads))
    return outs


@pytest.mark.skipif(not native.available(), reason="native rasterizer not built")
@pytest.mark.parametrize("name", ["pinhole", "opencv", "fisheye", "spinning", "spinning-unsorted-ccw", "solid-state"])
def test_render_and_gradients_identical(name, monkeypatch):
    sensor = sensors()[name]
    lidar = getattr(sensor, "kind", "camera") == "lidar"
    T = pose(3, lidar)
    surfels = random_surfels(400, 3, T, lidar)
    (vals_n, grads_n), (vals_r, grads_r) = render_both(surfels, sensor, T, None, monkeypatch)
    for a, b in zip(vals_n, vals_r):
        assert torch.equal(a, b)
    for a, b in zip(grads_n, grads_r):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not native.available(), reason="native rasterizer not built")
@pytest.mark.parametrize("name", ["pinhole", "fisheye", "spinning", "solid-state-columns"])
def test_moving_render_identical(name, monkeypatch):
    sensor = MOVING[name]()
    lidar = getattr(sensor, "kind", "camera") == "lidar"
    T = pose(4, lidar)
    surfels = random_surfels(400, 4, T, lidar)
    (vals_n, grads_n), (vals_r, grads_r) = render_both(surfels, sensor, T, moved(T, 4), monkeypatch)
    for a, b in zip(vals_n, vals_r):
        assert torch.equal(a, b)
    for a, b in zip(grads_n, grads_r):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_native_op_checks_its_arguments():
    sensor = sensors()["pinhole"]
    args = sensor.native_footprint_args()
    n = 3
    f = torch.zeros(n, 3)
    good = dict(means=f, t_u=f, t_v=f, scales=torch.ones(n, 2), opacities=torch.ones(n), means2d=torch.zeros(n, 2),
                vis2d=torch.ones(n, dtype=torch.bool), cell_poses=torch.eye(4, dtype=torch.float64)[None],
                pose_index=None, cell_pose_fractions=torch.zeros(1, dtype=torch.float64), motion=None)
    rec = native.footprints(args, sensor.rows, sensor.cols, **good)
    assert rec.shape[1] == 6
    with pytest.raises(RuntimeError, match="scales"):
        native.footprints(args, sensor.rows, sensor.cols, **{**good, "scales": torch.ones(n, 3)})
    with pytest.raises(RuntimeError, match="motion"):
        native.footprints(args, sensor.rows, sensor.cols,
                          **{**good, "pose_index": torch.zeros(n, dtype=torch.long),
                             "motion": ([-1.0, 0.0, 0.1, 0.0, 0.0], [torch.zeros(sensor.rows)] * 2 +
                                        [torch.zeros(sensor.cols)] * 2)})


@pytest.mark.parametrize("name", list(MOVING))
def test_moving_pose_index_matches_reference(name, monkeypatch):
    sensor = MOVING[name]()
    lidar = getattr(sensor, "kind", "camera") == "lidar"
    T = pose(5, lidar)
    surfels = random_surfels(2000, 5, T, lidar)
    grid = build_rays(sensor, T, moved(T, 5))
    found = []
    for use_native in (True, False):
        monkeypatch.setattr(pipeline, "USE_NATIVE_PREP", use_native)
        with torch.no_grad():
            found.append(pipeline._project_centres(sensor, grid, surfels.means))
    (uv_n, ok_n, idx_n), (uv_r, ok_r, idx_r) = found
    # float64 here, float32 in torch: a centre on a cell border may land on either side.
    same = idx_n == idx_r
    assert same.float().mean() > 0.995
    assert torch.equal(ok_n[same], ok_r[same]) and torch.equal(uv_n[same], uv_r[same])
    assert len(grid.cell_poses) > 1 and len(idx_n.unique()) > 3


def test_subclasses_fall_back_to_the_reference():
    class Tweaked(PinholeCamera):
        def support_param_box(self, corners, centre, radius):
            return super().support_param_box(corners, centre, radius)

    cam = Tweaked(32, 24, 20.0, 20.0, 16.0, 12.0)
    assert cam.native_footprint_args() is None and cam.native_projection_args() is None
    assert not pipeline._use_native_prep(cam, torch.zeros(1, 3))
    assert pipeline._use_native_prep(PinholeCamera(32, 24, 20.0, 20.0, 16.0, 12.0), torch.zeros(1, 3))


def test_moving_surfel_the_reference_may_not_see_gets_the_whole_readout(monkeypatch):
    # Surfel 1353 lies just off the image from its own pose: the reference sees no cell and
    # grows it over the whole readout; wider native bounds saw one and stopped early.
    sensor = MOVING["opencv"]()
    T = pose(16, False)
    surfels = random_surfels(1500, 16, T, False)
    check_contains(surfels, sensor, build_rays(sensor, T, moved(T, 16)), monkeypatch)


def test_moving_span_follows_the_reference_sequence(monkeypatch):
    # Surfel 1070: wider first bounds made the native span growth stop a step earlier, at a
    # smaller span than the reference reached; the bracket of its spans keeps going.
    sensor = MOVING["fisheye"]()
    T = pose(47, False)
    surfels = random_surfels(1500, 47, T, False)
    check_contains(surfels, sensor, build_rays(sensor, T, moved(T, 47)), monkeypatch)
