// Torch operators of render preparation (gssim::footprints, gssim::moving_pose_index) and
// their CPU implementations:
// argument checks, allocation, calls into the raw-pointer driver in cpu/prepare_cpu.cpp.
#include <torch/extension.h>

#include <vector>

#include "cpu/prepare_cpu.h"

namespace {

using torch::Tensor;

void check_prep(const Tensor& t, const char* name, torch::ScalarType dtype, std::vector<int64_t> shape) {
  TORCH_CHECK(t.scalar_type() == dtype, "gssim.footprints: ", name, " must be ", c10::toString(dtype), ", got ",
              t.scalar_type());
  TORCH_CHECK(t.dim() == static_cast<int64_t>(shape.size()), "gssim.footprints: ", name, " must have ",
              shape.size(), " dims, got shape ", t.sizes());
  for (size_t i = 0; i < shape.size(); ++i)
    TORCH_CHECK(shape[i] < 0 || t.size(i) == shape[i], "gssim.footprints: ", name, " has shape ", t.sizes(),
                ", expected size ", shape[i], " in dim ", i);
  TORCH_CHECK(t.is_contiguous(), "gssim.footprints: ", name, " must be contiguous");
  TORCH_CHECK(t.device().is_cpu(), "gssim.footprints: ", name, " must be on the CPU");
}

// sensor_scalars: t_min, t_max, clip_z, theta_max, sign, res, az0.
// sensor_tables: col_lo, col_hi (cols,), row_lo, row_hi (rows,) float64; spinning LiDARs
//   also elev_sorted (rows,) float64 and span_lo, span_hi (rows, rows) int32.
// motion_scalars (moving sensors, else empty): translation, rotation, readout_angle,
//   periodic, column_angle; motion_tables: readout-fraction ranges row_lo, row_hi (rows,),
//   col_lo, col_hi (cols,) float64.
Tensor footprints_cpu(int64_t model, int64_t rows, int64_t cols, std::vector<double> sensor_scalars,
                      std::vector<Tensor> sensor_tables, const Tensor& means, const Tensor& t_u, const Tensor& t_v,
                      const Tensor& scales, const Tensor& opacities, const Tensor& means2d, const Tensor& vis2d,
                      const Tensor& cell_poses, const Tensor& pose_index, const Tensor& cell_pose_fractions,
                      std::vector<double> motion_scalars, std::vector<Tensor> motion_tables) {
  TORCH_CHECK(model >= gssim::MODEL_PINHOLE && model <= gssim::MODEL_SOLID_STATE,
              "gssim.footprints: unknown sensor model ", model);
  TORCH_CHECK(rows > 0 && cols > 0, "gssim.footprints: grid must be at least 1x1, got ", rows, "x", cols);
  TORCH_CHECK(sensor_scalars.size() == 7, "gssim.footprints: expected 7 sensor scalars, got ",
              sensor_scalars.size());
  const bool spinning = model == gssim::MODEL_SPINNING;
  TORCH_CHECK(sensor_tables.size() == (spinning ? 7u : 4u), "gssim.footprints: expected ", spinning ? 7 : 4,
              " sensor tables, got ", sensor_tables.size());
  const int64_t N = means.size(0);
  check_prep(means, "means", torch::kFloat32, {N, 3});
  check_prep(t_u, "t_u", torch::kFloat32, {N, 3});
  check_prep(t_v, "t_v", torch::kFloat32, {N, 3});
  check_prep(scales, "scales", torch::kFloat32, {N, 2});
  check_prep(opacities, "opacities", torch::kFloat32, {N});
  check_prep(means2d, "means2d", torch::kFloat32, {N, 2});
  check_prep(vis2d, "vis2d", torch::kBool, {N});
  check_prep(cell_poses, "cell_poses", torch::kFloat64, {-1, 4, 4});
  const int64_t P = cell_poses.size(0);
  TORCH_CHECK(P >= 1, "gssim.footprints: need at least one cell pose");
  check_prep(cell_pose_fractions, "cell_pose_fractions", torch::kFloat64, {P});
  const bool moving = !motion_scalars.empty();
  check_prep(pose_index, "pose_index", torch::kInt64, {moving ? N : 0});
  if (moving && N > 0) {
    TORCH_CHECK(pose_index.min().item<int64_t>() >= 0 && pose_index.max().item<int64_t>() < P,
                "gssim.footprints: pose_index outside [0, ", P, ")");
  }
  const char* hull_names[4] = {"col_lo", "col_hi", "row_lo", "row_hi"};
  for (int k = 0; k < 4; ++k) check_prep(sensor_tables[k], hull_names[k], torch::kFloat64, {k < 2 ? cols : rows});
  gssim::SensorDesc desc{};
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
    check_prep(sensor_tables[4], "elev_sorted", torch::kFloat64, {rows});
    check_prep(sensor_tables[5], "span_lo", torch::kInt32, {rows, rows});
    check_prep(sensor_tables[6], "span_hi", torch::kInt32, {rows, rows});
    desc.elev_sorted = sensor_tables[4].data_ptr<double>();
    desc.span_lo = sensor_tables[5].data_ptr<int32_t>();
    desc.span_hi = sensor_tables[6].data_ptr<int32_t>();
    TORCH_CHECK(desc.res > 0, "gssim.footprints: spinning LiDAR column pitch must be > 0");
  }
  gssim::cpu::PrepMotion motion{};
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
    for (int k = 0; k < 4; ++k) check_prep(motion_tables[k], names[k], torch::kFloat64, {k < 2 ? rows : cols});
    motion.row_lo = motion_tables[0].data_ptr<double>(), motion.row_hi = motion_tables[1].data_ptr<double>();
    motion.col_lo = motion_tables[2].data_ptr<double>(), motion.col_hi = motion_tables[3].data_ptr<double>();
  } else {
    TORCH_CHECK(motion_tables.empty(), "gssim.footprints: motion tables given without motion scalars");
  }
  gssim::cpu::PrepSurfels s{means.data_ptr<float>(),     t_u.data_ptr<float>(),     t_v.data_ptr<float>(),
                            scales.data_ptr<float>(),    opacities.data_ptr<float>(), means2d.data_ptr<float>(),
                            vis2d.data_ptr<bool>(),      N};
  gssim::cpu::PrepPoses poses{cell_poses.data_ptr<double>(), moving ? pose_index.data_ptr<int64_t>() : nullptr,
                              cell_pose_fractions.data_ptr<double>()};
  auto i32 = torch::TensorOptions().dtype(torch::kInt32);
  Tensor scratch = torch::empty({N * gssim::cpu::MAX_RECORDS * 6}, i32);
  Tensor counts = torch::empty({N}, torch::TensorOptions().dtype(torch::kInt64));
  gssim::cpu::surfel_footprints(desc, s, poses, motion, scratch.data_ptr<int32_t>(), counts.data_ptr<int64_t>());
  const int64_t F = N > 0 ? counts.sum().item<int64_t>() : 0;
  Tensor records = torch::empty({F, 6}, i32);
  gssim::cpu::gather_records(scratch.data_ptr<int32_t>(), counts.data_ptr<int64_t>(), N, records.data_ptr<int32_t>());
  return records;
}

// proj_scalars, proj_tables: see ProjDesc in gssim/project_math.h.
Tensor moving_pose_index_cpu(int64_t model, int64_t rows, int64_t cols, std::vector<double> proj_scalars,
                             std::vector<Tensor> proj_tables, const Tensor& means, const Tensor& cell_poses,
                             const Tensor& cell_pose_index) {
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
    for (int k = 0; k < 3; ++k) check_prep(proj_tables[k], names[k], torch::kFloat64, {B});
    proj.elev_sorted = proj_tables[0].data_ptr<double>();
    proj.rows_sorted = proj_tables[1].data_ptr<double>();
    proj.gap = proj_tables[2].data_ptr<double>();
    proj.n_beams = B;
    TORCH_CHECK(proj.s[0] > 0, "gssim.moving_pose_index: spinning LiDAR column pitch must be > 0");
  }
  const int64_t N = means.size(0);
  check_prep(means, "means", torch::kFloat32, {N, 3});
  check_prep(cell_poses, "cell_poses", torch::kFloat64, {-1, 4, 4});
  check_prep(cell_pose_index, "cell_pose_index", torch::kInt64, {rows, cols});
  const int64_t P = cell_poses.size(0);
  TORCH_CHECK(cell_pose_index.min().item<int64_t>() >= 0 && cell_pose_index.max().item<int64_t>() < P,
              "gssim.moving_pose_index: cell_pose_index outside [0, ", P, ")");
  Tensor index = torch::empty({N}, torch::TensorOptions().dtype(torch::kInt64));
  gssim::cpu::moving_pose_index(proj, rows, cols, means.data_ptr<float>(), N, cell_poses.data_ptr<double>(),
                                cell_pose_index.data_ptr<int64_t>(), index.data_ptr<int64_t>());
  return index;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gssim, m) {
  m.def(
      "footprints(int model, int rows, int cols, float[] sensor_scalars, Tensor[] sensor_tables, Tensor means, "
      "Tensor t_u, Tensor t_v, Tensor scales, Tensor opacities, Tensor means2d, Tensor vis2d, Tensor cell_poses, "
      "Tensor pose_index, Tensor cell_pose_fractions, float[] motion_scalars, Tensor[] motion_tables) -> Tensor");
  m.def(
      "moving_pose_index(int model, int rows, int cols, float[] proj_scalars, Tensor[] proj_tables, Tensor means, "
      "Tensor cell_poses, Tensor cell_pose_index) -> Tensor");
}

TORCH_LIBRARY_IMPL(gssim, CPU, m) {
  m.impl("footprints", &footprints_cpu);
  m.impl("moving_pose_index", &moving_pose_index_cpu);
}
