"""Camera models as ray grids: pinhole, OpenCV-distorted, fisheye (equidistant).

Camera frame is OpenCV: x right, y down, z forward.  Pixel (row i, column j) is centred
at image coordinates (j + 0.5, i + 0.5).  Any camera may be rolling-shutter: rows are
read top to bottom over ``rolling_shutter_s`` seconds, row i at readout fraction
(i + 0.5) / height.
"""
from __future__ import annotations

import math
from abc import abstractmethod

import torch

from gssim.sensors.angles import angular_bounds
from gssim.sensors.base import Sensor
from gssim.sensors.limits import LIMITS, SensorConfigError, check_cells, integer, real, reals

Tensor = torch.Tensor

# Largest normalised image coordinate |(u - c) / f| of a pixel centre (see Camera).
MAX_NORMALISED = 1e6
# Longest rolling-shutter readout accepted (s); real sensors read out in tens of ms.
MAX_READOUT_S = 1.0


def _conic_box(m: Tensor, a: Tensor, b: Tensor, A: Tensor) -> Tensor:
    """Bounding box (N, 4) = x0, x1, y0, y1 on the plane z = 1 of the central projection of
    the ellipses m + a cos(s) + b sin(s) (all (N, 3), wholly in front of the camera).

    x0 is reached iff (a_x - x0 a_z)^2 + (b_x - x0 b_z)^2 >= (m_x - x0 m_z)^2, a quadratic
    in x0 with leading coefficient A = m_z^2 - a_z^2 - b_z^2 > 0 (likewise y0).
    """
    extents = []
    for i in (0, 1):
        B = m[:, i] * m[:, 2] - a[:, i] * a[:, 2] - b[:, i] * b[:, 2]
        C = m[:, i] ** 2 - a[:, i] ** 2 - b[:, i] ** 2
        root = torch.sqrt((B * B - A * C).clamp(min=0))
        extents += [(B - root) / A, (B + root) / A]
    return torch.stack(extents, -1)


_QUAD_EDGES = torch.tensor([[0, 1], [1, 2], [2, 3], [3, 0]])
# Half-angle (rad) above which a moving surfel's bounding-sphere cap is replaced by its
# grown rectangle (tighter for large, flat supports; costlier to bound).
_LOOSE_CAP = math.radians(2.0)
# The cube of sign triples (x, y, z) in lexicographic order, and its edges.
_CUBE_SIGNS = torch.tensor([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)])
_CUBE_EDGES = [(i, j) for i in range(8) for j in range(i + 1, 8) if bin(i ^ j).count("1") == 1]
# Edges of a rectangle grown by a cube (vertex q * 8 + c: rectangle corner q moved by
# cube vertex c): rectangle edges at every cube vertex, cube edges at every corner.
_GROWN_QUAD_EDGES = torch.tensor([(a * 8 + c, b * 8 + c) for a, b in _QUAD_EDGES.tolist() for c in range(8)] +
                                 [(q * 8 + a, q * 8 + b) for q in range(4) for a, b in _CUBE_EDGES])


class Camera(Sensor):
    """Common part of the camera models; use a subclass."""

    model: str = ""
    n_distortion: int = 0
    tile_shape = (16, 16)

    def __init__(self, width: int, height: int, fx: float, fy: float, cx: float, cy: float,
                 distortion: list[float] | tuple[float, ...] = (), rolling_shutter_s: float = 0.0,
                 near: float = 0.01, far: float = math.inf) -> None:
        name = type(self).__name__
        # Types and ranges first, then the grid size against LIMITS: nothing is allocated
        # before every argument is known to be sane.
        width = integer(name, "width", width, 1, LIMITS.max_side, " (gssim.sensors.LIMITS.max_side)")
        height = integer(name, "height", height, 1, LIMITS.max_side, " (gssim.sensors.LIMITS.max_side)")
        check_cells(name, height, width, "width x height", "width")
        focal = {}
        for key, val in (("fx", fx), ("fy", fy)):
            v = real(name, key, val)
            if v <= 0:
                raise SensorConfigError(name, key, f"focal lengths must be > 0, got {key}={v:g}")
            if v > LIMITS.max_focal_px:
                raise SensorConfigError(name, key, f"{key}={v:g} pixels is over the limit of {LIMITS.max_focal_px:g} "
                                                   f"(gssim.sensors.LIMITS.max_focal_px): neighbouring rays would be "
                                                   f"closer than float32 resolves")
            focal[key] = v
        fx, fy = focal["fx"], focal["fy"]
        cx, cy = real(name, "cx", cx), real(name, "cy", cy)
        # Normalised coordinates of the outermost pixel centres: beyond MAX_NORMALISED the
        # rays leave any camera's field of view (a pinhole at 89.99994 degrees off axis) or
        # overflow (fx = 1e-300 turns every ray into a zero vector).
        for key, lo, hi, c, f in (("fx", 0.5, width - 0.5, cx, fx), ("fy", 0.5, height - 0.5, cy, fy)):
            reach = max(abs(lo - c), abs(hi - c)) / f
            if not reach <= MAX_NORMALISED:
                blame = key if (hi - lo) / f > MAX_NORMALISED else f"c{key[1]}"  # the focal length or the centre
                raise SensorConfigError(name, blame, f"{key}={f:g} with c{key[1]}={c:g} puts pixel centres {reach:.3g} "
                                                   f"focal lengths off the axis (limit {MAX_NORMALISED:g}); the "
                                                   f"field of view would reach past 180 degrees")
        distortion = reals(name, "distortion", distortion, max_len=16)
        if distortion and len(distortion) != self.n_distortion or (self.n_distortion == 0 and distortion):
            raise SensorConfigError(name, "distortion", f"expected {self.n_distortion} distortion coefficients, "
                                                        f"got {len(distortion)}")
        rolling_shutter_s = real(name, "rolling_shutter_s", rolling_shutter_s, 0.0, MAX_READOUT_S)
        near = real(name, "near", near, 0.0, lo_open=True)
        far = real(name, "far", far, allow_inf=True)
        if not near < far:
            raise SensorConfigError(name, "far", f"need 0 < near < far, got near={near}, far={far}")
        self.width, self.height = width, height
        self.rows, self.cols = self.height, self.width
        self.fx, self.fy, self.cx, self.cy = fx, fy, cx, cy
        self.distortion = distortion or [0.0] * self.n_distortion
        self.rolling_shutter_s = rolling_shutter_s
        self.t_min, self.t_max = near, far
        j = torch.arange(self.width, dtype=torch.float64) + 0.5
        i = torch.arange(self.height, dtype=torch.float64) + 0.5
        v, u = torch.meshgrid(i, j, indexing="ij")
        self._dirs = self._unproject((u - self.cx) / self.fx, (v - self.cy) / self.fy)
        self._finish_grid()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.width}x{self.height}, fx={self.fx:g}, fy={self.fy:g}, "
                f"cx={self.cx:g}, cy={self.cy:g}, distortion={self.distortion}, "
                f"rolling_shutter_s={self.rolling_shutter_s:g})")

    def to_dict(self) -> dict:
        """The sensor entry of the log format (without its mounting pose)."""
        return {"type": "camera", "model": self.model, "width": self.width, "height": self.height,
                "fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy,
                "distortion": list(self.distortion), "rolling_shutter_s": self.rolling_shutter_s}

    @property
    def is_instant(self) -> bool:
        return self.rolling_shutter_s == 0.0

    def cell_fractions(self) -> Tensor:
        if self.is_instant:
            return torch.zeros(self.rows, self.cols)
        rows = (torch.arange(self.rows, dtype=torch.float32) + 0.5) / self.rows
        return rows[:, None].expand(self.rows, self.cols).contiguous()

    def depth_scale(self) -> Tensor:
        return self._dirs[..., 2].float()

    def _pixels(self, xd: Tensor, yd: Tensor) -> Tensor:
        return torch.stack([self.fx * xd + self.cx, self.fy * yd + self.cy], -1)

    @abstractmethod
    def _unproject(self, xd: Tensor, yd: Tensor) -> Tensor:
        """Unit directions (H, W, 3) of distorted normalised coordinates."""


class PinholeCamera(Camera):
    """Ideal perspective camera."""

    model = "pinhole"

    def _distort(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return x, y

    def _undistort(self, xd: Tensor, yd: Tensor) -> tuple[Tensor, Tensor]:
        return xd, yd

    def _unproject(self, xd: Tensor, yd: Tensor) -> Tensor:
        x, y = self._undistort(xd, yd)
        d = torch.stack([x, y, torch.ones_like(x)], -1)
        self._r_valid = float(torch.sqrt(x * x + y * y).max()) * 1.5 + 0.1
        return d / d.norm(dim=-1, keepdim=True)

    def param(self, dirs: Tensor) -> Tensor:
        return dirs[..., :2] / dirs[..., 2:3]

    def project(self, points: Tensor) -> tuple[Tensor, Tensor]:
        z = points[:, 2]
        valid = z > self.t_min
        zs = torch.where(valid, z, torch.ones_like(z))
        x, y = points[:, 0] / zs, points[:, 1] / zs
        valid = valid & (x * x + y * y < self._r_valid ** 2)
        xd, yd = self._distort(x, y)
        return self._pixels(xd, yd), valid

    def support_param_box(self, corners, centre, radius):
        # Where the support ellipse lies wholly in front, its projection is a conic with an
        # exact bounding box (m: centre, a, b: the ellipse's semi-axes).
        a = (corners[:, 0] - corners[:, 3]) / 2
        b = (corners[:, 0] - corners[:, 1]) / 2
        m = centre
        A = m[:, 2] ** 2 - a[:, 2] ** 2 - b[:, 2] ** 2
        conic_ok = (A > 1e-9) & (m[:, 2] > 0)
        box = _conic_box(m, a, b, torch.where(conic_ok, A, torch.ones_like(A)))
        empty = (corners[..., 2] <= 0).all(-1)  # wholly behind the camera plane
        rest = (~conic_ok & ~empty).nonzero()[:, 0]
        if len(rest):
            box[rest], empty[rest] = self._clipped_quad_box(corners[rest])
        return box, empty, torch.zeros_like(empty)

    def moving_param_box(self, corners, centre, radius, translation, rotation):
        # A turn by at most `rotation` moves a point at distance d by at most d * rotation:
        # every pose sees the support within `reach` of where the inputs put it.
        dist = centre.norm(dim=-1).clamp(min=1e-12)
        reach = translation + (dist + radius) * rotation
        grown = radius + reach
        w = centre / dist[:, None]
        beta = torch.asin((grown / dist).clamp(max=1.0))
        off_axis = torch.acos(w[:, 2].clamp(-1, 1))
        crossing = off_axis + beta >= math.pi / 2 - 1e-6
        # Wholly in front: the cone of half-angle beta about the centre direction meets the
        # plane z = 1 in a conic, bounded as a disc of radius tan(beta) about the direction.
        helper = torch.where(w[:, 2:3].abs() < 0.9, torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0]))
        u = torch.linalg.cross(w, helper.to(w.dtype).expand_as(w))
        u = u / u.norm(dim=-1, keepdim=True)
        v = torch.linalg.cross(w, u)
        tb = torch.tan(beta.clamp(max=math.pi / 2 - 1e-6))[:, None]
        a, b = tb * u, tb * v
        A = torch.where(crossing, torch.ones_like(dist), w[:, 2] ** 2 - a[:, 2] ** 2 - b[:, 2] ** 2)
        box = _conic_box(w, a, b, A.clamp(min=1e-12))
        empty = torch.zeros_like(crossing)
        # Near the camera plane, or large enough for the sphere to be loose: the rectangle
        # grown by a cube of half-size `reach` (a convex polytope, its edges those of the
        # rectangle and of the cube), clipped and projected.
        rest = (crossing | (beta > _LOOSE_CAP)).nonzero()[:, 0]
        if len(rest):
            verts = corners[rest, :, None, :] + reach[rest, None, None, None] * _CUBE_SIGNS.to(corners.dtype)
            box[rest], empty[rest] = self._clipped_polytope_box(verts.flatten(1, 2), _GROWN_QUAD_EDGES)
        return box, empty, torch.zeros_like(empty)

    def native_footprint_args(self):
        if type(self) not in (PinholeCamera, OpenCVCamera):
            return None
        return self._native_args(0, clip_z=self.t_min * float(self._dirs[..., 2].min()))

    def native_projection_args(self):
        if type(self) not in (PinholeCamera, OpenCVCamera):
            return None
        k1, k2, p1, p2, k3 = self.distortion if self.distortion else [0.0] * 5
        return 0, [self.t_min, self.fx, self.fy, self.cx, self.cy, self._r_valid, k1, k2, p1, p2, k3], []

    def _clipped_quad_box(self, corners: Tensor) -> tuple[Tensor, Tensor]:
        """Parameter box of support quads (N, 4, 3) crossing the camera plane."""
        return self._clipped_polytope_box(corners, _QUAD_EDGES)

    def _clipped_polytope_box(self, verts: Tensor, edges: Tensor) -> tuple[Tensor, Tensor]:
        """Parameter box of convex polytopes (N, V, 3) with edges (E, 2): rays hit only at
        t > t_min, i.e. depth z > t_min * min(d_z), so clip them to that half-space and
        bound the central projection of what is left (its vertices and edge cuts)."""
        zc = self.t_min * float(self._dirs[..., 2].min())
        in_front = (verts[..., 2] >= zc).all(-1)
        if in_front.all():  # nothing to clip: the vertices bound the projection
            proj = verts[..., :2] / verts[..., 2:3]
            box = torch.stack([proj[..., 0].amin(1), proj[..., 0].amax(1), proj[..., 1].amin(1),
                               proj[..., 1].amax(1)], -1)
            return box, torch.zeros_like(in_front)
        if in_front.any():
            box, empty = torch.zeros(len(verts), 4, dtype=verts.dtype), torch.zeros_like(in_front)
            for part in (in_front, ~in_front):
                box[part], empty[part] = self._clipped_polytope_box(verts[part], edges)
            return box, empty
        p, q = verts[:, edges[:, 0]], verts[:, edges[:, 1]]
        zp, zq = p[..., 2], q[..., 2]
        crossing = (zp >= zc) != (zq >= zc)
        s = ((zc - zp) / torch.where(crossing, zq - zp, torch.ones_like(zp))).clamp(0, 1)
        pts = torch.cat([verts, p + s[..., None] * (q - p)], 1)
        keep = torch.cat([verts[..., 2] >= zc, crossing], 1)
        proj = pts[..., :2] / pts[..., 2:3].clamp(min=zc)
        inf = torch.tensor(float("inf"), dtype=proj.dtype)
        lo = torch.where(keep[..., None], proj, inf).amin(1)
        hi = torch.where(keep[..., None], proj, -inf).amax(1)
        box = torch.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]], -1)
        empty = ~keep.any(1)
        return torch.where(empty[:, None], torch.zeros_like(box), box), empty


class OpenCVCamera(PinholeCamera):
    """Perspective camera with OpenCV radial-tangential distortion [k1, k2, p1, p2, k3]."""

    model = "opencv"
    n_distortion = 5

    def _distort(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        k1, k2, p1, p2, k3 = self.distortion
        r2 = x * x + y * y
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        return xd, yd

    def _undistort(self, xd: Tensor, yd: Tensor) -> tuple[Tensor, Tensor]:
        """Newton iterations on the distortion map, float64; raises if it does not invert."""
        k1, k2, p1, p2, k3 = self.distortion
        x, y = xd.clone(), yd.clone()
        for _ in range(50):
            r2 = x * x + y * y
            radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
            dr = k1 + r2 * (2 * k2 + 3 * k3 * r2)          # d radial / d r2
            fx_, fy_ = self._distort(x, y)
            ex, ey = fx_ - xd, fy_ - yd
            if float(torch.maximum(ex.abs(), ey.abs()).max()) < 1e-13:
                break
            dxx = radial + 2 * x * x * dr + 2 * p1 * y + 6 * p2 * x
            dxy = 2 * x * y * dr + 2 * p1 * x + 2 * p2 * y
            dyx = 2 * x * y * dr + 2 * p1 * x + 2 * p2 * y
            dyy = radial + 2 * y * y * dr + 6 * p1 * y + 2 * p2 * x
            det = dxx * dyy - dxy * dyx
            det = torch.where(det.abs() < 1e-12, torch.full_like(det, 1e-12), det)
            x = x - (dyy * ex - dxy * ey) / det
            y = y - (-dyx * ex + dxx * ey) / det
        rx, ry = self._distort(x, y)
        err = torch.maximum((rx - xd).abs(), (ry - yd).abs()).max()
        if not torch.isfinite(err) or err > 1e-9:
            raise SensorConfigError("OpenCVCamera", "distortion",
                                    f"distortion {self.distortion} is not invertible over the image "
                                    f"(residual {float(err):.2e}); check the coefficients and image size")
        return x, y


class FisheyeCamera(Camera):
    """Fisheye camera, equidistant model with distortion [k1, k2, k3, k4] (OpenCV fisheye).

    theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8), pixel =
    f * theta_d * (x, y) / r + c.  Fields of view beyond 180 degrees are supported.
    """

    model = "fisheye"
    n_distortion = 4

    def _theta_d(self, theta: Tensor) -> Tensor:
        k1, k2, k3, k4 = self.distortion
        t2 = theta * theta
        return theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))

    def _unproject(self, xd: Tensor, yd: Tensor) -> Tensor:
        rd = torch.sqrt(xd * xd + yd * yd)
        theta = rd.clone()
        k1, k2, k3, k4 = self.distortion
        for _ in range(50):
            t2 = theta * theta
            err = self._theta_d(theta) - rd
            if float(err.abs().max()) < 1e-13:
                break
            slope = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + t2 * 9 * k4)))
            theta = (theta - err / slope.clamp(min=1e-9)).clamp(0, math.pi)
        resid = (self._theta_d(theta) - rd).abs().max()
        if not torch.isfinite(resid) or resid > 1e-9 or float(theta.max()) >= math.pi:
            raise SensorConfigError("FisheyeCamera", "distortion",
                                    f"distortion {self.distortion} is not invertible over the image "
                                    f"(residual {float(resid):.2e}); check the coefficients and image size")
        self._theta_max = float(theta.max())
        scale = torch.where(rd > 1e-15, torch.sin(theta) / rd.clamp(min=1e-15), torch.ones_like(rd))
        return torch.stack([xd * scale, yd * scale, torch.cos(theta)], -1)

    def param(self, dirs: Tensor) -> Tensor:
        r = torch.sqrt(dirs[..., 0] ** 2 + dirs[..., 1] ** 2)
        theta = torch.atan2(r, dirs[..., 2])
        scale = torch.where(r > 1e-15, theta / r.clamp(min=1e-15), torch.ones_like(r))
        return dirs[..., :2] * scale[..., None]

    def project(self, points: Tensor) -> tuple[Tensor, Tensor]:
        x, y, z = points.unbind(-1)
        r = torch.sqrt((x * x + y * y).clamp(min=1e-30))
        theta = torch.atan2(r, z)
        dist = points.norm(dim=-1)
        valid = (dist > self.t_min) & (theta < min(self._theta_max + 0.2, math.pi - 1e-3))
        td = self._theta_d(theta)
        scale = torch.where(r > 1e-12, td / r, 1 / z.abs().clamp(min=1e-12))
        return self._pixels(x * scale, y * scale), valid

    def support_param_box(self, corners, centre, radius):
        # Exact angular bounds of the support rectangle about the optical axis:
        # theta = pi/2 - elevation, phi = azimuth.
        b = angular_bounds(corners, centre, radius)
        th0 = (math.pi / 2 - b["el_hi"]).clamp(min=0)
        th1 = (math.pi / 2 - b["el_lo"]).clamp(max=math.pi)
        around_axis = b["whole_turn"] | (th0 <= 0) | (th1 >= math.pi)
        full = b["inside"]
        empty = (th0 > self._theta_max + 1e-6) & ~full
        return self._sector_box(th0, th1, b["az_lo"], b["az_hi"], around_axis), empty, full

    def moving_param_box(self, corners, centre, radius, translation, rotation):
        # The bounding sphere grown by the translation, its cap widened by the rotation.
        radius = radius + translation
        dist = centre.norm(dim=-1)
        full = dist <= radius * 1.0001
        beta = torch.asin((radius / dist.clamp(min=1e-12)).clamp(max=1.0)) + rotation
        r = torch.sqrt(centre[:, 0] ** 2 + centre[:, 1] ** 2)
        theta_a = torch.atan2(r, centre[:, 2])
        phi_a = torch.atan2(centre[:, 1], centre[:, 0])
        th0 = (theta_a - beta).clamp(min=0)
        th1 = (theta_a + beta).clamp(max=math.pi)
        empty = (th0 > self._theta_max + 1e-6) & ~full
        sin_ratio = torch.sin(beta) / torch.sin(theta_a).clamp(min=1e-12)
        around_axis = (theta_a <= beta) | (sin_ratio >= 1) | (th1 >= math.pi)
        dphi = torch.asin(sin_ratio.clamp(max=1.0))
        return self._sector_box(th0, th1, phi_a - dphi, phi_a + dphi, around_axis), empty, full

    def native_footprint_args(self):
        if type(self) is not FisheyeCamera:
            return None
        return self._native_args(1, theta_max=self._theta_max)

    def native_projection_args(self):
        if type(self) is not FisheyeCamera:
            return None
        return 1, [self.t_min, self.fx, self.fy, self.cx, self.cy, min(self._theta_max + 0.2, math.pi - 1e-3),
                   *self.distortion], []

    @staticmethod
    def _sector_box(th0: Tensor, th1: Tensor, phi0: Tensor, phi1: Tensor, around_axis: Tensor) -> Tensor:
        """Box of the equidistant parameters theta (cos phi, sin phi) over an annular
        sector theta in [th0, th1], phi in [phi0, phi1] (a disc of radius th1 where
        ``around_axis``)."""
        phis = torch.stack([phi0, phi1], -1)
        ths = torch.stack([th0, th1], -1)
        xs = (ths[:, :, None] * torch.cos(phis[:, None, :])).reshape(-1, 4)
        ys = (ths[:, :, None] * torch.sin(phis[:, None, :])).reshape(-1, 4)
        x0, x1, y0, y1 = xs.amin(-1), xs.amax(-1), ys.amin(-1), ys.amax(-1)
        # Axis directions inside the angular interval reach the outer radius th1.
        width = phi1 - phi0
        for axis_angle, which in ((0.0, "x1"), (math.pi / 2, "y1"), (math.pi, "x0"), (-math.pi / 2, "y0")):
            inside = torch.remainder(axis_angle - phi0, 2 * math.pi) <= width
            if which == "x1":
                x1 = torch.where(inside, th1, x1)
            elif which == "y1":
                y1 = torch.where(inside, th1, y1)
            elif which == "x0":
                x0 = torch.where(inside, -th1, x0)
            else:
                y0 = torch.where(inside, -th1, y0)
        box = torch.stack([x0, x1, y0, y1], -1)
        disc = torch.stack([-th1, th1, -th1, th1], -1)
        return torch.where(around_axis[:, None], disc, box)
