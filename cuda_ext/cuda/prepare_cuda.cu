// CUDA drivers of render preparation: a thread per surfel runs the per-surfel maths of
// gssim/prepare_math.h; records are compacted by a scan of their counts.
#include "prepare_cuda.h"

#ifndef GSSIM_CUDA_EMULATION
#include <cub/cub.cuh>
#endif

#include "cuda_common.cuh"

namespace gssim {
namespace cuda {

namespace {

constexpr int PREP_THREADS = 128;

__global__ void footprints_kernel(SensorDesc sensor, PrepSurfels s, PrepPoses poses, PrepMotion motion,
                                  int32_t* scratch, int64_t* counts) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < s.N) counts[i] = surfel_footprint(sensor, s, poses, motion, i, scratch + i * MAX_RECORDS * 6);
}

__global__ void gather_kernel(const int32_t* scratch, const int64_t* record_offsets, int64_t N, int32_t* records) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N) return;
  const int64_t n = record_offsets[i + 1] - record_offsets[i];
  const int32_t* src = scratch + i * MAX_RECORDS * 6;
  int32_t* dst = records + 6 * record_offsets[i];
  for (int64_t c = 0; c < 6 * n; ++c) dst[c] = src[c];
}

__global__ void pose_index_kernel(ProjDesc proj, int64_t rows, int64_t cols, const float* means, int64_t N,
                                  const double* cell_poses, const int64_t* cell_pose_index, int64_t* pose_index) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N) return;
  const int64_t start = cell_pose_index[(rows / 2) * cols + cols / 2];
  pose_index[i] = surfel_pose_index(proj, rows, cols, means + 3 * i, cell_poses, cell_pose_index, start);
}

}  // namespace

int64_t surfel_footprints(const SensorDesc& sensor, PrepSurfels s, PrepPoses poses, PrepMotion motion,
                          int32_t* scratch, int64_t* record_offsets, void* stream) {
  const cudaStream_t st = as_stream(stream);
  Scratch<int64_t> counts(s.N + 1, st);
  GSSIM_CUDA_CHECK(cudaMemsetAsync(counts.get(), 0, sizeof(int64_t) * (s.N + 1), st));
  if (s.N > 0)
    GSSIM_LAUNCH(footprints_kernel, blocks_for(s.N, PREP_THREADS), PREP_THREADS, st)(sensor, s, poses, motion,
                                                                                    scratch, counts.get());
  size_t bytes = 0;
  GSSIM_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, bytes, counts.get(), record_offsets, s.N + 1, st));
  Scratch<unsigned char> temp(bytes, st);
  GSSIM_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp.get(), bytes, counts.get(), record_offsets, s.N + 1, st));
  GSSIM_CUDA_CHECK(cudaGetLastError());
  return read_back(record_offsets + s.N, st);
}

void gather_records(const int32_t* scratch, const int64_t* record_offsets, int64_t N, int32_t* records,
                    void* stream) {
  if (N == 0) return;
  GSSIM_LAUNCH(gather_kernel, blocks_for(N, PREP_THREADS), PREP_THREADS, as_stream(stream))(
      scratch, record_offsets, N, records);
  GSSIM_CUDA_CHECK(cudaGetLastError());
}

void moving_pose_index(const ProjDesc& proj, int64_t rows, int64_t cols, const float* means, int64_t N,
                       const double* cell_poses, const int64_t* cell_pose_index, int64_t* pose_index, void* stream) {
  if (N == 0) return;
  GSSIM_LAUNCH(pose_index_kernel, blocks_for(N, PREP_THREADS), PREP_THREADS, as_stream(stream))(
      proj, rows, cols, means, N, cell_poses, cell_pose_index, pose_index);
  GSSIM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace cuda
}  // namespace gssim
