// CPU driver of render preparation: the per-surfel maths of gssim/prepare_math.h in
// parallel over surfels.
#include "prepare_cpu.h"

#include <vector>

namespace gssim {
namespace cpu {

void surfel_footprints(const SensorDesc& sensor, PrepSurfels s, PrepPoses poses, PrepMotion motion,
                       int32_t* scratch, int64_t* counts) {
#pragma omp parallel for schedule(dynamic, 1024)
  for (int64_t i = 0; i < s.N; ++i)
    counts[i] = surfel_footprint(sensor, s, poses, motion, i, scratch + i * MAX_RECORDS * 6);
}

void moving_pose_index(const ProjDesc& proj, int64_t rows, int64_t cols, const float* means, int64_t N,
                       const double* cell_poses, const int64_t* cell_pose_index, int64_t* pose_index) {
  const int64_t start = cell_pose_index[(rows / 2) * cols + cols / 2];
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i)
    pose_index[i] = surfel_pose_index(proj, rows, cols, means + 3 * i, cell_poses, cell_pose_index, start);
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
