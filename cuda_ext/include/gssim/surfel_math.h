// Per-ray, per-surfel maths of the 2D-Gaussian rasterizer, shared by the CPU drivers
// and the CUDA kernels.  Plain C++ (no torch): HOST_DEVICE inline functions only.
// The torch reference (gssim/render/reference.py) implements the same decisions.
#pragma once

#include <cmath>
#include <cstdint>

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

// e^x for x <= 0 (Cody-Waite range reduction, Cephes polynomial; relative error < 2e-7).
// Branch-free, so loops over rays that call it vectorise.
HOST_DEVICE inline float exp_neg(float x) {
  x = x > -87.0f ? x : -87.0f;
  // n = nearest integer to x / ln 2 (x <= 0, so truncating y - 0.5 rounds)
  const int32_t ni = static_cast<int32_t>(x * 1.44269504088896341f - 0.5f);
  const float n = static_cast<float>(ni);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const uint32_t bits = static_cast<uint32_t>(ni + 127) << 23;
#if defined(__CUDA_ARCH__)
  return p * __int_as_float(bits);
#else
  return p * __builtin_bit_cast(float, bits);
#endif
}

// Ray o + t d against a surfel: exact ray-plane intersection (2DGS eq. 8-9) with the
// screen-space low-pass filter, rho = min(u^2 + v^2, F |p - m2d|^2).  Fills every field
// of h; h.alpha is 0 when the surfel does not contribute (alpha < ALPHA_MIN or no valid
// intersection).  Branch-free: selects, no early returns.
HOST_DEVICE inline bool eval_hit(const OriginTerms& ot, Vec3 d, float px, float py, const SurfelGeom& s,
                                 float t_min, float t_max, Hit& h) {
  h.q = ot.q;
  h.dn = dot(s.normal, d);
  h.ad = dot(s.axis_u, d);
  h.bd = dot(s.axis_v, d);
  const float tc = dot(ot.q, d);
  h.dx = px - s.m2x;
  h.dy = py - s.m2y;
  const float rho2d = FILTER_INV_SQUARE * (h.dx * h.dx + h.dy * h.dy);
  const bool par = fabsf(h.dn) > EPS_DN;
  h.t = ot.qn / (par ? h.dn : 1.0f);
  h.u = h.t * h.ad - ot.aq;
  h.v = h.t * h.bd - ot.bq;
  const float rho3d = h.u * h.u + h.v * h.v;
  // An invalid branch (plane parallel to the ray, or out of [t_min, t_max]) gets rho = NO_HIT.
  constexpr float NO_HIT = 1e30f;
  const float rho2d_v = ((tc > t_min) & (tc < t_max)) ? rho2d : NO_HIT;
  const float rho3d_v = (par & (h.t > t_min) & (h.t < t_max)) ? rho3d : NO_HIT;
  const bool use3d = rho3d_v <= rho2d_v;  // both invalid: rho = NO_HIT, alpha = 0
  const float rho = use3d ? rho3d_v : rho2d_v;
  h.G = exp_neg(-0.5f * rho);
  const float a = s.opacity * h.G;
  const bool clamped = a > ALPHA_MAX;
  const float a_c = clamped ? ALPHA_MAX : a;
  h.alpha = a_c >= ALPHA_MIN ? a_c : 0.0f;
  h.t_hit = use3d ? h.t : tc;
  h.use3d = use3d;
  h.clamped = clamped;
  return h.alpha > 0.0f;
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
