"""The ray-grid contract every sensor implements.

A sensor is a grid of rays (rows x cols).  For rendering it answers:

* ``ray_directions()``: unit directions in its own frame, (H, W, 3);
* ``cell_fractions()``: where in the readout/sweep each cell is taken, in [0, 1]
  (the sensor pose of a cell is interpolated between the start and end poses);
* ``depth_scale()``: factor from ray distance to the reported depth (camera z, LiDAR 1);
* ``project(points)``: continuous grid coordinates (col, row) of points in its frame,
  used for the 2DGS low-pass filter (cell (i, j) is centred at (j + 0.5, i + 0.5));
* ``footprints(...)``: a conservative set of cells a surfel can touch, as cell boxes.

Footprints go through a 2D parametrisation of directions (``param``) in which the
sensor's field of view is one connected region; per grid column and row we keep the
monotone hull of the parameters of its rays, so a surfel whose support lies in the
parameter box [x0, x1] x [y0, y1] can only touch the columns whose hull meets [x0, x1]
and the rows whose hull meets [y0, y1].  This holds for any distortion.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from gssim.sensors.limits import SensorConfigError, check_cells

Tensor = torch.Tensor

# Alpha below which a surfel does not contribute; shared with the native code.
ALPHA_MIN = 1.0 / 255.0
# Inverse squared radius of the 2DGS screen-space low-pass filter, in cells^-2.
FILTER_INV_SQUARE = 2.0
# Slack of footprint bounds, in direction parameters (about radians) and in cells.
PARAM_EPS = 1e-6
CELL_EPS = 0.01


class Sensor(ABC):
    """Base class of ray-grid sensors.  Subclasses fill ``_dirs`` (H, W, 3) float64."""

    rows: int
    cols: int
    tile_shape: tuple[int, int] = (16, 16)
    t_min: float = 0.01
    t_max: float = math.inf
    # Periodic sensors (a spinning LiDAR) have columns that wrap around: the last column
    # neighbours the first, ``column_angle`` (rad) apart, but is taken a whole readout later.
    periodic: bool = False
    column_angle: float = 0.0
    _dirs: Tensor

    def _finish_grid(self) -> None:
        """Build the per-column and per-row parameter hulls from the ray grid."""
        name = type(self).__name__
        if self.rows < 1 or self.cols < 1:
            raise SensorConfigError(name, "shape", f"grid must be at least 1x1, got {self.rows}x{self.cols}")
        check_cells(name, self.rows, self.cols, "the ray grid", "shape")
        self._check_rays()
        p = self.param(self._dirs)  # (H, W, 2)
        px, py = p[..., 0], p[..., 1]
        col_lo = torch.flip(torch.cummin(torch.flip(px.amin(0), [0]), 0).values, [0])
        col_hi = torch.cummax(px.amax(0), 0).values
        row_lo = torch.flip(torch.cummin(torch.flip(py.amin(1), [0]), 0).values, [0])
        row_hi = torch.cummax(py.amax(1), 0).values
        self._col_hull = (col_lo.contiguous(), col_hi.contiguous())
        self._row_hull = (row_lo.contiguous(), row_hi.contiguous())

    def _check_rays(self) -> None:
        """Every ray must be a finite unit vector, distinct in float32 from its neighbours
        (what the renderer uses): parameters that overflow (a focal length of 1e-300) or
        collapse the grid (beams 1e-9 degrees apart) are refused here, for every model."""
        name = type(self).__name__
        d = self._dirs
        if tuple(d.shape) != (self.rows, self.cols, 3):
            raise SensorConfigError(name, "shape", f"ray grid has shape {tuple(d.shape)}, expected "
                                                   f"({self.rows}, {self.cols}, 3)")
        norm = d.norm(dim=-1)
        if not (torch.isfinite(d).all() and ((norm - 1).abs() < 1e-6).all()):
            raise SensorConfigError(name, "rays", "ray directions are not finite unit vectors; check the focal "
                                                  "lengths, distortion and angles")
        d32 = d.float()
        same_row = (d32[:, 1:] == d32[:, :-1]).all(-1)
        same_col = (d32[1:] == d32[:-1]).all(-1)
        if bool(same_row.any()) or bool(same_col.any()):
            where = same_row.nonzero()[0].tolist() if bool(same_row.any()) else same_col.nonzero()[0].tolist()
            raise SensorConfigError(name, "rays", f"neighbouring cells (row {where[0]}, column {where[1]} and the "
                                                  f"next) have the same float32 ray; the grid is finer than float32 "
                                                  f"resolves")

    # --- the contract -------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    def ray_directions(self) -> Tensor:
        """Unit ray directions in the sensor frame, (H, W, 3) float32."""
        return self._dirs.float()

    def cell_fractions(self) -> Tensor:
        """Readout fraction of each cell in [0, 1], (H, W) float32 (zeros: one instant)."""
        return torch.zeros(self.rows, self.cols)

    @property
    def is_instant(self) -> bool:
        """True when every cell is taken at the same instant (pose)."""
        return True

    @abstractmethod
    def depth_scale(self) -> Tensor:
        """(H, W) factor turning ray distance into the reported depth."""

    @abstractmethod
    def param(self, dirs: Tensor) -> Tensor:
        """Continuous 2D parameters (..., 2) of directions (..., 3) for binning."""

    @abstractmethod
    def project(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Grid coordinates (N, 2) = (col, row) of sensor-frame points, and validity (N,)."""

    @abstractmethod
    def support_param_box(self, corners: Tensor, centre: Tensor, radius: Tensor
                          ) -> tuple[Tensor, Tensor, Tensor]:
        """Parameter box of surfel supports in the sensor frame.

        corners: (N, 4, 3) corners of each support rectangle; centre (N, 3); radius (N,)
        of the support's bounding circle.  Returns box (N, 4) = x0, x1, y0, y1, ``empty``
        (N,) bool (cannot be seen) and ``full`` (N,) bool (may cover any cell).
        """

    @abstractmethod
    def moving_param_box(self, corners: Tensor, centre: Tensor, radius: Tensor, translation: Tensor,
                         rotation: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Parameter box of surfel supports seen from any pose that is at most
        ``translation`` (N,) metres and ``rotation`` (N,) radians away from the pose of the
        inputs (same inputs and outputs as ``support_param_box``)."""

    def native_footprint_args(self) -> tuple[int, list[float], list[Tensor]] | None:
        """What the native footprint op (gssim::footprints) needs of this sensor: model id
        (``SensorModel`` in cuda_ext/include/gssim/footprint_math.h), scalars (t_min, t_max,
        clip_z, theta_max, sign, res, az0) and tables (parameter hulls, then model tables);
        None for a model without a native path (``footprints`` is then used), and for
        subclasses of the built-in models (they may change the maths)."""
        return None

    def native_projection_args(self) -> tuple[int, list[float], list[Tensor]] | None:
        """What the native ``project`` (``ProjDesc`` in cuda_ext/include/gssim/project_math.h)
        needs: model id, scalars and tables; None for a model without one."""
        return None

    def _native_args(self, model: int, clip_z: float = 0.0, theta_max: float = 0.0, sign: float = 0.0,
                     res: float = 0.0, az0: float = 0.0, tables: tuple[Tensor, ...] = ()
                     ) -> tuple[int, list[float], list[Tensor]]:
        cached = getattr(self, "_native_cache", None)
        if cached is None:
            hulls = [t.double().contiguous() for t in (*self._col_hull, *self._row_hull)]
            cached = (model, [float(self.t_min), float(self.t_max), clip_z, theta_max, sign, res, az0],
                      hulls + [t.contiguous() for t in tables])
            self._native_cache = cached
        return cached

    # --- shared machinery --------------------------------------------------------
    def param_box_to_cells(self, box: Tensor) -> Tensor:
        """Cell box (N, 4) = r0, r1, c0, c1 (inclusive; empty when r0 > r1 or c0 > c1)."""
        col_lo, col_hi = self._col_hull
        row_lo, row_hi = self._row_hull
        # Widened by PARAM_EPS: float32 rays may sit a rounding error off the float64 grid.
        box = (box.to(col_lo.dtype) + torch.tensor([-PARAM_EPS, PARAM_EPS, -PARAM_EPS, PARAM_EPS],
                                                   dtype=col_lo.dtype)).contiguous()
        c0 = torch.searchsorted(col_hi, box[:, 0].contiguous(), right=False)
        c1 = torch.searchsorted(col_lo, box[:, 1].contiguous(), right=True) - 1
        r0 = torch.searchsorted(row_hi, box[:, 2].contiguous(), right=False)
        r1 = torch.searchsorted(row_lo, box[:, 3].contiguous(), right=True) - 1
        return torch.stack([r0, r1, c0, c1], -1)

    def footprints(self, corners: Tensor, centre: Tensor, radius: Tensor,
                   means2d: Tensor, valid2d: Tensor, filter_radius: Tensor,
                   motion: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Conservative cell boxes of surfels: records (F, 6) int32.

        Each record is (surfel index, r0, r1, c0, c1, column shift); the column shift
        (in cells) is added to the surfel's projected column when the box is a wrapped
        copy (periodic sensors).  Inputs are in the sensor frame; ``means2d`` (N, 2) grid
        coordinates with ``valid2d`` (N,) and ``filter_radius`` (N,) in cells give the
        low-pass filter's disc.  ``motion`` = (translation (N,) m, rotation (N,) rad): the
        most the sensor moves from the pose of the inputs while it can see each surfel; the
        boxes then hold every cell touched from any such pose (bounding spheres widened).
        """
        n = corners.shape[0]
        if motion is None:
            box, empty, full = self.support_param_box(corners, centre, radius)
        else:
            box, empty, full = self.moving_param_box(corners, centre, radius, motion[0], motion[1])
        cells = self.param_box_to_cells(box)
        big = torch.tensor([0, self.rows - 1, 0, self.cols - 1])
        cells = torch.where(full[:, None], big, cells)
        none = torch.tensor([self.rows, -1, self.cols, -1])
        nothing = (empty & ~full) | (cells[:, 0] > cells[:, 1]) | (cells[:, 2] > cells[:, 3])
        cells = torch.where(nothing[:, None], none, cells)
        # Union with the low-pass filter disc around the projected centre.
        m = means2d.detach().double()
        fr = filter_radius.double()
        fr = fr + CELL_EPS
        disc = torch.stack([
            torch.ceil(m[:, 1] - fr - 0.5), torch.floor(m[:, 1] + fr - 0.5),
            torch.ceil(m[:, 0] - fr - 0.5), torch.floor(m[:, 0] + fr - 0.5)], -1)
        disc = disc.clamp(-1, max(self.rows, self.cols) + 1).long()
        disc = torch.where(valid2d[:, None], disc, none)
        cells = torch.stack([torch.minimum(cells[:, 0], disc[:, 0]), torch.maximum(cells[:, 1], disc[:, 1]),
                             torch.minimum(cells[:, 2], disc[:, 2]), torch.maximum(cells[:, 3], disc[:, 3])], -1)
        return self._clip_records(torch.arange(n), cells, torch.zeros(n, dtype=torch.long))

    def _clip_records(self, index: Tensor, cells: Tensor, shift: Tensor) -> Tensor:
        """Clip boxes to the grid and drop empty ones."""
        r0 = cells[:, 0].clamp(min=0)
        r1 = cells[:, 1].clamp(max=self.rows - 1)
        c0 = cells[:, 2].clamp(min=0)
        c1 = cells[:, 3].clamp(max=self.cols - 1)
        keep = (r0 <= r1) & (c0 <= c1)
        rec = torch.stack([index, r0, r1, c0, c1, shift], -1)[keep]
        return rec.to(torch.int32).contiguous()
