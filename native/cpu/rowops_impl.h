// Row kernels of the cross-entropy and activation ops, written once over a SIMD traits struct
// (simd_traits.h) and instantiated in cross_entropy_{avx2,avx512}.cpp and activation_{avx2,avx512}.cpp.
// They work on F32 rows that the baseline entry points (cross_entropy.cpp, activation.cpp) have
// already converted; those files keep a 4-lane baseline version for the scalar ISA. Formulas are
// the ones documented in those files; exp is V::exp (about 1-2 ulp). Reductions use 4 vector
// accumulators combined in a fixed order, then the scalar tail.
#pragma once
#include <cstdint>

#include "simd_traits.h"

namespace ath::cpu {
// log(sum(exp(x))) of x[0, n), max-subtracted; -inf when every element is -inf.
float xent_lse_row_avx2(const float* x, int64_t n);
float xent_lse_row_avx512(const float* x, int64_t n);
// x[0, n) = dl * exp(x - lse)
void xent_grad_row_avx2(float* x, int64_t n, float lse, float dl);
void xent_grad_row_avx512(float* x, int64_t n, float lse, float dl);
// forward: x[0, n) = act(x) (SwiGLU: silu(x) * y)
void act_fwd_block_avx2(int act, float* x, const float* y, int64_t n);
void act_fwd_block_avx512(int act, float* x, const float* y, int64_t n);
// backward from g = dout: x[0, n) = dx; for SwiGLU also y[0, n) = dy (y holds the up projection on entry)
void act_bwd_block_avx2(int act, float* x, float* y, const float* g, int64_t n);
void act_bwd_block_avx512(int act, float* x, float* y, const float* g, int64_t n);
}  // namespace ath::cpu

namespace {

constexpr float kRowSqrt2OverPi = 0.7978845608028654f;
constexpr float kRowGeluC = 0.044715f;

template <class V>
float lse_row(const float* x, int64_t n) {
  using R = typename V::R;
  constexpr int W = V::W;
  R m0 = V::set1(kNegInf), m1 = m0, m2 = m0, m3 = m0;
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    m0 = V::max(m0, V::load(x + i));
    m1 = V::max(m1, V::load(x + i + W));
    m2 = V::max(m2, V::load(x + i + 2 * W));
    m3 = V::max(m3, V::load(x + i + 3 * W));
  }
  float m = V::hmax(V::max(V::max(m0, m1), V::max(m2, m3)));
  for (int64_t j = i; j < n; ++j) m = x[j] > m ? x[j] : m;
  if (m == kNegInf) return kNegInf;
  const R mv = V::set1(m);
  R s0 = V::zero(), s1 = s0, s2 = s0, s3 = s0;
  for (i = 0; i + 4 * W <= n; i += 4 * W) {
    s0 = V::add(s0, V::exp(V::sub(V::load(x + i), mv)));
    s1 = V::add(s1, V::exp(V::sub(V::load(x + i + W), mv)));
    s2 = V::add(s2, V::exp(V::sub(V::load(x + i + 2 * W), mv)));
    s3 = V::add(s3, V::exp(V::sub(V::load(x + i + 3 * W), mv)));
  }
  float s = V::hsum(V::add(V::add(s0, s1), V::add(s2, s3)));
  for (; i < n; ++i) s += scalar_exp(x[i] - m);
  return m + __builtin_logf(s);
}

template <class V>
void grad_row(float* x, int64_t n, float lse, float dl) {
  constexpr int W = V::W;
  const typename V::R lv = V::set1(lse), dv = V::set1(dl);
  int64_t i = 0;
  for (; i + W <= n; i += W) V::store(x + i, V::mul(dv, V::exp(V::sub(V::load(x + i), lv))));
  for (; i < n; ++i) x[i] = dl * scalar_exp(x[i] - lse);
}

// sigmoid(v) = 1 / (1 + exp(-v))
template <class V>
typename V::R sigmoid_v(typename V::R v) {
  const typename V::R one = V::set1(1.0f);
  return V::div(one, V::add(one, V::exp(V::sub(V::zero(), v))));
}
// GELU goes through g = sigmoid(2u) = 0.5 (1 + tanh(u)) and 1 - g = e g with e = exp(-2u), so that
// 1 - tanh(u)^2 = 4 g (1 - g) keeps its relative precision where tanh(u) is close to +-1 (computing
// 1 - t*t there cancels). -2u is clamped at 88 so that e stays finite.
template <class V>
void gelu_g(typename V::R u, typename V::R* g, typename V::R* one_minus_g) {
  const typename V::R one = V::set1(1.0f);
  const typename V::R e = V::exp(V::sub(V::zero(), V::max(V::add(u, u), V::set1(-88.0f))));
  *g = V::div(one, V::add(one, e));
  *one_minus_g = V::mul(e, *g);
}
template <class V>
typename V::R gelu_arg(typename V::R v) {  // sqrt(2/pi) (v + 0.044715 v^3)
  return V::mul(V::set1(kRowSqrt2OverPi), V::fma(V::mul(V::set1(kRowGeluC), V::mul(v, v)), v, v));
}

// One element (or one vector) at a time; the tail goes through VScalar with the same formulas.
template <class V>
void act_fwd_span(int act, float* x, const float* y, int64_t i0, int64_t i1) {
  using R = typename V::R;
  constexpr int W = V::W;
  for (int64_t i = i0; i + W <= i1; i += W) {
    const R v = V::load(x + i);
    R r;
    if (act == 0) {
      R g, omg;
      gelu_g<V>(gelu_arg<V>(v), &g, &omg);
      r = V::mul(v, g);  // 0.5 v (1 + tanh(u))
    } else if (act == 1) {
      r = V::mul(v, sigmoid_v<V>(v));
    } else {
      r = V::mul(V::mul(v, sigmoid_v<V>(v)), V::load(y + i));
    }
    V::store(x + i, r);
  }
}

template <class V>
void act_fwd_block(int act, float* x, const float* y, int64_t n) {
  const int64_t nv = n / V::W * V::W;
  act_fwd_span<V>(act, x, y, 0, nv);
  act_fwd_span<VScalar>(act, x, y, nv, n);
}

template <class V>
void act_bwd_span(int act, float* x, float* y, const float* g, int64_t i0, int64_t i1) {
  using R = typename V::R;
  constexpr int W = V::W;
  const R one = V::set1(1.0f);
  for (int64_t i = i0; i + W <= i1; i += W) {
    const R v = V::load(x + i), d = V::load(g + i);
    if (act == 0) {
      R sg, omg;  // sigmoid(2u) and 1 - sigmoid(2u)
      gelu_g<V>(gelu_arg<V>(v), &sg, &omg);
      // du/dv = sqrt(2/pi) (1 + 3 * 0.044715 v^2)
      const R du = V::mul(V::set1(kRowSqrt2OverPi), V::fma(V::set1(3.0f * kRowGeluC), V::mul(v, v), one));
      const R left = sg;  // 0.5 (1 + t)
      // 0.5 v (1 - t^2) du = 2 v sg (1 - sg) du
      const R right = V::mul(V::mul(V::mul(V::set1(2.0f), v), V::mul(sg, omg)), du);
      V::store(x + i, V::mul(d, V::add(left, right)));
    } else {
      const R s = sigmoid_v<V>(v);
      const R ds = V::mul(s, V::fma(v, V::sub(one, s), one));  // d silu / dv = s (1 + v (1 - s))
      if (act == 1) {
        V::store(x + i, V::mul(d, ds));
      } else {
        const R yv = V::load(y + i);
        V::store(x + i, V::mul(V::mul(d, yv), ds));
        V::store(y + i, V::mul(d, V::mul(v, s)));
      }
    }
  }
}

template <class V>
void act_bwd_block(int act, float* x, float* y, const float* g, int64_t n) {
  const int64_t nv = n / V::W * V::W;
  act_bwd_span<V>(act, x, y, g, 0, nv);
  act_bwd_span<VScalar>(act, x, y, g, nv, n);
}

}  // namespace

#define ATH_DEFINE_XENT_ROWS(suffix, Vec)                                                           \
  namespace ath::cpu {                                                                              \
  float xent_lse_row_##suffix(const float* x, int64_t n) { return lse_row<Vec>(x, n); }              \
  void xent_grad_row_##suffix(float* x, int64_t n, float lse, float dl) { grad_row<Vec>(x, n, lse, dl); } \
  }
#define ATH_DEFINE_ACT_BLOCKS(suffix, Vec)                                                          \
  namespace ath::cpu {                                                                              \
  void act_fwd_block_##suffix(int act, float* x, const float* y, int64_t n) {                       \
    act_fwd_block<Vec>(act, x, y, n);                                                               \
  }                                                                                                 \
  void act_bwd_block_##suffix(int act, float* x, float* y, const float* g, int64_t n) {             \
    act_bwd_block<Vec>(act, x, y, g, n);                                                            \
  }                                                                                                 \
  }
