// CPU attention kernels, written once as templates over a SIMD traits struct (simd_traits.h) and
// instantiated per ISA: attention_{fwd,bwd}.cpp (scalar, baseline flags), attention_{fwd,bwd}_avx2.cpp
// and attention_{fwd,bwd}_avx512.cpp (built with those ISA flags; chosen at run time through
// ath::cpu::active_isa()). The entry points (ath_cpu_attention_fwd/bwd) validate, plan and
// partition the work; the functions below process a range of work items on one thread.
// Block sizes: 64 queries by 64 keys (tuned on an AVX-512 Zen core; 32..128 were within ~10%).
//
// Tiling. Everything is reduced to one small F32 GEMM, C (M, N) [+]= A (M, K) * B (K, N), whose A is
// read by broadcast with arbitrary strides (so transposed operands cost nothing) and whose B rows
// are contiguous and N is a multiple of the vector width (zero-padded buffers). With Q^T kept per
// query block and K, V read in natural layout, no (Tq, Tk) matrix is ever formed:
//   forward, per query block (Bq queries):  S^T (Bk, Bq) = K_tile Q^T;  online softmax across the
//     key axis, vectorised over queries;  O (Bq, D) += P V_tile  (P read transposed from S^T).
//   backward pass 1, per key block (Bk keys; every query head of the KV group, every query block
//     that can see the block):  S = Q K^T,  P = exp(S - lse),  dV += P^T dO,  dP = dO V^T,
//     dS = P (dP - D_i),  dK += dS^T Q.
//   backward pass 2, per query block:  S^T = K Q^T,  P^T,  dP^T = V dO^T,  dS^T,  dQ += dS K.
// Scores live in the base-2 domain: Q (or K) is pre-multiplied by scale * log2(e) and exp2 is used,
// so P = exp2(S2 - lse * log2(e)); lse is stored in natural units. Each output row or key row is
// produced by one thread with a fixed loop order, so results do not depend on the partition
// (bit-identical for any thread count on a given ISA).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "athanor/athanor.h"
#include "simd_traits.h"

namespace ath::cpu {

// Everything a range of work items needs (plain data, filled by the entry points).
struct AttnPlan {
  int64_t batch, hq, hkv, group, tq, tk, d, off;  // off = tk - tq (causal alignment)
  int dtype, causal;
  float scale;  // softmax scale
  float c;      // scale * log2(e)
  int64_t bq, bk;  // query / key block sizes (multiples of 16)
  const void* q; int64_t q_sb, q_sh, q_st;
  const void* k; int64_t k_sb, k_sh, k_st;
  const void* v; int64_t v_sb, v_sh, v_st;
  void* o; int64_t o_sb, o_sh, o_st;  // forward output; backward reads dout with these strides
  float* lse;          // forward: (B, Hq, Tq) or null; backward: the saved lse (read)
  const void* dout;
  const float* di;     // backward: (B, Hq, Tq) rowsum(dout * o)
  void* dq; void* dk; void* dv;
};

// Number of items of each kind; item order: forward and dq (b, h, query block),
// dk/dv (b, kv head, key block).
inline int64_t attn_num_qblocks(const AttnPlan& p) { return (p.tq + p.bq - 1) / p.bq; }
inline int64_t attn_num_kblocks(const AttnPlan& p) { return (p.tk + p.bk - 1) / p.bk; }
// Floats of scratch one thread needs (any pass).
inline int64_t attn_workspace_floats(const AttnPlan& p) {
  const int64_t dp = (p.d + 15) / 16 * 16, b = p.bq > p.bk ? p.bq : p.bk;
  return 6 * b * dp + 2 * b * b + 4 * b + dp + 256;
}

using AttnItemsFn = void (*)(const AttnPlan& p, int64_t item_begin, int64_t item_end, float* workspace);
using AttnCostFn = int64_t (*)(const AttnPlan& p, int64_t item);

// Shared by the forward and backward entry points (attention_fwd.cpp, baseline code):
// validates the arguments and fills the plan (backward == 1 also checks the gradient buffers).
ath_status attention_plan(const ath_attention_args* a, int backward, const char* op, AttnPlan* plan);
// Runs items [0, n) on the thread pool: contiguous ranges of about equal cost (static, from
// `cost`), one F32 workspace of attn_workspace_floats(p) per range.
void attention_run(const AttnPlan& p, int64_t n, AttnCostFn cost, AttnItemsFn fn);
// Cost of a (b, h, query block) item: the key blocks it visits, plus one.
int64_t attention_qblock_cost(const AttnPlan& p, int64_t item);

void attention_fwd_items_scalar(const AttnPlan&, int64_t, int64_t, float*);
void attention_fwd_items_avx2(const AttnPlan&, int64_t, int64_t, float*);
void attention_fwd_items_avx512(const AttnPlan&, int64_t, int64_t, float*);
void attention_bwd_dkdv_items_scalar(const AttnPlan&, int64_t, int64_t, float*);
void attention_bwd_dkdv_items_avx2(const AttnPlan&, int64_t, int64_t, float*);
void attention_bwd_dkdv_items_avx512(const AttnPlan&, int64_t, int64_t, float*);
void attention_bwd_dq_items_scalar(const AttnPlan&, int64_t, int64_t, float*);
void attention_bwd_dq_items_avx2(const AttnPlan&, int64_t, int64_t, float*);
void attention_bwd_dq_items_avx512(const AttnPlan&, int64_t, int64_t, float*);

}  // namespace ath::cpu

namespace {

using ath::cpu::AttnPlan;

constexpr float kLog2e = 1.44269504088896340736f;
constexpr float kLn2 = 0.693147180559945309417f;

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t rup(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Register blocking per ISA: RI rows by RJ vectors of accumulators.
template <class V> struct Blocking { static constexpr int RI = 4, RJ = 4; };
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
template <> struct Blocking<VAvx2> { static constexpr int RI = 6, RJ = 2; };
#endif
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
template <> struct Blocking<VAvx512> { static constexpr int RI = 6, RJ = 4; };
#endif

// Microkernel: C (MI, NV*W) [+]= A (MI, K) * B (K, NV*W); A(i, k) = A[i*a_ri + k*a_ck].
template <class V, int MI, int NV, bool ACC>
void micro(int64_t K, const float* A, int64_t a_ri, int64_t a_ck, const float* B, int64_t ldb, float* C,
           int64_t ldc) {
  using R = typename V::R;
  constexpr int W = V::W;
  R acc[MI][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MI; ++r)
#pragma GCC unroll 8
    for (int c = 0; c < NV; ++c) acc[r][c] = ACC ? V::load(C + r * ldc + c * W) : V::zero();
  const float* a = A;
  for (int64_t k = 0; k < K; ++k) {
    R b[NV];
#pragma GCC unroll 8
    for (int c = 0; c < NV; ++c) b[c] = V::load(B + c * W);
#pragma GCC unroll 8
    for (int r = 0; r < MI; ++r) {
      const R av = V::set1(a[r * a_ri]);
#pragma GCC unroll 8
      for (int c = 0; c < NV; ++c) acc[r][c] = V::fma(av, b[c], acc[r][c]);
    }
    a += a_ck;
    B += ldb;
  }
#pragma GCC unroll 8
  for (int r = 0; r < MI; ++r)
#pragma GCC unroll 8
    for (int c = 0; c < NV; ++c) V::store(C + r * ldc + c * W, acc[r][c]);
}

template <class V, bool ACC>
using MicroFn = void (*)(int64_t, const float*, int64_t, int64_t, const float*, int64_t, float*, int64_t);

// Table of microkernels [mi - 1][nv - 1] built at compile time.
template <class V, bool ACC>
struct MicroTable {
  static constexpr int RI = Blocking<V>::RI, RJ = Blocking<V>::RJ;
  MicroFn<V, ACC> fn[RI][RJ];
  template <int MI, int NV>
  void fill_one() {
    fn[MI - 1][NV - 1] = &micro<V, MI, NV, ACC>;
    if constexpr (NV < RJ) fill_one<MI, NV + 1>();
    else if constexpr (MI < RI) fill_one<MI + 1, 1>();
  }
  MicroTable() { fill_one<1, 1>(); }
};

// C (M, N) [+]= A (M, K) * B (K, N); N a multiple of W; A(i, k) = A[i*a_ri + k*a_ck].
template <class V, bool ACC>
void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t a_ri, int64_t a_ck, const float* B,
          int64_t ldb, float* C, int64_t ldc) {
  constexpr int W = V::W, RI = Blocking<V>::RI, RJ = Blocking<V>::RJ;
  static const MicroTable<V, ACC> table;
  for (int64_t n0 = 0; n0 < N; n0 += RJ * W) {
    const int nv = static_cast<int>(imin(RJ, (N - n0) / W));
    for (int64_t i0 = 0; i0 < M; i0 += RI) {
      const int mi = static_cast<int>(imin(RI, M - i0));
      table.fn[mi - 1][nv - 1](K, A + i0 * a_ri, a_ri, a_ck, B + n0, ldb, C + i0 * ldc + n0, ldc);
    }
  }
}

inline const char* elem_ptr(const void* base, int dtype, int64_t offset) {
  return static_cast<const char*>(base) + offset * (dtype == kDtF32 ? 4 : 2);
}
inline char* elem_ptr(void* base, int dtype, int64_t offset) {
  return static_cast<char*>(base) + offset * (dtype == kDtF32 ? 4 : 2);
}

// dst (rows, ld) = rows of src (row stride `st` elements), converted; columns [D, ld) zeroed.
template <class V>
void load_rows(const void* src, int dtype, int64_t st, int64_t rows, int64_t D, float* dst, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) {
    V::cvt_in(elem_ptr(src, dtype, r * st), dtype, D, dst + r * ld);
    for (int64_t d = D; d < ld; ++d) dst[r * ld + d] = 0.0f;
  }
}

// dst (D, ld) = transpose of `rows` rows of src (row stride st), times `mul`; columns [rows, ld) zeroed.
template <class V>
void load_rows_transposed(const void* src, int dtype, int64_t st, int64_t rows, int64_t D, float mul, float* dst,
                          int64_t ld, float* row) {
  for (int64_t r = 0; r < rows; ++r) {
    V::cvt_in(elem_ptr(src, dtype, r * st), dtype, D, row);
    for (int64_t d = 0; d < D; ++d) dst[d * ld + r] = row[d] * mul;
  }
  for (int64_t d = 0; d < D; ++d)
    for (int64_t r = rows; r < ld; ++r) dst[d * ld + r] = 0.0f;
}

// In a (keys, queries) tile S^T whose key 0 is k0 and query 0 is q0: scores of pairs the causal
// mask hides (key j > query i + off) become -inf.
inline void mask_causal_kq(float* S, int64_t ld, int64_t nk, int64_t nqcols, int64_t k0, int64_t q0, int64_t off) {
  for (int64_t jj = 0; jj < nk; ++jj) {
    const int64_t lim = imin(k0 + jj - off - q0, nqcols);  // queries ii < lim cannot see key jj
    for (int64_t ii = 0; ii < lim; ++ii) S[jj * ld + ii] = kNegInf;
  }
}

template <class V>
void attn_fwd_items(const AttnPlan& p, int64_t it0, int64_t it1, float* ws) {
  using R = typename V::R;
  constexpr int W = V::W;
  const int64_t D = p.d, Dp = rup(D, W), Bq = p.bq, Bk = p.bk;
  const int dt = p.dtype;
  const bool f32 = dt == kDtF32, v_direct = f32 && D % W == 0;
  float* QT = ws;            // (D, Bq) queries transposed, times scale*log2(e)
  float* Kc = QT + D * Bq;   // (Bk, D) converted keys (A operand)
  float* Vc = Kc + Bk * D;   // (Bk, Dp) converted values (B operand)
  float* S = Vc + Bk * Dp;   // (Bk, Bq) scores, then probabilities, keys by queries
  float* O = S + Bk * Bq;    // (Bq, Dp) unnormalised output accumulator
  float* m = O + Bq * Dp;    // (Bq) running max of the base-2 scores
  float* l = m + Bq;         // (Bq) running sum of exp2(score - m)
  float* al = l + Bq;        // (Bq) per-tile rescale factors
  float* row = al + Bq;      // (Dp) conversion scratch
  const int64_t nqb = (p.tq + Bq - 1) / Bq;
  for (int64_t it = it0; it < it1; ++it) {
    const int64_t b = it / (p.hq * nqb), h = (it / nqb) % p.hq, q0 = (it % nqb) * Bq;
    const int64_t kvh = h / p.group, nq = imin(Bq, p.tq - q0);
    const void* qb = elem_ptr(p.q, dt, b * p.q_sb + h * p.q_sh + q0 * p.q_st);
    const void* kb = elem_ptr(p.k, dt, b * p.k_sb + kvh * p.k_sh);
    const void* vb = elem_ptr(p.v, dt, b * p.v_sb + kvh * p.v_sh);
    const int64_t kend = p.causal ? imax(0, imin(p.tk, q0 + nq + p.off)) : p.tk;

    load_rows_transposed<V>(qb, dt, p.q_st, nq, D, p.c, QT, Bq, row);
    for (int64_t i = 0; i < Bq; ++i) { m[i] = kNegInf; l[i] = 0.0f; }
    std::memset(O, 0, static_cast<size_t>(Bq * Dp) * sizeof(float));

    for (int64_t k0 = 0; k0 < kend; k0 += Bk) {
      const int64_t nk = imin(Bk, kend - k0);
      const float* A;
      int64_t lda;
      if (f32) {
        A = reinterpret_cast<const float*>(elem_ptr(kb, dt, k0 * p.k_st));
        lda = p.k_st;
      } else {
        load_rows<V>(elem_ptr(kb, dt, k0 * p.k_st), dt, p.k_st, nk, D, Kc, D);
        A = Kc;
        lda = D;
      }
      const float* Vt;
      int64_t ldv;
      if (v_direct) {
        Vt = reinterpret_cast<const float*>(elem_ptr(vb, dt, k0 * p.v_st));
        ldv = p.v_st;
      } else {
        load_rows<V>(elem_ptr(vb, dt, k0 * p.v_st), dt, p.v_st, nk, D, Vc, Dp);
        Vt = Vc;
        ldv = Dp;
      }
      gemm<V, false>(nk, Bq, D, A, lda, 1, QT, Bq, S, Bq);  // S^T = K Q^T
      if (p.causal && k0 + nk - 1 > q0 + p.off) mask_causal_kq(S, Bq, nk, Bq, k0, q0, p.off);

      for (int64_t c0 = 0; c0 < Bq; c0 += W) {
        const R mold = V::load(m + c0);
        R mx = mold;
        for (int64_t jj = 0; jj < nk; ++jj) mx = V::max(mx, V::load(S + jj * Bq + c0));
        const R ms = V::neginf_to_zero(mx);
        const R a = V::exp2(V::sub(mold, ms));
        R sum = V::zero();
        for (int64_t jj = 0; jj < nk; ++jj) {
          const R e = V::exp2(V::sub(V::load(S + jj * Bq + c0), ms));
          V::store(S + jj * Bq + c0, e);
          sum = V::add(sum, e);
        }
        V::store(l + c0, V::fma(V::load(l + c0), a, sum));
        V::store(m + c0, mx);
        V::store(al + c0, a);
      }
      for (int64_t ii = 0; ii < nq; ++ii) {
        if (al[ii] == 1.0f) continue;
        const R a = V::set1(al[ii]);
        for (int64_t d = 0; d < Dp; d += W) V::store(O + ii * Dp + d, V::mul(V::load(O + ii * Dp + d), a));
      }
      gemm<V, true>(nq, Dp, nk, S, 1, Bq, Vt, ldv, O, Dp);  // O += P V
    }

    for (int64_t ii = 0; ii < nq; ++ii) {
      float lse;
      if (l[ii] > 0.0f) {
        const R inv = V::set1(1.0f / l[ii]);
        for (int64_t d = 0; d < Dp; d += W) V::store(row + d, V::mul(V::load(O + ii * Dp + d), inv));
        lse = (m[ii] + __builtin_log2f(l[ii])) * kLn2;
      } else {
        for (int64_t d = 0; d < Dp; ++d) row[d] = 0.0f;
        lse = kNegInf;
      }
      V::cvt_out(row, dt, D, elem_ptr(p.o, dt, b * p.o_sb + h * p.o_sh + (q0 + ii) * p.o_st));
      if (p.lse != nullptr) p.lse[(b * p.hq + h) * p.tq + q0 + ii] = lse;
    }
  }
}

// lse (natural units) -> base-2 row offset; -inf (a row that saw no key) -> +inf so P = 0.
inline float lse_to_base2(float lse) { return lse == kNegInf ? __builtin_inff() : lse * kLog2e; }

template <class V>
void attn_bwd_dkdv_items(const AttnPlan& p, int64_t it0, int64_t it1, float* ws) {
  using R = typename V::R;
  constexpr int W = V::W;
  const int64_t D = p.d, Dp = rup(D, W), Bq = p.bq, Bk = p.bk;
  const int dt = p.dtype;
  const bool direct = dt == kDtF32 && D % W == 0;
  float* KT = ws;             // (D, Bk) keys transposed, times scale*log2(e)
  float* VT = KT + D * Bk;    // (D, Bk) values transposed
  float* Qc = VT + D * Bk;    // (Bq, Dp) converted queries
  float* dOc = Qc + Bq * Dp;  // (Bq, Dp) converted output gradients
  float* P = dOc + Bq * Dp;   // (Bq, Bk) probabilities
  float* dP = P + Bq * Bk;    // (Bq, Bk) dP, then dS
  float* dK = dP + Bq * Bk;   // (Bk, Dp)
  float* dV = dK + Bk * Dp;   // (Bk, Dp)
  float* row = dV + Bk * Dp;  // (Dp)
  const int64_t nkb = (p.tk + Bk - 1) / Bk;
  for (int64_t it = it0; it < it1; ++it) {
    const int64_t b = it / (p.hkv * nkb), kvh = (it / nkb) % p.hkv, k0 = (it % nkb) * Bk;
    const int64_t nk = imin(Bk, p.tk - k0);
    const void* kb = elem_ptr(p.k, dt, b * p.k_sb + kvh * p.k_sh + k0 * p.k_st);
    const void* vb = elem_ptr(p.v, dt, b * p.v_sb + kvh * p.v_sh + k0 * p.v_st);
    load_rows_transposed<V>(kb, dt, p.k_st, nk, D, p.c, KT, Bk, row);
    load_rows_transposed<V>(vb, dt, p.v_st, nk, D, 1.0f, VT, Bk, row);
    std::memset(dK, 0, static_cast<size_t>(Bk * Dp) * sizeof(float));
    std::memset(dV, 0, static_cast<size_t>(Bk * Dp) * sizeof(float));
    // The first query that sees key k0 is k0 - off (causal); earlier query blocks are skipped.
    const int64_t qstart = p.causal ? imax(0, k0 - p.off) : 0;
    for (int64_t g = 0; g < p.group && qstart < p.tq; ++g) {
      const int64_t h = kvh * p.group + g;
      const float* lse = p.lse + (b * p.hq + h) * p.tq;
      const float* di = p.di + (b * p.hq + h) * p.tq;
      for (int64_t q0 = qstart / Bq * Bq; q0 < p.tq; q0 += Bq) {
        const int64_t nq = imin(Bq, p.tq - q0);
        const void* qsrc = elem_ptr(p.q, dt, b * p.q_sb + h * p.q_sh + q0 * p.q_st);
        const void* dosrc = elem_ptr(p.dout, dt, b * p.o_sb + h * p.o_sh + q0 * p.o_st);
        const float *Q, *dO;
        int64_t ldq, lddo;
        if (direct) {
          Q = static_cast<const float*>(qsrc);
          ldq = p.q_st;
          dO = static_cast<const float*>(dosrc);
          lddo = p.o_st;
        } else {
          load_rows<V>(qsrc, dt, p.q_st, nq, D, Qc, Dp);
          load_rows<V>(dosrc, dt, p.o_st, nq, D, dOc, Dp);
          Q = Qc;
          ldq = Dp;
          dO = dOc;
          lddo = Dp;
        }
        gemm<V, false>(nq, Bk, D, Q, ldq, 1, KT, Bk, P, Bk);  // S = Q K^T (base 2)
        for (int64_t ii = 0; ii < nq; ++ii) {
          const R L = V::set1(lse_to_base2(lse[q0 + ii]));
          float* pr = P + ii * Bk;
          for (int64_t jj = 0; jj < Bk; jj += W) V::store(pr + jj, V::exp2(V::sub(V::load(pr + jj), L)));
          // keys jj >= visible are hidden (causal) or padding
          const int64_t visible = p.causal ? imax(0, imin(nk, q0 + ii + p.off - k0 + 1)) : nk;
          for (int64_t jj = visible; jj < Bk; ++jj) pr[jj] = 0.0f;
        }
        gemm<V, true>(nk, Dp, nq, P, 1, Bk, dO, lddo, dV, Dp);      // dV += P^T dO
        gemm<V, false>(nq, Bk, D, dO, lddo, 1, VT, Bk, dP, Bk);     // dP = dO V^T
        for (int64_t ii = 0; ii < nq; ++ii) {
          const R dd = V::set1(di[q0 + ii]);
          float* pr = P + ii * Bk;
          float* dr = dP + ii * Bk;
          for (int64_t jj = 0; jj < Bk; jj += W)
            V::store(dr + jj, V::mul(V::load(pr + jj), V::sub(V::load(dr + jj), dd)));
        }
        gemm<V, true>(nk, Dp, nq, dP, 1, Bk, Q, ldq, dK, Dp);       // dK += dS^T Q
      }
    }
    const R sc = V::set1(p.scale);
    for (int64_t jj = 0; jj < nk; ++jj) {
      for (int64_t d = 0; d < Dp; d += W) V::store(row + d, V::mul(V::load(dK + jj * Dp + d), sc));
      V::cvt_out(row, dt, D, elem_ptr(p.dk, dt, b * p.k_sb + kvh * p.k_sh + (k0 + jj) * p.k_st));
      V::cvt_out(dV + jj * Dp, dt, D, elem_ptr(p.dv, dt, b * p.v_sb + kvh * p.v_sh + (k0 + jj) * p.v_st));
    }
  }
}

template <class V>
void attn_bwd_dq_items(const AttnPlan& p, int64_t it0, int64_t it1, float* ws) {
  using R = typename V::R;
  constexpr int W = V::W;
  const int64_t D = p.d, Dp = rup(D, W), Bq = p.bq, Bk = p.bk;
  const int dt = p.dtype;
  const bool f32 = dt == kDtF32, k_direct = f32 && D % W == 0;
  float* QT = ws;             // (D, Bq) queries transposed, times scale*log2(e)
  float* dOT = QT + D * Bq;   // (D, Bq) output gradients transposed
  float* Kc = dOT + D * Bq;   // (Bk, Dp) converted keys (A and B operand)
  float* Vc = Kc + Bk * Dp;   // (Bk, D) converted values (A operand)
  float* S = Vc + Bk * D;     // (Bk, Bq) scores, then P^T
  float* dP = S + Bk * Bq;    // (Bk, Bq) dP^T, then dS^T
  float* dQ = dP + Bk * Bq;   // (Bq, Dp)
  float* L2 = dQ + Bq * Dp;   // (Bq) lse in base 2
  float* Di = L2 + Bq;        // (Bq)
  float* row = Di + Bq;       // (Dp)
  const int64_t nqb = (p.tq + Bq - 1) / Bq;
  for (int64_t it = it0; it < it1; ++it) {
    const int64_t b = it / (p.hq * nqb), h = (it / nqb) % p.hq, q0 = (it % nqb) * Bq;
    const int64_t kvh = h / p.group, nq = imin(Bq, p.tq - q0);
    const void* kb = elem_ptr(p.k, dt, b * p.k_sb + kvh * p.k_sh);
    const void* vb = elem_ptr(p.v, dt, b * p.v_sb + kvh * p.v_sh);
    const int64_t kend = p.causal ? imax(0, imin(p.tk, q0 + nq + p.off)) : p.tk;
    load_rows_transposed<V>(elem_ptr(p.q, dt, b * p.q_sb + h * p.q_sh + q0 * p.q_st), dt, p.q_st, nq, D, p.c, QT,
                            Bq, row);
    load_rows_transposed<V>(elem_ptr(p.dout, dt, b * p.o_sb + h * p.o_sh + q0 * p.o_st), dt, p.o_st, nq, D, 1.0f,
                            dOT, Bq, row);
    const float* lse = p.lse + (b * p.hq + h) * p.tq + q0;
    const float* di = p.di + (b * p.hq + h) * p.tq + q0;
    for (int64_t ii = 0; ii < Bq; ++ii) {
      L2[ii] = ii < nq ? lse_to_base2(lse[ii]) : __builtin_inff();
      Di[ii] = ii < nq ? di[ii] : 0.0f;
    }
    std::memset(dQ, 0, static_cast<size_t>(Bq * Dp) * sizeof(float));
    for (int64_t k0 = 0; k0 < kend; k0 += Bk) {
      const int64_t nk = imin(Bk, kend - k0);
      const float *Kt, *Vt;
      int64_t ldk, ldv;
      if (k_direct) {
        Kt = reinterpret_cast<const float*>(elem_ptr(kb, dt, k0 * p.k_st));
        ldk = p.k_st;
      } else {
        load_rows<V>(elem_ptr(kb, dt, k0 * p.k_st), dt, p.k_st, nk, D, Kc, Dp);
        Kt = Kc;
        ldk = Dp;
      }
      if (f32) {
        Vt = reinterpret_cast<const float*>(elem_ptr(vb, dt, k0 * p.v_st));
        ldv = p.v_st;
      } else {
        load_rows<V>(elem_ptr(vb, dt, k0 * p.v_st), dt, p.v_st, nk, D, Vc, D);
        Vt = Vc;
        ldv = D;
      }
      gemm<V, false>(nk, Bq, D, Kt, ldk, 1, QT, Bq, S, Bq);   // S^T = K Q^T (base 2)
      if (p.causal && k0 + nk - 1 > q0 + p.off) mask_causal_kq(S, Bq, nk, Bq, k0, q0, p.off);
      gemm<V, false>(nk, Bq, D, Vt, ldv, 1, dOT, Bq, dP, Bq);  // dP^T = V dO^T
      for (int64_t jj = 0; jj < nk; ++jj) {
        float* sr = S + jj * Bq;
        float* dr = dP + jj * Bq;
        for (int64_t c0 = 0; c0 < Bq; c0 += W) {
          const R pv = V::exp2(V::sub(V::load(sr + c0), V::load(L2 + c0)));
          V::store(dr + c0, V::mul(pv, V::sub(V::load(dr + c0), V::load(Di + c0))));
        }
      }
      gemm<V, true>(nq, Dp, nk, dP, 1, Bq, Kt, ldk, dQ, Dp);  // dQ += dS K
    }
    const R sc = V::set1(p.scale);
    for (int64_t ii = 0; ii < nq; ++ii) {
      for (int64_t d = 0; d < Dp; d += W) V::store(row + d, V::mul(V::load(dQ + ii * Dp + d), sc));
      V::cvt_out(row, dt, D, elem_ptr(p.dq, dt, b * p.q_sb + h * p.q_sh + (q0 + ii) * p.q_st));
    }
  }
}

}  // namespace

// Define the exported item functions of one ISA, e.g. ATH_DEFINE_ATTENTION_FWD_ITEMS(avx512, VAvx512).
#define ATH_DEFINE_ATTENTION_FWD_ITEMS(suffix, Vec)                                                    \
  namespace ath::cpu {                                                                                 \
  void attention_fwd_items_##suffix(const AttnPlan& p, int64_t b, int64_t e, float* ws) {              \
    attn_fwd_items<Vec>(p, b, e, ws);                                                                  \
  }                                                                                                    \
  }
#define ATH_DEFINE_ATTENTION_BWD_ITEMS(suffix, Vec)                                                    \
  namespace ath::cpu {                                                                                 \
  void attention_bwd_dkdv_items_##suffix(const AttnPlan& p, int64_t b, int64_t e, float* ws) {         \
    attn_bwd_dkdv_items<Vec>(p, b, e, ws);                                                             \
  }                                                                                                    \
  void attention_bwd_dq_items_##suffix(const AttnPlan& p, int64_t b, int64_t e, float* ws) {           \
    attn_bwd_dq_items<Vec>(p, b, e, ws);                                                               \
  }                                                                                                    \
  }
