// gssim's CUDA sources built against the emulated runtime (cuda_emulation.h) as torch
// operators on CPU tensors, torch.ops.gssim_emu.*, with the schemas of torch.ops.gssim.*.
#include <torch/extension.h>

#include "cuda_emulation.h"

#define GSSIM_OPS_DEVICE c10::DeviceType::CPU
#define GSSIM_OPS_IMPL TORCH_LIBRARY_IMPL(gssim_emu, CPU, m)

namespace {
class DeviceScope {
 public:
  explicit DeviceScope(const torch::Tensor&) {}
  void* stream() const { return nullptr; }
};
}  // namespace

#include "cuda/prepare_cuda.cu"
#include "cuda/rasterize_cuda.cu"
#include "cuda_bindings.cpp"

TORCH_LIBRARY(gssim_emu, m) {
  m.def(gssim_ops::RASTERIZE_FWD_SCHEMA);
  m.def(gssim_ops::RASTERIZE_BWD_SCHEMA);
  m.def(gssim_ops::FOOTPRINTS_SCHEMA);
  m.def(gssim_ops::MOVING_POSE_INDEX_SCHEMA);
}
