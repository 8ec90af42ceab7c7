// Torch operator schemas of gssim._C and their CPU implementations (argument checks,
// allocation, calls into the raw-pointer drivers in cpu/).
#include <torch/extension.h>

#include <cmath>
#include <vector>

#include "cpu/rasterize_cpu.h"

namespace {

using torch::Tensor;

void check_tensor(const Tensor& t, const char* name, torch::ScalarType dtype, std::vector<int64_t> shape) {
  TORCH_CHECK(t.scalar_type() == dtype, "gssim: ", name, " must be ", c10::toString(dtype), ", got ",
              t.scalar_type());
  TORCH_CHECK(t.dim() == static_cast<int64_t>(shape.size()), "gssim: ", name, " must have ", shape.size(),
              " dims, got shape ", t.sizes());
  for (size_t i = 0; i < shape.size(); ++i)
    TORCH_CHECK(shape[i] < 0 || t.size(i) == shape[i], "gssim: ", name, " has shape ", t.sizes(),
                ", expected size ", shape[i], " in dim ", i);
  TORCH_CHECK(t.is_contiguous(), "gssim: ", name, " must be contiguous");
  TORCH_CHECK(t.device().is_cpu(), "gssim: ", name, " must be on the CPU for this op");
}

struct Inputs {
  gssim::cpu::TileGrid grid;
  gssim::cpu::SurfelArrays surfels;
};

Inputs check_inputs(const Tensor& rays_o, const Tensor& rays_d, int64_t rows, int64_t cols, const Tensor& means,
                    const Tensor& axis_u, const Tensor& axis_v, const Tensor& normals, const Tensor& opacities,
                    const Tensor& features, const Tensor& means2d, const Tensor& depth_keys,
                    const Tensor& records, int64_t tile_h, int64_t tile_w, double t_min, double t_max) {
  TORCH_CHECK(rows > 0 && cols > 0, "gssim: grid must be at least 1x1, got ", rows, "x", cols);
  TORCH_CHECK(tile_h > 0 && tile_w > 0, "gssim: tile shape must be positive, got ", tile_h, "x", tile_w);
  TORCH_CHECK(t_min >= 0 && t_max > t_min && !std::isnan(t_max), "gssim: need 0 <= t_min < t_max, got ", t_min,
              ", ", t_max);
  const int64_t R = rows * cols, N = means.size(0);
  check_tensor(rays_o, "rays_o", torch::kFloat32, {R, 3});
  check_tensor(rays_d, "rays_d", torch::kFloat32, {R, 3});
  check_tensor(means, "means", torch::kFloat32, {N, 3});
  check_tensor(axis_u, "axis_u", torch::kFloat32, {N, 3});
  check_tensor(axis_v, "axis_v", torch::kFloat32, {N, 3});
  check_tensor(normals, "normals", torch::kFloat32, {N, 3});
  check_tensor(opacities, "opacities", torch::kFloat32, {N});
  check_tensor(features, "features", torch::kFloat32, {N, -1});
  check_tensor(means2d, "means2d", torch::kFloat32, {N, 2});
  check_tensor(depth_keys, "depth_keys", torch::kFloat32, {N});
  check_tensor(records, "records", torch::kInt32, {-1, 6});
  TORCH_CHECK(features.size(1) >= 1, "gssim: features need at least one channel");
  if (records.size(0) > 0) {
    const Tensor rec = records;
    const Tensor sid = rec.select(1, 0);
    TORCH_CHECK(sid.min().item<int32_t>() >= 0 && sid.max().item<int64_t>() < N,
                "gssim: records name a surfel outside [0, ", N, ")");
    TORCH_CHECK(rec.select(1, 1).min().item<int32_t>() >= 0 && rec.select(1, 2).max().item<int64_t>() < rows &&
                    rec.select(1, 3).min().item<int32_t>() >= 0 && rec.select(1, 4).max().item<int64_t>() < cols,
                "gssim: record cell boxes must lie inside the ", rows, "x", cols, " grid");
    TORCH_CHECK((rec.select(1, 1) <= rec.select(1, 2)).all().item<bool>() &&
                    (rec.select(1, 3) <= rec.select(1, 4)).all().item<bool>(),
                "gssim: record cell boxes must not be empty");
  }
  Inputs in;
  in.grid = gssim::cpu::TileGrid{static_cast<int>(rows), static_cast<int>(cols), static_cast<int>(tile_h),
                                 static_cast<int>(tile_w)};
  in.surfels = gssim::cpu::SurfelArrays{means.data_ptr<float>(),     axis_u.data_ptr<float>(),
                                        axis_v.data_ptr<float>(),    normals.data_ptr<float>(),
                                        opacities.data_ptr<float>(), features.data_ptr<float>(),
                                        means2d.data_ptr<float>(),   N,
                                        static_cast<int>(features.size(1))};
  return in;
}

// Returns color_acc, alpha, t_acc, normal_acc, median_t, and the saved state for the
// backward pass: order (records front to back), tile_offsets, entries (ranks), last, median_pos.
std::vector<Tensor> rasterize_fwd_cpu(const Tensor& rays_o, const Tensor& rays_d, int64_t rows, int64_t cols,
                                      const Tensor& means, const Tensor& axis_u, const Tensor& axis_v,
                                      const Tensor& normals, const Tensor& opacities, const Tensor& features,
                                      const Tensor& means2d, const Tensor& depth_keys, const Tensor& records,
                                      int64_t tile_h, int64_t tile_w, double t_min, double t_max) {
  const Inputs in = check_inputs(rays_o, rays_d, rows, cols, means, axis_u, axis_v, normals, opacities, features,
                                 means2d, depth_keys, records, tile_h, tile_w, t_min, t_max);
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
  const Inputs in = check_inputs(rays_o, rays_d, rows, cols, means, axis_u, axis_v, normals, opacities, features,
                                 means2d, depth_keys, records, tile_h, tile_w, t_min, t_max);
  const int64_t R = rows * cols, N = means.size(0), C = features.size(1);
  const int64_t F = records.size(0);
  check_tensor(order, "order", torch::kInt32, {F});
  check_tensor(tile_offsets, "tile_offsets", torch::kInt64, {in.grid.num_tiles() + 1});
  check_tensor(entries, "entries", torch::kInt32, {-1});
  check_tensor(alpha, "alpha", torch::kFloat32, {R});
  check_tensor(last, "last", torch::kInt32, {R});
  check_tensor(median_pos, "median_pos", torch::kInt32, {R});
  check_tensor(g_color, "grad color", torch::kFloat32, {R, C});
  check_tensor(g_alpha, "grad alpha", torch::kFloat32, {R});
  check_tensor(g_t, "grad t", torch::kFloat32, {R});
  check_tensor(g_normal, "grad normal", torch::kFloat32, {R, 3});
  check_tensor(g_median, "grad median", torch::kFloat32, {R});
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
  m.def(
      "rasterize_fwd(Tensor rays_o, Tensor rays_d, int rows, int cols, Tensor means, Tensor axis_u, "
      "Tensor axis_v, Tensor normals, Tensor opacities, Tensor features, Tensor means2d, Tensor depth_keys, "
      "Tensor records, int tile_h, int tile_w, float t_min, float t_max) -> Tensor[]");
  m.def(
      "rasterize_bwd(Tensor rays_o, Tensor rays_d, int rows, int cols, Tensor means, Tensor axis_u, "
      "Tensor axis_v, Tensor normals, Tensor opacities, Tensor features, Tensor means2d, Tensor depth_keys, "
      "Tensor records, int tile_h, int tile_w, float t_min, float t_max, Tensor order, Tensor tile_offsets, "
      "Tensor entries, Tensor alpha, Tensor last, Tensor median_pos, Tensor g_color, Tensor g_alpha, "
      "Tensor g_t, Tensor g_normal, Tensor g_median) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(gssim, CPU, m) {
  m.impl("rasterize_fwd", &rasterize_fwd_cpu);
  m.impl("rasterize_bwd", &rasterize_bwd_cpu);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.doc() = "gssim native rasterizer (torch ops under torch.ops.gssim)"; }
