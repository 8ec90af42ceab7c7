"""The native rasterizer op (gssim._C) with autograd attached."""
from __future__ import annotations

import torch

Tensor = torch.Tensor

try:
    from gssim import _C  # noqa: F401  (registers torch.ops.gssim)
    NATIVE_ERROR = None
except ImportError as err:  # the package was not built
    NATIVE_ERROR = err


def available(device_type: str = "cpu") -> bool:
    """True when the native extension is built with kernels for ``device_type``."""
    return NATIVE_ERROR is None and torch._C._dispatch_has_kernel_for_dispatch_key(
        "gssim::rasterize_fwd", device_type.upper())


class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rays_o, rays_d, rows, cols, means, axis_u, axis_v, normals, opacities, features,
                means2d, depth_keys, records, tile_h, tile_w, t_min, t_max):
        args = (rays_o, rays_d, rows, cols, means, axis_u, axis_v, normals, opacities, features, means2d,
                depth_keys, records, tile_h, tile_w, t_min, t_max)
        color, alpha, t_acc, normal, median, order, tile_offsets, entries, last, median_pos = \
            torch.ops.gssim.rasterize_fwd(*args)
        ctx.scalars = (rows, cols, tile_h, tile_w, t_min, t_max)
        ctx.save_for_backward(rays_o, rays_d, means, axis_u, axis_v, normals, opacities, features, means2d,
                              depth_keys, records, order, tile_offsets, entries, alpha, last, median_pos)
        return color, alpha, t_acc, normal, median

    @staticmethod
    def backward(ctx, g_color, g_alpha, g_t, g_normal, g_median):
        (rays_o, rays_d, means, axis_u, axis_v, normals, opacities, features, means2d, depth_keys, records,
         order, tile_offsets, entries, alpha, last, median_pos) = ctx.saved_tensors
        rows, cols, tile_h, tile_w, t_min, t_max = ctx.scalars
        grads = [g.contiguous() if g is not None else torch.zeros_like(ref)
                 for g, ref in ((g_color, features.new_empty(rays_o.shape[0], features.shape[1])),
                                (g_alpha, alpha), (g_t, alpha), (g_normal, rays_o), (g_median, alpha))]
        d_means, d_u, d_v, d_n, d_o, d_f, d_m2 = torch.ops.gssim.rasterize_bwd(
            rays_o, rays_d, rows, cols, means, axis_u, axis_v, normals, opacities, features, means2d,
            depth_keys, records, tile_h, tile_w, t_min, t_max, order, tile_offsets, entries, alpha, last, median_pos,
            *grads)
        return (None, None, None, None, d_means, d_u, d_v, d_n, d_o, d_f, d_m2, None, None, None, None, None, None)


def rasterize(rays_o: Tensor, rays_d: Tensor, rows: int, cols: int, means: Tensor, axis_u: Tensor,
              axis_v: Tensor, normals: Tensor, opacities: Tensor, features: Tensor, means2d: Tensor,
              depth_keys: Tensor, records: Tensor, tile_h: int, tile_w: int, t_min: float, t_max: float
              ) -> tuple[Tensor, ...]:
    """Native compositing with the signature and outputs of ``rasterize_reference``
    (plus tile shape): color_acc (R, C), alpha (R,), t_acc (R,), normal_acc (R, 3), median_t (R,)."""
    if NATIVE_ERROR is not None:
        raise RuntimeError(f"gssim native extension is not built ({NATIVE_ERROR}); run "
                           "`pip install --no-build-isolation -e .` or use backend='torch'")
    c = lambda t: t.contiguous()  # noqa: E731
    return _Rasterize.apply(c(rays_o), c(rays_d), int(rows), int(cols), c(means), c(axis_u), c(axis_v),
                            c(normals), c(opacities), c(features), c(means2d), c(depth_keys), c(records),
                            int(tile_h), int(tile_w), float(t_min), float(t_max))


def footprints_available(device_type: str = "cpu") -> bool:
    """True when the extension has the native preparation ops for ``device_type``."""
    return NATIVE_ERROR is None and torch._C._dispatch_has_kernel_for_dispatch_key(
        "gssim::footprints", device_type.upper())


def footprints(sensor_args: tuple[int, list[float], list[Tensor]], rows: int, cols: int, means: Tensor,
               t_u: Tensor, t_v: Tensor, scales: Tensor, opacities: Tensor, means2d: Tensor, vis2d: Tensor,
               cell_poses: Tensor, pose_index: Tensor | None, cell_pose_fractions: Tensor,
               motion: tuple[list[float], list[Tensor]] | None) -> Tensor:
    """Footprint records (F, 6) int32 of surfels (no gradient), as ``Sensor.footprints``
    on their supports would give them, or larger (never a cell fewer).

    Runs on the surfels' device (CPU or CUDA); the sensor's and the motion's tables and
    the poses are moved there.

    sensor_args: ``sensor.native_footprint_args()``; means, t_u, t_v (N, 3) float32 world
    frame (unit tangents); scales (N, 2); opacities (N,); means2d (N, 2) projected centres
    (col, row) and vis2d (N,) bool where the low-pass filter applies; cell_poses (P, 4, 4)
    float64; pose_index (N,) int64 pose each surfel is binned from (moving sensors, else
    None); cell_pose_fractions (P,) float64; motion: ([translation, rotation,
    readout_angle, periodic, column_angle], [fraction row_lo, row_hi, col_lo, col_hi]) of a
    moving sensor, else None.
    """
    dev = means.device
    if not footprints_available(dev.type):
        raise RuntimeError(f"gssim native extension has no footprint op for {dev.type} tensors "
                           f"({NATIVE_ERROR or 'not built for it'}); rebuild with `python setup.py build_ext --inplace`")
    model, scalars, tables = sensor_args
    c = lambda t: t.detach().to(dev).contiguous()  # noqa: E731
    f32 = lambda t: c(t.float())  # noqa: E731
    index = torch.zeros(0, dtype=torch.long, device=dev) if pose_index is None else c(pose_index.long())
    m_scalars, m_tables = motion if motion is not None else ([], [])
    tables = [c(t) for t in tables]
    return torch.ops.gssim.footprints(model, int(rows), int(cols), scalars, tables, f32(means), f32(t_u), f32(t_v),
                                      f32(scales), f32(opacities), f32(means2d), c(vis2d.bool()),
                                      c(cell_poses.double()), index, c(cell_pose_fractions.double()),
                                      [float(v) for v in m_scalars], [c(t.double()) for t in m_tables])


def moving_pose_index(projection_args: tuple[int, list[float], list[Tensor]], rows: int, cols: int,
                      means: Tensor, cell_poses: Tensor, cell_pose_index: Tensor) -> Tensor:
    """(N,) int64 cell pose each surfel of a moving sensor is seen from: the pose of the
    cell its centre lands in, by three fixed-point steps from the middle cell's pose.

    projection_args: ``sensor.native_projection_args()``; means (N, 3) world frame;
    cell_poses (P, 4, 4) float64; cell_pose_index (rows, cols) int64 into cell_poses.
    Runs on the device of ``means``.
    """
    dev = means.device
    if not footprints_available(dev.type):
        raise RuntimeError(f"gssim native extension has no preparation ops for {dev.type} tensors "
                           f"({NATIVE_ERROR or 'not built for it'}); rebuild with `python setup.py build_ext --inplace`")
    model, scalars, tables = projection_args
    c = lambda t: t.to(dev).contiguous()  # noqa: E731
    return torch.ops.gssim.moving_pose_index(model, int(rows), int(cols), [float(v) for v in scalars],
                                             [c(t.double()) for t in tables], c(means.detach().float()),
                                             c(cell_poses.double()), c(cell_pose_index.long()))
