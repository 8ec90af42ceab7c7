// Grid coordinates (col, row) of sensor-frame points for every sensor model, as the
// sensors' torch `project` computes them (float64 here).  Plain C++, HOST_DEVICE inline.
// Render preparation uses it (no gradient) to find which cell pose a moving sensor sees
// each surfel from; the differentiable projection stays in torch.
#pragma once

#include <cmath>
#include <cstdint>

#include "gssim/footprint_math.h"

namespace gssim {

// What projection needs of a sensor (see each model's `native_projection_args`).
//   pinhole/OpenCV: s = t_min, fx, fy, cx, cy, r_valid, k1, k2, p1, p2, k3
//   fisheye:        s = t_min, fx, fy, cx, cy, theta_limit, k1, k2, k3, k4
//   spinning:       s = res, sign, az0, monotone; elev_sorted, rows_sorted (row + 0.5 of
//                   each sorted beam) and gap (beam spacing) tables of n_beams
//   solid state:    s = h_half, v_half, h_res, v_res
struct ProjDesc {
  int32_t model;
  double s[11];
  const double *elev_sorted, *rows_sorted, *gap;
  int64_t n_beams;
};

// SpinningLidar.elevation_to_row: piecewise-linear in a monotone table (extrapolated past
// its ends), else the nearest beam's row plus the offset in local beam spacings.
HOST_DEVICE inline double elevation_to_row(const ProjDesc& d, double el) {
  const int64_t B = d.n_beams;
  if (B == 1) return d.rows_sorted[0] + (el - d.elev_sorted[0]) / d.gap[0];
  int64_t k = lower_index(d.elev_sorted, B, el);
  k = k < 1 ? 1 : (k > B - 1 ? B - 1 : k);
  if (d.s[3] != 0.0) {
    const double e0 = d.elev_sorted[k - 1], e1 = d.elev_sorted[k];
    const double r0 = d.rows_sorted[k - 1], r1 = d.rows_sorted[k];
    return r0 + (el - e0) * (r1 - r0) / (e1 - e0);
  }
  if ((el - d.elev_sorted[k - 1]) < (d.elev_sorted[k] - el)) k -= 1;
  return d.rows_sorted[k] + (el - d.elev_sorted[k]) / d.gap[k];
}

// Sensor.project of one point: grid coordinates and whether they are valid.
HOST_DEVICE inline bool project_point(const ProjDesc& d, DVec3 p, double& col, double& row) {
  const double* s = d.s;
  if (d.model == MODEL_PINHOLE) {
    bool valid = p.z > s[0];
    const double zs = valid ? p.z : 1.0;
    const double x = p.x / zs, y = p.y / zs;
    valid = valid && x * x + y * y < s[5] * s[5];
    const double k1 = s[6], k2 = s[7], p1 = s[8], p2 = s[9], k3 = s[10];
    const double r2 = x * x + y * y;
    const double radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3));
    const double xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x);
    const double yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y;
    col = s[1] * xd + s[3];
    row = s[2] * yd + s[4];
    return valid;
  }
  if (d.model == MODEL_FISHEYE) {
    const double r = sqrt(dmax(p.x * p.x + p.y * p.y, 1e-30));
    const double theta = atan2(r, p.z);
    const bool valid = dnorm(p) > s[0] && theta < s[5];
    const double t2 = theta * theta;
    const double td = theta * (1 + t2 * (s[6] + t2 * (s[7] + t2 * (s[8] + t2 * s[9]))));
    const double scale = r > 1e-12 ? td / r : 1.0 / dmax(fabs(p.z), 1e-12);
    col = s[1] * p.x * scale + s[3];
    row = s[2] * p.y * scale + s[4];
    return valid;
  }
  const double rxy = sqrt(dmax(p.x * p.x + p.y * p.y, 1e-30));
  const double az = atan2(p.y, p.x), el = atan2(p.z, rxy);
  if (d.model == MODEL_SPINNING) {
    double sweep = fmod(s[1] * (az - s[2]), TWO_PI_D);
    if (sweep < 0) sweep += TWO_PI_D;
    col = sweep / s[0];
    row = elevation_to_row(d, el);
    return rxy > 1e-9 * (dnorm(p) + 1e-30);
  }
  col = (s[0] - az) / s[2];
  row = (s[1] - el) / s[3];
  return p.x > 1e-9 * (dnorm(p) + 1e-30);
}

}  // namespace gssim
