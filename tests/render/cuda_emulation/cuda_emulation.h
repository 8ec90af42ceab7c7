// A CUDA runtime emulated on the CPU, enough to run gssim's CUDA sources unchanged
// (cuda_ext/cuda/*.cu, cuda_ext/cuda_bindings.cpp) in tests on a machine without a GPU.
//
// A kernel launch runs its blocks one after another; a block runs as blockDim.x OS threads,
// so __syncthreads, __syncthreads_count and the warp helpers are real barriers between
// concurrently running threads (a thread that returns drops out of them, as on a GPU),
// shared memory is one static copy per kernel (blocks never overlap), atomics are atomic.
// CUB's scan and radix sort are replaced by sequential ones with the same contracts
// (the sort is stable and looks only at bits [begin_bit, end_bit) of the keys).
#pragma once

#define GSSIM_CUDA_EMULATION 1

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

using cudaStream_t = void*;
enum cudaError_t { cudaSuccess = 0, cudaErrorMemoryAllocation = 2 };
enum cudaMemcpyKind { cudaMemcpyDeviceToHost = 2 };

inline const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "out of memory"; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaMallocAsync(void** p, size_t n, cudaStream_t) {
  *p = std::malloc(n);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t) {
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t) {
  std::memset(p, v, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind, cudaStream_t) {
  std::memcpy(dst, src, n);
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

namespace gssim_emu {

constexpr int WARP = 32;
constexpr int MAX_WARP_VALUES = 128;

struct BlockState {
  explicit BlockState(int threads)
      : block(threads), flags(threads), values(static_cast<size_t>(threads) * MAX_WARP_VALUES) {
    for (int w = 0; w < threads / WARP; ++w) warps.emplace_back(std::make_unique<std::barrier<>>(WARP));
  }
  std::barrier<> block;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  std::atomic<int> count{0};
  std::vector<int> flags;
  std::vector<float> values;
};

inline thread_local BlockState* block_state = nullptr;

}  // namespace gssim_emu

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

inline void __syncthreads() { gssim_emu::block_state->block.arrive_and_wait(); }

inline int __syncthreads_count(int predicate) {
  gssim_emu::BlockState* b = gssim_emu::block_state;
  if (predicate) b->count.fetch_add(1);
  b->block.arrive_and_wait();
  const int total = b->count.load();
  b->block.arrive_and_wait();
  if (threadIdx.x == 0) b->count.store(0);
  b->block.arrive_and_wait();
  return total;
}

inline float atomicAdd(float* address, float v) { return std::atomic_ref<float>(*address).fetch_add(v); }

inline int atomicMax(int* address, int v) {
  std::atomic_ref<int> a(*address);
  int old = a.load();
  while (old < v && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}

namespace gssim {
namespace cuda {

// Every lane of the warp must call these together (as with __any_sync / __shfl_down_sync).
inline bool warp_any(bool p) {
  gssim_emu::BlockState* b = gssim_emu::block_state;
  const int warp = threadIdx.x / gssim_emu::WARP, first = warp * gssim_emu::WARP;
  b->flags[threadIdx.x] = p;
  b->warps[warp]->arrive_and_wait();
  bool any = false;
  for (int l = 0; l < gssim_emu::WARP; ++l) any |= b->flags[first + l] != 0;
  b->warps[warp]->arrive_and_wait();
  return any;
}

template <int N>
inline void warp_sum(float (&v)[N]) {
  static_assert(N <= gssim_emu::MAX_WARP_VALUES, "emulated warp_sum holds at most MAX_WARP_VALUES values");
  gssim_emu::BlockState* b = gssim_emu::block_state;
  const int warp = threadIdx.x / gssim_emu::WARP, first = warp * gssim_emu::WARP;
  std::copy(v, v + N, b->values.begin() + static_cast<size_t>(threadIdx.x) * gssim_emu::MAX_WARP_VALUES);
  b->warps[warp]->arrive_and_wait();
  if (threadIdx.x == static_cast<unsigned>(first)) {
    for (int l = 1; l < gssim_emu::WARP; ++l)
      for (int i = 0; i < N; ++i) v[i] += b->values[static_cast<size_t>(first + l) * gssim_emu::MAX_WARP_VALUES + i];
  }
  b->warps[warp]->arrive_and_wait();
}

}  // namespace cuda
}  // namespace gssim

namespace gssim_emu {

// kernel<<<grid, block>>>(args...): blocks in turn, each as blockDim.x threads.
template <typename... P>
struct Launch {
  void (*kernel)(P...);
  dim3 grid, block;
  template <typename... A>
  void operator()(A&&... args) const {
    const std::tuple<P...> params(std::forward<A>(args)...);
    const int threads = static_cast<int>(block.x);
    if (threads % WARP != 0 || block.y != 1 || block.z != 1 || grid.y != 1 || grid.z != 1)
      throw std::invalid_argument("emulated launch: 1-D grids of whole warps only");
    blockDim = block;
    gridDim = grid;
    for (unsigned bx = 0; bx < grid.x; ++bx) {
      BlockState state(threads);
      std::vector<std::thread> pool;
      pool.reserve(threads);
      for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
          threadIdx = dim3(t);
          blockIdx = dim3(bx);
          block_state = &state;
          std::apply(kernel, params);
          // A thread that has returned no longer takes part in barriers.
          state.warps[t / WARP]->arrive_and_drop();
          state.block.arrive_and_drop();
        });
      for (auto& th : pool) th.join();
    }
  }
};

template <typename... P>
Launch<P...> launch(void (*kernel)(P...), dim3 grid, dim3 block) {
  return Launch<P...>{kernel, grid, block};
}

}  // namespace gssim_emu

#define GSSIM_LAUNCH(kernel, grid, block, stream) gssim_emu::launch(kernel, dim3(grid), dim3(block))

namespace cub {

struct DeviceScan {
  template <typename In, typename Out, typename NumItems>
  static cudaError_t ExclusiveSum(void* temp, size_t& bytes, In in, Out out, NumItems n, cudaStream_t = nullptr) {
    if (temp == nullptr) {
      bytes = 1;
      return cudaSuccess;
    }
    std::remove_reference_t<decltype(*out)> acc = 0;
    for (NumItems i = 0; i < n; ++i) {
      const auto x = in[i];
      out[i] = acc;
      acc += x;
    }
    return cudaSuccess;
  }
};

struct DeviceRadixSort {
  template <typename K, typename V, typename NumItems>
  static cudaError_t SortPairs(void* temp, size_t& bytes, const K* keys_in, K* keys_out, const V* values_in,
                               V* values_out, NumItems n, int begin_bit = 0, int end_bit = sizeof(K) * 8,
                               cudaStream_t = nullptr) {
    if (temp == nullptr) {
      bytes = 1;
      return cudaSuccess;
    }
    const int width = end_bit - begin_bit;
    const K mask = width >= static_cast<int>(sizeof(K) * 8) ? ~K(0) : ((K(1) << width) - 1);
    auto digit = [&](K k) { return (k >> begin_bit) & mask; };
    std::vector<int64_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return digit(keys_in[a]) < digit(keys_in[b]); });
    for (NumItems i = 0; i < n; ++i) keys_out[i] = keys_in[idx[i]], values_out[i] = values_in[idx[i]];
    return cudaSuccess;
  }
};

}  // namespace cub
