// Per-surfel footprint maths of render preparation: which cells of a sensor's ray grid a
// surfel's support can touch, as cell boxes.  Plain C++ (no torch), HOST_DEVICE inline,
// float64, shared by the CPU driver (cpu/prepare_cpu.cpp) and the CUDA kernels (cuda/).
//
// The torch reference (gssim/sensors/*.py) is the oracle: every function here mirrors one
// there and makes the same decisions, but never a smaller box.  The reference works on
// float32 sensor-frame corners; each of its points may sit up to |slack| metres off ours
// (float32 rounding of world coordinates and the pose), so bounds here are widened by
// the angle or parameter shift such an offset can cause, and threshold decisions that a
// rounding could flip take the wider branch.  A negative slack turns every margin the
// other way: boxes then hold only cells the reference's hold too (an inner bound).
#pragma once

#include <cmath>
#include <cstdint>

#include "gssim/surfel_math.h"

namespace gssim {

constexpr double PI_D = 3.14159265358979323846;
constexpr double TWO_PI_D = 2.0 * PI_D;
constexpr double PARAM_EPS = 1e-6;   // slack of parameter boxes (base.py)
constexpr double CELL_EPS = 0.01;    // slack of the low-pass filter disc, cells (base.py)
constexpr double ANGLE_EPS = 1e-5;   // slack of angular intervals, rad (angles.py)
constexpr double LOOSE_CAP = 2.0 * PI_D / 180.0;  // camera.py _LOOSE_CAP
constexpr double F32_EPS = 2.4e-7;   // four float32 ulps: rounding of one reference op
constexpr double INF_D = 1e300;

struct DVec3 {
  double x, y, z;
};

HOST_DEVICE inline DVec3 operator+(DVec3 a, DVec3 b) { return DVec3{a.x + b.x, a.y + b.y, a.z + b.z}; }
HOST_DEVICE inline DVec3 operator-(DVec3 a, DVec3 b) { return DVec3{a.x - b.x, a.y - b.y, a.z - b.z}; }
HOST_DEVICE inline DVec3 operator*(double s, DVec3 a) { return DVec3{s * a.x, s * a.y, s * a.z}; }
HOST_DEVICE inline double ddot(DVec3 a, DVec3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
HOST_DEVICE inline double dnorm(DVec3 a) { return sqrt(ddot(a, a)); }
HOST_DEVICE inline DVec3 dcross(DVec3 a, DVec3 b) {
  return DVec3{a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x};
}
HOST_DEVICE inline double dmin(double a, double b) { return a < b ? a : b; }
HOST_DEVICE inline double dmax(double a, double b) { return a > b ? a : b; }
HOST_DEVICE inline double dclamp(double x, double lo, double hi) { return dmin(dmax(x, lo), hi); }

enum SensorModel : int32_t { MODEL_PINHOLE = 0, MODEL_FISHEYE = 1, MODEL_SPINNING = 2, MODEL_SOLID_STATE = 3 };

// What the footprint maths needs of a sensor (tables are read-only, owned by the caller).
struct SensorDesc {
  int32_t model, rows, cols;
  const double *col_lo, *col_hi, *row_lo, *row_hi;  // monotone parameter hulls (base.py)
  double t_min, t_max;
  double clip_z;     // pinhole: t_min * min ray z (rays hit only at depth above it)
  double theta_max;  // fisheye: largest ray angle off the axis
  double sign, res, az0;                  // spinning: rotation sign, column pitch, start azimuth
  const double* elev_sorted;              // spinning: (rows,) ascending beam elevations
  const int32_t *span_lo, *span_hi;       // spinning: (rows, rows) row span of sorted-beam runs
};

// A surfel's support in the sensor frame: rectangle corners (cycle order), centre, radius
// of its bounding sphere, and how far the reference's float32 copy of each point may be.
struct Support {
  DVec3 corners[4];
  DVec3 centre;
  double radius, slack;  // slack < 0: inner bounds (see the top of this file)
};

// +1 for outer bounds, -1 for inner ones.
HOST_DEVICE inline double margin_sign(double slack) { return slack < 0.0 ? -1.0 : 1.0; }

struct ParamBox {
  double x0, x1, y0, y1;
  bool empty, full;
};

// Inclusive cell box; empty when r0 > r1 or c0 > c1.
struct CellBox {
  int64_t r0, r1, c0, c1;
};

// One footprint record: surfel, r0, r1, c0, c1, column shift.
struct Record {
  int64_t r0, r1, c0, c1, shift;
};

// --- parameter box -> cells (Sensor.param_box_to_cells) ---------------------------------

// First index with a[i] >= x (torch.searchsorted right=False); n when none.  Branch-free
// halving (a select per step, no mispredictions); a NaN x gives 0.
HOST_DEVICE inline int64_t lower_index(const double* a, int64_t n, double x) {
  if (n <= 0) return 0;
  const double* base = a;
  while (n > 1) {
    const int64_t half = n / 2;
    base = base[half] < x ? base + half : base;
    n -= half;
  }
  return (base - a) + (*base < x ? 1 : 0);
}

// First index with a[i] > x (right=True); n when none.  A NaN x gives 0.
HOST_DEVICE inline int64_t upper_index(const double* a, int64_t n, double x) {
  if (n <= 0) return 0;
  const double* base = a;
  while (n > 1) {
    const int64_t half = n / 2;
    base = base[half] <= x ? base + half : base;
    n -= half;
  }
  return (base - a) + (*base <= x ? 1 : 0);
}

// Columns whose hull meets [x0, x1], rows whose hull meets [y0, y1] (a NaN bound reaches
// the whole grid).  Widened by PARAM_EPS as the reference, and by a rounding's worth more.
HOST_DEVICE inline CellBox param_box_to_cells(const SensorDesc& s, ParamBox b, double sgn) {
  const double e = 1e-12 * sgn;
  const double ex0 = PARAM_EPS + e * fabs(b.x0), ex1 = PARAM_EPS + e * fabs(b.x1);
  const double ey0 = PARAM_EPS + e * fabs(b.y0), ey1 = PARAM_EPS + e * fabs(b.y1);
  CellBox c;
  c.c0 = lower_index(s.col_hi, s.cols, b.x0 - ex0);
  c.c1 = upper_index(s.col_lo, s.cols, b.x1 + ex1) - 1;
  c.r0 = lower_index(s.row_hi, s.rows, b.y0 - ey0);
  c.r1 = upper_index(s.row_lo, s.rows, b.y1 + ey1) - 1;
  if (b.x0 != b.x0) c.c0 = 0;
  if (b.x1 != b.x1) c.c1 = s.cols - 1;
  if (b.y0 != b.y0) c.r0 = 0;
  if (b.y1 != b.y1) c.r1 = s.rows - 1;
  return c;
}

// Cells whose centre lies within the low-pass filter radius fr of the projected centre
// (col mx, row my), plus CELL_EPS (and the float32 rounding of fr).
HOST_DEVICE inline CellBox filter_disc(double mx, double my, double fr, int64_t clamp_hi, double sgn) {
  fr = fr + CELL_EPS + sgn * 1e-6 * (1.0 + fr);
  const double lim_lo = -1.0, lim_hi = static_cast<double>(clamp_hi);
  return CellBox{static_cast<int64_t>(dclamp(ceil(my - fr - 0.5), lim_lo, lim_hi)),
                 static_cast<int64_t>(dclamp(floor(my + fr - 0.5), lim_lo, lim_hi)),
                 static_cast<int64_t>(dclamp(ceil(mx - fr - 0.5), lim_lo, lim_hi)),
                 static_cast<int64_t>(dclamp(floor(mx + fr - 0.5), lim_lo, lim_hi))};
}

HOST_DEVICE inline CellBox box_union(CellBox a, CellBox b) {
  return CellBox{a.r0 < b.r0 ? a.r0 : b.r0, a.r1 > b.r1 ? a.r1 : b.r1, a.c0 < b.c0 ? a.c0 : b.c0,
                 a.c1 > b.c1 ? a.c1 : b.c1};
}

// Sensor.footprints for one surfel: the parameter box's cells (all of them when `full`,
// none when `empty`) united with the filter disc (when valid), clipped to the grid.
// Returns whether the record is non-empty.
HOST_DEVICE inline bool generic_record(const SensorDesc& s, ParamBox b, bool disc_valid, double mx, double my,
                                       double fr, double sgn, Record& rec) {
  const CellBox none{s.rows, -1, s.cols, -1};
  CellBox c = param_box_to_cells(s, b, sgn);
  if (b.full) c = CellBox{0, s.rows - 1, 0, s.cols - 1};
  if ((b.empty && !b.full) || c.r0 > c.r1 || c.c0 > c.c1) c = none;
  const int64_t clamp_hi = (s.rows > s.cols ? s.rows : s.cols) + 1;
  if (disc_valid) c = box_union(c, filter_disc(mx, my, fr, clamp_hi, sgn));
  rec.r0 = c.r0 > 0 ? c.r0 : 0;
  rec.r1 = c.r1 < s.rows - 1 ? c.r1 : s.rows - 1;
  rec.c0 = c.c0 > 0 ? c.c0 : 0;
  rec.c1 = c.c1 < s.cols - 1 ? c.c1 : s.cols - 1;
  rec.shift = 0;
  return rec.r0 <= rec.r1 && rec.c0 <= rec.c1;
}

// --- pinhole / OpenCV (camera.py PinholeCamera) -----------------------------------------

// Box x0, x1 (i = 0) or y0, y1 (i = 1) on z = 1 of the central projection of the ellipse
// m + a cos s + b sin s (_conic_box), widened by the reference's float32 rounding of the
// quadratic's coefficients (its root may sit on a cancellation, hence the sqrt term).
HOST_DEVICE inline void conic_extent(DVec3 m, DVec3 a, DVec3 b, double A, int i, double sgn, double& lo,
                                     double& hi) {
  const double mi = i == 0 ? m.x : m.y, ai = i == 0 ? a.x : a.y, bi = i == 0 ? b.x : b.y;
  const double B = mi * m.z - ai * a.z - bi * b.z;
  const double C = mi * mi - ai * ai - bi * bi;
  const double eA = F32_EPS * (m.z * m.z + a.z * a.z + b.z * b.z);
  const double eB = F32_EPS * (fabs(mi * m.z) + fabs(ai * a.z) + fabs(bi * b.z));
  const double eC = F32_EPS * (mi * mi + ai * ai + bi * bi);
  const double disc = B * B - A * C;
  const double e_disc = 2.0 * fabs(B) * eB + fabs(A) * eC + fabs(C) * eA + F32_EPS * (B * B + fabs(A * C));
  const double root = sqrt(dmax(dmax(disc, 0.0) + sgn * e_disc, 0.0));
  lo = (B - root) / A;
  hi = (B + root) / A;
  const double e_ext = sgn * (eB + dmax(fabs(lo), fabs(hi)) * eA) / A;
  lo -= e_ext;
  hi += e_ext;
}

HOST_DEVICE inline void widen(ParamBox& b, double mx, double my) {
  b.x0 -= mx, b.x1 += mx, b.y0 -= my, b.y1 += my;
}

// Parameter box of a convex polytope (vertices v, edges as index pairs) clipped to depth
// z >= clip_z (_clipped_polytope_box).  The reference's points may sit `slack` off ours:
// we clip at clip_z - slack, and widen each projected point q by slack (1 + |x_q|) /
// (z_q - slack).  That bound holds for the whole polytope: x >= L is the half-space
// X - L z >= 0, linear in the point, so its worst point is a vertex.
HOST_DEVICE inline ParamBox clipped_polytope_box(const DVec3* v, int nv, const int32_t (*edges)[2], int ne,
                                                 double clip_z, double slack) {
  const double zc = clip_z - slack, sgn = margin_sign(slack), mag = fabs(slack);
  if (!(zc > 2.0 * mag)) return sgn > 0 ? ParamBox{-INF_D, INF_D, -INF_D, INF_D, false, false}
                                        : ParamBox{0.0, 0.0, 0.0, 0.0, true, false};
  ParamBox b{INF_D, -INF_D, INF_D, -INF_D, false, false};
  bool any = false;
  auto add = [&](DVec3 p) {
    const double x = p.x / p.z, y = p.y / p.z, g = 1.01 * slack / (p.z - mag);
    const double mx = g * (1.0 + fabs(x)) + sgn * F32_EPS * fabs(x);
    const double my = g * (1.0 + fabs(y)) + sgn * F32_EPS * fabs(y);
    b.x0 = dmin(b.x0, x - mx), b.x1 = dmax(b.x1, x + mx), b.y0 = dmin(b.y0, y - my), b.y1 = dmax(b.y1, y + my);
    any = true;
  };
  bool clipped = false;
  for (int k = 0; k < nv; ++k) {
    if (v[k].z >= zc) add(v[k]); else clipped = true;
  }
  if (clipped) {
    for (int e = 0; e < ne; ++e) {
      const DVec3 p = v[edges[e][0]], q = v[edges[e][1]];
      if ((p.z >= zc) != (q.z >= zc)) {
        const double t = dclamp((zc - p.z) / (q.z - p.z), 0.0, 1.0);
        DVec3 c = p + t * (q - p);
        c.z = zc;
        add(c);
      }
    }
  }
  if (!any) return ParamBox{0.0, 0.0, 0.0, 0.0, true, false};
  return b;
}

HOST_DEVICE inline ParamBox box_intersect(ParamBox a, ParamBox b) {
  if (a.empty || b.empty) return ParamBox{0.0, 0.0, 0.0, 0.0, true, false};
  return ParamBox{dmax(a.x0, b.x0), dmin(a.x1, b.x1), dmax(a.y0, b.y0), dmin(a.y1, b.y1), false,
                  a.full && b.full};
}

HOST_DEVICE inline ParamBox box_union(ParamBox a, ParamBox b) {
  if (a.empty) return b;
  if (b.empty) return a;
  return ParamBox{dmin(a.x0, b.x0), dmax(a.x1, b.x1), dmin(a.y0, b.y0), dmax(a.y1, b.y1), false,
                  a.full || b.full};
}

// PinholeCamera.support_param_box: the exact box of the projected support ellipse where it
// lies well in front of the camera, else the clipped rectangle's box.
HOST_DEVICE inline ParamBox pinhole_support_box(const SensorDesc& s, const Support& sp) {
  // Local tables, not static: device code cannot read host statics.
  const int32_t QUAD_EDGES[4][2] = {{0, 1}, {1, 2}, {2, 3}, {3, 0}};
  const DVec3 m = sp.centre;
  const DVec3 a = 0.5 * (sp.corners[0] - sp.corners[3]);
  const DVec3 b = 0.5 * (sp.corners[0] - sp.corners[1]);
  const double A = m.z * m.z - a.z * a.z - b.z * b.z;
  const double ab_z = sqrt(a.z * a.z + b.z * b.z);
  const double z_min = m.z - ab_z;
  // Three offsets (m, a, b) of `slack` each move an ellipse point by at most 3 slack, and
  // the reference's A by its rounding and what the offsets change.
  const double off = 3.0 * sp.slack, mag = fabs(off), sgn = margin_sign(off);
  const double eA = F32_EPS * (m.z * m.z + ab_z * ab_z) + 2.0 * mag * (fabs(m.z) + ab_z) + off * off;
  if (m.z > 0.0 && A > 1e-3 * m.z * m.z && A > 1e-9 + eA && z_min > 2.0 * mag) {
    ParamBox box{0, 0, 0, 0, false, false};
    conic_extent(m, a, b, A, 0, sgn, box.x0, box.x1);
    conic_extent(m, a, b, A, 1, sgn, box.y0, box.y1);
    // Each side by the shift its own extreme can take (see clipped_polytope_box).
    const double g = 1.01 * off / (z_min - mag);
    box.x0 -= g * (1.0 + fabs(box.x0)), box.x1 += g * (1.0 + fabs(box.x1));
    box.y0 -= g * (1.0 + fabs(box.y0)), box.y1 += g * (1.0 + fabs(box.y1));
    return box;
  }
  // The reference may still bound it as a conic, one close to the camera plane and so
  // ill-conditioned in float32: every cell (inner bounds: none).
  if (m.z > -mag && A + eA > 1e-9) return sgn > 0 ? ParamBox{-INF_D, INF_D, -INF_D, INF_D, false, false}
                                                  : ParamBox{0.0, 0.0, 0.0, 0.0, true, false};
  // Behind the camera plane (the reference: every corner at z <= 0): nothing.
  bool behind = true;
  for (int k = 0; k < 4; ++k) behind = behind && sp.corners[k].z <= -sp.slack;
  if (behind) return ParamBox{0, 0, 0, 0, true, false};
  return clipped_polytope_box(sp.corners, 4, QUAD_EDGES, 4, s.clip_z, sp.slack);
}

// Box on z = 1 of the cone of half-angle beta about the unit direction w (the disc of
// radius tan(beta) about w, bounded as a conic); infinite when the cone reaches the
// camera plane.
HOST_DEVICE inline ParamBox cone_box(DVec3 w, double beta, double sgn) {
  const double off_axis = acos(dclamp(w.z, -1.0, 1.0));
  if (off_axis + beta >= PI_D / 2 - 1e-6) return ParamBox{-INF_D, INF_D, -INF_D, INF_D, false, false};
  const DVec3 helper = fabs(w.z) < 0.9 ? DVec3{0.0, 0.0, 1.0} : DVec3{1.0, 0.0, 0.0};
  DVec3 u = dcross(w, helper);
  u = (1.0 / dnorm(u)) * u;
  const DVec3 v = dcross(w, u);
  const double tb = tan(beta);
  const DVec3 a = tb * u, b = tb * v;
  const double A = dmax(w.z * w.z - a.z * a.z - b.z * b.z, 1e-12);
  ParamBox box{0, 0, 0, 0, false, false};
  conic_extent(w, a, b, A, 0, sgn, box.x0, box.x1);
  conic_extent(w, a, b, A, 1, sgn, box.y0, box.y1);
  return box;
}

// PinholeCamera.moving_param_box: seen from any pose within `translation` m and
// `rotation` rad, the support lies within reach = translation + (dist + radius) rotation
// of where it is: a cone about the centre direction when it is small and wholly in front,
// else the rectangle grown by a cube of half-size reach, clipped and projected.  The
// reference's motion lies between (t_lo, r_lo) and (t_hi, r_hi) (see moving_records) and
// its points `slack` off ours, so its cone angle lies in [beta_lo, beta_hi]: where that
// straddles a threshold it may take either branch, and outer bounds take both (inner
// bounds: what both hold).
HOST_DEVICE inline ParamBox pinhole_moving_box(const SensorDesc& s, const Support& sp, double t_lo, double r_lo,
                                               double t_hi, double r_hi) {
  const double mag = fabs(sp.slack), sgn = margin_sign(sp.slack);
  const double dist = dmax(dnorm(sp.centre), 1e-12);
  const double reach_lo = t_lo + (dist + sp.radius) * r_lo, reach_hi = t_hi + (dist + sp.radius) * r_hi;
  const DVec3 w = (1.0 / dist) * sp.centre;
  const double d_hi = dist + mag, d_lo = dist - mag;
  const double beta_lo = asin(dclamp((sp.radius + reach_lo - 2.0 * mag) / d_hi, 0.0, 1.0));
  const double beta_hi = d_lo > 0.0 ? asin(dmin((sp.radius + reach_hi + 2.0 * mag) / d_lo, 1.0)) + 1e-9 : PI_D;
  const double shift = d_lo > 0.0 ? mag / d_lo : PI_D;  // how far the reference's direction may turn
  const double off_axis = acos(dclamp(w.z, -1.0, 1.0));
  const bool cone_maybe = !(off_axis + beta_lo >= PI_D / 2 - 1e-6) && !(beta_lo > LOOSE_CAP);
  const bool poly_maybe = off_axis + beta_hi >= PI_D / 2 - 1e-6 || beta_hi > LOOSE_CAP;
  ParamBox cone{0, 0, 0, 0, true, false}, poly{0, 0, 0, 0, true, false};
  if (cone_maybe) cone = sgn > 0 ? cone_box(w, beta_hi + shift, 1.0) : cone_box(w, dmax(beta_lo - shift, 0.0), -1.0);
  if (poly_maybe) {
    const int32_t EDGES[80][2] = {
#define GSSIM_QE(a, b) {a * 8 + 0, b * 8 + 0}, {a * 8 + 1, b * 8 + 1}, {a * 8 + 2, b * 8 + 2}, {a * 8 + 3, b * 8 + 3}, \
                       {a * 8 + 4, b * 8 + 4}, {a * 8 + 5, b * 8 + 5}, {a * 8 + 6, b * 8 + 6}, {a * 8 + 7, b * 8 + 7}
        GSSIM_QE(0, 1), GSSIM_QE(1, 2), GSSIM_QE(2, 3), GSSIM_QE(3, 0),
#undef GSSIM_QE
#define GSSIM_CE(q) {q * 8 + 0, q * 8 + 1}, {q * 8 + 0, q * 8 + 2}, {q * 8 + 0, q * 8 + 4}, {q * 8 + 1, q * 8 + 3}, \
                    {q * 8 + 1, q * 8 + 5}, {q * 8 + 2, q * 8 + 3}, {q * 8 + 2, q * 8 + 6}, {q * 8 + 3, q * 8 + 7}, \
                    {q * 8 + 4, q * 8 + 5}, {q * 8 + 4, q * 8 + 6}, {q * 8 + 5, q * 8 + 7}, {q * 8 + 6, q * 8 + 7}
        GSSIM_CE(0), GSSIM_CE(1), GSSIM_CE(2), GSSIM_CE(3)
#undef GSSIM_CE
    };
    DVec3 verts[32];
    for (int q = 0; q < 4; ++q)
      for (int c = 0; c < 8; ++c) {
        // Cube vertex c = (x, y, z) signs in lexicographic order (camera.py _CUBE_SIGNS).
        const DVec3 sign{(c & 4) ? 1.0 : -1.0, (c & 2) ? 1.0 : -1.0, (c & 1) ? 1.0 : -1.0};
        verts[q * 8 + c] = sp.corners[q] + (sgn > 0 ? reach_hi : reach_lo) * sign;
      }
    // The reference's reach is rounded too: one more slack on the cube.
    poly = clipped_polytope_box(verts, 32, EDGES, 80, s.clip_z, 2.0 * sp.slack);
  }
  if (sgn > 0) return box_union(cone, poly);
  if (cone_maybe && poly_maybe) return box_intersect(cone, poly);
  return cone_maybe ? cone : poly;
}

// --- angular bounds (angles.py) ----------------------------------------------------------

struct AngularBounds {
  double dist, az_c, az_lo, az_hi, el_lo, el_hi, radius;
  bool whole_turn, inside;
};

// An upper bound of asin(x), x >= 0, without the call: asin(x) / x rises from 1 to
// 1.0471976 at x = 0.5.
HOST_DEVICE inline double asin_bound(double x) { return x <= 0.5 ? 1.0472 * x : PI_D / 2; }

struct Cap {
  double dist, az, el, beta, dphi;
  bool around_pole, inside;
};

// spherical_cap of a bounding sphere grown so it holds the reference's (centre and radius
// each `slack` off), its half-angle widened by `rotation`.
HOST_DEVICE inline Cap spherical_cap(DVec3 c, double radius, double slack, double rotation) {
  Cap k;
  const double r = radius + 2.0 * slack;
  k.dist = dnorm(c);
  k.inside = k.dist <= r * 1.0001 + 1e-9;
  const double d = dmax(k.dist, 1e-12);
  k.beta = asin(dclamp(r / d, -1.0, 1.0)) + ANGLE_EPS + rotation;
  k.az = atan2(c.y, c.x);
  k.el = asin(dclamp(c.z / d, -1.0, 1.0));
  const double ratio = sin(dmin(k.beta, PI_D / 2)) / dmax(cos(k.el), 1e-12);
  k.around_pole = k.inside || fabs(k.el) + k.beta >= PI_D / 2 || ratio >= 1.0;
  k.dphi = asin(dmin(ratio, 1.0)) + ANGLE_EPS;
  return k;
}

// angular_bounds: azimuth and elevation intervals of a support rectangle seen from the
// origin (its corners' extremes, an edge's great-circle top or bottom, a pole the z axis
// reaches), intersected with the bounding sphere's cap, widened by ANGLE_EPS and by the
// angle the reference's offset points can subtend.
HOST_DEVICE inline AngularBounds angular_bounds(const Support& sp) {
  const Cap cap = spherical_cap(sp.centre, sp.radius, sp.slack, 0.0);
  AngularBounds o;
  o.dist = cap.dist;
  o.az_c = cap.az;
  o.radius = sp.radius + 2.0 * sp.slack;
  o.inside = cap.inside;
  const double slack = sp.slack, mag = fabs(slack), sgn = margin_sign(slack);
  // Nearest point of the support: at least dist - radius away; what an offset of slack
  // turns a direction there by.
  const double near = cap.dist - sp.radius - 2.0 * mag;
  const double tilt = sgn * (near > 0.0 ? asin_bound(mag / near) + 1e-15 : PI_D);
  const DVec3* P = sp.corners;
  double rxy[4];
  for (int k = 0; k < 4; ++k) rxy[k] = sqrt(P[k].x * P[k].x + P[k].y * P[k].y);
  // Does the z axis cross the rectangle (its xy shadow holds the origin)?  Within rounding.
  bool pos = true, neg = true;
  for (int k = 0; k < 4; ++k) {
    const DVec3 p = P[k], q = P[(k + 1) & 3];
    const double cr = p.x * q.y - p.y * q.x;
    const double tol = sgn * (2.0 * mag * (rxy[k] + rxy[(k + 1) & 3]) + 4.0 * mag * mag +
                              1e-15 * (fabs(p.x * q.y) + fabs(p.y * q.x)));
    pos = pos && cr >= -tol;
    neg = neg && cr <= tol;
  }
  const bool on_axis = pos || neg;
  const DVec3 e1 = P[1] - P[0], e3 = P[3] - P[0];
  const DVec3 nrm = dcross(e1, e3);
  const double nn = dmax(dnorm(nrm), 1e-300);
  // How far offsets of slack can tilt the rectangle's normal (rad, about).
  const double len1 = dnorm(e1), len3 = dnorm(e3);
  const double ang_n = (len1 > 0.0 && len3 > 0.0) ? 2.0 * slack * (1.0 / len1 + 1.0 / len3) : sgn * INF_D;
  const bool flat = fabs(nrm.z) <= (1e-12 + 2.0 * ang_n) * nn;
  const double z0 = flat ? 0.0 : ddot(nrm, P[0]) / nrm.z;
  const double tol_z = flat ? 0.0 : 2.0 * (slack + ang_n * dnorm(P[0])) * nn / fabs(nrm.z) + sgn * 1e-12 * fabs(z0);
  const bool up = on_axis && (flat || z0 >= -tol_z);
  const bool down = on_axis && (flat || z0 <= tol_z);
  // Corners, and the interior extremes of the edges' great-circle arcs; elevations are
  // compared as z of unit vectors (one asin at the end), corner azimuths as offsets from
  // the centre's, wrapped into (-pi, pi] as the reference's wrap_pi(az_k - az_c).
  DVec3 U[4];
  double off_lo = INF_D, off_hi = -INF_D, z_hi = -INF_D, z_lo = INF_D;
  const DVec3 c = sp.centre;
  for (int k = 0; k < 4; ++k) {
    const double len = dmax(dnorm(P[k]), 1e-300);
    U[k] = (1.0 / len) * P[k];
    const double t_az = sgn * (rxy[k] > mag ? asin_bound(mag / (rxy[k] - mag)) : PI_D);
    const double off = atan2(c.x * P[k].y - c.y * P[k].x, c.x * P[k].x + c.y * P[k].y);
    off_lo = dmin(off_lo, off - t_az);
    off_hi = dmax(off_hi, off + t_az);
    z_hi = dmax(z_hi, U[k].z);
    z_lo = dmin(z_lo, U[k].z);
  }
  for (int k = 0; k < 4; ++k) {
    const DVec3 p = U[k], q = U[(k + 1) & 3];
    const double cpq = ddot(p, q);
    const double tp = q.z - cpq * p.z, tq = p.z - cpq * q.z;
    const double mz = p.x * q.y - p.y * q.x;
    const double sin2 = dmax(1.0 - cpq * cpq, 1e-300);
    const double z_top = sqrt(dclamp(1.0 - mz * mz / sin2, 0.0, 1.0));
    // The reference's arc may hold the extreme where ours just misses it: tolerance tilt.
    const double tol = 4.0 * tilt + sgn * 1e-12;
    const bool arc = sin2 > 1e-20 * 0.5;
    if (arc && tp > -tol && tq > -tol) z_hi = dmax(z_hi, z_top);
    if (arc && tp < tol && tq < tol) z_lo = dmin(z_lo, -z_top);
  }
  const double el_hi = up ? PI_D / 2 + tilt : asin(dclamp(z_hi, -1.0, 1.0)) + tilt;
  const double el_lo = down ? -PI_D / 2 - tilt : asin(dclamp(z_lo, -1.0, 1.0)) - tilt;
  o.el_lo = dmax(el_lo, cap.el - cap.beta) - ANGLE_EPS;
  o.el_hi = dmin(el_hi, cap.el + cap.beta) + ANGLE_EPS;
  const double dphi = cap.around_pole ? INF_D : cap.dphi;
  if (on_axis) {
    o.az_lo = cap.az - dphi - ANGLE_EPS;
    o.az_hi = cap.az + dphi + ANGLE_EPS;
  } else {
    o.az_lo = dmax(cap.az + off_lo, cap.az - dphi) - ANGLE_EPS;
    o.az_hi = dmin(cap.az + off_hi, cap.az + dphi) + ANGLE_EPS;
  }
  o.whole_turn = cap.inside || (on_axis && cap.around_pole);
  if (cap.inside) o.el_lo = -PI_D, o.el_hi = PI_D;
  return o;
}

// moving_cap_bounds: the bounding sphere grown by the translation, its cap widened by the
// rotation.
HOST_DEVICE inline AngularBounds moving_cap_bounds(const Support& sp, double translation, double rotation) {
  const double r = sp.radius + translation;
  const Cap cap = spherical_cap(sp.centre, r, sp.slack, rotation);
  AngularBounds o;
  o.dist = cap.dist;
  o.az_c = cap.az;
  o.radius = r + 2.0 * sp.slack;
  o.inside = cap.inside;
  o.whole_turn = cap.around_pole;
  o.az_lo = cap.az - cap.dphi;
  o.az_hi = cap.az + cap.dphi;
  o.el_lo = cap.inside ? -PI_D : cap.el - cap.beta;
  o.el_hi = cap.inside ? PI_D : cap.el + cap.beta;
  return o;
}

// --- fisheye (camera.py FisheyeCamera) -----------------------------------------------------

// Box of the equidistant parameters theta (cos phi, sin phi) over the annular sector
// theta in [th0, th1], phi in [phi0, phi1] (a disc of radius th1 when around_axis).
HOST_DEVICE inline ParamBox sector_box(double th0, double th1, double phi0, double phi1, bool around_axis,
                                       double sgn) {
  if (around_axis) return ParamBox{-th1, th1, -th1, th1, false, false};
  ParamBox b{INF_D, -INF_D, INF_D, -INF_D, false, false};
  const double ths[2] = {th0, th1}, phis[2] = {phi0, phi1};
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) {
      const double x = ths[i] * cos(phis[j]), y = ths[i] * sin(phis[j]);
      b.x0 = dmin(b.x0, x), b.x1 = dmax(b.x1, x), b.y0 = dmin(b.y0, y), b.y1 = dmax(b.y1, y);
    }
  const double width = phi1 - phi0;
  auto within = [&](double axis_angle) {
    const double a = axis_angle - phi0;
    return a - TWO_PI_D * floor(a / TWO_PI_D) <= width + sgn * 1e-12;
  };
  if (within(0.0)) b.x1 = th1;
  if (within(PI_D / 2)) b.y1 = th1;
  if (within(PI_D)) b.x0 = -th1;
  if (within(-PI_D / 2)) b.y0 = -th1;
  const double e = sgn * 1e-12 * (1.0 + th1);
  widen(b, e, e);
  return b;
}

HOST_DEVICE inline ParamBox fisheye_support_box(const SensorDesc& s, const Support& sp) {
  const AngularBounds b = angular_bounds(sp);
  const double th0 = dmax(PI_D / 2 - b.el_hi, 0.0);
  const double th1 = dmin(PI_D / 2 - b.el_lo, PI_D);
  const bool around_axis = b.whole_turn || th0 <= 0.0 || th1 >= PI_D;
  ParamBox box = sector_box(th0, th1, b.az_lo, b.az_hi, around_axis, margin_sign(sp.slack));
  box.full = b.inside;
  box.empty = th0 > s.theta_max + 1e-6 && !box.full;
  return box;
}

HOST_DEVICE inline ParamBox fisheye_moving_box(const SensorDesc& s, const Support& sp, double translation,
                                               double rotation) {
  const double radius = sp.radius + translation + 2.0 * sp.slack;
  const DVec3 c = sp.centre;
  const double dist = dnorm(c);
  const bool full = dist <= radius * 1.0001;
  const double d = dmax(dist, 1e-12);
  const double beta = asin(dclamp(radius / d, -1.0, 1.0)) + rotation + margin_sign(sp.slack) * 1e-12;
  const double r = sqrt(c.x * c.x + c.y * c.y);
  const double theta_a = atan2(r, c.z), phi_a = atan2(c.y, c.x);
  const double th0 = dmax(theta_a - beta, 0.0), th1 = dmin(theta_a + beta, PI_D);
  const double sin_ratio = sin(beta) / dmax(sin(theta_a), 1e-12);
  const bool around_axis = theta_a <= beta || sin_ratio >= 1.0 || th1 >= PI_D;
  const double dphi = asin(dclamp(sin_ratio, -1.0, 1.0)) + margin_sign(sp.slack) * 1e-12;
  ParamBox box = sector_box(th0, th1, phi_a - dphi, phi_a + dphi, around_axis, margin_sign(sp.slack));
  box.full = full;
  box.empty = th0 > s.theta_max + 1e-6 && !full;
  return box;
}

// --- LiDARs (lidar.py) ---------------------------------------------------------------------

HOST_DEVICE inline bool range_empty(const SensorDesc& s, double dist, double radius) {
  return dist + radius < s.t_min || dist - radius > s.t_max;
}

// SolidStateLidar._angle_box: (-azimuth, -elevation) box.
HOST_DEVICE inline ParamBox solid_state_box(const SensorDesc& s, const AngularBounds& b) {
  const double a0 = b.whole_turn ? -TWO_PI_D : b.az_lo, a1 = b.whole_turn ? TWO_PI_D : b.az_hi;
  const bool empty = range_empty(s, b.dist, b.radius);
  return ParamBox{-a1, -a0, -b.el_hi, -b.el_lo, empty && !b.inside, b.inside && !empty};
}

// Sweep angle in [0, 2 pi) from the start to azimuth az (SpinningLidar._sweep_angle).
HOST_DEVICE inline double sweep_angle(const SensorDesc& s, double az) {
  double r = fmod(s.sign * (az - s.az0), TWO_PI_D);
  if (r < 0) r += TWO_PI_D;
  return r;
}

// SpinningLidar.footprints for one surfel: rows from the elevation interval (sorted beams
// -> contiguous row span), columns unwrapped around the projected centre and united with
// the filter disc, cut at the seam into at most three records (shift 0, +A, -A).
HOST_DEVICE inline int spinning_records(const SensorDesc& s, const AngularBounds& b, bool mvalid, double mx,
                                        double my, double fr, double sgn, Record* out) {
  const int64_t B = s.rows, A = s.cols;
  if (!mvalid) mx = my = 0.0;
  const bool cap_ok = !range_empty(s, b.dist, b.radius) || b.inside;
  const int64_t k0 = lower_index(s.elev_sorted, B, b.el_lo);
  const int64_t k1 = upper_index(s.elev_sorted, B, b.el_hi) - 1;
  const bool has_rows = cap_ok && k0 <= k1;
  int64_t r0 = B, r1 = -1;
  if (has_rows) {
    const int64_t a = k0 < 0 ? 0 : (k0 > B - 1 ? B - 1 : k0), c = k1 < 0 ? 0 : (k1 > B - 1 ? B - 1 : k1);
    r0 = s.span_lo[a * B + c];
    r1 = s.span_hi[a * B + c];
  }
  double cc = sweep_angle(s, b.az_c) / s.res;
  if (mvalid) cc += static_cast<double>(A) * nearbyint((mx - cc) / static_cast<double>(A));
  const double lo = b.az_lo - b.az_c, hi = b.az_hi - b.az_c;
  const double o_lo = s.sign > 0 ? lo : -hi, o_hi = s.sign > 0 ? hi : -lo;
  const double c0 = ceil(cc + o_lo / s.res - 0.5), c1 = floor(cc + o_hi / s.res - 0.5);
  const bool cap = has_rows && c0 <= c1 && cap_ok;
  const bool whole_turn = b.whole_turn && cap;
  const double f = fr + CELL_EPS + sgn * 1e-6 * (1.0 + fr);
  const double dr0 = ceil(my - f - 0.5), dr1 = floor(my + f - 0.5);
  const double dc0 = ceil(mx - f - 0.5), dc1 = floor(mx + f - 0.5);
  const bool disc = mvalid && dr1 >= 0 && dr0 <= static_cast<double>(B - 1);
  if (!(cap || disc)) return 0;
  double R0 = INFINITY, R1 = -INFINITY, C0 = INFINITY, C1 = -INFINITY;
  if (cap) R0 = static_cast<double>(r0), R1 = static_cast<double>(r1), C0 = c0, C1 = c1;
  if (disc) R0 = dmin(R0, dr0), R1 = dmax(R1, dr1), C0 = dmin(C0, dc0), C1 = dmax(C1, dc1);
  const int64_t rr0 = static_cast<int64_t>(dclamp(R0, 0.0, static_cast<double>(B - 1)));
  const int64_t rr1 = static_cast<int64_t>(dclamp(R1, -1.0, static_cast<double>(B - 1)));
  if (rr0 > rr1) return 0;
  // At most one turn, centred on the centre column when it reaches all around.
  const double centre_col = mvalid ? mx : cc;
  const double turn0 = floor(centre_col) - static_cast<double>(A / 2);
  if (whole_turn || C1 - C0 + 1 >= static_cast<double>(A)) C0 = turn0, C1 = turn0 + static_cast<double>(A - 1);
  const int64_t cl0 = static_cast<int64_t>(C0), cl1 = static_cast<int64_t>(C1);
  int n = 0;
  const int64_t m0 = cl0 > 0 ? cl0 : 0, m1 = cl1 < A - 1 ? cl1 : A - 1;
  if (m0 <= m1) out[n++] = Record{rr0, rr1, m0, m1, 0};
  if (cl0 < 0) out[n++] = Record{rr0, rr1, cl0 + A > 0 ? cl0 + A : 0, A - 1, A};
  if (cl1 > A - 1) out[n++] = Record{rr0, rr1, 0, cl1 - A < A - 1 ? cl1 - A : A - 1, -A};
  return n;
}

// --- one surfel, any model -------------------------------------------------------------------

// Records (at most three) of one surfel, instant (moving = false) or over a motion of at
// most `translation` m and `rotation` rad from the pose of the inputs (t_lo, r_lo: the
// least the reference's may be, for the camera's branch choice).
HOST_DEVICE inline int surfel_records(const SensorDesc& s, const Support& sp, bool mvalid, double mx, double my,
                                      double fr, bool moving, double translation, double rotation, double t_lo,
                                      double r_lo, Record* out) {
  if (s.model == MODEL_SPINNING) {
    const AngularBounds b = moving ? moving_cap_bounds(sp, translation, rotation) : angular_bounds(sp);
    return spinning_records(s, b, mvalid, mx, my, fr, margin_sign(sp.slack), out);
  }
  ParamBox box;
  if (s.model == MODEL_PINHOLE) {
    box = moving ? pinhole_moving_box(s, sp, t_lo, r_lo, translation, rotation) : pinhole_support_box(s, sp);
  } else if (s.model == MODEL_FISHEYE) {
    box = moving ? fisheye_moving_box(s, sp, translation, rotation) : fisheye_support_box(s, sp);
  } else {
    box = solid_state_box(s, moving ? moving_cap_bounds(sp, translation, rotation) : angular_bounds(sp));
  }
  return generic_record(s, box, mvalid, mx, my, fr, margin_sign(sp.slack), out[0]) ? 1 : 0;
}

}  // namespace gssim
