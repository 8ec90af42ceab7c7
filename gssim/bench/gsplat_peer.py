"""A peer for `gssim bench render`: gsplat's 2DGS torch path, run on the CPU.

gsplat (nerfstudio-project/gsplat, pinned 1.5.3, the ``bench`` extra) ships pure-torch
references of its 2DGS ops next to the CUDA kernels.  Its public call,
``gsplat.rasterization_2dgs``, only dispatches to CUDA, so this module composes the same
pipeline from gsplat's torch functions, in the same order:

    project     gsplat.cuda._torch_impl_2dgs._fully_fused_projection_2dgs   (gsplat)
    intersect   isect_tiles_torch                                            (ours, = gsplat's
                _torch_impl._isect_tiles, vectorised; that one is a per-Gaussian Python loop)
    offsets     gsplat.cuda._torch_impl._isect_offset_encode                  (gsplat)
    rasterize   gsplat.cuda._torch_impl_2dgs._rasterize_to_pixels_2dgs       (gsplat) and the
                2DGS evaluation in its accumulate_2dgs (gsplat), which call
                  rasterize_to_indices_in_range_2dgs  -> rasterize_to_indices_torch (ours;
                                                          gsplat has only the CUDA kernel)
                  nerfacc.render_weight_from_alpha    -> render_weight_from_alpha (ours)
                  nerfacc.accumulate_along_rays       -> accumulate_along_rays    (ours)

The three rasterization hooks are installed only while a render runs (``cpu_glue()``):
the gsplat wrapper attribute is swapped and a stand-in ``nerfacc`` module is put in
``sys.modules`` (nerfacc's packed-ray scans are CUDA kernels), both restored afterwards.
Forward and backward are gsplat's torch code under torch autograd; the glue computes
indices (no gradient) and two differentiable segment scans.

Cost: the index step is the CUDA kernel's work done with torch ops, and dominates the
forward.  The kernel tests every pixel of a tile against each Gaussian of the tile; the
glue visits only the pixels that can pass the alpha test (exact bounds, so the same lists
come out), which matters for surfels whose disc crosses the camera plane: gsplat gives them
radii of 10^4-10^5 pixels (every tile).  ``time_gsplat_2dgs`` reports the glue's share.

Conventions mapped from gssim to gsplat (checked by tests/bench/test_gsplat_peer.py):
  quats      both (w, x, y, z), normalised inside; R's first two columns span the surfel,
             the third is its normal (gsplat: RS[..., :2] and RS[..., 2]).
  scales     gsplat takes (N, 3); the first two are s_u, s_v, the third only scales the
             rendered normal (2DGS), so it is 1 here (unit normals).
  camera     viewmats = inverse(T_world_cam) (world-to-camera), both OpenCV axes;
             Ks = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]; pixel (i, j) centred at
             (j + 0.5, i + 0.5) in both.
  filter     both take min(rho_3d, 2 |pixel - means2d|^2) (2DGS object-space low-pass,
             FILTER_INV_SQUARE = 2), ALPHA_MIN = 1/255, stop before T <= 1e-4.
Differences that remain (documented in the test): gsplat clamps alpha at 0.999 (gssim
0.99); sorts by the centre's camera z per 16x16 tile (gssim: distance to the camera);
bounds a surfel by 3.33 x its 1-sigma projected box (gssim: exact footprint); its
means2d is the centre of that box, not the projected centre (only the 2D filter uses it);
its depth channel is the centre's z, not the ray-plane hit.
"""
from __future__ import annotations

import contextlib
import math
import statistics
import sys
import time
import types

import torch

from gssim.core.surfels import Surfels
from gssim.sensors.camera import PinholeCamera

Tensor = torch.Tensor

GSPLAT_VERSION = "1.5.3"
TILE_SIZE = 16
# gsplat's constants for the 2DGS rasterizer (cuda/include/Common.h, csrc/Rasterization.h)
ALPHA_THRESHOLD = 1.0 / 255.0
FILTER_INV_SQUARE_2DGS = 2.0
T_STOP = 1e-4
# Pixel x Gaussian pairs the index glue evaluates at once (about).
_CHUNK = 1 << 21
# Seconds spent in the glue since the last reset (the timing reports it apart).
_GLUE_SECONDS = [0.0]


def available() -> str | None:
    """None when gsplat's torch path can run here, else why not."""
    try:
        import gsplat
        from gsplat.cuda import _torch_impl, _torch_impl_2dgs, _wrapper  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means no peer
        return f"gsplat is not importable ({exc}); pip install 'gssim[bench]'"
    if getattr(gsplat, "__version__", None) != GSPLAT_VERSION:
        return f"gsplat {GSPLAT_VERSION} is pinned, found {getattr(gsplat, '__version__', '?')}"
    return None


# --------------------------------------------------------------------------- glue: tiles

@torch.no_grad()
def isect_tiles_torch(means2d: Tensor, radii: Tensor, depths: Tensor, tile_size: int, tile_width: int,
                      tile_height: int) -> tuple[Tensor, Tensor, Tensor]:
    """Vectorised equivalent of gsplat's ``_torch_impl._isect_tiles`` (sorted).

    means2d: (I, N, 2) pixels; radii: (I, N, 2) int; depths: (I, N) camera z.
    Returns tiles_per_gauss (I, N) int32, isect_ids (M,) int64 sorted
    (image << tile_bits | tile) << 32 | float bits of depth, flatten_ids (M,) int32 in I * N.
    """
    I, N = means2d.shape[:2]
    dev = means2d.device
    tile_means = means2d / tile_size
    tile_radii = radii / tile_size
    lo = torch.floor(tile_means - tile_radii).int()
    hi = torch.ceil(tile_means + tile_radii).int()
    lim = torch.tensor([tile_width, tile_height], dtype=torch.int32, device=dev)
    lo = torch.minimum(lo.clamp(min=0), lim)
    hi = torch.minimum(hi.clamp(min=0), lim)
    span = hi - lo
    tiles_per_gauss = span.prod(-1) * (radii > 0).all(-1)
    counts = tiles_per_gauss.reshape(-1).long()
    gauss = torch.repeat_interleave(torch.arange(I * N, device=dev), counts)
    first = torch.cumsum(counts, 0) - counts
    k = torch.arange(gauss.shape[0], device=dev) - first[gauss]
    w = span.reshape(-1, 2)[gauss, 0].long()
    lo_g = lo.reshape(-1, 2)[gauss].long()
    tile_x, tile_y = lo_g[:, 0] + k % w, lo_g[:, 1] + k // w   # rows of tiles outer, as gsplat
    tile_bits = (tile_width * tile_height).bit_length()
    image = gauss // N
    depth_bits = depths.reshape(-1).contiguous().view(torch.int32)[gauss].long() & 0xFFFFFFFF
    isect_ids = (((image << tile_bits) | (tile_y * tile_width + tile_x)) << 32) | depth_bits
    isect_ids, order = torch.sort(isect_ids, stable=True)
    return tiles_per_gauss.int(), isect_ids, gauss[order].int()


# ------------------------------------------------------------- glue: per-pixel index lists

def _segment_starts(keys: Tensor) -> Tensor:
    """Index of the first element of each element's run of equal ``keys`` (M,) (sorted)."""
    n = keys.shape[0]
    first = torch.ones(n, dtype=torch.bool, device=keys.device)
    first[1:] = keys[1:] != keys[:-1]
    return torch.cummax(torch.where(first, torch.arange(n, device=keys.device), 0), 0).values


def _segment_cumsum(x: Tensor, starts: Tensor, inclusive: bool) -> Tensor:
    """Cumulative sums of x (M,) restarting at each run (``starts`` from _segment_starts)."""
    cs = torch.cumsum(x, 0)
    excl = cs - x
    out = excl - excl[starts]
    return out + x if inclusive else out


def _pixel_boxes(ray_transforms: Tensor, means2d: Tensor, rho_max: Tensor) -> Tensor:
    """(G, 4) x0, x1, y0, y1 (pixels) holding every pixel centre where a Gaussian can pass
    the alpha test min(rho_3d, rho_2d) <= rho_max (G,), with a one-pixel margin.

    rho_2d <= rho_max: a disc of radius sqrt(rho_max / 2) about means2d.  rho_3d <= rho_max:
    the image, under the homography M = ray_transforms (pixel ~ M (u, v, 1)), of the disc
    u^2 + v^2 <= rho_max; where that disc lies wholly on one side of the camera plane its
    image is an ellipse whose extent x = c solves (m0z - c m2z)^2 = r^2 |m0xy - c m2xy|^2
    (the tangency of the line through the camera); else it is unbounded.  float64.
    """
    M = ray_transforms.double()
    r2 = rho_max.double().clamp(min=0)[:, None]
    h0, h1, h2 = M[:, 0], M[:, 1], M[:, 2]
    A = r2[:, 0] * (h2[:, 0] ** 2 + h2[:, 1] ** 2) - h2[:, 2] ** 2
    bounded = A < 0
    safe_A = torch.where(bounded, A, -torch.ones_like(A))
    ext = []
    for h in (h0, h1):
        B = r2[:, 0] * (h[:, 0] * h2[:, 0] + h[:, 1] * h2[:, 1]) - h[:, 2] * h2[:, 2]
        C = r2[:, 0] * (h[:, 0] ** 2 + h[:, 1] ** 2) - h[:, 2] ** 2
        root = torch.sqrt((B * B - A * C).clamp(min=0))
        lo, hi = (B + root) / safe_A, (B - root) / safe_A          # safe_A < 0
        ext += [torch.where(bounded, lo, torch.full_like(lo, -math.inf)),
                torch.where(bounded, hi, torch.full_like(hi, math.inf))]
    r_2d = torch.sqrt(r2[:, 0] / FILTER_INV_SQUARE_2DGS)
    m = means2d.double()
    box = torch.stack([torch.minimum(ext[0], m[:, 0] - r_2d), torch.maximum(ext[1], m[:, 0] + r_2d),
                       torch.minimum(ext[2], m[:, 1] - r_2d), torch.maximum(ext[3], m[:, 1] + r_2d)], -1)
    box = box + torch.tensor([-1.0, 1.0, -1.0, 1.0], dtype=box.dtype, device=box.device)
    return torch.where((rho_max >= 0)[:, None], box, torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=box.dtype))


def _rect_can_pass(A: Tensor, B: Tensor, Cc: Tensor, rho_max: Tensor, means2d: Tensor, x0: Tensor, x1: Tensor,
                   y0: Tensor, y1: Tensor) -> Tensor:
    """(S,) whether any point of the rectangles [x0, x1] x [y0, y1] can pass the alpha test
    of its Gaussian (all (S,) / (S, 3) rows, float64): rho_2d <= rho_max, or rho_3d <= rho_max,
    i.e. q = cx^2 + cy^2 - rho_max cz^2 <= 0 with c = px A + py B + Cc.  q is a quadratic in
    (px, py); its minimum over a rectangle is at a corner, at the vertex of an edge or at
    its interior critical point, so q is evaluated at those nine (clamped) points.  This
    bounds the surfels whose disc crosses the camera plane, whose images are unbounded.
    """
    w = torch.stack([torch.ones_like(rho_max), torch.ones_like(rho_max), -rho_max], -1)
    a11, a12, a22 = (w * A * A).sum(-1), (w * A * B).sum(-1), (w * B * B).sum(-1)
    b1, b2, c0 = (w * A * Cc).sum(-1), (w * B * Cc).sum(-1), (w * Cc * Cc).sum(-1)

    def q(x, y):
        return a11 * x * x + 2 * a12 * x * y + a22 * y * y + 2 * b1 * x + 2 * b2 * y + c0

    def vertex(coef, lin, lo, hi):  # argmin of coef t^2 + 2 lin t on [lo, hi] (or an endpoint)
        t = -lin / torch.where(coef > 0, coef, torch.ones_like(coef))
        return torch.where(coef > 0, torch.minimum(torch.maximum(t, lo), hi), lo)

    pts = [(x0, y0), (x0, y1), (x1, y0), (x1, y1)]
    for x in (x0, x1):
        pts.append((x, vertex(a22, a12 * x + b2, y0, y1)))
    for y in (y0, y1):
        pts.append((vertex(a11, a12 * y + b1, x0, x1), y))
    det = a11 * a22 - a12 * a12
    safe = torch.where(det != 0, det, torch.ones_like(det))
    cx_ = (-b1 * a22 + b2 * a12) / safe
    cy_ = (-b2 * a11 + b1 * a12) / safe
    pts.append((torch.minimum(torch.maximum(cx_, x0), x1), torch.minimum(torch.maximum(cy_, y0), y1)))
    q_min = torch.stack([q(x, y) for x, y in pts], -1).amin(-1)
    dx = torch.clamp(torch.maximum(x0 - means2d[:, 0], means2d[:, 0] - x1), min=0)
    dy = torch.clamp(torch.maximum(y0 - means2d[:, 1], means2d[:, 1] - y1), min=0)
    near_2d = FILTER_INV_SQUARE_2DGS * (dx * dx + dy * dy) <= rho_max
    return (q_min <= 0) | near_2d | ~torch.isfinite(q_min)


@torch.no_grad()
def rasterize_to_indices_torch(range_start: int, range_end: int, transmittances: Tensor, means2d: Tensor,
                               ray_transforms: Tensor, opacities: Tensor, image_width: int, image_height: int,
                               tile_size: int, isect_offsets: Tensor, flatten_ids: Tensor
                               ) -> tuple[Tensor, Tensor, Tensor]:
    """Torch stand-in for gsplat's CUDA-only ``rasterize_to_indices_in_range_2dgs``.

    For every pixel, the Gaussians of its tile's sorted list in batches
    [range_start, range_end) of tile_size^2 that it composites, front to back: those with
    alpha >= 1/255 (2DGS ray-splat alpha, min'd with the 2D filter, clamped to 0.999),
    stopping before the one that takes its transmittance (from ``transmittances``) to <= 1e-4.
    Same decisions as the kernel (RasterizeToIndices2DGS.cu).  The kernel tests every
    pixel of a tile against every Gaussian of the tile; here each tile intersection only
    visits the pixels of the tile inside the Gaussian's box from ``_pixel_boxes`` (which
    holds every pixel that can pass the alpha test), evaluates the kernel's alpha there,
    and applies the front-to-back stop per pixel, vectorised over a group of tiles.

    Shapes as gsplat: transmittances (I, H, W), means2d (I, N, 2), ray_transforms
    (I, N, 3, 3), opacities (I, N), isect_offsets (I, th, tw), flatten_ids (M,) in I * N.
    Returns gaussian ids (in N), pixel ids (row-major in H * W), image ids, all (K,) int64,
    ordered by (image, pixel), then front to back.
    """
    t_enter = time.perf_counter()
    I, N = means2d.shape[-3], means2d.shape[-2]
    th, tw = isect_offsets.shape[-2:]
    H, W = image_height, image_width
    dev = means2d.device
    block = tile_size * tile_size
    n_isects = flatten_ids.shape[0]
    empty = torch.zeros(0, dtype=torch.long, device=dev)
    m2 = means2d.reshape(I * N, 2).float()
    Ms = ray_transforms.reshape(I * N, 3, 3).float()
    op = opacities.reshape(I * N).float()
    # alpha >= 1/255 <=> sigma <= ln(255 opacity) <=> min(rho_3d, rho_2d) <= 2 ln(255 opacity)
    rho_max = 2 * torch.log(255 * op.clamp(min=1e-30))
    box = _pixel_boxes(Ms, m2, rho_max)
    unbounded = torch.isinf(box).any(-1)
    box = box.clamp(-2.0, float(max(H, W) + 2))
    # columns j whose centre j + 0.5 lies in [x0, x1]; rows likewise
    box_lo = torch.ceil(box[:, [0, 2]] - 0.5).long()                  # (I*N, 2) j0, i0
    box_hi = torch.floor(box[:, [1, 3]] - 0.5).long()                 # (I*N, 2) j1, i1
    u_M, v_M, w_M = Ms[:, 0], Ms[:, 1], Ms[:, 2]
    # The kernel's cross(px w - u, py w - v), expanded: px (v x w) + py (w x u) + (u x v).
    A = torch.linalg.cross(v_M, w_M, dim=-1)
    B = torch.linalg.cross(w_M, u_M, dim=-1)
    Cc = torch.linalg.cross(u_M, v_M, dim=-1)
    trans = transmittances.reshape(-1).float()

    # the tile intersections of this range, and the tile pixels inside their boxes
    offsets = isect_offsets.reshape(-1).long()
    pos = torch.arange(n_isects, device=dev)
    tile_of = torch.searchsorted(offsets, pos, right=True) - 1
    local = pos - offsets[tile_of]
    sel = (local >= range_start * block) & (local < range_end * block)
    pos, tile_of = pos[sel], tile_of[sel]
    if pos.numel() == 0:
        _GLUE_SECONDS[0] += time.perf_counter() - t_enter
        return empty, empty, empty
    g = flatten_ids.long()[pos]
    image, tile = tile_of // (th * tw), tile_of % (th * tw)
    t0 = torch.stack([tile % tw, tile // tw], -1) * tile_size          # (S, 2) first column, row
    t1 = torch.minimum(t0 + tile_size, torch.tensor([W, H], device=dev)) - 1
    lo = torch.maximum(box_lo[g], t0)
    hi = torch.minimum(box_hi[g], t1)
    span = (hi - lo + 1).clamp(min=0)
    # unbounded boxes (a disc crossing the camera plane) span whole tiles: test the tile
    # rectangle (pixel centres, half a pixel of margin) against the exact condition
    wide = (span > 0).all(-1) & unbounded[g]
    if bool(wide.any()):
        gw = g[wide]
        r = torch.cat([lo[wide], hi[wide]], -1).double() + torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
        can = _rect_can_pass(A[gw].double(), B[gw].double(), Cc[gw].double(), rho_max[gw].double(),
                             m2[gw].double(), r[:, 0], r[:, 2], r[:, 1], r[:, 3])
        span[wide] = span[wide] * can[:, None]
    count = span[:, 0] * span[:, 1]
    # groups of whole tiles (a pixel's list never splits) of about _CHUNK pairs
    per_tile = torch.zeros(I * th * tw, dtype=torch.long, device=dev).index_add_(0, tile_of, count)
    tile_first = torch.searchsorted(tile_of, torch.arange(I * th * tw + 1, device=dev))
    bounds, acc = [0], 0
    for t, c in enumerate(per_tile.tolist()):
        acc += c
        if acc >= _CHUNK:
            bounds.append(int(tile_first[t + 1]))
            acc = 0
    if bounds[-1] != pos.numel():
        bounds.append(pos.numel())
    out_p, out_g = [], []
    for a, b in zip(bounds[:-1], bounds[1:]):
        cnt = count[a:b]
        rep = torch.repeat_interleave(torch.arange(a, b, device=dev), cnt)       # (Q,) intersection
        if rep.numel() == 0:
            continue
        k = torch.arange(rep.numel(), device=dev) - (torch.cumsum(cnt, 0) - cnt)[rep - a]
        w = span[rep, 0]
        j = lo[rep, 0] + k % w
        i = lo[rep, 1] + k // w
        gg = g[rep]
        px, py = j.float() + 0.5, i.float() + 0.5
        Ag, Bg, Cg = A[gg], B[gg], Cc[gg]
        cx = px * Ag[:, 0] + py * Bg[:, 0] + Cg[:, 0]
        cy = px * Ag[:, 1] + py * Bg[:, 1] + Cg[:, 1]
        cz = px * Ag[:, 2] + py * Bg[:, 2] + Cg[:, 2]
        safe = torch.where(cz == 0, torch.ones_like(cz), cz)
        rho3d = (cx / safe) ** 2 + (cy / safe) ** 2
        dx, dy = m2[gg, 0] - px, m2[gg, 1] - py
        sigma = 0.5 * torch.minimum(rho3d, FILTER_INV_SQUARE_2DGS * (dx * dx + dy * dy))
        alpha = torch.clamp(op[gg] * torch.exp(-sigma), max=0.999)
        ok = (cz != 0) & (sigma >= 0) & (alpha >= ALPHA_THRESHOLD)
        pixel = (image[rep] * H + i) * W + j
        pixel, order_key, gg, alpha = pixel[ok], pos[rep][ok], gg[ok], alpha[ok]
        if pixel.numel() == 0:
            continue
        order = torch.sort(pixel * n_isects + order_key).indices          # per pixel, front to back
        pixel, gg, alpha = pixel[order], gg[order], alpha[order]
        # front to back per pixel: stop before the Gaussian that takes T to <= 1e-4
        seg = _segment_starts(pixel)
        log_keep = torch.log1p(-alpha.double())
        T_after = trans[pixel].double() * torch.exp(_segment_cumsum(log_keep, seg, inclusive=True))
        kept = _segment_cumsum((T_after <= T_STOP).int(), seg, inclusive=True) == 0
        out_p.append(pixel[kept])
        out_g.append(gg[kept])
    _GLUE_SECONDS[0] += time.perf_counter() - t_enter
    if not out_g:
        return empty, empty, empty
    pixels = torch.cat(out_p)
    gauss = torch.cat(out_g)
    order = torch.sort(pixels, stable=True).indices          # pixel-major, depth order kept
    pixels, gauss = pixels[order], gauss[order]
    return gauss % N, pixels % (H * W), pixels // (H * W)


# ------------------------------------------------------ glue: nerfacc's packed-ray scans

def render_weight_from_alpha(alphas: Tensor, packed_info=None, ray_indices: Tensor | None = None,
                             n_rays: int | None = None, prefix_trans=None) -> tuple[Tensor, Tensor]:
    """nerfacc.render_weight_from_alpha for samples sorted by ray (differentiable).

    alphas, ray_indices: (M,).  Returns weights = alpha * T and T (M,), T the exclusive
    product of (1 - alpha) over the earlier samples of the same ray (summed in log space,
    float64; alphas <= 0.999 here so the logs are finite).
    """
    if packed_info is not None or prefix_trans is not None or ray_indices is None:
        raise NotImplementedError("gsplat_peer: only the ray_indices form of render_weight_from_alpha is provided")
    if alphas.numel() == 0:
        return alphas.clone(), torch.ones_like(alphas)
    t_enter = time.perf_counter()
    log_keep = torch.log1p(-alphas.double())
    trans = torch.exp(_segment_cumsum(log_keep, _segment_starts(ray_indices), inclusive=False)).to(alphas.dtype)
    _GLUE_SECONDS[0] += time.perf_counter() - t_enter
    return alphas * trans, trans


def accumulate_along_rays(weights: Tensor, values: Tensor | None = None, ray_indices: Tensor | None = None,
                          n_rays: int | None = None) -> Tensor:
    """nerfacc.accumulate_along_rays: (n_rays, D) sums of weights * values per ray."""
    src = weights[:, None] if values is None else weights[:, None] * values
    if ray_indices is None or n_rays is None:
        raise NotImplementedError("gsplat_peer: only the ray_indices form of accumulate_along_rays is provided")
    return torch.zeros(n_rays, src.shape[-1], dtype=src.dtype, device=src.device).index_add(0, ray_indices, src)


@contextlib.contextmanager
def cpu_glue():
    """Route gsplat's torch 2DGS rasterizer through the torch glue while in the block."""
    from gsplat.cuda import _wrapper

    shim = types.ModuleType("nerfacc")
    shim.render_weight_from_alpha = render_weight_from_alpha
    shim.accumulate_along_rays = accumulate_along_rays
    had = "nerfacc" in sys.modules
    old_mod = sys.modules.get("nerfacc")
    old_fn = _wrapper.rasterize_to_indices_in_range_2dgs
    sys.modules["nerfacc"] = shim
    _wrapper.rasterize_to_indices_in_range_2dgs = rasterize_to_indices_torch
    try:
        yield
    finally:
        _wrapper.rasterize_to_indices_in_range_2dgs = old_fn
        if had:
            sys.modules["nerfacc"] = old_mod
        else:
            sys.modules.pop("nerfacc", None)


# ------------------------------------------------------------------- the 2DGS pipeline

def gsplat_inputs(surfels: Surfels, cam: PinholeCamera, T_world_cam: Tensor) -> dict:
    """gsplat's arguments for gssim surfels seen by a pinhole camera at T_world_cam
    ((4, 4) camera-to-world, OpenCV axes).  The surfel tensors keep their graph."""
    if not isinstance(cam, PinholeCamera):
        raise TypeError(f"gsplat_peer: only pinhole cameras map onto gsplat's Ks, got {type(cam).__name__}")
    T = torch.as_tensor(T_world_cam, dtype=torch.float64)
    viewmat = torch.linalg.inv(T).float()
    K = torch.tensor([[cam.fx, 0.0, cam.cx], [0.0, cam.fy, cam.cy], [0.0, 0.0, 1.0]], dtype=torch.float32)
    scales3 = torch.cat([surfels.scales, torch.ones_like(surfels.scales[:, :1])], -1)
    return {"means": surfels.means, "quats": surfels.quats, "scales": scales3, "opacities": surfels.opacities,
            "colors": surfels.features, "viewmats": viewmat[None], "Ks": K[None], "width": cam.width,
            "height": cam.height, "near_plane": cam.t_min, "far_plane": min(cam.t_max, 1e10)}


def rasterize_2dgs_torch(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                         viewmats: Tensor, Ks: Tensor, width: int, height: int, near_plane: float = 0.01,
                         far_plane: float = 1e10, tile_size: int = TILE_SIZE, with_depth: bool = True,
                         batch_per_iter: int = 100) -> dict:
    """gsplat.rasterization_2dgs (one camera, no batch dims, render_mode "RGB+ED" or
    "RGB") through gsplat's torch ops and the CPU glue.

    means (N, 3), quats (N, 4) (w, x, y, z), scales (N, 3), opacities (N,), colors (N, D),
    viewmats (1, 4, 4) world-to-camera, Ks (1, 3, 3).
    Returns colors (H, W, D), alphas (H, W), normals (H, W, 3) camera frame, not normalised
    (sum w n), depths (H, W) expected centre z (sum w z / alpha, 0 where alpha is 0), and
    the counts: visible Gaussians, tile intersections.
    """
    from gsplat.cuda._torch_impl import _isect_offset_encode
    from gsplat.cuda._torch_impl_2dgs import _fully_fused_projection_2dgs, _rasterize_to_pixels_2dgs

    radii, means2d, depths, ray_transforms, normals = _fully_fused_projection_2dgs(
        means, quats, scales, viewmats, Ks, width, height, near_plane=near_plane, far_plane=far_plane)
    C, N = means2d.shape[:2]
    opac = opacities[None].expand(C, N)
    tile_w, tile_h = math.ceil(width / tile_size), math.ceil(height / tile_size)
    _, isect_ids, flatten_ids = isect_tiles_torch(means2d.detach(), radii, depths.detach(), tile_size, tile_w,
                                                  tile_h)
    isect_offsets = _isect_offset_encode(isect_ids, C, tile_w, tile_h)
    cols = colors[None].expand(C, N, colors.shape[-1])
    if with_depth:
        cols = torch.cat([cols, depths[..., None]], -1)
    with cpu_glue():
        render, alphas, render_normals = _rasterize_to_pixels_2dgs(
            means2d, ray_transforms, cols, normals, opac, width, height, tile_size, isect_offsets, flatten_ids,
            batch_per_iter=batch_per_iter)
    alphas = alphas[0, ..., 0]
    out = {"colors": render[0, ..., :colors.shape[-1]], "alphas": alphas, "normals": render_normals[0],
           "visible": int((radii > 0).all(-1).sum()), "isects": int(flatten_ids.shape[0])}
    if with_depth:
        hit = alphas > 0
        out["depths"] = torch.where(hit, render[0, ..., -1] / torch.where(hit, alphas, torch.ones_like(alphas)),
                                    torch.zeros_like(alphas))
    return out


def render_gsplat_2dgs(surfels: Surfels, cam: PinholeCamera, T_world_cam: Tensor, with_depth: bool = True) -> dict:
    """Render gssim surfels with gsplat's 2DGS torch path: color (H, W, C) over black,
    alpha (H, W), normal (H, W, 3) world frame unit (0 where nothing was hit), depth
    (H, W) (expected centre z), visible, isects."""
    args = gsplat_inputs(surfels, cam, T_world_cam)
    out = rasterize_2dgs_torch(**args, with_depth=with_depth)
    R_wc = torch.linalg.inv(args["viewmats"][0])[:3, :3]
    n = out["normals"] @ R_wc.T
    length = n.norm(dim=-1, keepdim=True)
    ok = length > 1e-12
    res = {"color": out["colors"], "alpha": out["alphas"],
           "normal": torch.where(ok, n / torch.where(ok, length, torch.ones_like(length)), torch.zeros_like(n)),
           "visible": out["visible"], "isects": out["isects"]}
    if with_depth:
        res["depth"] = out["depths"]
    return res


# ----------------------------------------------------------------------------- timing

def time_gsplat_2dgs(surfels: Surfels, cam: PinholeCamera, T_world_cam: Tensor, repeats: int = 3,
                     budget_s: float = 60.0, seed: int = 0) -> dict:
    """Median forward and backward seconds of gsplat's 2DGS torch path on the CPU.

    Renders RGB + expected depth (+ alpha and normals, which gsplat always composites);
    the backward is of a random weighting of colour, alpha, depth and normals, to every
    surfel tensor (as ``gssim.bench.render.time_backend``).  The forward runs without a
    graph (torch.no_grad), the backward is timed alone after building the graph.

    The budget bounds the measurement: one forward and one backward are always timed (the
    first forward doubles as warm-up when there is no room for more); further repeats, up
    to ``repeats`` each, run only while their projected cost fits in ``budget_s``.
    Returns {"fwd", "bwd" (s, medians), "fwd_glue" (s, median share of the forward spent
    in our glue, mostly the per-pixel index lists gsplat computes with a CUDA kernel),
    "pixels", "surfels", "image" (H, W, 3) detached, "fwd_runs", "bwd_runs", "isects",
    "visible", "elapsed", "over_budget"}.
    """
    why = available()
    if why:
        raise RuntimeError(f"gsplat_peer: {why}")
    t_start = time.perf_counter()
    leaves = [p.detach().requires_grad_(True) for p in
              (surfels.means, surfels.quats, surfels.scales, surfels.opacities, surfels.features)]
    s = Surfels(*leaves)
    H, W = cam.height, cam.width
    gen = torch.Generator().manual_seed(seed)
    weights = {"color": torch.rand(H, W, surfels.features.shape[1], generator=gen),
               "alpha": torch.rand(H, W, generator=gen), "depth": torch.rand(H, W, generator=gen),
               "normal": torch.rand(H, W, 3, generator=gen)}

    def forward():
        return render_gsplat_2dgs(s, cam, T_world_cam)

    def elapsed():
        return time.perf_counter() - t_start

    fwd_times, glue_times = [], []

    def timed_forward():
        _GLUE_SECONDS[0] = 0.0
        t0 = time.perf_counter()
        with torch.no_grad():
            out = forward()
        fwd_times.append(time.perf_counter() - t0)
        glue_times.append(_GLUE_SECONDS[0])
        return out

    first = timed_forward()
    # Projected cost of one more forward + one backward round (graph forward ~ forward,
    # backward ~ 2 forwards): keep the minimum within the budget.
    unit = fwd_times[0]
    extra_fwd = max(0, min(repeats, int((budget_s - elapsed() - 3 * unit) / (4 * unit))))
    if extra_fwd >= 1:  # room for more: drop the first (warm-up) sample
        fwd_times.clear()
        glue_times.clear()
        for _ in range(extra_fwd):
            timed_forward()
    bwd_times = []
    while True:
        t0 = time.perf_counter()
        out = forward()
        loss = sum((out[k] * w).sum() for k, w in weights.items())
        t1 = time.perf_counter()
        torch.autograd.grad(loss, leaves, allow_unused=True)
        t2 = time.perf_counter()
        bwd_times.append(t2 - t1)
        del out, loss
        if len(bwd_times) >= repeats or elapsed() + (t2 - t0) > budget_s:
            break
    total = elapsed()
    return {"fwd": statistics.median(fwd_times), "bwd": statistics.median(bwd_times),
            "fwd_glue": statistics.median(glue_times), "pixels": H * W,
            "surfels": len(surfels), "image": first["color"].detach(), "fwd_runs": len(fwd_times),
            "bwd_runs": len(bwd_times), "isects": first["isects"], "visible": first["visible"],
            "elapsed": total, "over_budget": total > budget_s}
