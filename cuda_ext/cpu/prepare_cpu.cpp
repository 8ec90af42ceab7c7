// CPU driver of render preparation: per-surfel support in the sensor frame, footprint
// records (instant, or grown over a moving sensor's readout), in parallel over surfels.
#include "prepare_cpu.h"

#include <cmath>
#include <vector>

namespace gssim {
namespace cpu {

namespace {

DVec3 load3(const float* p) { return DVec3{p[0], p[1], p[2]}; }

// World point into the frame of a (4, 4) row-major sensor-to-world pose: R^T (p - t).
DVec3 to_sensor(const double* T, DVec3 p) {
  const DVec3 q{p.x - T[3], p.y - T[7], p.z - T[11]};
  return DVec3{T[0] * q.x + T[4] * q.y + T[8] * q.z, T[1] * q.x + T[5] * q.y + T[9] * q.z,
               T[2] * q.x + T[6] * q.y + T[10] * q.z};
}

// Readout fractions a record's cells are taken at (monotone along rows or columns): how
// far from the surfel's own fraction f they reach (Python: need_rec).
double record_need(const PrepMotion& m, const Record& r, double f) {
  const double lo = dmax(dmin(m.row_lo[r.r0], m.row_lo[r.r1]), dmin(m.col_lo[r.c0], m.col_lo[r.c1]));
  const double hi = dmin(dmax(m.row_hi[r.r0], m.row_hi[r.r1]), dmax(m.col_hi[r.c0], m.col_hi[r.c1]));
  return dmax(fabs(f - lo), fabs(hi - f));
}

// Whether the low-pass filter disc (shrunk by our rounding margin) holds a cell of the
// grid: then the reference gives the surfel a record whatever its support's box.
bool disc_surely_in_grid(const SensorDesc& sensor, bool vis, double mx, double my, double fr) {
  if (!vis) return false;
  const CellBox d = filter_disc(mx, my, fr, (sensor.rows > sensor.cols ? sensor.rows : sensor.cols) + 1, -1.0);
  const bool rows = d.r0 <= d.r1 && d.r1 >= 0 && d.r0 <= sensor.rows - 1;
  // A periodic sensor's columns wrap around: any column interval holds cells.
  return rows && d.c0 <= d.c1 && (sensor.model == MODEL_SPINNING || (d.c1 >= 0 && d.c0 <= sensor.cols - 1));
}

// The need of one pass: how far from the surfel's own readout fraction f the cells of its
// records are taken, or the whole readout (max(f, 1 - f)) for records the motion may
// carry over a periodic sensor's seam, or when it sweeps faster than the readout.
double pass_need(const SensorDesc& sensor, const PrepMotion& m, const Record* rec, int n, double f, double sway) {
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
int moving_records(const SensorDesc& sensor, const PrepMotion& m, const Support& sp, double f, bool vis,
                   double mx, double my, double fr, Record* out) {
  Support inner = sp;
  inner.slack = -sp.slack;
  const double mag = fabs(sp.slack), dist = dnorm(sp.centre);
  const double sway_hi = m.rotation + asin(dmin(m.translation / dmax(dist - sp.radius - mag, 1e-9), 1.0));
  const double sway_lo = m.rotation + asin(dmin(m.translation / dmax(dist - sp.radius + mag, 1e-9), 1.0));
  double lo = 0.0, hi = 0.0;
  Record rec_in[MAX_RECORDS];
  for (int attempt = 0; attempt < 4; ++attempt) {
    const bool moving = attempt > 0;
    const int n = surfel_records(sensor, sp, vis, mx, my, fr, moving, m.translation * hi, m.rotation * hi,
                                 m.translation * lo, m.rotation * lo, out);
    double need_hi = pass_need(sensor, m, out, n, f, sway_hi), need_lo = -1.0;  // -1: inner pass not run
    auto inner_pass = [&]() {
      const int n_in = surfel_records(sensor, inner, vis, mx, my, fr, moving, m.translation * lo, m.rotation * lo,
                                      m.translation * lo, m.rotation * lo, rec_in);
      need_lo = pass_need(sensor, m, rec_in, n_in, f, sway_lo);
      return n_in;
    };
    if (attempt == 0) {
      // Out of view from its own pose: surely (no outer record) or maybe (no inner one;
      // a filter disc that surely holds a cell settles it without the inner pass).
      if (n == 0) {
        need_hi = need_lo = 1.0;
      } else if (!disc_surely_in_grid(sensor, vis, mx, my, fr) && inner_pass() == 0) {
        need_hi = 1.0;
      }
    }
    if (!(need_hi > lo + 1e-12)) return n;
    if (need_lo < 0.0) inner_pass();
    // Were it still growing, its next span is 1.25 need + 1e-3 with need above its span.
    lo = dmin(dmax(need_lo, lo) * 1.25 + 1e-3, 1.0);
    hi = dmax(hi, dmin(need_hi * 1.25 + 1e-3, 1.0));
  }
  return surfel_records(sensor, sp, vis, mx, my, fr, true, m.translation, m.rotation, m.translation * lo,
                        m.rotation * lo, out);
}

}  // namespace

void surfel_footprints(const SensorDesc& sensor, PrepSurfels s, PrepPoses poses, PrepMotion motion,
                       int32_t* scratch, int64_t* counts) {
#pragma omp parallel for schedule(dynamic, 1024)
  for (int64_t i = 0; i < s.N; ++i) {
    counts[i] = 0;
    const float opacity = s.opacities[i];
    if (!(opacity >= ALPHA_MIN)) continue;
    // Support radius in sigmas (with slack) and the low-pass filter radius in cells.
    const double log_ratio = log(static_cast<double>(opacity) / static_cast<double>(ALPHA_MIN));
    const double k = sqrt(2.0 * log_ratio + 1e-3);
    const double fr = sqrt(2.0 * log_ratio / static_cast<double>(FILTER_INV_SQUARE));
    const double su = s.scales[2 * i], sv = s.scales[2 * i + 1];
    const DVec3 mean = load3(s.means + 3 * i);
    const DVec3 eu = (k * su) * load3(s.t_u + 3 * i), ev = (k * sv) * load3(s.t_v + 3 * i);
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
    int32_t* out = scratch + i * MAX_RECORDS * 6;
    for (int r = 0; r < n; ++r) {
      const int64_t vals[6] = {i, rec[r].r0, rec[r].r1, rec[r].c0, rec[r].c1, rec[r].shift};
      for (int c = 0; c < 6; ++c) out[6 * r + c] = static_cast<int32_t>(vals[c]);
    }
    counts[i] = n;
  }
}

void moving_pose_index(const ProjDesc& proj, int64_t rows, int64_t cols, const float* means, int64_t N,
                       const double* cell_poses, const int64_t* cell_pose_index, int64_t* pose_index) {
  const int64_t start = cell_pose_index[(rows / 2) * cols + cols / 2];
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) {
    const DVec3 mean = load3(means + 3 * i);
    int64_t idx = start;
    for (int step = 0; step < 3; ++step) {
      double col, row;
      if (!project_point(proj, to_sensor(cell_poses + 16 * idx, mean), col, row)) continue;
      // torch: nan_to_num(0), clamp to the grid, truncate.
      col = col != col ? 0.0 : dclamp(col, 0.0, static_cast<double>(cols - 1));
      row = row != row ? 0.0 : dclamp(row, 0.0, static_cast<double>(rows - 1));
      idx = cell_pose_index[static_cast<int64_t>(row) * cols + static_cast<int64_t>(col)];
    }
    pose_index[i] = idx;
  }
}

void gather_records(const int32_t* scratch, const int64_t* counts, int64_t N, int32_t* records) {
  std::vector<int64_t> start(N + 1, 0);
  for (int64_t i = 0; i < N; ++i) start[i + 1] = start[i] + counts[i];
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) {
    const int32_t* src = scratch + i * MAX_RECORDS * 6;
    int32_t* dst = records + 6 * start[i];
    for (int64_t c = 0; c < 6 * counts[i]; ++c) dst[c] = src[c];
  }
}

}  // namespace cpu
}  // namespace gssim
