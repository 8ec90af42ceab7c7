"""View culling and spatial chunks: conservative (nothing drawn is culled, renders and
gradients unchanged) and effective (what cannot be seen is culled)."""
import math

import pytest
import torch

import gssim
from gssim.render.culling import SurfelChunks, support_radius, visible_index
from gssim.render.pipeline import build_rays

SENSORS = {
    "pinhole": lambda: gssim.PinholeCamera(48, 32, 30, 30, 24, 16),
    "opencv": lambda: gssim.OpenCVCamera(48, 32, 30, 30, 24, 16, distortion=[-0.1, 0.02, 0.001, -0.001, 0.0]),
    "fisheye": lambda: gssim.FisheyeCamera(48, 32, 10, 10, 24, 16, distortion=[0.02, 0.0, 0.0, 0.0]),
    "rolling_shutter": lambda: gssim.PinholeCamera(48, 32, 30, 30, 24, 16, rolling_shutter_s=0.03),
    "far_plane": lambda: gssim.PinholeCamera(48, 32, 30, 30, 24, 16, far=8.0),
    "spinning": lambda: gssim.SpinningLidar([-15.0, -7.0, -2.0, 1.0, 4.0], 6.0, min_range=0.5, max_range=9.0,
                                            spin_hz=10.0),
    "solid_state": lambda: gssim.SolidStateLidar(60.0, 20.0, 3.0, 2.0, min_range=0.3, max_range=9.0),
}


def _scene(n=3000, seed=0):
    """Surfels all around the sensor (behind, beside, near, far, huge, faint, tiny)."""
    gen = torch.Generator().manual_seed(seed)
    direction = torch.randn(n, 3, generator=gen)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    dist = torch.rand(n, generator=gen) ** 2 * 25 + 0.05
    means = direction * dist[:, None]
    quats = torch.randn(n, 4, generator=gen)
    scales = torch.exp(torch.randn(n, 2, generator=gen) * 1.2 - 2.5)
    opacities = torch.rand(n, generator=gen)
    opacities[:50] = 0.002  # below ALPHA_MIN: never drawn
    features = torch.rand(n, 3, generator=gen)
    return gssim.Surfels(*(t.requires_grad_(True) for t in (means, quats, scales, opacities, features)))


def _pose(angle=0.0, x=0.0):
    T = torch.eye(4, dtype=torch.float64)
    c, s = math.cos(angle), math.sin(angle)
    T[:3, :3] = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64)
    T[0, 3] = x
    return T


@pytest.mark.parametrize("name", sorted(SENSORS))
def test_nothing_drawn_is_culled(name):
    sensor = SENSORS[name]()
    s = _scene()
    moving = not sensor.is_instant
    end = _pose(0.3, 0.5) if moving else None
    grid = build_rays(sensor, _pose(), end)
    # Drawn: composited with a non-zero weight somewhere (its features get a gradient).
    out = gssim.render(s, sensor, _pose(), end, backend="cpu", cull=False)
    acc = out.color if hasattr(out, "color") else out.features
    (g,) = torch.autograd.grad(acc.sum(), [s.features])
    drawn = (g.abs().sum(-1) > 0).nonzero()[:, 0]
    assert len(drawn) > 20
    kept = visible_index(s, sensor, grid)
    kept = torch.arange(len(s)) if kept is None else kept
    assert torch.isin(drawn, kept).all(), f"{name}: {int((~torch.isin(drawn, kept)).sum())} drawn surfels culled"
    assert len(kept) < len(s) - 50, f"{name}: culling rejected only {len(s) - len(kept)} of {len(s)} surfels"
    assert not torch.isin(torch.arange(50), kept).any(), "surfels below ALPHA_MIN must be culled"


@pytest.mark.parametrize("name", sorted(SENSORS))
def test_culled_render_is_the_same(name):
    sensor = SENSORS[name]()
    end = None if sensor.is_instant else _pose(0.3, 0.5)
    outs, grads = [], []
    for cull in (False, True):
        s = _scene(seed=1)
        out = gssim.render(s, sensor, _pose(), end, backend="cpu", cull=cull)
        fields = ("color", "alpha", "depth", "normal") if hasattr(out, "color") else ("range", "alpha", "features")
        loss = sum((getattr(out, f) * (i + 1)).sum() for i, f in enumerate(fields))
        grads.append(torch.autograd.grad(loss, [s.means, s.quats, s.scales, s.opacities, s.features]))
        outs.append([getattr(out, f).detach() for f in fields])
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    # Gradients are summed with atomic adds across threads: equal up to summation order.
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(b.abs().max()))


def test_lidar_culls_beyond_its_range():
    lidar = SENSORS["spinning"]()
    s = _scene(n=2000, seed=2)
    grid = build_rays(lidar, _pose())
    kept = visible_index(s, lidar, grid)
    with torch.no_grad():
        far = s.means.norm(dim=-1) - support_radius(s.scales, s.opacities) > 2 * lidar.max_range
    assert far.sum() > 100
    assert not torch.isin(far.nonzero()[:, 0], kept).any()


@pytest.mark.parametrize("name", ["pinhole", "spinning", "rolling_shutter"])
def test_chunks_render_the_same_and_touch_only_visible_chunks(name):
    sensor = SENSORS[name]()
    end = None if sensor.is_instant else _pose(0.3, 0.5)
    s = _scene(n=4000, seed=3)
    chunks = SurfelChunks(s, chunk_m=3.0)
    assert len(chunks) > 20
    grid = build_rays(sensor, _pose(), end)
    cand = chunks.candidates(sensor, grid)
    assert len(cand) < len(s)
    assert torch.all(cand[1:] > cand[:-1])
    kept = visible_index(s, sensor, grid)
    assert torch.isin(kept, cand).all()
    a = gssim.render(s, sensor, _pose(), end, backend="cpu", cull=False)
    b = gssim.render(chunks, sensor, _pose(), end, backend="cpu")
    fields = ("color", "alpha", "depth") if hasattr(a, "color") else ("range", "alpha", "features")
    for f in fields:
        assert torch.equal(getattr(a, f), getattr(b, f))


def test_chunks_of_an_empty_view():
    s = _scene(n=500, seed=4)
    with torch.no_grad():
        s.means += torch.tensor([0.0, 0.0, -100.0])  # all behind the camera
    cam = SENSORS["pinhole"]()
    out = gssim.render(SurfelChunks(s, 4.0), cam, _pose(), backend="cpu")
    assert float(out.alpha.abs().max()) == 0.0
    with pytest.raises(ValueError, match="chunk_m"):
        SurfelChunks(s, 0.0)
