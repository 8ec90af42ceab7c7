// CUDA drivers of render preparation: footprint records of every surfel and the cell pose
// a moving sensor sees each from.  Raw device pointers (the tables inside SensorDesc,
// PrepMotion and ProjDesc too) and a cudaStream_t passed as void*; the per-surfel maths
// and the layout are gssim/prepare_math.h, the same functions as the CPU driver calls.
#pragma once

#include <cstdint>

#include "gssim/prepare_math.h"

namespace gssim {
namespace cuda {

// Pass 1: per surfel its records into scratch (N * MAX_RECORDS * 6) and their number,
// scanned into record_offsets (N + 1); returns their total F.
int64_t surfel_footprints(const SensorDesc& sensor, PrepSurfels s, PrepPoses poses, PrepMotion motion,
                          int32_t* scratch, int64_t* record_offsets, void* stream);

// Pass 2: the records of pass 1, surfel by surfel, into records (F, 6).
void gather_records(const int32_t* scratch, const int64_t* record_offsets, int64_t N, int32_t* records,
                    void* stream);

// pose_index (N): the cell pose each surfel of a moving sensor is seen from (three
// fixed-point steps from the middle cell's pose); cell_pose_index (rows, cols).
void moving_pose_index(const ProjDesc& proj, int64_t rows, int64_t cols, const float* means, int64_t N,
                       const double* cell_poses, const int64_t* cell_pose_index, int64_t* pose_index, void* stream);

}  // namespace cuda
}  // namespace gssim
