// CPU (OpenMP) drivers of the ray-grid rasterizer.  Raw pointers and sizes only; the
// layout of the arrays is in gssim/raster_layout.h.
//   order (F): record indices front to back, sorted by (depth key of the record's surfel,
//     record index); a record's rank is its position in order.
//   A tile's entries are the ranks of the records that overlap it, ascending (front to back).
#pragma once

#include <cstdint>

#include "gssim/raster_layout.h"

namespace gssim {
namespace cpu {

using gssim::SurfelArrays;
using gssim::TileGrid;

// Sorts the records front to back into order (F) (a stable radix sort on the depth keys).
void sort_records(const int32_t* records, int64_t F, const float* depth_keys, int32_t* order);

// Counts the (tile, record) pairs: writes tile_offsets (num_tiles + 1), the start of each
// tile's list, and returns their total E.
int64_t count_tile_entries(const int32_t* records, int64_t F, TileGrid g, int64_t* tile_offsets);

// Fills entries (E) with each tile's record ranks, ascending.
void fill_tile_entries(const int32_t* records, const int32_t* order, int64_t F, TileGrid g,
                       const int64_t* tile_offsets, int32_t* entries);

// Forward: per ray color_acc (R, C), alpha (R) = 1 - T_final, t_acc (R), normal_acc (R, 3),
// median_t (R); for the backward pass last (R) = 1 + position (in its tile's list) of the
// last surfel composited, median_pos (R) = position of the median surfel (-1: none).
void rasterize_forward(const float* rays_o, const float* rays_d, TileGrid g, SurfelArrays s,
                       const int32_t* records, const int32_t* order, int64_t F, const int64_t* tile_offsets,
                       const int32_t* entries, float t_min, float t_max, float* color_acc, float* alpha,
                       float* t_acc, float* normal_acc, float* median_t, int32_t* last, int32_t* median_pos);

// Backward: from output gradients (same shapes as the forward outputs) accumulate into
// zero-initialised gradients of means, axis_u, axis_v, normals (N, 3), opacities (N),
// features (N, C), means2d (N, 2).
void rasterize_backward(const float* rays_o, const float* rays_d, TileGrid g, SurfelArrays s,
                        const int32_t* records, const int32_t* order, int64_t F, const int64_t* tile_offsets,
                        const int32_t* entries, float t_min, float t_max, const float* alpha, const int32_t* last,
                        const int32_t* median_pos, const float* g_color, const float* g_alpha,
                        const float* g_t, const float* g_normal, const float* g_median,
                        float* d_means, float* d_axis_u, float* d_axis_v, float* d_normals,
                        float* d_opacities, float* d_features, float* d_means2d);

}  // namespace cpu
}  // namespace gssim
