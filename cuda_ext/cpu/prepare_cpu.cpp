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

// Whether the reference certainly gives a surfel a cell from its own pose: its filter disc
// (shrunk by our rounding margin) holds a cell of the grid, or the inner bounds of its
// support do.
bool surely_seen(const SensorDesc& sensor, const Support& sp, bool vis, double mx, double my, double fr) {
  if (vis) {
    const CellBox d = filter_disc(mx, my, fr, (sensor.rows > sensor.cols ? sensor.rows : sensor.cols) + 1, -1.0);
    const bool rows = d.r0 <= d.r1 && d.r1 >= 0 && d.r0 <= sensor.rows - 1;
    // A periodic sensor's columns wrap around: any column interval holds cells.
    const bool cols = d.c0 <= d.c1 && (sensor.model == MODEL_SPINNING || (d.c1 >= 0 && d.c0 <= sensor.cols - 1));
    if (rows && cols) return true;
  }
  Support inner = sp;
  inner.slack = -sp.slack;
  Record unused[MAX_RECORDS];
  return surfel_records(sensor, inner, vis, mx, my, fr, false, 0.0, 0.0, unused) > 0;
}

// Records of a surfel on a moving sensor, seen from the pose of the cell its centre lands
// in: grown over the readout span its own cells cover until they need no more (at most
// five passes, the last over the whole readout).  A surfel out of view from that pose, or
// one the motion sweeps faster than the readout (or over a periodic sensor's seam), gets
// the whole readout.  "Out of view" is decided as the reference would on its float32
// copy: by inner bounds, so a surfel it may not see gets the whole readout here too.
int moving_records(const SensorDesc& sensor, const PrepMotion& m, const Support& sp, double f, bool vis,
                   double mx, double my, double fr, Record* out) {
  const double near = dmax(dnorm(sp.centre) - sp.radius - sp.slack, 1e-9);
  const double sway = m.rotation + asin(dmin(m.translation / near, 1.0));
  double span = 0.0;
  for (int attempt = 0; attempt < 5; ++attempt) {
    const bool last = attempt == 4;
    if (last) span = 1.0;
    const int n = surfel_records(sensor, sp, vis, mx, my, fr, attempt > 0, m.translation * span,
                                 m.rotation * span, out);
    if (last) return n;
    double need = 0.0;
    if (attempt == 0 && (n == 0 || !surely_seen(sensor, sp, vis, mx, my, fr))) need = 1.0;
    for (int k = 0; k < n; ++k) {
      bool overtaken;
      if (m.periodic) {
        const double reach = sway / m.column_angle + 2.0;
        overtaken = static_cast<double>(out[k].c0) - reach <= 0.0 ||
                    static_cast<double>(out[k].c1) + reach >= static_cast<double>(sensor.cols - 1);
      } else {
        overtaken = sway >= 0.5 * m.readout_angle;
      }
      need = dmax(need, overtaken ? dmax(f, 1.0 - f) : record_need(m, out[k], f));
    }
    if (!(need > span + 1e-12)) return n;
    // Headroom so the span settles in a pass or two rather than creeping up.
    span = dmin(need * 1.25 + 1e-3, 1.0);
  }
  return 0;  // not reached: the last pass returns
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
                      : surfel_records(sensor, sp, vis, mx, my, fr, false, 0.0, 0.0, rec);
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
