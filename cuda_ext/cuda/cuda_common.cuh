// What every CUDA source of gssim shares: error checks, the kernel launch, warp sums and
// stream-ordered scratch memory.  Compiles with plain nvcc (no torch headers).
//
// GSSIM_LAUNCH and the warp helpers are the only spelling of launches and warp
// intrinsics in the kernels, so that a test harness can run the same sources on a CPU
// (tests/render/cuda_emulation/); it defines GSSIM_CUDA_EMULATION and supplies them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#ifndef GSSIM_CUDA_EMULATION
#include <cuda_runtime.h>
#endif

// Throws std::runtime_error naming the failed call (torch turns it into a RuntimeError).
#define GSSIM_CUDA_CHECK(expr)                                                                       \
  do {                                                                                               \
    const cudaError_t gssim_err_ = (expr);                                                           \
    if (gssim_err_ != cudaSuccess)                                                                   \
      throw std::runtime_error(std::string("gssim CUDA: ") + #expr + ": " + cudaGetErrorString(gssim_err_)); \
  } while (0)

#ifndef GSSIM_CUDA_EMULATION
// kernel<<<grid, block, 0, stream>>>(args...) as GSSIM_LAUNCH(kernel, grid, block, stream)(args...).
#define GSSIM_LAUNCH(kernel, grid, block, stream) kernel<<<(grid), (block), 0, (stream)>>>

namespace gssim {
namespace cuda {

constexpr unsigned FULL_WARP = 0xffffffffu;

// Every lane of the warp must call these together.
__device__ __forceinline__ bool warp_any(bool p) { return __any_sync(FULL_WARP, p) != 0; }

// Sums v over the lanes of the warp; lane 0 holds the totals.
template <int N>
__device__ __forceinline__ void warp_sum(float (&v)[N]) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] += __shfl_down_sync(FULL_WARP, v[i], offset);
  }
}

}  // namespace cuda
}  // namespace gssim
#endif

namespace gssim {
namespace cuda {

constexpr int WARP = 32;

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// Scratch device memory ordered on a stream, freed when it goes out of scope.
template <typename T>
class Scratch {
 public:
  Scratch(size_t n, cudaStream_t stream) : stream_(stream) {
    if (n > 0) GSSIM_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&ptr_), n * sizeof(T), stream));
  }
  ~Scratch() {
    if (ptr_) cudaFreeAsync(ptr_, stream_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T* get() const { return ptr_; }

 private:
  T* ptr_ = nullptr;
  cudaStream_t stream_;
};

// Blocks of `threads` covering n items.
inline unsigned blocks_for(int64_t n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

// One int64 from device memory (waits for the stream).
inline int64_t read_back(const int64_t* device_value, cudaStream_t stream) {
  int64_t v = 0;
  GSSIM_CUDA_CHECK(cudaMemcpyAsync(&v, device_value, sizeof(int64_t), cudaMemcpyDeviceToHost, stream));
  GSSIM_CUDA_CHECK(cudaStreamSynchronize(stream));
  return v;
}

}  // namespace cuda
}  // namespace gssim
