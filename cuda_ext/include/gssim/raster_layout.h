// What the CPU drivers and the CUDA kernels of the ray-grid rasterizer agree on: the tile
// grid, the surfel arrays, records' tile ranges and the depth sort key.  Plain C++,
// HOST_DEVICE inline.
//
// Layout shared by all calls:
//   rays_o, rays_d: (R, 3), R = rows * cols, row-major cells; cell (i, j) centred at
//     (j + 0.5, i + 0.5) in grid coordinates.
//   surfels: means, axis_u, axis_v, normals (N, 3); opacities (N); features (N, C);
//     means2d (N, 2); depth_keys (N).
//   records (F, 6) int32: surfel, r0, r1, c0, c1 (inclusive cell box), column shift.
//   Tiles of th x tw cells, row-major; each tile lists the records that overlap it front to
//   back, ordered by (depth key of the record's surfel, record index).
#pragma once

#include <cstdint>

#include "gssim/surfel_math.h"

namespace gssim {

struct TileGrid {
  int rows, cols, th, tw;
  HOST_DEVICE int tiles_y() const { return (rows + th - 1) / th; }
  HOST_DEVICE int tiles_x() const { return (cols + tw - 1) / tw; }
  HOST_DEVICE int num_tiles() const { return tiles_y() * tiles_x(); }
};

struct SurfelArrays {
  const float *means, *axis_u, *axis_v, *normals, *opacities, *features, *means2d;
  int64_t N;
  int C;
};

// A record's cell box as the tiles it overlaps (inclusive).
struct TileRange {
  int ty0, ty1, tx0, tx1;
  HOST_DEVICE int count() const { return (ty1 - ty0 + 1) * (tx1 - tx0 + 1); }
};

HOST_DEVICE inline TileRange tile_range(const int32_t* rec, TileGrid g) {
  return TileRange{rec[1] / g.th, rec[2] / g.th, rec[3] / g.tw, rec[4] / g.tw};
}

// The geometry of a record's surfel as the rasterizer sees it (projected column shifted by
// the record's column shift).
HOST_DEVICE inline SurfelGeom record_geom(const SurfelArrays& s, const int32_t* rec) {
  const int64_t i = rec[0];
  return SurfelGeom{make_vec3(s.means + 3 * i), make_vec3(s.axis_u + 3 * i), make_vec3(s.axis_v + 3 * i),
                    make_vec3(s.normals + 3 * i), s.opacities[i], s.means2d[2 * i] + static_cast<float>(rec[5]),
                    s.means2d[2 * i + 1]};
}

// Monotone map of floats to unsigned integers (NaN after +inf): the depth sort key.
HOST_DEVICE inline uint32_t depth_sort_key(float f) {
#if defined(__CUDA_ARCH__)
  const uint32_t u = __float_as_uint(f);
#else
  const uint32_t u = __builtin_bit_cast(uint32_t, f);
#endif
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

}  // namespace gssim
