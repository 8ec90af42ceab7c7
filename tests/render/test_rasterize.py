"""Native CPU rasterizer against the torch reference; analytic cases; bad input."""
import math

import pytest
import torch

import gssim
from gssim.render import native
from gssim.render.pipeline import build_rays, prepare_surfels
from gssim.render.reference import rasterize_reference
from gssim.sensors.base import ALPHA_MIN
from tests.conftest import random_surfels

pytestmark = pytest.mark.skipif(not native.available(), reason="native extension not built")

CAMERAS = {
    "pinhole": lambda: gssim.PinholeCamera(40, 30, 30, 30, 20, 15),
    "opencv": lambda: gssim.OpenCVCamera(40, 30, 30, 30, 20, 15, distortion=[-0.1, 0.02, 0.001, -0.001, 0.0]),
    "fisheye": lambda: gssim.FisheyeCamera(40, 30, 12, 12, 20, 15, distortion=[0.02, 0.0, 0.0, 0.0]),
    "rolling_shutter": lambda: gssim.PinholeCamera(40, 30, 30, 30, 20, 15, rolling_shutter_s=0.03),
}
OUTPUTS = ("color", "alpha", "depth", "median_depth", "normal")


def assert_images_match(native_img, reference_img, name, atol=2e-5, rtol=1e-4):
    """Every cell within tolerance, except at most 0.5% of cells where float rounding put a
    contribution on the other side of a cut-off (alpha = 1/255 or T = 1e-4); those may
    differ by the size of such a contribution at most."""
    close = torch.isclose(native_img, reference_img, atol=atol, rtol=rtol)
    cells = close.reshape(close.shape[0], close.shape[1], -1).all(-1)
    assert cells.float().mean() >= 0.995, f"{name}: {int((~cells).sum())} cells differ"
    scale = reference_img.abs().max().clamp(min=1.0)
    worst = (native_img - reference_img).abs().max()
    assert worst <= 3 * ALPHA_MIN * scale, f"{name}: largest difference {float(worst):.3g}"


def assert_grads_match(native_grad, reference_grad, name):
    """Per surfel within 1e-3 of the largest gradient, except at most 2% of surfels (a
    cut-off flip on one of their cells), which stay within 1e-2 of it."""
    scale = float(reference_grad.abs().max())
    assert scale > 0, f"{name}: reference gradient is zero"
    diff = (native_grad - reference_grad).abs().reshape(native_grad.shape[0], -1).amax(-1)
    assert (diff > 1e-3 * scale).float().mean() <= 0.02, f"{name}: {int((diff > 1e-3 * scale).sum())} surfels differ"
    assert float(diff.max()) <= 1e-2 * scale, f"{name}: largest difference {float(diff.max()):.3g} of {scale:.3g}"


def _end_pose():
    T = torch.eye(4, dtype=torch.float64)
    T[0, 3] = 0.2
    T[:3, :3] = torch.tensor([[math.cos(0.05), 0, math.sin(0.05)], [0, 1, 0], [-math.sin(0.05), 0, math.cos(0.05)]],
                             dtype=torch.float64)
    return T


def _render_with_grads(cam, surfels, backend, weights):
    T0 = torch.eye(4, dtype=torch.float64)
    out = gssim.render(surfels, cam, T0, _end_pose(), backend=backend, background=torch.linspace(0.1, 0.3, 
                       surfels.features.shape[1]))
    loss = sum((getattr(out, k) * w).sum() for k, w in weights.items())
    params = [surfels.means, surfels.quats, surfels.scales, surfels.opacities, surfels.features]
    return out, torch.autograd.grad(loss, params)


@pytest.mark.parametrize("model", sorted(CAMERAS))
@pytest.mark.parametrize("channels", [1, 3, 5])
def test_native_matches_reference(model, channels):
    cam = CAMERAS[model]()
    gen = torch.Generator().manual_seed(7)
    weights = {k: torch.rand(cam.rows, cam.cols, *([channels] if k == "color" else [3] if k == "normal" else []),
                             generator=gen) for k in OUTPUTS}
    results = {}
    for backend in ("torch", "cpu"):
        surfels = random_surfels(60, channels=channels, seed=channels, requires_grad=True)
        results[backend] = _render_with_grads(cam, surfels, backend, weights)
    (ref, ref_grads), (nat, nat_grads) = results["torch"], results["cpu"]
    assert ref.alpha.gt(0).float().mean() > 0.1, "scene must cover part of the image"
    for key in OUTPUTS:
        assert_images_match(getattr(nat, key), getattr(ref, key), key)
    for name, g_nat, g_ref in zip(("means", "quats", "scales", "opacities", "features"), nat_grads, ref_grads):
        assert_grads_match(g_nat, g_ref, name)


def assert_footprints_lose_nothing(cam, surfels, T0, T1=None):
    """Rendering (reference) with the pipeline's footprints equals rendering with boxes
    covering the whole grid: no touched cell is left out of a surfel's records."""
    grid = build_rays(cam, T0, T1)
    geom = prepare_surfels(surfels, cam, grid)
    full = torch.tensor([[i, 0, cam.rows - 1, 0, cam.cols - 1, 0] for i in range(len(surfels))], dtype=torch.int32)
    args = (grid.rays_o, grid.rays_d, cam.rows, cam.cols, geom.means, geom.axis_u, geom.axis_v, geom.normals,
            geom.opacities, geom.features, geom.means2d, geom.depth_keys)
    for x, y in zip(rasterize_reference(*args, geom.records, cam.t_min, cam.t_max),
                    rasterize_reference(*args, full, cam.t_min, cam.t_max)):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-6)
    return geom


@pytest.mark.parametrize("model", sorted(CAMERAS))
def test_footprints_are_conservative(model):
    """Rendering with the sensor's footprints equals rendering with whole-grid boxes."""
    surfels = random_surfels(80, seed=3, spread=1.5, centre=(0.0, 0.0, 1.5))
    geom = assert_footprints_lose_nothing(CAMERAS[model](), surfels, torch.eye(4, dtype=torch.float64), _end_pose())
    assert geom.records.shape[0] <= len(surfels)


@pytest.mark.parametrize("model, shift", [("opencv", (0.8, 0.3, 0.5)), ("fisheye", (0.8, -3.3, 0.6))])
def test_rolling_shutter_footprints_lose_nothing(model, shift):
    """Binning a fast-moving, turning rolling-shutter camera loses no cell, even when the
    camera moves faster than its readout sweeps (the fisheye case: 3.3 m up in one readout,
    surfels 0.7 m away, seen at the top rows first and the bottom rows last)."""
    if model == "opencv":
        cam = gssim.OpenCVCamera(40, 30, 20, 20, 20, 15, distortion=[-0.1, 0.02, 0.0, 0.0, 0.0],
                                 rolling_shutter_s=0.05)
    else:
        cam = gssim.FisheyeCamera(40, 30, 10, 10, 20, 15, distortion=[0.02, 0.0, 0.0, 0.0], rolling_shutter_s=0.05)
    T1 = torch.eye(4, dtype=torch.float64)
    a = math.radians(8)
    T1[:3, :3] = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]],
                              dtype=torch.float64)
    T1[:3, 3] = torch.tensor(shift, dtype=torch.float64)
    for seed in (0, 1, 8):
        surfels = random_surfels(150, seed=seed, spread=1.5, centre=(0.0, 0.0, 2.0 if model == "opencv" else 1.5))
        assert_footprints_lose_nothing(cam, surfels, torch.eye(4, dtype=torch.float64), T1)


def test_rolling_shutter_footprints_stay_tight():
    """Motion widens footprints by what the motion can do, not to whole images: a street
    camera at 15 m/s with a 30 ms readout bins at most twice the cells of a still one
    (before surfels near the camera plane were bounded as grown rectangles, hundreds of
    times as many)."""
    from gssim.bench.street import street_camera_pose, street_surfels
    surfels = street_surfels(20000)

    def cells(readout_s):
        cam = gssim.PinholeCamera(160, 90, 100, 100, 80, 45, rolling_shutter_s=readout_s)
        grid = build_rays(cam, street_camera_pose(2.0), street_camera_pose(2.0 + 15.0 * readout_s))
        r = prepare_surfels(surfels, cam, grid).records.long()
        return int(((r[:, 2] - r[:, 1] + 1) * (r[:, 4] - r[:, 3] + 1)).sum())

    assert cells(0.03) < 2 * cells(0.0)


@pytest.mark.parametrize("seed", [3, 8])
def test_wide_fisheye_footprints_are_conservative(seed):
    """Large surfels near the optical axis of a 170-degree fisheye: the support may hold
    directions all around the axis while its bounding cap holds the pole."""
    cam = gssim.FisheyeCamera(48, 36, 10, 10, 24, 18, distortion=[0.02, 0.0, 0.0, 0.0])
    surfels = random_surfels(200, seed=seed, spread=2.0, centre=(0.0, 0.0, 0.5))
    assert_footprints_lose_nothing(cam, surfels, torch.eye(4, dtype=torch.float64))


def _fronto_parallel(opacity=0.8, z=4.0, sigma=0.6, colour=(0.2, 0.5, 0.9), x=0.0):
    return gssim.Surfels(torch.tensor([[x, 0.0, z]]), torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
                         torch.tensor([[sigma, sigma]]), torch.tensor([opacity]), torch.tensor([list(colour)]))


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_single_fronto_parallel_surfel(backend, identity_pose):
    # f = 20 px, z = 4 m, sigma = 0.6 m: one sigma is exactly 3 pixels from the centre pixel.
    cam = gssim.PinholeCamera(31, 31, 20, 20, 15.5, 15.5)
    out = gssim.render(_fronto_parallel(), cam, identity_pose, backend=backend)
    assert out.alpha[15, 15].item() == pytest.approx(0.8, abs=1e-6)
    assert out.alpha[15, 18].item() == pytest.approx(0.8 * math.exp(-0.5), abs=1e-6)
    assert out.alpha[12, 15].item() == pytest.approx(0.8 * math.exp(-0.5), abs=1e-6)
    assert out.alpha[18, 18].item() == pytest.approx(0.8 * math.exp(-1.0), abs=1e-6)
    hit = out.alpha > 0
    torch.testing.assert_close(out.depth[hit], torch.full_like(out.depth[hit], 4.0), atol=5e-5, rtol=0)
    assert out.median_depth[15, 15].item() == pytest.approx(4.0, abs=1e-5)
    torch.testing.assert_close(out.normal[hit], torch.tensor([0.0, 0.0, -1.0]).expand(int(hit.sum()), 3))
    torch.testing.assert_close(out.color[15, 15], 0.8 * torch.tensor([0.2, 0.5, 0.9]))
    assert (out.depth[~hit] == 0).all() and (out.normal[~hit] == 0).all()


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_two_surfels_composite_in_depth_order(backend, identity_pose):
    cam = gssim.PinholeCamera(31, 31, 20, 20, 15.5, 15.5)
    near = _fronto_parallel(opacity=0.6, z=3.0, colour=(1.0, 0.0, 0.0))
    far = _fronto_parallel(opacity=0.7, z=6.0, colour=(0.0, 0.0, 1.0))
    bg = torch.tensor([0.0, 1.0, 0.0])
    a = gssim.render(gssim.Surfels.cat([near, far]), cam, identity_pose, backend=backend, background=bg)
    b = gssim.render(gssim.Surfels.cat([far, near]), cam, identity_pose, backend=backend, background=bg)
    for key in OUTPUTS:
        torch.testing.assert_close(getattr(a, key), getattr(b, key))
    expected = torch.tensor([0.6, 0.4 * 0.7 * 1.0, 0.4 * 0.7]) * torch.tensor([1.0, 0.0, 1.0]) + \
        torch.tensor([0.0, 0.4 * 0.3, 0.0])
    torch.testing.assert_close(a.color[15, 15], expected)
    assert a.depth[15, 15].item() == pytest.approx((0.6 * 3.0 + 0.4 * 0.7 * 6.0) / (1 - 0.4 * 0.3), abs=1e-5)
    # Transmittance crosses 0.5 at the near surfel (1 -> 0.4); a thinner near one lets it pass.
    assert a.median_depth[15, 15].item() == pytest.approx(3.0, abs=1e-5)
    thin = _fronto_parallel(opacity=0.3, z=3.0, colour=(1.0, 0.0, 0.0))
    c = gssim.render(gssim.Surfels.cat([far, thin]), cam, identity_pose, backend=backend)
    assert c.median_depth[15, 15].item() == pytest.approx(6.0, abs=1e-5)


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_subpixel_surfel_does_not_vanish(backend, identity_pose):
    """The 2DGS low-pass filter keeps a surfel far below a pixel in size visible."""
    cam = gssim.PinholeCamera(31, 31, 20, 20, 15.5, 15.5)
    tiny = _fronto_parallel(opacity=0.9, z=50.0, sigma=0.01)
    out = gssim.render(tiny, cam, identity_pose, backend=backend)
    assert out.alpha[15, 15].item() == pytest.approx(0.9, abs=1e-6)        # centre: rho2d = 0
    assert out.alpha[15, 16].item() == pytest.approx(0.9 * math.exp(-1.0), abs=1e-6)  # 1 px: exp(-F/2)
    # Filter branch: the centre's distance along the ray (closest approach), as camera z.
    dz = 1 / math.sqrt(1 + (1 / 20) ** 2)
    assert out.depth[15, 16].item() == pytest.approx(50.0 * dz * dz, rel=1e-5)


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_rolling_shutter_row_poses(backend):
    """A camera sliding sideways during readout sees a static surfel shifted row by row."""
    f, z, shift = 20.0, 4.0, 0.8
    cam = gssim.PinholeCamera(31, 31, f, f, 15.5, 15.5, rolling_shutter_s=0.05)
    T0 = torch.eye(4, dtype=torch.float64)
    T1 = T0.clone()
    T1[0, 3] = shift
    strip = _fronto_parallel(opacity=0.9)
    strip.scales = torch.tensor([[0.3, 5.0]])  # a vertical strip across all rows
    out = gssim.render(strip, cam, T0, T1, backend=backend)
    cols = torch.arange(31, dtype=torch.float32) + 0.5
    for row in (2, 15, 28):
        w = out.alpha[row]
        centroid = float((w * cols).sum() / w.sum())
        s = (row + 0.5) / 31
        assert centroid == pytest.approx(15.5 - f * shift * s / z, abs=0.05)


def test_non_unit_quaternions_are_normalised(identity_pose):
    cam = gssim.PinholeCamera(20, 20, 20, 20, 10, 10)
    s = random_surfels(20, seed=1)
    scaled = gssim.Surfels(s.means, s.quats * 3.7, s.scales, s.opacities, s.features)
    a = gssim.render(s, cam, identity_pose, backend="cpu")
    b = gssim.render(scaled, cam, identity_pose, backend="cpu")
    torch.testing.assert_close(a.color, b.color)


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_empty_scene_gives_background(backend, identity_pose):
    cam = gssim.PinholeCamera(8, 6, 10, 10, 4, 3)
    empty = gssim.Surfels(torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, 3))
    out = gssim.render(empty, cam, identity_pose, backend=backend, background=torch.tensor([0.1, 0.2, 0.3]))
    torch.testing.assert_close(out.color, torch.tensor([0.1, 0.2, 0.3]).expand(6, 8, 3))
    assert (out.alpha == 0).all() and (out.depth == 0).all()


def test_surfels_behind_the_camera_are_not_drawn(identity_pose):
    cam = gssim.PinholeCamera(20, 20, 20, 20, 10, 10)
    behind = _fronto_parallel(z=-3.0)
    out = gssim.render(behind, cam, identity_pose, backend="cpu")
    assert (out.alpha == 0).all()


@pytest.mark.parametrize("bad, message", [
    (dict(means=torch.zeros(2, 2)), "Surfels.means"),
    (dict(quats=torch.zeros(3, 4)), "Surfels.quats"),
    (dict(scales=torch.zeros(3, 3)), "Surfels.scales"),
    (dict(opacities=torch.full((3,), 1.5)), "opacities"),
    (dict(features=torch.zeros(3)), "Surfels.features"),
    (dict(means=torch.full((3, 3), float("nan"))), "NaN"),
    (dict(means=torch.zeros(3, 3, dtype=torch.float64)), "float32"),
    (dict(scales=-torch.ones(3, 2)), "scales"),
])
def test_bad_surfels_are_rejected(bad, message):
    fields = dict(means=torch.zeros(3, 3), quats=torch.tensor([[1.0, 0, 0, 0]] * 3), scales=torch.ones(3, 2),
                  opacities=torch.full((3,), 0.5), features=torch.zeros(3, 3))
    fields.update(bad)
    with pytest.raises((ValueError, TypeError), match=message):
        gssim.Surfels(**fields)


def test_bad_render_arguments(identity_pose):
    cam = gssim.PinholeCamera(8, 6, 10, 10, 4, 3)
    s = random_surfels(4)
    with pytest.raises(ValueError, match="background"):
        gssim.render(s, cam, identity_pose, background=torch.zeros(4))
    with pytest.raises(ValueError, match="backend"):
        gssim.render(s, cam, identity_pose, backend="vulkan")
    with pytest.raises(ValueError, match="4x4"):
        gssim.render(s, cam, torch.eye(3))
    skew = identity_pose.clone()
    skew[0, 1] = 0.5
    with pytest.raises(ValueError, match="orthonormal"):
        gssim.render(s, cam, skew)
    with pytest.raises(TypeError, match="sensor"):
        gssim.render(s, "camera", identity_pose)
    with pytest.raises(ValueError, match="at least 1x1|positive"):
        gssim.PinholeCamera(0, 6, 10, 10, 4, 3)


def test_native_op_rejects_malformed_records():
    cam = gssim.PinholeCamera(8, 6, 10, 10, 4, 3)
    grid = build_rays(cam, torch.eye(4, dtype=torch.float64))
    geom = prepare_surfels(random_surfels(3), cam, grid)
    args = [grid.rays_o, grid.rays_d, 6, 8, geom.means, geom.axis_u, geom.axis_v, geom.normals, geom.opacities,
            geom.features, geom.means2d, geom.depth_keys]
    bad = torch.tensor([[5, 0, 1, 0, 1, 0]], dtype=torch.int32)
    with pytest.raises(RuntimeError, match="outside"):
        native.rasterize(*args, bad, 16, 16, 0.01, 1e9)
    off_grid = torch.tensor([[0, 0, 9, 0, 1, 0]], dtype=torch.int32)
    with pytest.raises(RuntimeError, match="inside"):
        native.rasterize(*args, off_grid, 16, 16, 0.01, 1e9)
    with pytest.raises(RuntimeError, match="rays_o"):
        native.rasterize(grid.rays_o[:-1], *args[1:], geom.records, 16, 16, 0.01, 1e9)
