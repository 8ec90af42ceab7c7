// CUDA drivers of the ray-grid rasterizer: raw device pointers and sizes, a cudaStream_t
// passed as void* (no CUDA or torch headers needed to include this).  The layout of the
// arrays is in gssim/raster_layout.h; the per-ray, per-surfel maths is gssim/surfel_math.h,
// the same functions as the CPU drivers call.
//
// Binning differs from the CPU drivers in one way only: a tile's entries are record
// indices (not ranks), sorted by (tile, depth key, record index) with one radix sort, so
// each tile's list is in the same front-to-back order and `last` / `median_pos` mean the
// same positions in it.
#pragma once

#include <cstdint>

#include "gssim/raster_layout.h"

namespace gssim {
namespace cuda {

// Most feature channels the CUDA compositor takes (the CPU backend has no limit).
constexpr int MAX_CHANNELS = 64;

// Binning, pass 1: the number of (tile, record) pairs of each record, scanned into
// pair_offsets (F + 1); returns their total E.
int64_t count_tile_pairs(const int32_t* records, int64_t F, TileGrid g, int64_t* pair_offsets, void* stream);

// Binning, pass 2: entries (E) the record of each pair, sorted by (tile, depth key of its
// surfel, record index); tile_offsets (num_tiles + 1) where each tile's list starts.
void sort_tile_pairs(const int32_t* records, int64_t F, const float* depth_keys, TileGrid g,
                     const int64_t* pair_offsets, int64_t E, int32_t* entries, int64_t* tile_offsets, void* stream);

// Forward: per ray color_acc (R, C), alpha (R) = 1 - T_final, t_acc (R), normal_acc (R, 3),
// median_t (R); for the backward pass last (R) = 1 + position (in its tile's list) of the
// last surfel composited, median_pos (R) = position of the median surfel (-1: none).
void rasterize_forward(const float* rays_o, const float* rays_d, TileGrid g, SurfelArrays s,
                       const int32_t* records, const int64_t* tile_offsets, const int32_t* entries, float t_min,
                       float t_max, float* color_acc, float* alpha, float* t_acc, float* normal_acc, float* median_t,
                       int32_t* last, int32_t* median_pos, void* stream);

// Backward: from output gradients (same shapes as the forward outputs) accumulate into
// zero-initialised gradients of means, axis_u, axis_v, normals (N, 3), opacities (N),
// features (N, C), means2d (N, 2).
void rasterize_backward(const float* rays_o, const float* rays_d, TileGrid g, SurfelArrays s,
                        const int32_t* records, const int64_t* tile_offsets, const int32_t* entries, float t_min,
                        float t_max, const float* alpha, const int32_t* last, const int32_t* median_pos,
                        const float* g_color, const float* g_alpha, const float* g_t, const float* g_normal,
                        const float* g_median, float* d_means, float* d_axis_u, float* d_axis_v, float* d_normals,
                        float* d_opacities, float* d_features, float* d_means2d, void* stream);

}  // namespace cuda
}  // namespace gssim
