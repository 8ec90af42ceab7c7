// Torch operators of render preparation (gssim::footprints, gssim::moving_pose_index) and
// their CPU implementations: argument checks (op_args.h), allocation, calls into the
// raw-pointer driver in cpu/prepare_cpu.cpp.
#include <torch/extension.h>

#include <vector>

#include "cpu/prepare_cpu.h"
#include "op_args.h"

namespace {

using gssim_ops::Tensor;
constexpr c10::DeviceType CPU = c10::DeviceType::CPU;

// Footprint records (F, 6) int32 of the surfels; arguments as gssim_ops::footprint_args.
Tensor footprints_cpu(int64_t model, int64_t rows, int64_t cols, std::vector<double> sensor_scalars,
                      std::vector<Tensor> sensor_tables, const Tensor& means, const Tensor& t_u, const Tensor& t_v,
                      const Tensor& scales, const Tensor& opacities, const Tensor& means2d, const Tensor& vis2d,
                      const Tensor& cell_poses, const Tensor& pose_index, const Tensor& cell_pose_fractions,
                      std::vector<double> motion_scalars, std::vector<Tensor> motion_tables) {
  const auto a = gssim_ops::footprint_args(model, rows, cols, sensor_scalars, sensor_tables, means, t_u, t_v, scales,
                                           opacities, means2d, vis2d, cell_poses, pose_index, cell_pose_fractions,
                                           motion_scalars, motion_tables, CPU);
  const int64_t N = a.surfels.N;
  auto i32 = torch::TensorOptions().dtype(torch::kInt32);
  Tensor scratch = torch::empty({N * gssim::MAX_RECORDS * 6}, i32);
  Tensor counts = torch::empty({N}, torch::TensorOptions().dtype(torch::kInt64));
  gssim::cpu::surfel_footprints(a.sensor, a.surfels, a.poses, a.motion, scratch.data_ptr<int32_t>(),
                                counts.data_ptr<int64_t>());
  const int64_t F = N > 0 ? counts.sum().item<int64_t>() : 0;
  Tensor records = torch::empty({F, 6}, i32);
  gssim::cpu::gather_records(scratch.data_ptr<int32_t>(), counts.data_ptr<int64_t>(), N, records.data_ptr<int32_t>());
  return records;
}

// (N,) int64 cell pose of each surfel; arguments as gssim_ops::projection_args.
Tensor moving_pose_index_cpu(int64_t model, int64_t rows, int64_t cols, std::vector<double> proj_scalars,
                             std::vector<Tensor> proj_tables, const Tensor& means, const Tensor& cell_poses,
                             const Tensor& cell_pose_index) {
  const gssim::ProjDesc proj = gssim_ops::projection_args(model, rows, cols, proj_scalars, proj_tables, means,
                                                          cell_poses, cell_pose_index, CPU);
  const int64_t N = means.size(0);
  Tensor index = torch::empty({N}, torch::TensorOptions().dtype(torch::kInt64));
  gssim::cpu::moving_pose_index(proj, rows, cols, means.data_ptr<float>(), N, cell_poses.data_ptr<double>(),
                                cell_pose_index.data_ptr<int64_t>(), index.data_ptr<int64_t>());
  return index;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gssim, m) {
  m.def(gssim_ops::FOOTPRINTS_SCHEMA);
  m.def(gssim_ops::MOVING_POSE_INDEX_SCHEMA);
}

TORCH_LIBRARY_IMPL(gssim, CPU, m) {
  m.impl("footprints", &footprints_cpu);
  m.impl("moving_pose_index", &moving_pose_index_cpu);
}
