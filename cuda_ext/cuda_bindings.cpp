// CUDA implementations of gssim's operators (schemas in op_args.h, defined by the CPU
// bindings): argument checks, allocation on the tensors' device and current stream, calls
// into the raw-pointer drivers in cuda/.  Built only with a CUDA toolkit and a CUDA torch.
//
// A test harness compiles this file against an emulated CUDA runtime on the CPU
// (tests/render/cuda_emulation/); it defines GSSIM_CUDA_EMULATION and supplies
// GSSIM_OPS_DEVICE, GSSIM_OPS_IMPL and DeviceScope.
#include <torch/extension.h>

#include <vector>

#include "cuda/prepare_cuda.h"
#include "cuda/rasterize_cuda.h"
#include "op_args.h"

#ifndef GSSIM_CUDA_EMULATION
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#define GSSIM_OPS_DEVICE c10::DeviceType::CUDA
#define GSSIM_OPS_IMPL TORCH_LIBRARY_IMPL(gssim, CUDA, m)

namespace {
// The device of an op's tensors made current, and its current stream.
class DeviceScope {
 public:
  explicit DeviceScope(const torch::Tensor& t) : guard_(t.device()) {}
  void* stream() const { return c10::cuda::getCurrentCUDAStream().stream(); }

 private:
  c10::cuda::OptionalCUDAGuard guard_;
};
}  // namespace
#endif

namespace {

using gssim_ops::Tensor;

void check_cuda_grid(int64_t tile_h, int64_t tile_w, int64_t channels) {
  TORCH_CHECK(tile_h * tile_w <= 1024, "gssim CUDA: a tile has at most 1024 cells (one thread each), got ", tile_h,
              "x", tile_w);
  TORCH_CHECK(channels <= gssim::cuda::MAX_CHANNELS, "gssim CUDA: features may have at most ",
              gssim::cuda::MAX_CHANNELS, " channels, got ", channels, " (the CPU backend takes any number)");
}

// Returns color_acc, alpha, t_acc, normal_acc, median_t, and the saved state for the
// backward pass: order (empty: not used on CUDA), tile_offsets, entries (record indices),
// last, median_pos.
std::vector<Tensor> rasterize_fwd_cuda(const Tensor& rays_o, const Tensor& rays_d, int64_t rows, int64_t cols,
                                       const Tensor& means, const Tensor& axis_u, const Tensor& axis_v,
                                       const Tensor& normals, const Tensor& opacities, const Tensor& features,
                                       const Tensor& means2d, const Tensor& depth_keys, const Tensor& records,
                                       int64_t tile_h, int64_t tile_w, double t_min, double t_max) {
  const auto in = gssim_ops::check_raster_inputs(rays_o, rays_d, rows, cols, means, axis_u, axis_v, normals,
                                                 opacities, features, means2d, depth_keys, records, tile_h, tile_w,
                                                 t_min, t_max, GSSIM_OPS_DEVICE);
  check_cuda_grid(tile_h, tile_w, features.size(1));
  const DeviceScope scope(means);
  const int64_t R = rows * cols, F = records.size(0);
  const auto i64 = means.options().dtype(torch::kInt64), i32 = means.options().dtype(torch::kInt32);
  const auto f32 = means.options();
  Tensor pair_offsets = torch::empty({F + 1}, i64);
  const int64_t E = gssim::cuda::count_tile_pairs(records.data_ptr<int32_t>(), F, in.grid,
                                                  pair_offsets.data_ptr<int64_t>(), scope.stream());
  Tensor entries = torch::empty({E}, i32), tile_offsets = torch::empty({in.grid.num_tiles() + 1}, i64);
  gssim::cuda::sort_tile_pairs(records.data_ptr<int32_t>(), F, depth_keys.data_ptr<float>(), in.grid,
                               pair_offsets.data_ptr<int64_t>(), E, entries.data_ptr<int32_t>(),
                               tile_offsets.data_ptr<int64_t>(), scope.stream());
  Tensor color = torch::empty({R, features.size(1)}, f32), alpha = torch::empty({R}, f32);
  Tensor t_acc = torch::empty({R}, f32), normal = torch::empty({R, 3}, f32), median = torch::empty({R}, f32);
  Tensor last = torch::empty({R}, i32), median_pos = torch::empty({R}, i32);
  gssim::cuda::rasterize_forward(rays_o.data_ptr<float>(), rays_d.data_ptr<float>(), in.grid, in.surfels,
                                 records.data_ptr<int32_t>(), tile_offsets.data_ptr<int64_t>(),
                                 entries.data_ptr<int32_t>(), static_cast<float>(t_min), static_cast<float>(t_max),
                                 color.data_ptr<float>(), alpha.data_ptr<float>(), t_acc.data_ptr<float>(),
                                 normal.data_ptr<float>(), median.data_ptr<float>(), last.data_ptr<int32_t>(),
                                 median_pos.data_ptr<int32_t>(), scope.stream());
  Tensor order = torch::empty({0}, i32);
  return {color, alpha, t_acc, normal, median, order, tile_offsets, entries, last, median_pos};
}

// Returns gradients of means, axis_u, axis_v, normals, opacities, features, means2d.
std::vector<Tensor> rasterize_bwd_cuda(const Tensor& rays_o, const Tensor& rays_d, int64_t rows, int64_t cols,
                                       const Tensor& means, const Tensor& axis_u, const Tensor& axis_v,
                                       const Tensor& normals, const Tensor& opacities, const Tensor& features,
                                       const Tensor& means2d, const Tensor& depth_keys, const Tensor& records,
                                       int64_t tile_h, int64_t tile_w, double t_min, double t_max,
                                       const Tensor& order, const Tensor& tile_offsets, const Tensor& entries,
                                       const Tensor& alpha, const Tensor& last, const Tensor& median_pos,
                                       const Tensor& g_color, const Tensor& g_alpha, const Tensor& g_t,
                                       const Tensor& g_normal, const Tensor& g_median) {
  const auto in = gssim_ops::check_raster_inputs(rays_o, rays_d, rows, cols, means, axis_u, axis_v, normals,
                                                 opacities, features, means2d, depth_keys, records, tile_h, tile_w,
                                                 t_min, t_max, GSSIM_OPS_DEVICE);
  const int64_t N = means.size(0), C = features.size(1);
  check_cuda_grid(tile_h, tile_w, C);
  gssim_ops::check_raster_backward(in, C, order, 0, tile_offsets, entries, alpha, last, median_pos, g_color, g_alpha,
                                   g_t, g_normal, g_median, GSSIM_OPS_DEVICE);
  const DeviceScope scope(means);
  const auto f32 = means.options();
  Tensor d_means = torch::zeros({N, 3}, f32), d_u = torch::zeros({N, 3}, f32), d_v = torch::zeros({N, 3}, f32);
  Tensor d_n = torch::zeros({N, 3}, f32), d_o = torch::zeros({N}, f32), d_f = torch::zeros({N, C}, f32);
  Tensor d_m2 = torch::zeros({N, 2}, f32);
  gssim::cuda::rasterize_backward(
      rays_o.data_ptr<float>(), rays_d.data_ptr<float>(), in.grid, in.surfels, records.data_ptr<int32_t>(),
      tile_offsets.data_ptr<int64_t>(), entries.data_ptr<int32_t>(), static_cast<float>(t_min),
      static_cast<float>(t_max), alpha.data_ptr<float>(), last.data_ptr<int32_t>(), median_pos.data_ptr<int32_t>(),
      g_color.data_ptr<float>(), g_alpha.data_ptr<float>(), g_t.data_ptr<float>(), g_normal.data_ptr<float>(),
      g_median.data_ptr<float>(), d_means.data_ptr<float>(), d_u.data_ptr<float>(), d_v.data_ptr<float>(),
      d_n.data_ptr<float>(), d_o.data_ptr<float>(), d_f.data_ptr<float>(), d_m2.data_ptr<float>(), scope.stream());
  return {d_means, d_u, d_v, d_n, d_o, d_f, d_m2};
}

// Footprint records (F, 6) int32 of the surfels; arguments as gssim_ops::footprint_args.
Tensor footprints_cuda(int64_t model, int64_t rows, int64_t cols, std::vector<double> sensor_scalars,
                       std::vector<Tensor> sensor_tables, const Tensor& means, const Tensor& t_u, const Tensor& t_v,
                       const Tensor& scales, const Tensor& opacities, const Tensor& means2d, const Tensor& vis2d,
                       const Tensor& cell_poses, const Tensor& pose_index, const Tensor& cell_pose_fractions,
                       std::vector<double> motion_scalars, std::vector<Tensor> motion_tables) {
  const auto a = gssim_ops::footprint_args(model, rows, cols, sensor_scalars, sensor_tables, means, t_u, t_v, scales,
                                           opacities, means2d, vis2d, cell_poses, pose_index, cell_pose_fractions,
                                           motion_scalars, motion_tables, GSSIM_OPS_DEVICE);
  const DeviceScope scope(means);
  const int64_t N = a.surfels.N;
  const auto i32 = means.options().dtype(torch::kInt32);
  Tensor scratch = torch::empty({N * gssim::MAX_RECORDS * 6}, i32);
  Tensor offsets = torch::empty({N + 1}, means.options().dtype(torch::kInt64));
  const int64_t F = gssim::cuda::surfel_footprints(a.sensor, a.surfels, a.poses, a.motion, scratch.data_ptr<int32_t>(),
                                                   offsets.data_ptr<int64_t>(), scope.stream());
  Tensor records = torch::empty({F, 6}, i32);
  gssim::cuda::gather_records(scratch.data_ptr<int32_t>(), offsets.data_ptr<int64_t>(), N, records.data_ptr<int32_t>(),
                              scope.stream());
  return records;
}

// (N,) int64 cell pose of each surfel; arguments as gssim_ops::projection_args.
Tensor moving_pose_index_cuda(int64_t model, int64_t rows, int64_t cols, std::vector<double> proj_scalars,
                              std::vector<Tensor> proj_tables, const Tensor& means, const Tensor& cell_poses,
                              const Tensor& cell_pose_index) {
  const gssim::ProjDesc proj = gssim_ops::projection_args(model, rows, cols, proj_scalars, proj_tables, means,
                                                          cell_poses, cell_pose_index, GSSIM_OPS_DEVICE);
  const DeviceScope scope(means);
  const int64_t N = means.size(0);
  Tensor index = torch::empty({N}, means.options().dtype(torch::kInt64));
  gssim::cuda::moving_pose_index(proj, rows, cols, means.data_ptr<float>(), N, cell_poses.data_ptr<double>(),
                                 cell_pose_index.data_ptr<int64_t>(), index.data_ptr<int64_t>(), scope.stream());
  return index;
}

}  // namespace

GSSIM_OPS_IMPL {
  m.impl("rasterize_fwd", &rasterize_fwd_cuda);
  m.impl("rasterize_bwd", &rasterize_bwd_cuda);
  m.impl("footprints", &footprints_cuda);
  m.impl("moving_pose_index", &moving_pose_index_cuda);
}
