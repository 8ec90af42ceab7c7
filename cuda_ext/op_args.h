// Torch-side argument checks of gssim's operators, shared by the CPU bindings
// (bindings.cpp, prepare_bindings.cpp) and the CUDA ones (cuda_bindings.cpp): each op's
// tensors are checked (dtype, shape, contiguity, device) and turned into the raw-pointer
// descriptions the drivers take.  Also the operator schemas, defined once.
#pragma once

#include <torch/extension.h>

#include <cmath>
#include <vector>

#include "gssim/prepare_math.h"
#include "gssim/raster_layout.h"

namespace gssim_ops {

using torch::Tensor;

constexpr const char* RASTERIZE_FWD_SCHEMA =
    "rasterize_fwd(Tensor rays_o, Tensor rays_d, int rows, int cols, Tensor means, Tensor axis_u, "
    "Tensor axis_v, Tensor normals, Tensor opacities, Tensor features, Tensor means2d, Tensor depth_keys, "
    "Tensor records, int tile_h, int tile_w, float t_min, float t_max) -> Tensor[]";
constexpr const char* RASTERIZE_BWD_SCHEMA =
    "rasterize_bwd(Tensor rays_o, Tensor rays_d, int rows, int cols, Tensor means, Tensor axis_u, "
    "Tensor axis_v, Tensor normals, Tensor opacities, Tensor features, Tensor means2d, Tensor depth_keys, "
    "Tensor records, int tile_h, int tile_w, float t_min, float t_max, Tensor order, Tensor tile_offsets, "
    "Tensor entries, Tensor alpha, Tensor last, Tensor median_pos, Tensor g_color, Tensor g_alpha, "
    "Tensor g_t, Tensor g_normal, Tensor g_median) -> Tensor[]";
constexpr const char* FOOTPRINTS_SCHEMA =
    "footprints(int model, int rows, int cols, float[] sensor_scalars, Tensor[] sensor_tables, Tensor means, "
    "Tensor t_u, Tensor t_v, Tensor scales, Tensor opacities, Tensor means2d, Tensor vis2d, Tensor cell_poses, "
    "Tensor pose_index, Tensor cell_pose_fractions, float[] motion_scalars, Tensor[] motion_tables) -> Tensor";
constexpr const char* MOVING_POSE_INDEX_SCHEMA =
    "moving_pose_index(int model, int rows, int cols, float[] proj_scalars, Tensor[] proj_tables, Tensor means, "
    "Tensor cell_poses, Tensor cell_pose_index) -> Tensor";

inline void check_tensor(const Tensor& t, const char* op, const char* name, torch::ScalarType dtype,
                         std::vector<int64_t> shape, c10::DeviceType device) {
  TORCH_CHECK(t.scalar_type() == dtype, op, ": ", name, " must be ", c10::toString(dtype), ", got ",
              t.scalar_type());
  TORCH_CHECK(t.dim() == static_cast<int64_t>(shape.size()), op, ": ", name, " must have ", shape.size(),
              " dims, got shape ", t.sizes());
  for (size_t i = 0; i < shape.size(); ++i)
    TORCH_CHECK(shape[i] < 0 || t.size(i) == shape[i], op, ": ", name, " has shape ", t.sizes(),
                ", expected size ", shape[i], " in dim ", i);
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
  TORCH_CHECK(t.device().type() == device, op, ": ", name, " must be on the ", c10::DeviceTypeName(device, true),
              " device for this op, it is on ", t.device());
}

// --- rasterizer ---------------------------------------------------------------------------

struct RasterInputs {
  gssim::TileGrid grid;
  gssim::SurfelArrays surfels;
};

inline RasterInputs check_raster_inputs(const Tensor& rays_o, const Tensor& rays_d, int64_t rows, int64_t cols,
                                        const Tensor& means, const Tensor& axis_u, const Tensor& axis_v,
                                        const Tensor& normals, const Tensor& opacities, const Tensor& features,
                                        const Tensor& means2d, const Tensor& depth_keys, const Tensor& records,
                                        int64_t tile_h, int64_t tile_w, double t_min, double t_max,
                                        c10::DeviceType device) {
  const char* op = "gssim";
  TORCH_CHECK(rows > 0 && cols > 0, "gssim: grid must be at least 1x1, got ", rows, "x", cols);
  TORCH_CHECK(tile_h > 0 && tile_w > 0, "gssim: tile shape must be positive, got ", tile_h, "x", tile_w);
  TORCH_CHECK(t_min >= 0 && t_max > t_min && !std::isnan(t_max), "gssim: need 0 <= t_min < t_max, got ", t_min,
              ", ", t_max);
  const int64_t R = rows * cols, N = means.size(0);
  check_tensor(rays_o, op, "rays_o", torch::kFloat32, {R, 3}, device);
  check_tensor(rays_d, op, "rays_d", torch::kFloat32, {R, 3}, device);
  check_tensor(means, op, "means", torch::kFloat32, {N, 3}, device);
  check_tensor(axis_u, op, "axis_u", torch::kFloat32, {N, 3}, device);
  check_tensor(axis_v, op, "axis_v", torch::kFloat32, {N, 3}, device);
  check_tensor(normals, op, "normals", torch::kFloat32, {N, 3}, device);
  check_tensor(opacities, op, "opacities", torch::kFloat32, {N}, device);
  check_tensor(features, op, "features", torch::kFloat32, {N, -1}, device);
  check_tensor(means2d, op, "means2d", torch::kFloat32, {N, 2}, device);
  check_tensor(depth_keys, op, "depth_keys", torch::kFloat32, {N}, device);
  check_tensor(records, op, "records", torch::kInt32, {-1, 6}, device);
  TORCH_CHECK(features.size(1) >= 1, "gssim: features need at least one channel");
  if (records.size(0) > 0) {
    const Tensor sid = records.select(1, 0);
    TORCH_CHECK(sid.min().item<int32_t>() >= 0 && sid.max().item<int64_t>() < N,
                "gssim: records name a surfel outside [0, ", N, ")");
    TORCH_CHECK(records.select(1, 1).min().item<int32_t>() >= 0 && records.select(1, 2).max().item<int64_t>() < rows &&
                    records.select(1, 3).min().item<int32_t>() >= 0 &&
                    records.select(1, 4).max().item<int64_t>() < cols,
                "gssim: record cell boxes must lie inside the ", rows, "x", cols, " grid");
    TORCH_CHECK((records.select(1, 1) <= records.select(1, 2)).all().item<bool>() &&
                    (records.select(1, 3) <= records.select(1, 4)).all().item<bool>(),
                "gssim: record cell boxes must not be empty");
  }
  RasterInputs in;
  in.grid = gssim::TileGrid{static_cast<int>(rows), static_cast<int>(cols), static_cast<int>(tile_h),
                            static_cast<int>(tile_w)};
  in.surfels = gssim::SurfelArrays{means.data_ptr<float>(),     axis_u.data_ptr<float>(),
                                   axis_v.data_ptr<float>(),    normals.data_ptr<float>(),
                                   opacities.data_ptr<float>(), features.data_ptr<float>(),
                                   means2d.data_ptr<float>(),   N,
                                   static_cast<int>(features.size(1))};
  return in;
}

// The forward pass's saved state and the output gradients given to the backward pass.
inline void check_raster_backward(const RasterInputs& in, int64_t C, const Tensor& order,
                                  int64_t order_size, const Tensor& tile_offsets, const Tensor& entries,
                                  const Tensor& alpha, const Tensor& last, const Tensor& median_pos,
                                  const Tensor& g_color, const Tensor& g_alpha, const Tensor& g_t,
                                  const Tensor& g_normal, const Tensor& g_median, c10::DeviceType device) {
  const char* op = "gssim";
  const int64_t R = static_cast<int64_t>(in.grid.rows) * in.grid.cols;
  check_tensor(order, op, "order", torch::kInt32, {order_size}, device);
  check_tensor(tile_offsets, op, "tile_offsets", torch::kInt64, {in.grid.num_tiles() + 1}, device);
  check_tensor(entries, op, "entries", torch::kInt32, {-1}, device);
  check_tensor(alpha, op, "alpha", torch::kFloat32, {R}, device);
  check_tensor(last, op, "last", torch::kInt32, {R}, device);
  check_tensor(median_pos, op, "median_pos", torch::kInt32, {R}, device);
  check_tensor(g_color, op, "grad color", torch::kFloat32, {R, C}, device);
  check_tensor(g_alpha, op, "grad alpha", torch::kFloat32, {R}, device);
  check_tensor(g_t, op, "grad t", torch::kFloat32, {R}, device);
  check_tensor(g_normal, op, "grad normal", torch::kFloat32, {R, 3}, device);
  check_tensor(g_median, op, "grad median", torch::kFloat32, {R}, device);
}

// --- preparation --------------------------------------------------------------------------

struct FootprintArgs {
  gssim::SensorDesc sensor;
  gssim::PrepSurfels surfels;
  gssim::PrepPoses poses;
  gssim::PrepMotion motion;
};

// sensor_scalars: t_min, t_max, clip_z, theta_max, sign, res, az0.
// sensor_tables: col_lo, col_hi (cols,), row_lo, row_hi (rows,) float64; spinning LiDARs
//   also elev_sorted (rows,) float64 and span_lo, span_hi (rows, rows) int32.
// motion_scalars (moving sensors, else empty): translation, rotation, readout_angle,
//   periodic, column_angle; motion_tables: readout-fraction ranges row_lo, row_hi (rows,),
//   col_lo, col_hi (cols,) float64.
// Every tensor on `device` (the tables too: the drivers read them there).
inline FootprintArgs footprint_args(int64_t model, int64_t rows, int64_t cols, const std::vector<double>& sensor_scalars,
                                    const std::vector<Tensor>& sensor_tables, const Tensor& means, const Tensor& t_u,
                                    const Tensor& t_v, const Tensor& scales, const Tensor& opacities,
                                    const Tensor& means2d, const Tensor& vis2d, const Tensor& cell_poses,
                                    const Tensor& pose_index, const Tensor& cell_pose_fractions,
                                    const std::vector<double>& motion_scalars, const std::vector<Tensor>& motion_tables,
                                    c10::DeviceType device) {
  const char* op = "gssim.footprints";
  TORCH_CHECK(model >= gssim::MODEL_PINHOLE && model <= gssim::MODEL_SOLID_STATE,
              "gssim.footprints: unknown sensor model ", model);
  TORCH_CHECK(rows > 0 && cols > 0, "gssim.footprints: grid must be at least 1x1, got ", rows, "x", cols);
  TORCH_CHECK(sensor_scalars.size() == 7, "gssim.footprints: expected 7 sensor scalars, got ",
              sensor_scalars.size());
  const bool spinning = model == gssim::MODEL_SPINNING;
  TORCH_CHECK(sensor_tables.size() == (spinning ? 7u : 4u), "gssim.footprints: expected ", spinning ? 7 : 4,
              " sensor tables, got ", sensor_tables.size());
  const int64_t N = means.size(0);
  check_tensor(means, op, "means", torch::kFloat32, {N, 3}, device);
  check_tensor(t_u, op, "t_u", torch::kFloat32, {N, 3}, device);
  check_tensor(t_v, op, "t_v", torch::kFloat32, {N, 3}, device);
  check_tensor(scales, op, "scales", torch::kFloat32, {N, 2}, device);
  check_tensor(opacities, op, "opacities", torch::kFloat32, {N}, device);
  check_tensor(means2d, op, "means2d", torch::kFloat32, {N, 2}, device);
  check_tensor(vis2d, op, "vis2d", torch::kBool, {N}, device);
  check_tensor(cell_poses, op, "cell_poses", torch::kFloat64, {-1, 4, 4}, device);
  const int64_t P = cell_poses.size(0);
  TORCH_CHECK(P >= 1, "gssim.footprints: need at least one cell pose");
  check_tensor(cell_pose_fractions, op, "cell_pose_fractions", torch::kFloat64, {P}, device);
  const bool moving = !motion_scalars.empty();
  check_tensor(pose_index, op, "pose_index", torch::kInt64, {moving ? N : 0}, device);
  if (moving && N > 0) {
    TORCH_CHECK(pose_index.min().item<int64_t>() >= 0 && pose_index.max().item<int64_t>() < P,
                "gssim.footprints: pose_index outside [0, ", P, ")");
  }
  FootprintArgs a{};
  const char* hull_names[4] = {"col_lo", "col_hi", "row_lo", "row_hi"};
  for (int k = 0; k < 4; ++k)
    check_tensor(sensor_tables[k], op, hull_names[k], torch::kFloat64, {k < 2 ? cols : rows}, device);
  gssim::SensorDesc& desc = a.sensor;
  desc.model = static_cast<int32_t>(model);
  desc.rows = static_cast<int32_t>(rows);
  desc.cols = static_cast<int32_t>(cols);
  desc.col_lo = sensor_tables[0].data_ptr<double>();
  desc.col_hi = sensor_tables[1].data_ptr<double>();
  desc.row_lo = sensor_tables[2].data_ptr<double>();
  desc.row_hi = sensor_tables[3].data_ptr<double>();
  desc.t_min = sensor_scalars[0], desc.t_max = sensor_scalars[1], desc.clip_z = sensor_scalars[2];
  desc.theta_max = sensor_scalars[3], desc.sign = sensor_scalars[4], desc.res = sensor_scalars[5];
  desc.az0 = sensor_scalars[6];
  if (spinning) {
    check_tensor(sensor_tables[4], op, "elev_sorted", torch::kFloat64, {rows}, device);
    check_tensor(sensor_tables[5], op, "span_lo", torch::kInt32, {rows, rows}, device);
    check_tensor(sensor_tables[6], op, "span_hi", torch::kInt32, {rows, rows}, device);
    desc.elev_sorted = sensor_tables[4].data_ptr<double>();
    desc.span_lo = sensor_tables[5].data_ptr<int32_t>();
    desc.span_hi = sensor_tables[6].data_ptr<int32_t>();
    TORCH_CHECK(desc.res > 0, "gssim.footprints: spinning LiDAR column pitch must be > 0");
  }
  gssim::PrepMotion& motion = a.motion;
  motion.moving = moving;
  if (moving) {
    TORCH_CHECK(motion_scalars.size() == 5 && motion_tables.size() == 4,
                "gssim.footprints: a moving sensor needs 5 motion scalars and 4 motion tables, got ",
                motion_scalars.size(), " and ", motion_tables.size());
    motion.translation = motion_scalars[0], motion.rotation = motion_scalars[1];
    motion.readout_angle = motion_scalars[2], motion.periodic = motion_scalars[3] != 0.0;
    motion.column_angle = motion_scalars[4];
    TORCH_CHECK(motion.translation >= 0 && motion.rotation >= 0 && std::isfinite(motion.translation) &&
                    std::isfinite(motion.rotation),
                "gssim.footprints: motion must be finite (translation >= 0, rotation >= 0), got ",
                motion.translation, ", ", motion.rotation);
    TORCH_CHECK(!motion.periodic || motion.column_angle > 0, "gssim.footprints: periodic sensor needs a column angle");
    const char* names[4] = {"fraction row_lo", "fraction row_hi", "fraction col_lo", "fraction col_hi"};
    for (int k = 0; k < 4; ++k)
      check_tensor(motion_tables[k], op, names[k], torch::kFloat64, {k < 2 ? rows : cols}, device);
    motion.row_lo = motion_tables[0].data_ptr<double>(), motion.row_hi = motion_tables[1].data_ptr<double>();
    motion.col_lo = motion_tables[2].data_ptr<double>(), motion.col_hi = motion_tables[3].data_ptr<double>();
  } else {
    TORCH_CHECK(motion_tables.empty(), "gssim.footprints: motion tables given without motion scalars");
  }
  a.surfels = gssim::PrepSurfels{means.data_ptr<float>(),     t_u.data_ptr<float>(),     t_v.data_ptr<float>(),
                                 scales.data_ptr<float>(),    opacities.data_ptr<float>(), means2d.data_ptr<float>(),
                                 vis2d.data_ptr<bool>(),      N};
  a.poses = gssim::PrepPoses{cell_poses.data_ptr<double>(), moving ? pose_index.data_ptr<int64_t>() : nullptr,
                             cell_pose_fractions.data_ptr<double>()};
  return a;
}

// proj_scalars, proj_tables: see ProjDesc in gssim/project_math.h.  Every tensor on `device`.
inline gssim::ProjDesc projection_args(int64_t model, int64_t rows, int64_t cols,
                                       const std::vector<double>& proj_scalars, const std::vector<Tensor>& proj_tables,
                                       const Tensor& means, const Tensor& cell_poses, const Tensor& cell_pose_index,
                                       c10::DeviceType device) {
  const char* op = "gssim.moving_pose_index";
  TORCH_CHECK(model >= gssim::MODEL_PINHOLE && model <= gssim::MODEL_SOLID_STATE,
              "gssim.moving_pose_index: unknown sensor model ", model);
  TORCH_CHECK(rows > 0 && cols > 0, "gssim.moving_pose_index: grid must be at least 1x1, got ", rows, "x", cols);
  gssim::ProjDesc proj{};
  proj.model = static_cast<int32_t>(model);
  TORCH_CHECK(proj_scalars.size() <= 11, "gssim.moving_pose_index: at most 11 projection scalars, got ",
              proj_scalars.size());
  for (size_t k = 0; k < proj_scalars.size(); ++k) proj.s[k] = proj_scalars[k];
  if (model == gssim::MODEL_SPINNING) {
    TORCH_CHECK(proj_tables.size() == 3, "gssim.moving_pose_index: a spinning LiDAR needs 3 beam tables, got ",
                proj_tables.size());
    const int64_t B = proj_tables[0].numel();
    TORCH_CHECK(B >= 1, "gssim.moving_pose_index: empty beam table");
    const char* names[3] = {"elev_sorted", "rows_sorted", "gap"};
    for (int k = 0; k < 3; ++k) check_tensor(proj_tables[k], op, names[k], torch::kFloat64, {B}, device);
    proj.elev_sorted = proj_tables[0].data_ptr<double>();
    proj.rows_sorted = proj_tables[1].data_ptr<double>();
    proj.gap = proj_tables[2].data_ptr<double>();
    proj.n_beams = B;
    TORCH_CHECK(proj.s[0] > 0, "gssim.moving_pose_index: spinning LiDAR column pitch must be > 0");
  }
  const int64_t N = means.size(0);
  check_tensor(means, op, "means", torch::kFloat32, {N, 3}, device);
  check_tensor(cell_poses, op, "cell_poses", torch::kFloat64, {-1, 4, 4}, device);
  check_tensor(cell_pose_index, op, "cell_pose_index", torch::kInt64, {rows, cols}, device);
  const int64_t P = cell_poses.size(0);
  TORCH_CHECK(cell_pose_index.min().item<int64_t>() >= 0 && cell_pose_index.max().item<int64_t>() < P,
              "gssim.moving_pose_index: cell_pose_index outside [0, ", P, ")");
  return proj;
}

}  // namespace gssim_ops
