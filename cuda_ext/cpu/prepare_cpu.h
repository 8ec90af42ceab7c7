// CPU (OpenMP) driver of render preparation: footprint records of every surfel.  Raw
// pointers and sizes only; the per-surfel maths is in gssim/footprint_math.h.
//
// Layout:
//   means, t_u, t_v (N, 3) float32 world frame (t_u, t_v the surfel's unit tangents);
//   scales (N, 2), opacities (N), means2d (N, 2) grid coordinates (col, row) of the
//   projected centres, vis2d (N) whether the low-pass filter disc applies;
//   cell_poses (P, 4, 4) float64 sensor-to-world poses, pose_index (N) the one each surfel
//   is binned from (null: pose 0), cell_pose_fractions (P) their readout fractions.
//   records (F, 6) int32: surfel, r0, r1, c0, c1 (inclusive cell box), column shift.
#pragma once

#include <cstdint>

#include "gssim/footprint_math.h"
#include "gssim/project_math.h"

namespace gssim {
namespace cpu {

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

// Pass 1: per surfel its records into scratch (N * MAX_RECORDS * 6) and their number into
// counts (N).  Surfels below ALPHA_MIN get none.
void surfel_footprints(const SensorDesc& sensor, PrepSurfels s, PrepPoses poses, PrepMotion motion,
                       int32_t* scratch, int64_t* counts);

// Cell pose each surfel of a moving sensor is seen from (pose_index (N)): the pose of the
// cell its centre lands in, by three fixed-point steps from the middle cell's pose
// (Python: _project_centres).  cell_pose_index (rows, cols) maps cells to poses.
void moving_pose_index(const ProjDesc& proj, int64_t rows, int64_t cols, const float* means, int64_t N,
                       const double* cell_poses, const int64_t* cell_pose_index, int64_t* pose_index);

// Pass 2: the records of pass 1, surfel by surfel, into records (sum of counts, 6).
void gather_records(const int32_t* scratch, const int64_t* counts, int64_t N, int32_t* records);

}  // namespace cpu
}  // namespace gssim
