// CPU drivers: tile binning, per-tile front-to-back compositing, and its backward pass.
#include "rasterize_cpu.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "gssim/surfel_math.h"

namespace gssim {
namespace cpu {

namespace {

// A record's cell box clipped to the tiles it overlaps.
struct TileRange {
  int ty0, ty1, tx0, tx1;  // inclusive
};

inline TileRange tile_range(const int32_t* rec, TileGrid g) {
  return TileRange{rec[1] / g.th, rec[2] / g.th, rec[3] / g.tw, rec[4] / g.tw};
}

inline SurfelGeom load_surfel(const SurfelArrays& s, const int32_t* rec) {
  const int64_t i = rec[0];
  return SurfelGeom{make_vec3(s.means + 3 * i), make_vec3(s.axis_u + 3 * i), make_vec3(s.axis_v + 3 * i),
                    make_vec3(s.normals + 3 * i), s.opacities[i], s.means2d[2 * i] + static_cast<float>(rec[5]),
                    s.means2d[2 * i + 1]};
}

// Cells of one tile: [y0, y1) x [x0, x1).
struct TileCells {
  int y0, y1, x0, x1;
  int width() const { return x1 - x0; }
  int count() const { return (y1 - y0) * (x1 - x0); }
};

inline TileCells tile_cells(int tile, TileGrid g) {
  const int y0 = (tile / g.tiles_x()) * g.th, x0 = (tile % g.tiles_x()) * g.tw;
  return TileCells{y0, std::min(y0 + g.th, g.rows), x0, std::min(x0 + g.tw, g.cols)};
}

// Cells evaluated together: a row segment is widened to whole blocks of LANES cells so
// the loop below runs as full vectors.
constexpr int LANES = 4;

// The rays of one tile, structure of arrays (index k = local row * width + local col).
struct TileRays {
  std::vector<float> ox, oy, oz, dx, dy, dz;
  // Padded by LANES: a block at the end of the last row may read past it (ignored lanes).
  explicit TileRays(int n) : ox(n + LANES), oy(n + LANES), oz(n + LANES), dx(n + LANES), dy(n + LANES), dz(n + LANES) {}
  void load(const float* rays_o, const float* rays_d, TileCells tc, TileGrid g) {
    for (int r = tc.y0; r < tc.y1; ++r)
      for (int c = tc.x0; c < tc.x1; ++c) {
        const int k = (r - tc.y0) * tc.width() + (c - tc.x0);
        const int64_t ray = static_cast<int64_t>(r) * g.cols + c;
        ox[k] = rays_o[3 * ray], oy[k] = rays_o[3 * ray + 1], oz[k] = rays_o[3 * ray + 2];
        dx[k] = rays_d[3 * ray], dy[k] = rays_d[3 * ray + 1], dz[k] = rays_d[3 * ray + 2];
      }
  }
};

// One surfel against the cells of a tile row from index k0 (cell centre px0, py), in
// blocks of LANES covering n cells: alpha (0: no contribution), t_hit and the normal's
// facing sign per cell; returns whether it contributes to any.  Vectorised over
// cells; cloned for AVX2 machines, chosen at run time.
__attribute__((target_clones("arch=x86-64-v3", "default"))) bool eval_row(
    const SurfelGeom sg, const TileRays& rays, int k0, int n, float px0, float py, float t_min, float t_max,
    float* __restrict__ alpha, float* __restrict__ t_hit, float* __restrict__ sign) {
  const int n_blocks = (n + LANES - 1) / LANES * LANES;
  const float *ox = rays.ox.data() + k0, *oy = rays.oy.data() + k0, *oz = rays.oz.data() + k0;
  const float *dx = rays.dx.data() + k0, *dy = rays.dy.data() + k0, *dz = rays.dz.data() + k0;
  for (int l = 0; l < n_blocks; ++l) {
    Hit h;
    eval_hit(origin_terms(Vec3{ox[l], oy[l], oz[l]}, sg), Vec3{dx[l], dy[l], dz[l]}, px0 + l, py, sg, t_min,
             t_max, h);
    alpha[l] = h.alpha;
    t_hit[l] = h.t_hit;
    sign[l] = facing_sign(h);
  }
  uint32_t any = 0;  // alpha is +0.0f (all bits clear) exactly where nothing contributes
  for (int l = 0; l < n_blocks; ++l) any |= __builtin_bit_cast(uint32_t, alpha[l]);
  return any != 0;
}

// A thread's tile rays and the per-cell results of one surfel on one tile row.
struct RowEval {
  TileRays rays;
  std::vector<float> alpha, t_hit, sign;
  explicit RowEval(TileGrid g) : rays(g.th * g.tw), alpha(g.tw + LANES), t_hit(g.tw + LANES), sign(g.tw + LANES) {}
  // Evaluates cells from k0 (cell centre px0, py) over n cells; false if none is touched.
  bool operator()(const SurfelGeom& sg, int k0, int n, float px0, float py, float t_min, float t_max) {
    return eval_row(sg, rays, k0, n, px0, py, t_min, t_max, alpha.data(), t_hit.data(), sign.data());
  }
};

inline void atomic_add(float* dst, float v) {
#pragma omp atomic
  *dst += v;
}

}  // namespace

int64_t count_tile_entries(const int32_t* records, int64_t F, TileGrid g, int64_t* tile_offsets) {
  const int T = g.num_tiles();
  std::fill(tile_offsets, tile_offsets + T + 1, 0);
  for (int64_t f = 0; f < F; ++f) {
    const TileRange r = tile_range(records + 6 * f, g);
    for (int ty = r.ty0; ty <= r.ty1; ++ty)
      for (int tx = r.tx0; tx <= r.tx1; ++tx) ++tile_offsets[ty * g.tiles_x() + tx + 1];
  }
  for (int t = 0; t < T; ++t) tile_offsets[t + 1] += tile_offsets[t];
  return tile_offsets[T];
}

void fill_tile_entries(const int32_t* records, int64_t F, const float* depth_keys, TileGrid g,
                       const int64_t* tile_offsets, int32_t* entries) {
  const int T = g.num_tiles();
  std::vector<int64_t> cursor(tile_offsets, tile_offsets + T);
  for (int64_t f = 0; f < F; ++f) {
    const TileRange r = tile_range(records + 6 * f, g);
    for (int ty = r.ty0; ty <= r.ty1; ++ty)
      for (int tx = r.tx0; tx <= r.tx1; ++tx) entries[cursor[ty * g.tiles_x() + tx]++] = static_cast<int32_t>(f);
  }
#pragma omp parallel for schedule(dynamic, 4)
  for (int t = 0; t < T; ++t) {
    std::sort(entries + tile_offsets[t], entries + tile_offsets[t + 1], [&](int32_t a, int32_t b) {
      const float ka = depth_keys[records[6 * a]], kb = depth_keys[records[6 * b]];
      return ka < kb || (ka == kb && a < b);
    });
  }
}

void rasterize_forward(const float* rays_o, const float* rays_d, TileGrid g, SurfelArrays s,
                       const int32_t* records, const int64_t* tile_offsets, const int32_t* entries,
                       float t_min, float t_max, float* color_acc, float* alpha, float* t_acc,
                       float* normal_acc, float* median_t, int32_t* last, int32_t* median_pos) {
  const int C = s.C;
  const int n_max = g.th * g.tw;
#pragma omp parallel
  {
    std::vector<float> T(n_max), acc_c(static_cast<size_t>(n_max) * C), acc_t(n_max), acc_n(3 * n_max), med(n_max);
    std::vector<int32_t> lst(n_max), mpos(n_max);
    std::vector<char> done(n_max);
    std::vector<int> row_active(g.th);  // cells of each tile row still compositing
    RowEval row(g);
#pragma omp for schedule(dynamic, 1)
    for (int tile = 0; tile < g.num_tiles(); ++tile) {
      const TileCells tc = tile_cells(tile, g);
      const int n = tc.count(), w = tc.width();
      row.rays.load(rays_o, rays_d, tc, g);
      std::fill(row_active.begin(), row_active.begin() + (tc.y1 - tc.y0), w);
      std::fill(T.begin(), T.begin() + n, 1.0f);
      std::fill(acc_c.begin(), acc_c.begin() + static_cast<size_t>(n) * C, 0.0f);
      std::fill(acc_t.begin(), acc_t.begin() + n, 0.0f);
      std::fill(acc_n.begin(), acc_n.begin() + 3 * n, 0.0f);
      std::fill(med.begin(), med.begin() + n, 0.0f);
      std::fill(lst.begin(), lst.begin() + n, 0);
      std::fill(mpos.begin(), mpos.begin() + n, -1);
      std::fill(done.begin(), done.begin() + n, 0);
      int active = n;
      const int64_t start = tile_offsets[tile], stop = tile_offsets[tile + 1];
      for (int64_t e = start; e < stop && active > 0; ++e) {
        const int32_t* rec = records + 6 * static_cast<int64_t>(entries[e]);
        const int r0 = std::max(rec[1], tc.y0), r1 = std::min(rec[2], tc.y1 - 1);
        const int c0 = std::max(rec[3], tc.x0), c1 = std::min(rec[4], tc.x1 - 1);
        if (r0 > r1 || c0 > c1) continue;
        const SurfelGeom sg = load_surfel(s, rec);
        const float* feat = s.features + static_cast<int64_t>(rec[0]) * C;
        const int32_t pos = static_cast<int32_t>(e - start);
        const int lc0 = (c0 - tc.x0) / LANES * LANES;  // first lane, block-aligned
        const int l0 = c0 - tc.x0 - lc0, l1 = c1 - tc.x0 - lc0;
        for (int r = r0; r <= r1; ++r) {
          if (row_active[r - tc.y0] == 0) continue;
          const int k0 = (r - tc.y0) * w + lc0;
          if (!row(sg, k0, l1 + 1, tc.x0 + lc0 + 0.5f, r + 0.5f, t_min, t_max))
            continue;
          for (int l = l0; l <= l1; ++l) {
            const int k = k0 + l;
            const float a = row.alpha[l];
            if (a == 0.0f || done[k]) continue;
            const float next_T = T[k] * (1.0f - a);
            if (next_T <= T_MIN) {
              done[k] = 1;
              --active;
              --row_active[r - tc.y0];
              continue;
            }
            const float wgt = a * T[k];
            float* ac = acc_c.data() + static_cast<size_t>(k) * C;
            for (int ch = 0; ch < C; ++ch) ac[ch] += wgt * feat[ch];
            acc_t[k] += wgt * row.t_hit[l];
            const float sw = wgt * row.sign[l];
            acc_n[3 * k] += sw * sg.normal.x;
            acc_n[3 * k + 1] += sw * sg.normal.y;
            acc_n[3 * k + 2] += sw * sg.normal.z;
            if (T[k] > MEDIAN_T) {
              med[k] = row.t_hit[l];
              mpos[k] = pos;
            }
            T[k] = next_T;
            lst[k] = pos + 1;
          }
        }
      }
      for (int r = tc.y0; r < tc.y1; ++r) {
        for (int c = tc.x0; c < tc.x1; ++c) {
          const int k = (r - tc.y0) * w + (c - tc.x0);
          const int64_t ray = static_cast<int64_t>(r) * g.cols + c;
          std::memcpy(color_acc + ray * C, acc_c.data() + static_cast<size_t>(k) * C, sizeof(float) * C);
          alpha[ray] = 1.0f - T[k];
          t_acc[ray] = acc_t[k];
          std::memcpy(normal_acc + 3 * ray, acc_n.data() + 3 * k, sizeof(float) * 3);
          median_t[ray] = med[k];
          last[ray] = lst[k];
          median_pos[ray] = mpos[k];
        }
      }
    }
  }
}

void rasterize_backward(const float* rays_o, const float* rays_d, TileGrid g, SurfelArrays s,
                        const int32_t* records, const int64_t* tile_offsets, const int32_t* entries,
                        float t_min, float t_max, const float* alpha, const int32_t* last,
                        const int32_t* median_pos, const float* g_color, const float* g_alpha,
                        const float* g_t, const float* g_normal, const float* g_median,
                        float* d_means, float* d_axis_u, float* d_axis_v, float* d_normals,
                        float* d_opacities, float* d_features, float* d_means2d) {
  const int C = s.C;
  const int n_max = g.th * g.tw;
#pragma omp parallel
  {
    // Per-ray state walking back to front: transmittance before the current surfel and
    // the sums of what lies behind it.
    std::vector<float> T(n_max), S_c(static_cast<size_t>(n_max) * C), S_t(n_max), S_n(3 * n_max);
    std::vector<float> d_feat(C);
    RowEval row(g);
#pragma omp for schedule(dynamic, 1)
    for (int tile = 0; tile < g.num_tiles(); ++tile) {
      const TileCells tc = tile_cells(tile, g);
      const int n = tc.count(), w = tc.width();
      row.rays.load(rays_o, rays_d, tc, g);
      int max_last = 0;
      for (int r = tc.y0; r < tc.y1; ++r)
        for (int c = tc.x0; c < tc.x1; ++c) {
          const int k = (r - tc.y0) * w + (c - tc.x0);
          const int64_t ray = static_cast<int64_t>(r) * g.cols + c;
          T[k] = 1.0f - alpha[ray];
          max_last = std::max(max_last, last[ray]);
        }
      std::fill(S_c.begin(), S_c.begin() + static_cast<size_t>(n) * C, 0.0f);
      std::fill(S_t.begin(), S_t.begin() + n, 0.0f);
      std::fill(S_n.begin(), S_n.begin() + 3 * n, 0.0f);
      const int64_t start = tile_offsets[tile];
      for (int32_t pos = max_last - 1; pos >= 0; --pos) {
        const int32_t* rec = records + 6 * static_cast<int64_t>(entries[start + pos]);
        const int r0 = std::max(rec[1], tc.y0), r1 = std::min(rec[2], tc.y1 - 1);
        const int c0 = std::max(rec[3], tc.x0), c1 = std::min(rec[4], tc.x1 - 1);
        if (r0 > r1 || c0 > c1) continue;
        const SurfelGeom sg = load_surfel(s, rec);
        const int64_t sid = rec[0];
        const float* feat = s.features + sid * C;
        GeomGrad gg{};
        std::fill(d_feat.begin(), d_feat.end(), 0.0f);
        bool touched = false;
        const int lc0 = (c0 - tc.x0) / LANES * LANES;
        for (int r = r0; r <= r1; ++r) {
          const int k0 = (r - tc.y0) * w + lc0;
          if (!row(sg, k0, c1 - tc.x0 - lc0 + 1, tc.x0 + lc0 + 0.5f, r + 0.5f, t_min, t_max))
            continue;
          for (int c = c0; c <= c1; ++c) {
            const int64_t ray = static_cast<int64_t>(r) * g.cols + c;
            const int l = c - tc.x0 - lc0;
            if (row.alpha[l] == 0.0f || pos >= last[ray]) continue;
            const int k = k0 + l;
            const Vec3 d{row.rays.dx[k], row.rays.dy[k], row.rays.dz[k]};
            Hit h;
            const Vec3 o{row.rays.ox[k], row.rays.oy[k], row.rays.oz[k]};
            eval_hit(origin_terms(o, sg), d, c + 0.5f, r + 0.5f, sg, t_min, t_max, h);
            const float one_minus = 1.0f - h.alpha;
            const float T_i = T[k] / one_minus;
            const float wgt = h.alpha * T_i;
            const float* gc = g_color + ray * C;
            float* sc = S_c.data() + static_cast<size_t>(k) * C;
            float dL_dalpha = g_alpha[ray] * (1.0f - alpha[ray]) / one_minus;
            for (int ch = 0; ch < C; ++ch) {
              dL_dalpha += gc[ch] * (feat[ch] * T_i - sc[ch] / one_minus);
              d_feat[ch] += wgt * gc[ch];
              sc[ch] += wgt * feat[ch];
            }
            dL_dalpha += g_t[ray] * (h.t_hit * T_i - S_t[k] / one_minus);
            const float sign = facing_sign(h);
            const Vec3 n_out = sign * sg.normal;
            const Vec3 gn = make_vec3(g_normal + 3 * ray);
            const Vec3 sn = make_vec3(S_n.data() + 3 * k);
            dL_dalpha += T_i * dot(gn, n_out) - dot(gn, sn) / one_minus;
            const float dL_dthit = g_t[ray] * wgt + (pos == median_pos[ray] ? g_median[ray] : 0.0f);
            backprop_hit(d, sg, h, dL_dalpha, dL_dthit, wgt * gn, gg);
            S_t[k] += wgt * h.t_hit;
            S_n[3 * k] += wgt * n_out.x;
            S_n[3 * k + 1] += wgt * n_out.y;
            S_n[3 * k + 2] += wgt * n_out.z;
            T[k] = T_i;
            touched = true;
          }
        }
        if (!touched) continue;
        const float vals[] = {gg.mean.x,   gg.mean.y,   gg.mean.z,   gg.axis_u.x, gg.axis_u.y, gg.axis_u.z,
                              gg.axis_v.x, gg.axis_v.y, gg.axis_v.z, gg.normal.x, gg.normal.y, gg.normal.z};
        float* dsts[] = {d_means + 3 * sid,     d_means + 3 * sid + 1,   d_means + 3 * sid + 2,
                         d_axis_u + 3 * sid,    d_axis_u + 3 * sid + 1,  d_axis_u + 3 * sid + 2,
                         d_axis_v + 3 * sid,    d_axis_v + 3 * sid + 1,  d_axis_v + 3 * sid + 2,
                         d_normals + 3 * sid,   d_normals + 3 * sid + 1, d_normals + 3 * sid + 2};
        for (int i = 0; i < 12; ++i) atomic_add(dsts[i], vals[i]);
        atomic_add(d_opacities + sid, gg.opacity);
        atomic_add(d_means2d + 2 * sid, gg.m2x);
        atomic_add(d_means2d + 2 * sid + 1, gg.m2y);
        for (int ch = 0; ch < C; ++ch) atomic_add(d_features + sid * C + ch, d_feat[ch]);
      }
    }
  }
}

}  // namespace cpu
}  // namespace gssim
