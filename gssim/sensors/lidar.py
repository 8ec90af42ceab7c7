"""LiDAR models as ray grids: a spinning LiDAR and a solid-state LiDAR.

LiDAR frame: x forward, y left, z up.  Azimuth ``az = atan2(y, x)`` (counter-clockwise
seen from above), elevation ``el = asin(z / |p|)``.  Rows are beams, columns azimuth
cells; the reported depth is the range along the ray (``depth_scale`` is 1).

Spinning LiDAR
    Rows follow ``elevations_deg`` in the order given (presets list the top beam first).
    Columns are in firing order: column j is fired at sweep fraction (j + 0.5) / A and
    points at azimuth ``azimuth_start + sign * (j + 0.5) * resolution`` with sign -1 for
    a clockwise rotation (seen from above).  The default start (180 deg, clockwise) puts
    the azimuth seam behind the vehicle and straight ahead in the middle column, as in
    common range-image layouts.  Binning happens in angle space: the exact azimuth and
    elevation extent of a surfel's support rectangle (within its bounding sphere's cap)
    gives an elevation interval (beam indices, contiguous rows) and an azimuth interval
    (columns, split in two records at the seam).  ``footprints(..., motion=...)`` widens
    the caps by a sweep's translation and rotation so one call bins a moving sweep.
"""
from __future__ import annotations

import json
import logging
import math
from abc import abstractmethod
from importlib import resources

import torch

from gssim.sensors.angles import angular_bounds, moving_cap_bounds
from gssim.sensors.base import CELL_EPS, Sensor
from gssim.sensors.limits import LIMITS, SensorConfigError, SensorTypeError, boolean, check_cells, real, reals

Tensor = torch.Tensor

log = logging.getLogger(__name__)

TWO_PI = 2.0 * math.pi


# Rotation / frame rates accepted (Hz): a sweep lasts between 1 ms and 100 s.
MIN_RATE_HZ, MAX_RATE_HZ = 0.01, 1000.0


def _check_range(name: str, min_range: float, max_range: float) -> tuple[float, float]:
    min_range = real(name, "min_range", min_range, 0.0, lo_open=True)
    max_range = real(name, "max_range", max_range, allow_inf=True)
    if not max_range > min_range:
        raise SensorConfigError(name, "max_range", f"max_range must be > min_range ({min_range}), got {max_range}")
    return min_range, max_range


def _check_rate(name: str, key: str, value) -> float:
    v = real(name, key, value)
    if v <= 0:
        raise SensorConfigError(name, key, f"{key} must be > 0, got {v:g}")
    return real(name, key, v, MIN_RATE_HZ, MAX_RATE_HZ)


def _spherical_dirs(az: Tensor, el: Tensor) -> Tensor:
    """Unit vectors (..., 3) of azimuths and elevations (rad), LiDAR frame."""
    ce = torch.cos(el)
    return torch.stack([ce * torch.cos(az), ce * torch.sin(az), torch.sin(el)], -1)


class Lidar(Sensor):
    """Common part of the LiDAR models; use a subclass."""

    kind = "lidar"
    model: str = ""

    def depth_scale(self) -> Tensor:
        return torch.ones(self.rows, self.cols)

    @property
    @abstractmethod
    def sweep_duration_s(self) -> float:
        """Seconds from fraction 0 to fraction 1 of the cell times."""

    def cell_times(self) -> Tensor:
        """(B, A) float32 time offsets (s) of the cells from the start of the sweep."""
        return self.cell_fractions() * float(self.sweep_duration_s)

    def _range_empty(self, dist: Tensor, radius: Tensor) -> Tensor:
        """(N,) True where a bounding sphere lies wholly outside [t_min, t_max] of range."""
        r = radius.double()
        return (dist + r < self.t_min) | (dist - r > self.t_max)


class SpinningLidar(Lidar):
    """Spinning LiDAR: B beams at fixed elevations, A azimuth cells over one revolution.

    elevations_deg: (B,) beam elevations in degrees, any order (rows follow it; a
        strictly monotone table gives the tightest binning and an exact low-pass filter
        distance).
    azimuth_resolution_deg: angle between columns; 360 / resolution must be an integer A.
    min_range, max_range: metres; returns outside are ignored.
    spin_hz: revolutions per second (one sweep = 1 / spin_hz seconds).
    clockwise: rotation direction seen from above (z up).
    azimuth_start_deg: azimuth where the sweep starts (the seam of the range image).
    """

    model = "spinning"
    tile_shape = (8, 32)

    def __init__(self, elevations_deg, azimuth_resolution_deg: float, min_range: float = 1.0,
                 max_range: float = 120.0, spin_hz: float = 10.0, clockwise: bool = True,
                 azimuth_start_deg: float = 180.0) -> None:
        name = type(self).__name__
        # Every argument's type and range, and the grid size against LIMITS, before any
        # per-beam or per-column table is allocated.
        elev_list = reals(name, "elevations_deg", elevations_deg, max_len=LIMITS.max_beams)
        if not elev_list:
            raise SensorConfigError(name, "elevations_deg", "elevations_deg is empty; give one elevation per beam")
        elev = torch.tensor(elev_list, dtype=torch.float64)
        if (elev.abs() >= 90).any():
            raise SensorConfigError(name, "elevations_deg",
                                    f"elevations_deg must be finite and inside (-90, 90), got {elev.tolist()}")
        e_sorted, perm = torch.sort(elev)
        if elev.numel() > 1 and (e_sorted[1:] - e_sorted[:-1]).min() <= 1e-9:
            raise SensorConfigError(name, "elevations_deg",
                                    "elevations_deg has repeated values; each beam needs its own elevation")
        res = real(name, "azimuth_resolution_deg", azimuth_resolution_deg)
        if not 0 < res <= 360:
            raise SensorConfigError(name, "azimuth_resolution_deg",
                                    f"azimuth_resolution_deg must be in (0, 360], got {azimuth_resolution_deg}")
        cols_f = 360.0 / res
        if not cols_f <= LIMITS.max_side + 0.5:
            raise SensorConfigError(name, "azimuth_resolution_deg",
                                    f"azimuth_resolution_deg={res:g} gives {cols_f:.4g} columns, over the limit of "
                                    f"{LIMITS.max_side} (gssim.sensors.LIMITS.max_side; finest "
                                    f"{360.0 / LIMITS.max_side:.4g} deg)")
        cols = round(cols_f)
        if abs(cols * res - 360.0) > 1e-6 * 360.0:
            raise SensorConfigError(name, "azimuth_resolution_deg",
                                    f"azimuth_resolution_deg={res} does not divide 360 degrees into whole columns "
                                    f"(360/{res} = {360.0 / res:.6f}); use e.g. {360.0 / cols:.8g}")
        check_cells(name, elev.numel(), cols, "elevations_deg x azimuth columns", "azimuth_resolution_deg")
        spin_hz = _check_rate(name, "spin_hz", spin_hz)
        clockwise = boolean(name, "clockwise", clockwise)
        azimuth_start_deg = real(name, "azimuth_start_deg", azimuth_start_deg, -360.0, 360.0)
        self.min_range, self.max_range = _check_range(name, min_range, max_range)
        self.t_min, self.t_max = self.min_range, self.max_range
        self.elevations_deg = [float(e) for e in elev.tolist()]
        self.azimuth_resolution_deg = res
        self.spin_hz = spin_hz
        self.clockwise = clockwise
        self.azimuth_start_deg = azimuth_start_deg
        self.rows, self.cols = elev.numel(), cols

        self._sign = -1.0 if self.clockwise else 1.0
        self._res = TWO_PI / cols                       # exact column pitch (rad)
        self.periodic, self.column_angle = True, self._res
        self._az0 = math.radians(self.azimuth_start_deg)
        self._elev = torch.deg2rad(elev)                # (B,) row order
        self._elev_sorted = torch.deg2rad(e_sorted)     # (B,) ascending
        self._perm = perm                               # sorted index -> row
        self._monotone = bool((perm == torch.arange(self.rows)).all() or
                              (perm == torch.arange(self.rows - 1, -1, -1)).all())
        if not self._monotone:
            log.warning("%s: elevations_deg is not monotone; binning covers the row span of each elevation "
                        "interval and the low-pass filter uses the nearest beam's row", name)
        # Row span of every run of elevation-sorted beams: span_lo/hi[k0, k1] = min/max row of
        # perm[k0..k1] (B x B, tiny), so an elevation interval maps to one contiguous row range.
        p = perm.double()
        span = p[None, :].expand(self.rows, self.rows)
        upper = torch.triu(torch.ones(self.rows, self.rows, dtype=torch.bool))
        self._span_lo = torch.cummin(torch.where(upper, span, torch.full_like(span, math.inf)), 1).values.long()
        self._span_hi = torch.cummax(torch.where(upper, span, torch.full_like(span, -math.inf)), 1).values.long()
        # Elevation spacing around each sorted beam (for the filter distance of unsorted tables
        # and for extrapolating beyond the table ends).
        if self.rows > 1:
            gaps = self._elev_sorted[1:] - self._elev_sorted[:-1]
            self._gap = torch.cat([gaps[:1], 0.5 * (gaps[1:] + gaps[:-1]), gaps[-1:]]) if self.rows > 2 else \
                torch.cat([gaps, gaps])
        else:
            self._gap = torch.tensor([self._res], dtype=torch.float64)

        j = torch.arange(cols, dtype=torch.float64) + 0.5
        az = self._az0 + self._sign * j * self._res
        el_grid, az_grid = torch.meshgrid(self._elev, az, indexing="ij")
        self._dirs = _spherical_dirs(az_grid, el_grid)
        self._finish_grid()

    # --- construction helpers ------------------------------------------------------
    @staticmethod
    def preset_names() -> list[str]:
        """Names of the bundled presets."""
        return sorted(k for k in _load_presets() if not k.startswith("_"))

    @classmethod
    def preset(cls, name: str, **overrides) -> "SpinningLidar":
        """A bundled unit ("vlp-32c", "hdl-64e", "vls-128"); keyword arguments override fields."""
        presets = _load_presets()
        key = name.lower()
        if key.startswith("_") or key not in presets:
            raise ValueError(f"SpinningLidar.preset: unknown preset {name!r}; expected one of "
                             f"{SpinningLidar.preset_names()}")
        kwargs = dict(presets[key])
        kwargs.update(overrides)
        return cls(**kwargs)

    def __repr__(self) -> str:
        return (f"SpinningLidar({self.rows} beams x {self.cols} columns, "
                f"elevations {min(self.elevations_deg):g}..{max(self.elevations_deg):g} deg, "
                f"azimuth_resolution_deg={self.azimuth_resolution_deg:g}, range {self.min_range:g}..{self.max_range:g} m, "
                f"spin_hz={self.spin_hz:g}, {'clockwise' if self.clockwise else 'counter-clockwise'}, "
                f"azimuth_start_deg={self.azimuth_start_deg:g})")

    def to_dict(self) -> dict:
        """The sensor entry of the log format (without its mounting pose)."""
        return {"type": "lidar", "model": self.model, "elevations_deg": list(self.elevations_deg),
                "azimuth_resolution_deg": self.azimuth_resolution_deg, "min_range": self.min_range,
                "max_range": self.max_range, "spin_hz": self.spin_hz, "clockwise": self.clockwise,
                "azimuth_start_deg": self.azimuth_start_deg}

    # --- the contract ----------------------------------------------------------------
    @property
    def is_instant(self) -> bool:
        return False

    @property
    def sweep_duration_s(self) -> float:
        return 1.0 / self.spin_hz

    def cell_fractions(self) -> Tensor:
        """(B, A) float32: column j is fired at sweep fraction (j + 0.5) / A."""
        cols = (torch.arange(self.cols, dtype=torch.float32) + 0.5) / self.cols
        return cols[None, :].expand(self.rows, self.cols).contiguous()

    def column_azimuths(self) -> Tensor:
        """(A,) float64 azimuth (rad, in (-pi, pi]) of each column centre."""
        j = torch.arange(self.cols, dtype=torch.float64) + 0.5
        a = self._az0 + self._sign * j * self._res
        return torch.atan2(torch.sin(a), torch.cos(a))

    def _sweep_angle(self, az: Tensor) -> Tensor:
        """Angle swept from the start to azimuth az, in [0, 2 pi) (rad)."""
        return torch.remainder(self._sign * (az - self._az0), TWO_PI)

    def param(self, dirs: Tensor) -> Tensor:
        """(..., 2) = (sweep angle in [0, 2 pi), elevation) of directions (..., 3)."""
        d = dirs.double()
        az = torch.atan2(d[..., 1], d[..., 0])
        el = torch.asin((d[..., 2] / d.norm(dim=-1).clamp(min=1e-300)).clamp(-1.0, 1.0))
        return torch.stack([self._sweep_angle(az), el], -1)

    def elevation_to_row(self, el: Tensor) -> Tensor:
        """Continuous row coordinate (...) of elevations (..., rad); beam i sits at i + 0.5.

        Monotone tables: piecewise-linear interpolation of the table (linear extrapolation
        past its ends).  Unsorted tables: the nearest beam's row plus the offset in units of
        the local beam spacing.  Differentiable in ``el``.
        """
        es = self._elev_sorted.to(el.device, el.dtype)
        rows_sorted = (self._perm.to(el.device) + 0.5).to(el.dtype)
        if self.rows == 1:
            return rows_sorted[0] + (el - es[0]) / float(self._gap[0])
        if self._monotone:
            k = torch.searchsorted(es, el.detach().contiguous()).clamp(1, self.rows - 1)
            e0, e1 = es[k - 1], es[k]
            r0, r1 = rows_sorted[k - 1], rows_sorted[k]
            return r0 + (el - e0) * (r1 - r0) / (e1 - e0)
        k = torch.searchsorted(es, el.detach().contiguous()).clamp(1, self.rows - 1)
        nearer_low = (el.detach() - es[k - 1]) < (es[k] - el.detach())
        k = torch.where(nearer_low, k - 1, k)
        return rows_sorted[k] + (el - es[k]) / self._gap.to(el.device, el.dtype)[k]

    def project(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 2) = (col, row) grid coordinates of sensor-frame points (N, 3), validity (N,).

        col = sweep angle / pitch in [0, A), row from the elevation table.  Points on the
        rotation axis (azimuth undefined) or at the origin are not valid.
        """
        x, y, z = points.unbind(-1)
        rxy = torch.sqrt((x * x + y * y).clamp(min=1e-30))
        valid = rxy > 1e-9 * (points.norm(dim=-1) + 1e-30)
        az = torch.atan2(y, x)
        el = torch.atan2(z, rxy)
        col = self._sweep_angle(az) / self._res
        return torch.stack([col, self.elevation_to_row(el)], -1), valid

    def support_param_box(self, corners, centre, radius):
        """Parameter boxes (sweep angle, elevation) of supports (exact angular bounds).

        Used by the generic binning only; ``footprints`` splits seam-straddling supports in
        two instead of widening them to the full turn as this box must.
        """
        return self._sweep_box(angular_bounds(corners, centre, radius), radius)

    def moving_param_box(self, corners, centre, radius, translation, rotation):
        b = moving_cap_bounds(centre, radius, translation, rotation)
        return self._sweep_box(b, radius)

    def native_footprint_args(self):
        if type(self) is not SpinningLidar:
            return None
        return self._native_args(2, sign=self._sign, res=self._res, az0=self._az0,
                                 tables=(self._elev_sorted.double(), self._span_lo.to(torch.int32),
                                         self._span_hi.to(torch.int32)))

    def native_projection_args(self):
        if type(self) is not SpinningLidar:
            return None
        return 2, [self._res, self._sign, self._az0, float(self._monotone)], \
            [self._elev_sorted.double().contiguous(), self._perm.double() + 0.5, self._gap.double().contiguous()]

    def _sweep_box(self, b: dict[str, Tensor], radius: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        sc = self._sweep_angle(b["az_c"])
        lo, hi = b["az_lo"] - b["az_c"], b["az_hi"] - b["az_c"]
        s0, s1 = (sc + lo, sc + hi) if self._sign > 0 else (sc - hi, sc - lo)
        whole_turn = b["whole_turn"] | (s0 < 0) | (s1 >= TWO_PI)
        s0 = torch.where(whole_turn, torch.zeros_like(s0), s0)
        s1 = torch.where(whole_turn, torch.full_like(s1, TWO_PI), s1)
        box = torch.stack([s0, s1, b["el_lo"], b["el_hi"]], -1)
        empty = self._range_empty(b["dist"], radius)
        return box, empty & ~b["inside"], b["inside"] & ~empty

    def footprints(self, corners: Tensor, centre: Tensor, radius: Tensor,
                   means2d: Tensor, valid2d: Tensor, filter_radius: Tensor,
                   motion: tuple[Tensor, Tensor] | tuple[float, float] | None = None) -> Tensor:
        """Conservative cell boxes of surfels in angle space: records (F, 6) int32.

        corners: (N, 4, 3) support rectangle corners (cycle order), centre (N, 3) and
        radius (N,) its bounding sphere, sensor frame (the angular box is the exact one of
        the rectangle, see ``angular_bounds``);
        means2d (N, 2) projected centres (col, row) with valid2d (N,) and filter_radius (N,)
        (cells) the low-pass filter's disc.  A record is (surfel, r0, r1, c0, c1, column
        shift).  The azimuth interval (unwrapped around the projected centre, at most
        one turn) is cut at the seam: the part past column A - 1 becomes a record on the
        first columns with shift -A, the part before column 0 one on the last columns with
        shift +A, so the filter distance ``px - (mx + shift)`` is measured on the same side.
        A surfel never covers a cell twice.

        motion: optional (translation m, rotation rad), floats or (N,) tensors, the most the
        sensor moves and turns from the pose the inputs are expressed in while it can see
        each surfel (e.g. over the whole sweep from its start).
        The boxes then hold every cell the surfel can touch from any pose of the sweep
        (bounding-sphere caps widened by the motion, instead of the exact rectangle bounds
        at one pose), so one call bins a moving sweep.
        """
        n = centre.shape[0]
        B, A = self.rows, self.cols
        if n == 0:
            return torch.zeros(0, 6, dtype=torch.int32)
        rad = radius.detach().cpu()
        if motion is None:
            bnd = angular_bounds(corners.detach().cpu(), centre.detach().cpu(), rad)
        else:
            trans, rot = (torch.as_tensor(v, dtype=torch.float64).cpu() for v in motion)
            if not (torch.isfinite(trans).all() and torch.isfinite(rot).all() and (trans >= 0).all()
                    and (rot >= 0).all()):
                raise ValueError(f"SpinningLidar.footprints: motion must be (translation >= 0, rotation >= 0), "
                                 f"got {motion}")
            bnd = moving_cap_bounds(centre.detach().cpu(), rad, trans, rot)
            rad = bnd["radius"]
        inside = bnd["inside"]
        cap_ok = ~self._range_empty(bnd["dist"], rad) | inside
        m = means2d.detach().cpu().double()
        mvalid = valid2d.detach().cpu().bool() & torch.isfinite(m).all(-1)
        m = torch.where(mvalid[:, None], m, torch.zeros_like(m))
        fr = filter_radius.detach().cpu().double()

        # Rows: elevation interval -> sorted beams -> contiguous row span.
        k0 = torch.searchsorted(self._elev_sorted, bnd["el_lo"].contiguous(), right=False)
        k1 = torch.searchsorted(self._elev_sorted, bnd["el_hi"].contiguous(), right=True) - 1
        has_rows = cap_ok & (k0 <= k1)
        k0c, k1c = k0.clamp(0, B - 1), k1.clamp(0, B - 1)
        r0 = torch.where(has_rows, self._span_lo[k0c, k1c], torch.full_like(k0, B))
        r1 = torch.where(has_rows, self._span_hi[k0c, k1c], torch.full_like(k0, -1))

        # Columns, unwrapped around the projected centre: cell j is covered when (j + 0.5)
        # lies in [cc + o_lo, cc + o_hi] (cell units; sweep angle runs against the azimuth
        # for a clockwise unit).
        cc = self._sweep_angle(bnd["az_c"]) / self._res
        cc = torch.where(mvalid, cc + A * torch.round((m[:, 0] - cc) / A), cc)
        lo, hi = bnd["az_lo"] - bnd["az_c"], bnd["az_hi"] - bnd["az_c"]
        o_lo, o_hi = (lo, hi) if self._sign > 0 else (-hi, -lo)
        c0 = torch.ceil(cc + o_lo / self._res - 0.5)
        c1 = torch.floor(cc + o_hi / self._res - 0.5)
        has_cols = c0 <= c1
        cap = has_rows & has_cols & cap_ok
        whole_turn = bnd["whole_turn"] & cap

        # Union with the low-pass filter disc (as in Sensor.footprints).
        # (cells whose centre lies within the filter radius, plus CELL_EPS of slack)
        fr = fr + CELL_EPS
        dr0 = torch.ceil(m[:, 1] - fr - 0.5)
        dr1 = torch.floor(m[:, 1] + fr - 0.5)
        dc0 = torch.ceil(m[:, 0] - fr - 0.5)
        dc1 = torch.floor(m[:, 0] + fr - 0.5)
        disc = mvalid & (dr1 >= 0) & (dr0 <= B - 1)
        big = torch.full_like(c0, math.inf)
        R0 = torch.minimum(torch.where(cap, r0.double(), big), torch.where(disc, dr0, big))
        R1 = torch.maximum(torch.where(cap, r1.double(), -big), torch.where(disc, dr1, -big))
        C0 = torch.minimum(torch.where(cap, c0, big), torch.where(disc, dc0, big))
        C1 = torch.maximum(torch.where(cap, c1, -big), torch.where(disc, dc1, -big))
        any_box = cap | disc
        R0 = torch.where(any_box, R0, torch.zeros_like(R0)).clamp(0, B - 1).long()
        R1 = torch.where(any_box, R1, torch.full_like(R1, -1.0)).clamp(-1, B - 1).long()
        # At most one turn, centred on the centre column when it reaches all around.
        centre_col = torch.where(mvalid, m[:, 0], cc)
        turn0 = torch.floor(centre_col) - A // 2
        wide = whole_turn | (C1 - C0 + 1 >= A)
        C0 = torch.where(any_box, torch.where(wide, turn0, C0), torch.zeros_like(C0)).long()
        C1 = torch.where(any_box, torch.where(wide, turn0 + A - 1, C1), torch.full_like(C1, -1.0)).long()

        # Cut at the seam: main piece, wrapped low part (shift +A), wrapped high part (shift -A).
        rows_ok = any_box & (R0 <= R1)
        main = torch.stack([R0, R1, C0.clamp(min=0), C1.clamp(max=A - 1)], -1)
        low = torch.stack([R0, R1, C0 + A, torch.full_like(C0, A - 1)], -1)
        high = torch.stack([R0, R1, torch.zeros_like(C1), C1 - A], -1)
        ok_main = rows_ok & (C0.clamp(min=0) <= C1.clamp(max=A - 1))
        ok_low = rows_ok & (C0 < 0)
        ok_high = rows_ok & (C1 > A - 1)
        low[:, 2] = low[:, 2].clamp(min=0)
        high[:, 3] = high[:, 3].clamp(max=A - 1)
        idx = torch.arange(n)
        shift = torch.stack([torch.zeros_like(idx), torch.full_like(idx, A), torch.full_like(idx, -A)], 1)
        boxes = torch.stack([main, low, high], 1)               # (N, 3, 4)
        ok = torch.stack([ok_main, ok_low, ok_high], 1)         # (N, 3)
        rec = torch.cat([idx[:, None, None].expand(n, 3, 1), boxes, shift[..., None]], -1)
        rec = rec[ok]
        return rec.to(torch.int32).contiguous()


class SolidStateLidar(Lidar):
    """Solid-state LiDAR with a rectangular field of view on an angle grid.

    horizontal_fov_deg, vertical_fov_deg: full field of view (each < 180), centred on +x.
    horizontal_resolution_deg, vertical_resolution_deg: cell pitch; each FOV must hold a
        whole number of cells.  Column 0 is the leftmost (largest azimuth), row 0 the top.
    scan: "instant" (flash: every cell at one time), "columns" (scanned left to right over
        one frame) or "rows" (top to bottom).
    frame_hz: frames per second (a scanned frame lasts 1 / frame_hz seconds).
    """

    model = "solid_state"
    tile_shape = (16, 16)
    SCANS = ("instant", "columns", "rows")

    def __init__(self, horizontal_fov_deg: float, vertical_fov_deg: float, horizontal_resolution_deg: float,
                 vertical_resolution_deg: float, min_range: float = 0.5, max_range: float = 200.0,
                 scan: str = "instant", frame_hz: float = 10.0) -> None:
        name = type(self).__name__
        cells, angles = [], []
        for key, fov, res in (("horizontal", horizontal_fov_deg, horizontal_resolution_deg),
                              ("vertical", vertical_fov_deg, vertical_resolution_deg)):
            fov = real(name, f"{key}_fov_deg", fov)
            res = real(name, f"{key}_resolution_deg", res)
            if not 0 < fov < 180:
                raise SensorConfigError(name, f"{key}_fov_deg", f"{key}_fov_deg must be in (0, 180), got {fov}")
            if not 0 < res <= fov:
                raise SensorConfigError(name, f"{key}_resolution_deg",
                                        f"{key}_resolution_deg must be in (0, {key}_fov_deg], got {res}")
            if not fov / res <= LIMITS.max_side + 0.5:
                raise SensorConfigError(name, f"{key}_resolution_deg",
                                        f"{key}_resolution_deg={res:g} gives {fov / res:.4g} cells, over the limit of "
                                        f"{LIMITS.max_side} (gssim.sensors.LIMITS.max_side)")
            k = round(fov / res)
            if abs(k * res - fov) > 1e-6 * fov:
                raise SensorConfigError(name, f"{key}_resolution_deg",
                                        f"{key}_fov_deg={fov} is not a whole number of "
                                        f"{key}_resolution_deg={res} cells ({fov / res:.6f})")
            cells.append(k)
            angles.append((fov, res))
        check_cells(name, cells[1], cells[0], "fov / resolution", "horizontal_resolution_deg")
        if not isinstance(scan, str) or scan not in self.SCANS:
            error = SensorConfigError if isinstance(scan, str) else SensorTypeError
            raise error(name, "scan", f"scan must be one of {self.SCANS}, got {scan!r}")
        frame_hz = _check_rate(name, "frame_hz", frame_hz)
        (horizontal_fov_deg, horizontal_resolution_deg), (vertical_fov_deg, vertical_resolution_deg) = angles
        self.min_range, self.max_range = _check_range(name, min_range, max_range)
        self.t_min, self.t_max = self.min_range, self.max_range
        self.horizontal_fov_deg, self.vertical_fov_deg = float(horizontal_fov_deg), float(vertical_fov_deg)
        self.horizontal_resolution_deg = float(horizontal_resolution_deg)
        self.vertical_resolution_deg = float(vertical_resolution_deg)
        self.scan, self.frame_hz = scan, frame_hz
        self.cols, self.rows = cells
        self._h_half, self._v_half = math.radians(self.horizontal_fov_deg) / 2, math.radians(self.vertical_fov_deg) / 2
        self._h_res = 2 * self._h_half / self.cols
        self._v_res = 2 * self._v_half / self.rows
        j = torch.arange(self.cols, dtype=torch.float64) + 0.5
        i = torch.arange(self.rows, dtype=torch.float64) + 0.5
        el, az = torch.meshgrid(self._v_half - i * self._v_res, self._h_half - j * self._h_res, indexing="ij")
        self._dirs = _spherical_dirs(az, el)
        self._finish_grid()

    def __repr__(self) -> str:
        return (f"SolidStateLidar({self.rows}x{self.cols}, fov {self.horizontal_fov_deg:g}x{self.vertical_fov_deg:g} deg, "
                f"range {self.min_range:g}..{self.max_range:g} m, scan={self.scan!r}, frame_hz={self.frame_hz:g})")

    def to_dict(self) -> dict:
        """The sensor entry of the log format (without its mounting pose)."""
        return {"type": "lidar", "model": self.model, "horizontal_fov_deg": self.horizontal_fov_deg,
                "vertical_fov_deg": self.vertical_fov_deg,
                "horizontal_resolution_deg": self.horizontal_resolution_deg,
                "vertical_resolution_deg": self.vertical_resolution_deg, "min_range": self.min_range,
                "max_range": self.max_range, "scan": self.scan, "frame_hz": self.frame_hz}

    @property
    def is_instant(self) -> bool:
        return self.scan == "instant"

    @property
    def sweep_duration_s(self) -> float:
        return 0.0 if self.is_instant else 1.0 / self.frame_hz

    def cell_fractions(self) -> Tensor:
        if self.scan == "columns":
            f = (torch.arange(self.cols, dtype=torch.float32) + 0.5) / self.cols
            return f[None, :].expand(self.rows, self.cols).contiguous()
        if self.scan == "rows":
            f = (torch.arange(self.rows, dtype=torch.float32) + 0.5) / self.rows
            return f[:, None].expand(self.rows, self.cols).contiguous()
        return torch.zeros(self.rows, self.cols)

    def param(self, dirs: Tensor) -> Tensor:
        """(..., 2) = (-azimuth, -elevation): increasing with column and row."""
        d = dirs.double()
        az = torch.atan2(d[..., 1], d[..., 0])
        el = torch.asin((d[..., 2] / d.norm(dim=-1).clamp(min=1e-300)).clamp(-1.0, 1.0))
        return torch.stack([-az, -el], -1)

    def project(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 2) = (col, row) of sensor-frame points (N, 3); valid (N,) in the front half-space."""
        x, y, z = points.unbind(-1)
        rxy = torch.sqrt((x * x + y * y).clamp(min=1e-30))
        az = torch.atan2(y, x)
        el = torch.atan2(z, rxy)
        valid = x > 1e-9 * (points.norm(dim=-1) + 1e-30)
        col = (self._h_half - az) / self._h_res
        row = (self._v_half - el) / self._v_res
        return torch.stack([col, row], -1), valid

    def moving_param_box(self, corners, centre, radius, translation, rotation):
        b = moving_cap_bounds(centre, radius, translation, rotation)
        return self._angle_box(b, radius)

    def support_param_box(self, corners, centre, radius):
        """(-azimuth, -elevation) boxes of the supports (exact angular bounds of the rectangles).

        With both FOVs under 180 degrees the grid lies within azimuth (-90, 90) deg, so an
        interval reaching past +-180 deg only adds directions outside the grid.
        """
        return self._angle_box(angular_bounds(corners, centre, radius), radius)

    def native_footprint_args(self):
        if type(self) is not SolidStateLidar:
            return None
        return self._native_args(3)

    def native_projection_args(self):
        if type(self) is not SolidStateLidar:
            return None
        return 3, [self._h_half, self._v_half, self._h_res, self._v_res], []

    def _angle_box(self, b: dict[str, Tensor], radius: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a0 = torch.where(b["whole_turn"], torch.full_like(b["az_lo"], -2 * math.pi), b["az_lo"])
        a1 = torch.where(b["whole_turn"], torch.full_like(b["az_hi"], 2 * math.pi), b["az_hi"])
        box = torch.stack([-a1, -a0, -b["el_hi"], -b["el_lo"]], -1)
        empty = self._range_empty(b["dist"], radius)
        return box, empty & ~b["inside"], b["inside"] & ~empty


def _load_presets() -> dict:
    text = resources.files("gssim.sensors").joinpath("lidar_presets.json").read_text()
    return json.loads(text)


LIDAR_MODELS = {"spinning": SpinningLidar, "solid_state": SolidStateLidar}


def lidar_from_dict(d: dict) -> Lidar:
    """Build a LiDAR from its log-format entry (keys of ``to_dict``)."""
    model = d.get("model")
    if not isinstance(model, str) or model not in LIDAR_MODELS:
        raise (SensorConfigError if isinstance(model, str) else SensorTypeError)(
            "lidar entry", "model", f"lidar model {model!r} unknown; expected one of {sorted(LIDAR_MODELS)}")
    if model == "spinning":
        required = ("elevations_deg", "azimuth_resolution_deg")
        optional = ("min_range", "max_range", "spin_hz", "clockwise", "azimuth_start_deg")
    else:
        required = ("horizontal_fov_deg", "vertical_fov_deg", "horizontal_resolution_deg", "vertical_resolution_deg")
        optional = ("min_range", "max_range", "scan", "frame_hz")
    missing = [k for k in required if k not in d]
    if missing:
        raise SensorConfigError("lidar entry", missing[0], f"lidar entry (model {model!r}) lacks {missing}")
    kwargs = {k: d[k] for k in required + optional if k in d}
    return LIDAR_MODELS[model](**kwargs)
