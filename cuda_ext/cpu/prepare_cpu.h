// CPU (OpenMP) driver of render preparation: footprint records of every surfel.  Raw
// pointers and sizes only; the per-surfel maths (and the layout of the arrays) is in
// gssim/prepare_math.h, shared with the CUDA kernels.
#pragma once

#include <cstdint>

#include "gssim/prepare_math.h"

namespace gssim {
namespace cpu {

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
