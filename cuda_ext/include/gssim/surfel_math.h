// Per-ray, per-surfel maths of the 2D-Gaussian rasterizer, shared by the CPU drivers
// and the CUDA kernels.  Plain C++ (no torch): HOST_DEVICE inline functions only.
// The torch reference (gssim/render/reference.py) implements the same decisions.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define HOST_DEVICE __host__ __device__
#else
#define HOST_DEVICE
#endif

namespace gssim {

constexpr float ALPHA_MIN = 1.0f / 255.0f;   // below: the surfel does not contribute
constexpr float ALPHA_MAX = 0.99f;           // opacity clamp on one ray
constexpr float T_MIN = 1e-4f;               // stop before transmittance would reach it
constexpr float EPS_DN = 1e-6f;              // |n.d| below: ray parallel to the plane
constexpr float MEDIAN_T = 0.5f;             // median depth: last surfel entered with T > 0.5
constexpr float FILTER_INV_SQUARE = 2.0f;    // 2DGS low-pass filter, cells^-2

struct Vec3 {
  float x, y, z;
};

HOST_DEVICE inline Vec3 make_vec3(const float* p) { return Vec3{p[0], p[1], p[2]}; }
HOST_DEVICE inline float dot(Vec3 a, Vec3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
HOST_DEVICE inline Vec3 operator-(Vec3 a, Vec3 b) { return Vec3{a.x - b.x, a.y - b.y, a.z - b.z}; }
HOST_DEVICE inline Vec3 operator+(Vec3 a, Vec3 b) { return Vec3{a.x + b.x, a.y + b.y, a.z + b.z}; }
HOST_DEVICE inline Vec3 operator*(float s, Vec3 a) { return Vec3{s * a.x, s * a.y, s * a.z}; }

// One surfel as the rasterizer sees it: centre, tangent axes divided by their scales
// (t_u / s_u, t_v / s_v), unit normal, opacity, projected centre in cells (col, row).
struct SurfelGeom {
  Vec3 mean, axis_u, axis_v, normal;
  float opacity, m2x, m2y;
};

// Result of one ray-surfel evaluation, with what the backward pass needs.
struct Hit {
  float alpha;    // clamped opacity * G
  float t_hit;    // distance along the ray reported for depth
  float G;        // Gaussian weight exp(-rho / 2)
  float t, u, v;  // plane intersection and local coordinates (3D branch)
  float dn;       // n . d
  float ad, bd;   // axis_u . d, axis_v . d
  float dx, dy;   // cell centre - projected centre (filter branch)
  Vec3 q;         // mean - origin
  bool use3d, clamped;
};

// Terms of a surfel that depend on the ray origin only (shared by rays with one origin).
struct OriginTerms {
  Vec3 q;              // mean - origin
  float qn, aq, bq;    // n.q, axis_u.q, axis_v.q
};

HOST_DEVICE inline OriginTerms origin_terms(Vec3 o, const SurfelGeom& s) {
  OriginTerms ot;
  ot.q = s.mean - o;
  ot.qn = dot(s.normal, ot.q);
  ot.aq = dot(s.axis_u, ot.q);
  ot.bq = dot(s.axis_v, ot.q);
  return ot;
}

// rho above which alpha < ALPHA_MIN for this opacity, with a margin so the cheap test
// below never rejects what the exact test keeps.
HOST_DEVICE inline float rho_cutoff(float opacity) {
  return opacity > ALPHA_MIN ? 2.0f * logf(opacity / ALPHA_MIN) + 1e-3f : -1.0f;
}

// Ray o + t d against a surfel: exact ray-plane intersection (2DGS eq. 8-9) with the
// screen-space low-pass filter, rho = min(u^2 + v^2, F |p - m2d|^2).  Returns false when
// the surfel does not contribute (alpha < ALPHA_MIN or no valid intersection).  A
// division- and exp-free test against rho_cut rejects most misses first.
HOST_DEVICE inline bool eval_hit(const OriginTerms& ot, Vec3 d, float px, float py, const SurfelGeom& s,
                                 float rho_cut, float t_min, float t_max, Hit& h) {
  h.dn = dot(s.normal, d);
  h.ad = dot(s.axis_u, d);
  h.bd = dot(s.axis_v, d);
  const float tc = dot(ot.q, d);
  h.dx = px - s.m2x;
  h.dy = py - s.m2y;
  const float rho2d = FILTER_INV_SQUARE * (h.dx * h.dx + h.dy * h.dy);
  const bool valid2d = tc > t_min && tc < t_max;
  const bool par = fabsf(h.dn) > EPS_DN;
  if (!(valid2d && rho2d <= rho_cut)) {
    if (!par) return false;
    const float un = ot.qn * h.ad - ot.aq * h.dn, vn = ot.qn * h.bd - ot.bq * h.dn;
    if (un * un + vn * vn > rho_cut * h.dn * h.dn) return false;
  }
  h.q = ot.q;
  h.t = ot.qn / (par ? h.dn : 1.0f);
  h.u = h.t * h.ad - ot.aq;
  h.v = h.t * h.bd - ot.bq;
  const float rho3d = h.u * h.u + h.v * h.v;
  const bool valid3d = par && h.t > t_min && h.t < t_max;
  if (!valid3d && !valid2d) return false;
  h.use3d = valid3d && (!valid2d || rho3d <= rho2d);
  const float rho = h.use3d ? rho3d : rho2d;
  h.G = expf(-0.5f * rho);
  float a = s.opacity * h.G;
  h.clamped = a > ALPHA_MAX;
  if (h.clamped) a = ALPHA_MAX;
  if (a < ALPHA_MIN) return false;
  h.alpha = a;
  h.t_hit = h.use3d ? h.t : tc;
  return true;
}

// Sign making the surfel normal face the ray (n . d < 0).
HOST_DEVICE inline float facing_sign(const Hit& h) { return h.dn > 0.0f ? -1.0f : 1.0f; }

// Gradients of one surfel's geometry from dL/dalpha, dL/dt_hit and dL/dnormal_out of a hit.
struct GeomGrad {
  Vec3 mean, axis_u, axis_v, normal;
  float opacity, m2x, m2y;
};

HOST_DEVICE inline void backprop_hit(Vec3 d, const SurfelGeom& s, const Hit& h, float dL_dalpha,
                                     float dL_dthit, Vec3 dL_dnout, GeomGrad& g) {
  const float sign = facing_sign(h);
  g.normal = g.normal + sign * dL_dnout;
  float dL_drho = 0.0f;
  if (!h.clamped) {
    g.opacity += dL_dalpha * h.G;
    dL_drho = -0.5f * dL_dalpha * s.opacity * h.G;
  }
  if (h.use3d) {
    const float dL_du = 2.0f * h.u * dL_drho;
    const float dL_dv = 2.0f * h.v * dL_drho;
    const float dL_dt = dL_dthit + dL_du * h.ad + dL_dv * h.bd;
    const Vec3 p = h.t * d - h.q;  // hit point relative to the centre
    g.axis_u = g.axis_u + dL_du * p;
    g.axis_v = g.axis_v + dL_dv * p;
    const float inv_dn = 1.0f / h.dn;
    const Vec3 dq = (dL_dt * inv_dn) * s.normal - dL_du * s.axis_u - dL_dv * s.axis_v;
    g.mean = g.mean + dq;
    g.normal = g.normal + (-dL_dt * inv_dn) * p;
  } else {
    g.m2x += -2.0f * FILTER_INV_SQUARE * h.dx * dL_drho;
    g.m2y += -2.0f * FILTER_INV_SQUARE * h.dy * dL_drho;
    g.mean = g.mean + dL_dthit * d;
  }
}

}  // namespace gssim
