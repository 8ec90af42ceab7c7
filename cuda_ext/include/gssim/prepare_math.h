// Per-surfel render preparation shared by the CPU driver (cpu/prepare_cpu.cpp) and the
// CUDA kernels (cuda/prepare_cuda.cu): a surfel's support in the sensor frame and its
// footprint records (instant, or grown over a moving sensor's readout), and the cell pose
// a moving sensor sees it from.  Plain C++ (no torch), HOST_DEVICE inline.
//
// Layout:
//   means, t_u, t_v (N, 3) float32 world frame (t_u, t_v the surfel's unit tangents);
//   scales (N, 2), opacities (N), means2d (N, 2) grid coordinates (col, row) of the
//   projected centres, vis2d (N) whether the low-pass filter disc applies;
//   cell_poses (P, 4, 4) float64 sensor-to-world poses, pose_index (N) the one each surfel
//   is binned from (null: pose 0), cell_pose_fractions (P) their readout fractions.
//   records (F, 6) int32: surfel, r0, r1, c0, c1 (inclusive cell box), column shift.
#pragma once

#include <cmath>
#include <cstdint>

#include "gssim/footprint_math.h"
#include "gssim/project_math.h"
#include "gssim/surfel_math.h"

namespace gssim {

struct PrepSurfels {
  const float *means, *t_u, *t_v, *scales, *opacities, *means2d;
  const bool* vis2d;
  int64_t N;
};

struct PrepPoses {
  const double* cell_poses;
  const int64_t* pose_index;        // null: every surfel seen from pose 0
  const double* cell_pose_fractions;
};

// A sensor moving during its readout (Python's _moving_footprints): the motion over the
// whole readout, per-row and per-column ranges of cell readout fractions, and the angle
// between the first and last cells' rays.
struct PrepMotion {
  bool moving;
  double translation, rotation, readout_angle;
  bool periodic;
  double column_angle;
  const double *row_lo, *row_hi, *col_lo, *col_hi;
};

// Most records one surfel yields (a spinning LiDAR cuts a box at the seam into three).
constexpr int MAX_RECORDS = 3;

HOST_DEVICE inline DVec3 load_dvec3(const float* p) { return DVec3{p[0], p[1], p[2]}; }

// World point into the frame of a (4, 4) row-major sensor-to-world pose: R^T (p - t).
HOST_DEVICE inline DVec3 to_sensor(const double* T, DVec3 p) {
  const DVec3 q{p.x - T[3], p.y - T[7], p.z - T[11]};
  return DVec3{T[0] * q.x + T[4] * q.y + T[8] * q.z, T[1] * q.x + T[5] * q.y + T[9] * q.z,
               T[2] * q.x + T[6] * q.y + T[10] * q.z};
}

// Readout fractions a record's cells are taken at (monotone along rows or columns): how
// far from the surfel's own fraction f they reach (Python: need_rec).
HOST_DEVICE inline double record_need(const PrepMotion& m, const Record& r, double f) {
  const double lo = dmax(dmin(m.row_lo[r.r0], m.row_lo[r.r1]), dmin(m.col_lo[r.c0], m.col_lo[r.c1]));
  const double hi = dmin(dmax(m.row_hi[r.r0], m.row_hi[r.r1]), dmax(m.col_hi[r.c0], m.col_hi[r.c1]));
  return dmax(fabs(f - lo), fabs(hi - f));
}

// Whether the low-pass filter disc (shrunk by our rounding margin) holds a cell of the
// grid: then the reference gives the surfel a record whatever its support's box.
HOST_DEVICE inline bool disc_surely_in_grid(const SensorDesc& sensor, bool vis, double mx, double my, double fr) {
  if (!vis) return false;
  const CellBox d = filter_disc(mx, my, fr, (sensor.rows > sensor.cols ? sensor.rows : sensor.cols) + 1, -1.0);
  const bool rows = d.r0 <= d.r1 && d.r1 >= 0 && d.r0 <= sensor.rows - 1;
  // A periodic sensor's columns wrap around: any column interval holds cells.
  return rows && d.c0 <= d.c1 && (sensor.model == MODEL_SPINNING || (d.c1 >= 0 && d.c0 <= sensor.cols - 1));
}

// The need of one pass: how far from the surfel's own readout fraction f the cells of its
// records are taken, or the whole readout (max(f, 1 - f)) for records the motion may
// carry over a periodic sensor's seam, or when it sweeps faster than the readout.
HOST_DEVICE inline double pass_need(const SensorDesc& sensor, const PrepMotion& m, const Record* rec, int n, double f,
                                    double sway) {
  double need = 0.0;
  for (int k = 0; k < n; ++k) {
    bool overtaken;
    if (m.periodic) {
      const double reach = sway / m.column_angle + 2.0;
      overtaken = static_cast<double>(rec[k].c0) - reach <= 0.0 ||
                  static_cast<double>(rec[k].c1) + reach >= static_cast<double>(sensor.cols - 1);
    } else {
      overtaken = sway >= 0.5 * m.readout_angle;
    }
    need = dmax(need, overtaken ? dmax(f, 1.0 - f) : record_need(m, rec[k], f));
  }
  return need;
}

// The inner pass of moving_records: records of the inner support at span lo, and their need.
HOST_DEVICE inline int inner_need(const SensorDesc& sensor, const PrepMotion& m, const Support& inner, bool vis,
                                  double mx, double my, double fr, bool moving, double lo, double f, double sway_lo,
                                  double& need_lo) {
  Record rec_in[MAX_RECORDS];
  const int n_in = surfel_records(sensor, inner, vis, mx, my, fr, moving, m.translation * lo, m.rotation * lo,
                                  m.translation * lo, m.rotation * lo, rec_in);
  need_lo = pass_need(sensor, m, rec_in, n_in, f, sway_lo);
  return n_in;
}

// Records of a surfel on a moving sensor (Python: _moving_footprints), seen from the pose
// of the cell its centre lands in: grown over the readout span its own cells cover until
// they need no more (at most five passes, the last over the whole readout).  A surfel out
// of view from that pose gets the whole readout.
//
// The reference takes these decisions on its float32 copy, and its span sequence is not
// monotone in the records (a larger first need can stop it earlier, at a smaller span).
// So we follow a bracket of its spans: lo from inner records (cells it surely has), hi
// from outer ones, and stop only once it has surely stopped (outer need <= lo), with the
// outer records at hi, which hold its records at any span up to hi.
HOST_DEVICE inline int moving_records(const SensorDesc& sensor, const PrepMotion& m, const Support& sp, double f,
                                      bool vis, double mx, double my, double fr, Record* out) {
  Support inner = sp;
  inner.slack = -sp.slack;
  const double mag = fabs(sp.slack), dist = dnorm(sp.centre);
  const double sway_hi = m.rotation + asin(dmin(m.translation / dmax(dist - sp.radius - mag, 1e-9), 1.0));
  const double sway_lo = m.rotation + asin(dmin(m.translation / dmax(dist - sp.radius + mag, 1e-9), 1.0));
  double lo = 0.0, hi = 0.0;
  for (int attempt = 0; attempt < 4; ++attempt) {
    const bool moving = attempt > 0;
    const int n = surfel_records(sensor, sp, vis, mx, my, fr, moving, m.translation * hi, m.rotation * hi,
                                 m.translation * lo, m.rotation * lo, out);
    double need_hi = pass_need(sensor, m, out, n, f, sway_hi), need_lo = -1.0;  // -1: inner pass not run
    if (attempt == 0) {
      // Out of view from its own pose: surely (no outer record) or maybe (no inner one;
      // a filter disc that surely holds a cell settles it without the inner pass).
      if (n == 0) {
        need_hi = need_lo = 1.0;
      } else if (!disc_surely_in_grid(sensor, vis, mx, my, fr) &&
                 inner_need(sensor, m, inner, vis, mx, my, fr, moving, lo, f, sway_lo, need_lo) == 0) {
        need_hi = 1.0;
      }
    }
    if (!(need_hi > lo + 1e-12)) return n;
    if (need_lo < 0.0) inner_need(sensor, m, inner, vis, mx, my, fr, moving, lo, f, sway_lo, need_lo);
    // Were it still growing, its next span is 1.25 need + 1e-3 with need above its span.
    lo = dmin(dmax(need_lo, lo) * 1.25 + 1e-3, 1.0);
    hi = dmax(hi, dmin(need_hi * 1.25 + 1e-3, 1.0));
  }
  return surfel_records(sensor, sp, vis, mx, my, fr, true, m.translation, m.rotation, m.translation * lo,
                        m.rotation * lo, out);
}

// Footprint records of surfel i (at most MAX_RECORDS) into out (6 int32 each: surfel, r0,
// r1, c0, c1, shift); returns how many.  Surfels below ALPHA_MIN get none.
HOST_DEVICE inline int surfel_footprint(const SensorDesc& sensor, const PrepSurfels& s, const PrepPoses& poses,
                                        const PrepMotion& motion, int64_t i, int32_t* out) {
  const float opacity = s.opacities[i];
  if (!(opacity >= ALPHA_MIN)) return 0;
  // Support radius in sigmas (with slack) and the low-pass filter radius in cells.
  const double log_ratio = log(static_cast<double>(opacity) / static_cast<double>(ALPHA_MIN));
  const double k = sqrt(2.0 * log_ratio + 1e-3);
  const double fr = sqrt(2.0 * log_ratio / static_cast<double>(FILTER_INV_SQUARE));
  const double su = s.scales[2 * i], sv = s.scales[2 * i + 1];
  const DVec3 mean = load_dvec3(s.means + 3 * i);
  const DVec3 eu = (k * su) * load_dvec3(s.t_u + 3 * i), ev = (k * sv) * load_dvec3(s.t_v + 3 * i);
  const int64_t p = poses.pose_index ? poses.pose_index[i] : 0;
  const double* T = poses.cell_poses + 16 * p;
  Support sp;
  const DVec3 world[4] = {mean + eu + ev, mean + eu - ev, mean - eu - ev, mean - eu + ev};
  for (int c = 0; c < 4; ++c) sp.corners[c] = to_sensor(T, world[c]);
  sp.centre = to_sensor(T, mean);
  sp.radius = k * sqrt(su * su + sv * sv);
  // How far the reference's float32 corners and centre may sit from ours: a few
  // roundings of the world coordinates, the pose and the sensor-frame point.
  const double t_norm = sqrt(T[3] * T[3] + T[7] * T[7] + T[11] * T[11]);
  sp.slack = 1.2e-7 * (2.0 * dnorm(mean) + t_norm + 7.0 * dnorm(sp.centre) + 5.0 * (dnorm(eu) + dnorm(ev)));
  const bool vis = s.vis2d[i];
  const double mx = s.means2d[2 * i], my = s.means2d[2 * i + 1];
  Record rec[MAX_RECORDS];
  const int n = motion.moving
                    ? moving_records(sensor, motion, sp, poses.cell_pose_fractions[p], vis, mx, my, fr, rec)
                    : surfel_records(sensor, sp, vis, mx, my, fr, false, 0.0, 0.0, 0.0, 0.0, rec);
  for (int r = 0; r < n; ++r) {
    const int64_t vals[6] = {i, rec[r].r0, rec[r].r1, rec[r].c0, rec[r].c1, rec[r].shift};
    for (int c = 0; c < 6; ++c) out[6 * r + c] = static_cast<int32_t>(vals[c]);
  }
  return n;
}

// Cell pose a moving sensor sees a world point from: the pose of the cell it lands in, by
// three fixed-point steps from pose `start` (Python: _project_centres).  cell_pose_index
// (rows, cols) maps cells to poses.
HOST_DEVICE inline int64_t surfel_pose_index(const ProjDesc& proj, int64_t rows, int64_t cols, const float* mean_f,
                                             const double* cell_poses, const int64_t* cell_pose_index, int64_t start) {
  const DVec3 mean = load_dvec3(mean_f);
  int64_t idx = start;
  for (int step = 0; step < 3; ++step) {
    double col, row;
    if (!project_point(proj, to_sensor(cell_poses + 16 * idx, mean), col, row)) continue;
    // torch: nan_to_num(0), clamp to the grid, truncate.
    col = col != col ? 0.0 : dclamp(col, 0.0, static_cast<double>(cols - 1));
    row = row != row ? 0.0 : dclamp(row, 0.0, static_cast<double>(rows - 1));
    idx = cell_pose_index[static_cast<int64_t>(row) * cols + static_cast<int64_t>(col)];
  }
  return idx;
}

}  // namespace gssim
