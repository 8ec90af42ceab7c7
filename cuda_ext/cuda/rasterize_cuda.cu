// CUDA drivers of the ray-grid rasterizer: tile binning with one radix sort by (tile,
// depth), and per-tile compositing, forward and backward.
//
// A block composites one tile, a thread per cell.  The tile's list is walked in batches:
// the block stages a batch of records' surfel geometry in shared memory, then every thread
// evaluates its own ray against them with the HOST_DEVICE functions the CPU drivers use
// (eval_hit, backprop_hit), front to back in the forward pass and back to front in the
// backward pass.  Backward gradients of a surfel are summed over a warp before one atomic
// add per value.
#include "rasterize_cuda.h"

#ifndef GSSIM_CUDA_EMULATION
#include <cub/cub.cuh>
#endif

#include "cuda_common.cuh"

namespace gssim {
namespace cuda {

namespace {

constexpr int BINNING_THREADS = 256;
constexpr int BATCH = 256;  // records staged in shared memory at a time

// A record staged for a tile: its surfel's geometry, cell box and surfel index.
struct Staged {
  SurfelGeom g;
  int32_t r0, r1, c0, c1, surfel;
};

__device__ inline Staged stage(const SurfelArrays& s, const int32_t* rec) {
  return Staged{record_geom(s, rec), rec[1], rec[2], rec[3], rec[4], rec[0]};
}

__device__ inline bool covers(const Staged& p, int r, int c) {
  return r >= p.r0 && r <= p.r1 && c >= p.c0 && c <= p.c1;
}

__global__ void count_pairs_kernel(const int32_t* records, int64_t F, TileGrid g, int64_t* counts) {
  const int64_t f = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (f < F) counts[f] = tile_range(records + 6 * f, g).count();
}

__global__ void emit_pairs_kernel(const int32_t* records, int64_t F, const float* depth_keys, TileGrid g,
                                  const int64_t* pair_offsets, uint64_t* keys, int32_t* values) {
  const int64_t f = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (f >= F) return;
  const int32_t* rec = records + 6 * f;
  const TileRange tr = tile_range(rec, g);
  const uint64_t depth = depth_sort_key(depth_keys[rec[0]]);
  int64_t out = pair_offsets[f];
  for (int ty = tr.ty0; ty <= tr.ty1; ++ty)
    for (int tx = tr.tx0; tx <= tr.tx1; ++tx) {
      keys[out] = (static_cast<uint64_t>(ty * g.tiles_x() + tx) << 32) | depth;
      values[out] = static_cast<int32_t>(f);
      ++out;
    }
}

// tile_offsets[t] = first pair whose tile is >= t (t = 0 .. num_tiles).
__global__ void tile_offsets_kernel(const uint64_t* sorted_keys, int64_t E, int num_tiles, int64_t* tile_offsets) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t > num_tiles) return;
  int64_t lo = 0, hi = E;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (static_cast<int64_t>(sorted_keys[mid] >> 32) < t) lo = mid + 1;
    else hi = mid;
  }
  tile_offsets[t] = lo;
}

// The cell of this thread in its tile (inside: the cell exists in the grid).
struct TileCell {
  int r, c;
  int64_t ray;
  bool inside;
};

__device__ inline TileCell tile_cell(TileGrid g) {
  const int tile = blockIdx.x;
  const int k = threadIdx.x;
  const int r = (tile / g.tiles_x()) * g.th + k / g.tw;
  const int c = (tile % g.tiles_x()) * g.tw + k % g.tw;
  const bool inside = k < g.th * g.tw && r < g.rows && c < g.cols;
  return TileCell{r, c, inside ? static_cast<int64_t>(r) * g.cols + c : 0, inside};
}

// Stages the records of list positions [lo, hi) of a tile into shared memory, position
// lo + j at slot j (forward) or position hi - 1 - j at slot j (backward, reversed).
__device__ inline void stage_batch(const SurfelArrays& s, const int32_t* records, const int32_t* entries,
                                   int64_t start, int64_t lo, int64_t hi, bool reversed, Staged* batch) {
  for (int64_t j = threadIdx.x; j < hi - lo; j += blockDim.x) {
    const int64_t pos = reversed ? hi - 1 - j : lo + j;
    batch[j] = stage(s, records + 6 * static_cast<int64_t>(entries[start + pos]));
  }
}

template <int CMAX>
__global__ void forward_kernel(const float* rays_o, const float* rays_d, TileGrid g, SurfelArrays s,
                               const int32_t* records, const int64_t* tile_offsets, const int32_t* entries,
                               float t_min, float t_max, float* color_acc, float* alpha, float* t_acc,
                               float* normal_acc, float* median_t, int32_t* last, int32_t* median_pos) {
  __shared__ Staged batch[BATCH];
  const TileCell cell = tile_cell(g);
  const int C = s.C;
  Vec3 o{0.0f, 0.0f, 0.0f}, d{0.0f, 0.0f, 1.0f};
  if (cell.inside) o = make_vec3(rays_o + 3 * cell.ray), d = make_vec3(rays_d + 3 * cell.ray);
  float T = 1.0f, acc_t = 0.0f, med = 0.0f, acc_c[CMAX];
#pragma unroll
  for (int ch = 0; ch < CMAX; ++ch) acc_c[ch] = 0.0f;
  Vec3 acc_n{0.0f, 0.0f, 0.0f};
  int32_t lst = 0, mpos = -1;
  bool done = !cell.inside;
  const int64_t start = tile_offsets[blockIdx.x], count = tile_offsets[blockIdx.x + 1] - start;
  const float px = cell.c + 0.5f, py = cell.r + 0.5f;
  for (int64_t lo = 0; lo < count; lo += BATCH) {
    // Also the barrier before the batch is overwritten.
    if (__syncthreads_count(done) == static_cast<int>(blockDim.x)) break;
    const int64_t hi = lo + BATCH < count ? lo + BATCH : count;
    stage_batch(s, records, entries, start, lo, hi, false, batch);
    __syncthreads();
    for (int j = 0; j < hi - lo && !done; ++j) {
      const Staged& p = batch[j];
      if (!covers(p, cell.r, cell.c)) continue;
      Hit h;
      if (!eval_hit(origin_terms(o, p.g), d, px, py, p.g, t_min, t_max, h)) continue;
      const float next_T = T * (1.0f - h.alpha);
      if (next_T <= T_MIN) {
        done = true;
        break;
      }
      const float w = h.alpha * T;
      const float* feat = s.features + static_cast<int64_t>(p.surfel) * C;
#pragma unroll
      for (int ch = 0; ch < CMAX; ++ch)
        if (ch < C) acc_c[ch] += w * feat[ch];
      acc_t += w * h.t_hit;
      acc_n = acc_n + (w * facing_sign(h)) * p.g.normal;
      const int32_t pos = static_cast<int32_t>(lo + j);
      if (T > MEDIAN_T) med = h.t_hit, mpos = pos;
      lst = pos + 1;
      T = next_T;
    }
  }
  if (!cell.inside) return;
  const int64_t ray = cell.ray;
#pragma unroll
  for (int ch = 0; ch < CMAX; ++ch)
    if (ch < C) color_acc[ray * C + ch] = acc_c[ch];
  alpha[ray] = 1.0f - T;
  t_acc[ray] = acc_t;
  normal_acc[3 * ray] = acc_n.x, normal_acc[3 * ray + 1] = acc_n.y, normal_acc[3 * ray + 2] = acc_n.z;
  median_t[ray] = med;
  last[ray] = lst;
  median_pos[ray] = mpos;
}

// Gradient values of one surfel from one ray: mean, axis_u, axis_v, normal (3 each),
// opacity, means2d (2), then the feature channels.
constexpr int GEOM_GRADS = 15;

template <int CMAX>
__global__ void backward_kernel(const float* rays_o, const float* rays_d, TileGrid g, SurfelArrays s,
                                const int32_t* records, const int64_t* tile_offsets, const int32_t* entries,
                                float t_min, float t_max, const float* alpha, const int32_t* last,
                                const int32_t* median_pos, const float* g_color, const float* g_alpha,
                                const float* g_t, const float* g_normal, const float* g_median, float* d_means,
                                float* d_axis_u, float* d_axis_v, float* d_normals, float* d_opacities,
                                float* d_features, float* d_means2d) {
  __shared__ Staged batch[BATCH];
  __shared__ int max_last;
  const TileCell cell = tile_cell(g);
  const int C = s.C;
  const int64_t ray = cell.ray;
  Vec3 o{0.0f, 0.0f, 0.0f}, d{0.0f, 0.0f, 1.0f}, gn{0.0f, 0.0f, 0.0f};
  float gc[CMAX], S_c[CMAX];
#pragma unroll
  for (int ch = 0; ch < CMAX; ++ch) gc[ch] = 0.0f, S_c[ch] = 0.0f;
  float ray_alpha = 0.0f, ga = 0.0f, gt = 0.0f, gm = 0.0f;
  int32_t my_last = 0, my_median = -1;
  if (cell.inside) {
    o = make_vec3(rays_o + 3 * ray), d = make_vec3(rays_d + 3 * ray), gn = make_vec3(g_normal + 3 * ray);
#pragma unroll
    for (int ch = 0; ch < CMAX; ++ch)
      if (ch < C) gc[ch] = g_color[ray * C + ch];
    ray_alpha = alpha[ray], ga = g_alpha[ray], gt = g_t[ray], gm = g_median[ray];
    my_last = last[ray], my_median = median_pos[ray];
  }
  // Transmittance before the current surfel, and the sums of what lies behind it.
  float T = 1.0f - ray_alpha, S_t = 0.0f;
  Vec3 S_n{0.0f, 0.0f, 0.0f};
  if (threadIdx.x == 0) max_last = 0;
  __syncthreads();
  atomicMax(&max_last, my_last);
  __syncthreads();
  const int64_t start = tile_offsets[blockIdx.x];
  const int64_t count = max_last;
  const float px = cell.c + 0.5f, py = cell.r + 0.5f;
  const bool lane0 = (threadIdx.x % WARP) == 0;
  for (int64_t hi = count; hi > 0; hi -= BATCH) {
    const int64_t lo = hi - BATCH > 0 ? hi - BATCH : 0;
    __syncthreads();  // the previous batch is no longer read
    stage_batch(s, records, entries, start, lo, hi, true, batch);
    __syncthreads();
    for (int j = 0; j < hi - lo; ++j) {
      const Staged& p = batch[j];
      const int32_t pos = static_cast<int32_t>(hi - 1 - j);
      float v[GEOM_GRADS + CMAX];
#pragma unroll
      for (int i = 0; i < GEOM_GRADS + CMAX; ++i) v[i] = 0.0f;
      Hit h;
      const bool valid = cell.inside && pos < my_last && covers(p, cell.r, cell.c) &&
                         eval_hit(origin_terms(o, p.g), d, px, py, p.g, t_min, t_max, h);
      if (valid) {
        const float* feat = s.features + static_cast<int64_t>(p.surfel) * C;
        const float one_minus = 1.0f - h.alpha;
        const float T_i = T / one_minus;
        const float wgt = h.alpha * T_i;
        float dL_dalpha = ga * (1.0f - ray_alpha) / one_minus;
#pragma unroll
        for (int ch = 0; ch < CMAX; ++ch) {
          if (ch < C) {
            dL_dalpha += gc[ch] * (feat[ch] * T_i - S_c[ch] / one_minus);
            v[GEOM_GRADS + ch] = wgt * gc[ch];
            S_c[ch] += wgt * feat[ch];
          }
        }
        dL_dalpha += gt * (h.t_hit * T_i - S_t / one_minus);
        const Vec3 n_out = facing_sign(h) * p.g.normal;
        dL_dalpha += T_i * dot(gn, n_out) - dot(gn, S_n) / one_minus;
        const float dL_dthit = gt * wgt + (pos == my_median ? gm : 0.0f);
        GeomGrad gg{};
        backprop_hit(d, p.g, h, dL_dalpha, dL_dthit, wgt * gn, gg);
        const float geom[GEOM_GRADS] = {gg.mean.x,   gg.mean.y,   gg.mean.z,   gg.axis_u.x, gg.axis_u.y,
                                        gg.axis_u.z, gg.axis_v.x, gg.axis_v.y, gg.axis_v.z, gg.normal.x,
                                        gg.normal.y, gg.normal.z, gg.opacity,  gg.m2x,      gg.m2y};
#pragma unroll
        for (int i = 0; i < GEOM_GRADS; ++i) v[i] = geom[i];
        S_t += wgt * h.t_hit;
        S_n = S_n + wgt * n_out;
        T = T_i;
      }
      if (!warp_any(valid)) continue;
      warp_sum(v);
      if (!lane0) continue;
      const int64_t sid = p.surfel;
#pragma unroll
      for (int i = 0; i < 3; ++i) {
        atomicAdd(d_means + 3 * sid + i, v[i]);
        atomicAdd(d_axis_u + 3 * sid + i, v[3 + i]);
        atomicAdd(d_axis_v + 3 * sid + i, v[6 + i]);
        atomicAdd(d_normals + 3 * sid + i, v[9 + i]);
      }
      atomicAdd(d_opacities + sid, v[12]);
      atomicAdd(d_means2d + 2 * sid, v[13]);
      atomicAdd(d_means2d + 2 * sid + 1, v[14]);
#pragma unroll
      for (int ch = 0; ch < CMAX; ++ch)
        if (ch < C) atomicAdd(d_features + sid * C + ch, v[GEOM_GRADS + ch]);
    }
  }
}

// Threads of a tile's block: one per cell, whole warps.
int block_threads(TileGrid g) { return (g.th * g.tw + WARP - 1) / WARP * WARP; }

void check_channels(int C) {
  if (C < 1 || C > MAX_CHANNELS)
    throw std::invalid_argument("gssim CUDA: features must have 1 to " + std::to_string(MAX_CHANNELS) +
                                " channels, got " + std::to_string(C) + " (the CPU backend takes any number)");
}

}  // namespace

int64_t count_tile_pairs(const int32_t* records, int64_t F, TileGrid g, int64_t* pair_offsets, void* stream) {
  const cudaStream_t st = as_stream(stream);
  Scratch<int64_t> counts(F + 1, st);
  GSSIM_CUDA_CHECK(cudaMemsetAsync(counts.get(), 0, sizeof(int64_t) * (F + 1), st));
  if (F > 0)
    GSSIM_LAUNCH(count_pairs_kernel, blocks_for(F, BINNING_THREADS), BINNING_THREADS, st)(records, F, g,
                                                                                           counts.get());
  size_t bytes = 0;
  GSSIM_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, bytes, counts.get(), pair_offsets, F + 1, st));
  Scratch<unsigned char> temp(bytes, st);
  GSSIM_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp.get(), bytes, counts.get(), pair_offsets, F + 1, st));
  GSSIM_CUDA_CHECK(cudaGetLastError());
  return read_back(pair_offsets + F, st);
}

void sort_tile_pairs(const int32_t* records, int64_t F, const float* depth_keys, TileGrid g,
                     const int64_t* pair_offsets, int64_t E, int32_t* entries, int64_t* tile_offsets, void* stream) {
  const cudaStream_t st = as_stream(stream);
  const int T = g.num_tiles();
  Scratch<uint64_t> keys(E, st), sorted_keys(E, st);
  Scratch<int32_t> values(E, st);
  if (E > 0) {
    GSSIM_LAUNCH(emit_pairs_kernel, blocks_for(F, BINNING_THREADS), BINNING_THREADS, st)(
        records, F, depth_keys, g, pair_offsets, keys.get(), values.get());
    // Only the bits that can be set: 32 of depth, and enough for the largest tile index.
    int end_bit = 32;
    while (end_bit < 64 && (static_cast<uint64_t>(T - 1) >> (end_bit - 32)) != 0) ++end_bit;
    size_t bytes = 0;
    GSSIM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys.get(), sorted_keys.get(), values.get(),
                                                     entries, E, 0, end_bit, st));
    Scratch<unsigned char> temp(bytes, st);
    GSSIM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.get(), bytes, keys.get(), sorted_keys.get(), values.get(),
                                                     entries, E, 0, end_bit, st));
  }
  GSSIM_LAUNCH(tile_offsets_kernel, blocks_for(T + 1, BINNING_THREADS), BINNING_THREADS, st)(
      sorted_keys.get(), E, T, tile_offsets);
  GSSIM_CUDA_CHECK(cudaGetLastError());
}

void rasterize_forward(const float* rays_o, const float* rays_d, TileGrid g, SurfelArrays s,
                       const int32_t* records, const int64_t* tile_offsets, const int32_t* entries, float t_min,
                       float t_max, float* color_acc, float* alpha, float* t_acc, float* normal_acc, float* median_t,
                       int32_t* last, int32_t* median_pos, void* stream) {
  check_channels(s.C);
  const cudaStream_t st = as_stream(stream);
  const unsigned blocks = g.num_tiles();
  const int threads = block_threads(g);
#define GSSIM_FORWARD(CMAX)                                                                                  \
  GSSIM_LAUNCH(forward_kernel<CMAX>, blocks, threads, st)(rays_o, rays_d, g, s, records, tile_offsets, entries, \
                                                          t_min, t_max, color_acc, alpha, t_acc, normal_acc,  \
                                                          median_t, last, median_pos)
  if (s.C <= 4) GSSIM_FORWARD(4);
  else if (s.C <= 8) GSSIM_FORWARD(8);
  else if (s.C <= 16) GSSIM_FORWARD(16);
  else if (s.C <= 32) GSSIM_FORWARD(32);
  else GSSIM_FORWARD(64);
#undef GSSIM_FORWARD
  GSSIM_CUDA_CHECK(cudaGetLastError());
}

void rasterize_backward(const float* rays_o, const float* rays_d, TileGrid g, SurfelArrays s,
                        const int32_t* records, const int64_t* tile_offsets, const int32_t* entries, float t_min,
                        float t_max, const float* alpha, const int32_t* last, const int32_t* median_pos,
                        const float* g_color, const float* g_alpha, const float* g_t, const float* g_normal,
                        const float* g_median, float* d_means, float* d_axis_u, float* d_axis_v, float* d_normals,
                        float* d_opacities, float* d_features, float* d_means2d, void* stream) {
  check_channels(s.C);
  const cudaStream_t st = as_stream(stream);
  const unsigned blocks = g.num_tiles();
  const int threads = block_threads(g);
#define GSSIM_BACKWARD(CMAX)                                                                                   \
  GSSIM_LAUNCH(backward_kernel<CMAX>, blocks, threads, st)(                                                    \
      rays_o, rays_d, g, s, records, tile_offsets, entries, t_min, t_max, alpha, last, median_pos, g_color,    \
      g_alpha, g_t, g_normal, g_median, d_means, d_axis_u, d_axis_v, d_normals, d_opacities, d_features, d_means2d)
  if (s.C <= 4) GSSIM_BACKWARD(4);
  else if (s.C <= 8) GSSIM_BACKWARD(8);
  else if (s.C <= 16) GSSIM_BACKWARD(16);
  else if (s.C <= 32) GSSIM_BACKWARD(32);
  else GSSIM_BACKWARD(64);
#undef GSSIM_BACKWARD
  GSSIM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace cuda
}  // namespace gssim
