// CPU drivers: front-to-back record order, tile binning, per-tile compositing over
// whole vector blocks of cells, and its backward pass.
//
// Records are sorted once by depth and their surfels packed in that order, so a tile
// walks its list through contiguous memory.  A tile's cells are evaluated a row segment
// at a time in blocks of LANES cells (AVX2 width); compositing is branch-free over the
// block.  Where every ray of a tile leaves from one point (any instant sensor), the
// surfel's origin terms are computed once per tile instead of once per cell.
#include "rasterize_cpu.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "gssim/surfel_math.h"

#define GSSIM_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))

namespace gssim {
namespace cpu {

namespace {

// Cells evaluated together: row segments are widened to whole blocks of LANES cells.
constexpr int LANES = 8;

// One record in front-to-back order: its surfel's geometry (projected column shifted) and
// cell box, and where its surfel's gradients go.
struct Packed {
  SurfelGeom g;
  int32_t r0, r1, c0, c1;
  int64_t surfel;
};

// Records and their features in rank order (features: F x C).
struct PackedRecords {
  std::vector<Packed> rec;
  std::vector<float> feat;
  PackedRecords(const SurfelArrays& s, const int32_t* records, const int32_t* order, int64_t F)
      : rec(F), feat(static_cast<size_t>(F) * s.C) {
    const int C = s.C;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < F; ++r) {
      const int32_t* src = records + 6 * static_cast<int64_t>(order[r]);
      rec[r] = Packed{record_geom(s, src), src[1], src[2], src[3], src[4], src[0]};
      std::memcpy(feat.data() + r * C, s.features + static_cast<int64_t>(src[0]) * C, sizeof(float) * C);
    }
  }
};

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

// The rays of one tile, structure of arrays (index k = local row * width + local col).
struct TileRays {
  std::vector<float> ox, oy, oz, dx, dy, dz;
  bool shared_origin = false;  // every ray of the tile leaves from (ox[0], oy[0], oz[0])
  // Padded by LANES: a block at the end of the last row may read past it (ignored lanes).
  explicit TileRays(int n) : ox(n + LANES), oy(n + LANES), oz(n + LANES), dx(n + LANES), dy(n + LANES), dz(n + LANES) {}
  void load(const float* rays_o, const float* rays_d, TileCells tc, TileGrid g) {
    bool shared = true;
    const float* o0 = rays_o + 3 * (static_cast<int64_t>(tc.y0) * g.cols + tc.x0);
    for (int r = tc.y0; r < tc.y1; ++r)
      for (int c = tc.x0; c < tc.x1; ++c) {
        const int k = (r - tc.y0) * tc.width() + (c - tc.x0);
        const int64_t ray = static_cast<int64_t>(r) * g.cols + c;
        ox[k] = rays_o[3 * ray], oy[k] = rays_o[3 * ray + 1], oz[k] = rays_o[3 * ray + 2];
        dx[k] = rays_d[3 * ray], dy[k] = rays_d[3 * ray + 1], dz[k] = rays_d[3 * ray + 2];
        shared &= (ox[k] == o0[0]) & (oy[k] == o0[1]) & (oz[k] == o0[2]);
      }
    shared_origin = shared;
  }
};

// Per-cell results of one surfel on a row segment.
struct RowHits {
  std::vector<float> alpha, t_hit, sign;
  explicit RowHits(int tw) : alpha(tw + LANES), t_hit(tw + LANES), sign(tw + LANES) {}
};

// Evaluates nb cells (a whole number of blocks) from index k0, cell centres (px0 + l, py):
// alpha (0: no contribution), t_hit and the normal's facing sign per cell; returns whether
// any cell is touched.  `shared` gives the origin terms of rays sharing one origin.
template <bool kShared>
__attribute__((always_inline)) inline bool eval_cells(const SurfelGeom& sg, const OriginTerms& shared,
                                                      const TileRays& rays, int k0, int nb, float px0, float py,
                                                      float t_min, float t_max, float* __restrict__ alpha,
                                                      float* __restrict__ t_hit, float* __restrict__ sign) {
  const float *ox = rays.ox.data() + k0, *oy = rays.oy.data() + k0, *oz = rays.oz.data() + k0;
  const float *dx = rays.dx.data() + k0, *dy = rays.dy.data() + k0, *dz = rays.dz.data() + k0;
  for (int l = 0; l < nb; ++l) {
    Hit h;
    const OriginTerms ot = kShared ? shared : origin_terms(Vec3{ox[l], oy[l], oz[l]}, sg);
    eval_hit(ot, Vec3{dx[l], dy[l], dz[l]}, px0 + l, py, sg, t_min, t_max, h);
    alpha[l] = h.alpha;
    t_hit[l] = h.t_hit;
    sign[l] = facing_sign(h);
  }
  uint32_t any = 0;  // alpha is +0.0f (all bits clear) exactly where nothing contributes
  for (int l = 0; l < nb; ++l) any |= __builtin_bit_cast(uint32_t, alpha[l]);
  return any != 0;
}

GSSIM_VECTOR_CLONES bool eval_cells_shared(const SurfelGeom sg, const OriginTerms ot, const TileRays& rays, int k0,
                                           int nb, float px0, float py, float t_min, float t_max, RowHits& out) {
  return eval_cells<true>(sg, ot, rays, k0, nb, px0, py, t_min, t_max, out.alpha.data(), out.t_hit.data(),
                          out.sign.data());
}

GSSIM_VECTOR_CLONES bool eval_cells_own(const SurfelGeom sg, const TileRays& rays, int k0, int nb, float px0,
                                        float py, float t_min, float t_max, RowHits& out) {
  return eval_cells<false>(sg, OriginTerms{}, rays, k0, nb, px0, py, t_min, t_max, out.alpha.data(),
                           out.t_hit.data(), out.sign.data());
}

// One surfel's evaluation on the rows of a tile: the origin terms once when its rays share
// an origin.
struct RowEval {
  const TileRays& rays;
  RowHits hits;
  OriginTerms ot{};
  RowEval(const TileRays& r, int tw) : rays(r), hits(tw) {}
  void start(const SurfelGeom& sg) {
    if (rays.shared_origin) ot = origin_terms(Vec3{rays.ox[0], rays.oy[0], rays.oz[0]}, sg);
  }
  bool operator()(const SurfelGeom& sg, int k0, int nb, float px0, float py, float t_min, float t_max) {
    return rays.shared_origin ? eval_cells_shared(sg, ot, rays, k0, nb, px0, py, t_min, t_max, hits)
                              : eval_cells_own(sg, rays, k0, nb, px0, py, t_min, t_max, hits);
  }
};

// Front-to-back state of a tile's rays, structure of arrays padded by LANES.
struct TileState {
  int pad;  // stride of the channel planes
  std::vector<float> T, acc_c, acc_t, acc_n, med, w;
  std::vector<int32_t> lst, mpos, done;
  TileState(int n_max, int C)
      : pad(n_max + LANES), T(pad), acc_c(static_cast<size_t>(pad) * C), acc_t(pad), acc_n(3 * pad), med(pad),
        w(LANES * ((n_max + LANES - 1) / LANES + 1)), lst(pad), mpos(pad), done(pad) {}
  void reset(int C) {
    std::fill(T.begin(), T.end(), 1.0f);
    std::fill(acc_c.begin(), acc_c.begin() + static_cast<size_t>(pad) * C, 0.0f);
    std::fill(acc_t.begin(), acc_t.end(), 0.0f);
    std::fill(acc_n.begin(), acc_n.end(), 0.0f);
    std::fill(med.begin(), med.end(), 0.0f);
    std::fill(lst.begin(), lst.end(), 0);
    std::fill(mpos.begin(), mpos.end(), -1);
    std::fill(done.begin(), done.end(), 0);
  }
};

// Composites one surfel into lanes [l0, l1] of the block of nb cells from k0 (lanes
// outside are left as they are); returns how many rays it terminated.
__attribute__((always_inline)) inline int composite_cells(TileState& st, int k0, int nb, int l0, int l1,
                                                         const RowHits& hits, const float* feat, int C, Vec3 normal,
                                                         int32_t pos) {
  float* __restrict__ T = st.T.data() + k0;
  float* __restrict__ acc_t = st.acc_t.data() + k0;
  float* __restrict__ n0 = st.acc_n.data() + k0;
  float* __restrict__ n1 = n0 + st.pad;
  float* __restrict__ n2 = n1 + st.pad;
  float* __restrict__ med = st.med.data() + k0;
  int32_t* __restrict__ lst = st.lst.data() + k0;
  int32_t* __restrict__ mpos = st.mpos.data() + k0;
  int32_t* __restrict__ done = st.done.data() + k0;
  float* __restrict__ w = st.w.data();
  const float* __restrict__ alpha = hits.alpha.data();
  const float* __restrict__ t_hit = hits.t_hit.data();
  const float* __restrict__ sign = hits.sign.data();
  int stops = 0;
#pragma omp simd reduction(+ : stops)
  for (int l = 0; l < nb; ++l) {
    const bool in = (l >= l0) & (l <= l1);
    const float a = in ? alpha[l] : 0.0f;
    const float Tk = T[l];
    const bool live = (a > 0.0f) & (done[l] == 0);
    const float next_T = Tk * (1.0f - a);
    const bool stop = live & (next_T <= T_MIN);
    const bool comp = live & !stop;
    const float wl = comp ? a * Tk : 0.0f;
    w[l] = wl;
    T[l] = comp ? next_T : Tk;
    done[l] = stop ? 1 : done[l];
    stops += stop ? 1 : 0;
    // Selected, not multiplied by a zero weight: lanes outside the segment may hold NaN.
    const float th = comp ? t_hit[l] : 0.0f;
    acc_t[l] += wl * th;
    const float sw = comp ? wl * sign[l] : 0.0f;
    n0[l] += sw * normal.x;
    n1[l] += sw * normal.y;
    n2[l] += sw * normal.z;
    const bool is_median = comp & (Tk > MEDIAN_T);
    med[l] = is_median ? th : med[l];
    mpos[l] = is_median ? pos : mpos[l];
    lst[l] = comp ? pos + 1 : lst[l];
  }
  for (int ch = 0; ch < C; ++ch) {
    float* __restrict__ ac = st.acc_c.data() + static_cast<size_t>(ch) * st.pad + k0;
    const float f = feat[ch];
    for (int l = 0; l < nb; ++l) ac[l] += w[l] * f;
  }
  return stops;
}

// Composites one record into the rows [r0, r1] and cells [c0, c1] of a tile (rows whose
// rays have all terminated are skipped); returns how many rays it terminated.
template <bool kShared>
__attribute__((always_inline)) inline int forward_record_impl(const Packed& p, const float* feat, int C, int32_t pos,
                                                              const TileRays& rays, TileCells tc, int r0, int r1,
                                                              int c0, int c1, float t_min, float t_max, TileState& st,
                                                              RowHits& hits, int* row_active) {
  const OriginTerms ot = kShared ? origin_terms(Vec3{rays.ox[0], rays.oy[0], rays.oz[0]}, p.g) : OriginTerms{};
  const int w = tc.width();
  const int lc0 = (c0 - tc.x0) / LANES * LANES;  // first lane, block-aligned
  const int l0 = c0 - tc.x0 - lc0, l1 = c1 - tc.x0 - lc0;
  const int nb = (l1 + LANES) / LANES * LANES;
  int stops = 0;
  for (int r = r0; r <= r1; ++r) {
    if (row_active[r - tc.y0] == 0) continue;
    const int k0 = (r - tc.y0) * w + lc0;
    if (!eval_cells<kShared>(p.g, ot, rays, k0, nb, tc.x0 + lc0 + 0.5f, r + 0.5f, t_min, t_max, hits.alpha.data(),
                             hits.t_hit.data(), hits.sign.data()))
      continue;
    const int n = composite_cells(st, k0, nb, l0, l1, hits, feat, C, p.g.normal, pos);
    row_active[r - tc.y0] -= n;
    stops += n;
  }
  return stops;
}

GSSIM_VECTOR_CLONES int forward_record(const Packed& p, const float* feat, int C, int32_t pos, const TileRays& rays,
                                       TileCells tc, int r0, int r1, int c0, int c1, float t_min, float t_max,
                                       TileState& st, RowHits& hits, int* row_active) {
  return rays.shared_origin
             ? forward_record_impl<true>(p, feat, C, pos, rays, tc, r0, r1, c0, c1, t_min, t_max, st, hits, row_active)
             : forward_record_impl<false>(p, feat, C, pos, rays, tc, r0, r1, c0, c1, t_min, t_max, st, hits,
                                          row_active);
}

inline void atomic_add(float* dst, float v) {
#pragma omp atomic
  *dst += v;
}

}  // namespace

void sort_records(const int32_t* records, int64_t F, const float* depth_keys, int32_t* order) {
  constexpr int BITS = 11, BUCKETS = 1 << BITS;
  std::vector<uint32_t> keys(F), keys_tmp(F);
  std::vector<int32_t> tmp(F);
  for (int64_t f = 0; f < F; ++f) {
    keys[f] = depth_sort_key(depth_keys[records[6 * f]]);
    order[f] = static_cast<int32_t>(f);
  }
  // Least-significant digit first; each pass is stable, so equal keys keep record order.
  uint32_t *ks = keys.data(), *kd = keys_tmp.data();
  int32_t *src = order, *dst = tmp.data();
  std::vector<int64_t> start(BUCKETS);
  for (int shift = 0; shift < 32; shift += BITS) {
    std::fill(start.begin(), start.end(), 0);
    for (int64_t i = 0; i < F; ++i) ++start[(ks[i] >> shift) & (BUCKETS - 1)];
    int64_t sum = 0;
    for (int b = 0; b < BUCKETS; ++b) {
      const int64_t c = start[b];
      start[b] = sum;
      sum += c;
    }
    for (int64_t i = 0; i < F; ++i) {
      const int64_t p = start[(ks[i] >> shift) & (BUCKETS - 1)]++;
      dst[p] = src[i];
      kd[p] = ks[i];
    }
    std::swap(ks, kd);
    std::swap(src, dst);
  }
  if (src != order) std::memcpy(order, src, sizeof(int32_t) * F);
}

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

void fill_tile_entries(const int32_t* records, const int32_t* order, int64_t F, TileGrid g,
                       const int64_t* tile_offsets, int32_t* entries) {
  std::vector<int64_t> cursor(tile_offsets, tile_offsets + g.num_tiles());
  for (int64_t rank = 0; rank < F; ++rank) {
    const TileRange r = tile_range(records + 6 * static_cast<int64_t>(order[rank]), g);
    for (int ty = r.ty0; ty <= r.ty1; ++ty)
      for (int tx = r.tx0; tx <= r.tx1; ++tx) entries[cursor[ty * g.tiles_x() + tx]++] = static_cast<int32_t>(rank);
  }
}

void rasterize_forward(const float* rays_o, const float* rays_d, TileGrid g, SurfelArrays s,
                       const int32_t* records, const int32_t* order, int64_t F, const int64_t* tile_offsets,
                       const int32_t* entries, float t_min, float t_max, float* color_acc, float* alpha,
                       float* t_acc, float* normal_acc, float* median_t, int32_t* last, int32_t* median_pos) {
  const int C = s.C;
  const int n_max = g.th * g.tw;
  const PackedRecords packed(s, records, order, F);
#pragma omp parallel
  {
    TileState st(n_max, C);
    TileRays rays(n_max);
    RowHits hits(g.tw);
    std::vector<int> row_active(g.th);  // cells of each tile row still compositing
#pragma omp for schedule(dynamic, 1)
    for (int tile = 0; tile < g.num_tiles(); ++tile) {
      const TileCells tc = tile_cells(tile, g);
      const int n = tc.count(), w = tc.width();
      rays.load(rays_o, rays_d, tc, g);
      st.reset(C);
      std::fill(row_active.begin(), row_active.begin() + (tc.y1 - tc.y0), w);
      int active = n;
      const int64_t start = tile_offsets[tile], stop = tile_offsets[tile + 1];
      for (int64_t e = start; e < stop && active > 0; ++e) {
        const int32_t rank = entries[e];
        const Packed& p = packed.rec[rank];
        const int r0 = std::max(p.r0, tc.y0), r1 = std::min(p.r1, tc.y1 - 1);
        const int c0 = std::max(p.c0, tc.x0), c1 = std::min(p.c1, tc.x1 - 1);
        if (r0 > r1 || c0 > c1) continue;
        active -= forward_record(p, packed.feat.data() + static_cast<int64_t>(rank) * C, C,
                                 static_cast<int32_t>(e - start), rays, tc, r0, r1, c0, c1, t_min, t_max, st, hits,
                                 row_active.data());
      }
      for (int r = tc.y0; r < tc.y1; ++r) {
        for (int c = tc.x0; c < tc.x1; ++c) {
          const int k = (r - tc.y0) * w + (c - tc.x0);
          const int64_t ray = static_cast<int64_t>(r) * g.cols + c;
          for (int ch = 0; ch < C; ++ch) color_acc[ray * C + ch] = st.acc_c[static_cast<size_t>(ch) * st.pad + k];
          alpha[ray] = 1.0f - st.T[k];
          t_acc[ray] = st.acc_t[k];
          for (int i = 0; i < 3; ++i) normal_acc[3 * ray + i] = st.acc_n[i * st.pad + k];
          median_t[ray] = st.med[k];
          last[ray] = st.lst[k];
          median_pos[ray] = st.mpos[k];
        }
      }
    }
  }
}

void rasterize_backward(const float* rays_o, const float* rays_d, TileGrid g, SurfelArrays s,
                        const int32_t* records, const int32_t* order, int64_t F, const int64_t* tile_offsets,
                        const int32_t* entries, float t_min, float t_max, const float* alpha, const int32_t* last,
                        const int32_t* median_pos, const float* g_color, const float* g_alpha,
                        const float* g_t, const float* g_normal, const float* g_median,
                        float* d_means, float* d_axis_u, float* d_axis_v, float* d_normals,
                        float* d_opacities, float* d_features, float* d_means2d) {
  const int C = s.C;
  const int n_max = g.th * g.tw;
  const PackedRecords packed(s, records, order, F);
#pragma omp parallel
  {
    // Per-ray state walking back to front: transmittance before the current surfel and
    // the sums of what lies behind it.
    std::vector<float> T(n_max), S_c(static_cast<size_t>(n_max) * C), S_t(n_max), S_n(3 * n_max);
    std::vector<float> d_feat(C);
    TileRays rays(n_max);
    RowEval row(rays, g.tw);
#pragma omp for schedule(dynamic, 1)
    for (int tile = 0; tile < g.num_tiles(); ++tile) {
      const TileCells tc = tile_cells(tile, g);
      const int n = tc.count(), w = tc.width();
      rays.load(rays_o, rays_d, tc, g);
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
        const int32_t rank = entries[start + pos];
        const Packed& p = packed.rec[rank];
        const int r0 = std::max(p.r0, tc.y0), r1 = std::min(p.r1, tc.y1 - 1);
        const int c0 = std::max(p.c0, tc.x0), c1 = std::min(p.c1, tc.x1 - 1);
        if (r0 > r1 || c0 > c1) continue;
        const SurfelGeom& sg = p.g;
        const int64_t sid = p.surfel;
        const float* feat = packed.feat.data() + static_cast<int64_t>(rank) * C;
        GeomGrad gg{};
        std::fill(d_feat.begin(), d_feat.end(), 0.0f);
        bool touched = false;
        const int lc0 = (c0 - tc.x0) / LANES * LANES;
        const int nb = (c1 - tc.x0 - lc0 + LANES) / LANES * LANES;
        row.start(sg);
        for (int r = r0; r <= r1; ++r) {
          const int k0 = (r - tc.y0) * w + lc0;
          if (!row(sg, k0, nb, tc.x0 + lc0 + 0.5f, r + 0.5f, t_min, t_max)) continue;
          for (int c = c0; c <= c1; ++c) {
            const int64_t ray = static_cast<int64_t>(r) * g.cols + c;
            const int l = c - tc.x0 - lc0;
            if (row.hits.alpha[l] == 0.0f || pos >= last[ray]) continue;
            const int k = k0 + l;
            const Vec3 d{rays.dx[k], rays.dy[k], rays.dz[k]};
            Hit h;
            const Vec3 o{rays.ox[k], rays.oy[k], rays.oz[k]};
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
