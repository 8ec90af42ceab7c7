// Torch operator schemas of gssim._C's rasterizer and their CPU implementations
// (argument checks in op_args.h, allocation, calls into the raw-pointer drivers in cpu/).
#include <torch/extension.h>

#include <vector>

#include "cpu/rasterize_cpu.h"
#include "op_args.h"

namespace {

using gssim_ops::Tensor;
constexpr c10::DeviceType CPU = c10::DeviceType::CPU;

// Returns color_acc, alpha, t_acc, normal_acc, median_t, and the saved state for the
// backward pass: order (records front to back), tile_offsets, entries (ranks), last, median_pos.
std::vector<Tensor> rasterize_fwd_cpu(const Tensor& rays_o, const Tensor& rays_d, int64_t rows, int64_t cols,
                                      const Tensor& means, const Tensor& axis_u, const Tensor& axis_v,
                                      const Tensor& normals, const Tensor& opacities, const Tensor& features,
                                      const Tensor& means2d, const Tensor& depth_keys, const Tensor& records,
                                      int64_t tile_h, int64_t tile_w, double t_min, double t_max) {
  const auto in = gssim_ops::check_raster_inputs(rays_o, rays_d, rows, cols, means, axis_u, axis_v, normals,
                                                 opacities, features, means2d, depth_keys, records, tile_h, tile_w,
                                                 t_min, t_max, CPU);
  const int64_t R = rows * cols, F = records.size(0);
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  auto i32 = torch::TensorOptions().dtype(torch::kInt32);
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  Tensor order = torch::empty({F}, i32);
  gssim::cpu::sort_records(records.data_ptr<int32_t>(), F, depth_keys.data_ptr<float>(), order.data_ptr<int32_t>());
  Tensor tile_offsets = torch::empty({in.grid.num_tiles() + 1}, i64);
  const int64_t E = gssim::cpu::count_tile_entries(records.data_ptr<int32_t>(), F, in.grid,
                                                   tile_offsets.data_ptr<int64_t>());
  Tensor entries = torch::empty({E}, i32);
  gssim::cpu::fill_tile_entries(records.data_ptr<int32_t>(), order.data_ptr<int32_t>(), F, in.grid,
                                tile_offsets.data_ptr<int64_t>(), entries.data_ptr<int32_t>());
  Tensor color = torch::empty({R, features.size(1)}, f32), alpha = torch::empty({R}, f32);
  Tensor t_acc = torch::empty({R}, f32), normal = torch::empty({R, 3}, f32), median = torch::empty({R}, f32);
  Tensor last = torch::empty({R}, i32), median_pos = torch::empty({R}, i32);
  gssim::cpu::rasterize_forward(rays_o.data_ptr<float>(), rays_d.data_ptr<float>(), in.grid, in.surfels,
                                records.data_ptr<int32_t>(), order.data_ptr<int32_t>(), F,
                                tile_offsets.data_ptr<int64_t>(), entries.data_ptr<int32_t>(),
                                static_cast<float>(t_min), static_cast<float>(t_max),
                                color.data_ptr<float>(), alpha.data_ptr<float>(), t_acc.data_ptr<float>(),
                                normal.data_ptr<float>(), median.data_ptr<float>(), last.data_ptr<int32_t>(),
                                median_pos.data_ptr<int32_t>());
  return {color, alpha, t_acc, normal, median, order, tile_offsets, entries, last, median_pos};
}

// Returns gradients of means, axis_u, axis_v, normals, opacities, features, means2d.
std::vector<Tensor> rasterize_bwd_cpu(const Tensor& rays_o, const Tensor& rays_d, int64_t rows, int64_t cols,
                                      const Tensor& means, const Tensor& axis_u, const Tensor& axis_v,
                                      const Tensor& normals, const Tensor& opacities, const Tensor& features,
                                      const Tensor& means2d, const Tensor& depth_keys, const Tensor& records,
                                      int64_t tile_h, int64_t tile_w, double t_min, double t_max,
                                      const Tensor& order, const Tensor& tile_offsets, const Tensor& entries,
                                      const Tensor& alpha,
                                      const Tensor& last, const Tensor& median_pos, const Tensor& g_color,
                                      const Tensor& g_alpha, const Tensor& g_t, const Tensor& g_normal,
                                      const Tensor& g_median) {
  const auto in = gssim_ops::check_raster_inputs(rays_o, rays_d, rows, cols, means, axis_u, axis_v, normals,
                                                 opacities, features, means2d, depth_keys, records, tile_h, tile_w,
                                                 t_min, t_max, CPU);
  const int64_t N = means.size(0), C = features.size(1), F = records.size(0);
  gssim_ops::check_raster_backward(in, C, order, F, tile_offsets, entries, alpha, last, median_pos, g_color, g_alpha,
                                   g_t, g_normal, g_median, CPU);
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  Tensor d_means = torch::zeros({N, 3}, f32), d_u = torch::zeros({N, 3}, f32), d_v = torch::zeros({N, 3}, f32);
  Tensor d_n = torch::zeros({N, 3}, f32), d_o = torch::zeros({N}, f32), d_f = torch::zeros({N, C}, f32);
  Tensor d_m2 = torch::zeros({N, 2}, f32);
  gssim::cpu::rasterize_backward(
      rays_o.data_ptr<float>(), rays_d.data_ptr<float>(), in.grid, in.surfels, records.data_ptr<int32_t>(),
      order.data_ptr<int32_t>(), F, tile_offsets.data_ptr<int64_t>(), entries.data_ptr<int32_t>(), static_cast<float>(t_min),
      static_cast<float>(t_max), alpha.data_ptr<float>(), last.data_ptr<int32_t>(), median_pos.data_ptr<int32_t>(),
      g_color.data_ptr<float>(), g_alpha.data_ptr<float>(), g_t.data_ptr<float>(), g_normal.data_ptr<float>(),
      g_median.data_ptr<float>(), d_means.data_ptr<float>(), d_u.data_ptr<float>(), d_v.data_ptr<float>(),
      d_n.data_ptr<float>(), d_o.data_ptr<float>(), d_f.data_ptr<float>(), d_m2.data_ptr<float>());
  return {d_means, d_u, d_v, d_n, d_o, d_f, d_m2};
}

}  // namespace

TORCH_LIBRARY(gssim, m) {
  m.def(gssim_ops::RASTERIZE_FWD_SCHEMA);
  m.def(gssim_ops::RASTERIZE_BWD_SCHEMA);
}

TORCH_LIBRARY_IMPL(gssim, CPU, m) {
  m.impl("rasterize_fwd", &rasterize_fwd_cpu);
  m.impl("rasterize_bwd", &rasterize_bwd_cpu);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.doc() = "gssim native rasterizer (torch ops under torch.ops.gssim)"; }
