// ath_cpu_attention_bwd: gradients of ath_cpu_attention_fwd on the CPU.
// Inputs q, k, v, o, dout (o's strides), lse (B, Hq, Tq) F32 from the forward pass; writes
// dq (q's strides), dk (k's strides), dv (v's strides), all of the activation dtype.
//   D_i = rowsum(dout_i * o_i),  P = exp(scale q k^T - lse) (masked entries 0),
//   dv = P^T dout,  dS = P * (dout v^T - D_i),  dq = scale dS k,  dk = scale dS^T q.
// With grouped-query attention dk and dv sum over the Hq / Hkv query heads of each kv head.
//
// Three passes, each statically partitioned and each output element produced by exactly one
// thread in a fixed order, so the result is bit-identical run to run for any thread count:
//   0. D_i for every query row (B, Hq, Tq) into an F32 scratch buffer;
//   1. dk, dv over (batch, kv head, key block) items (recomputing P for every query head of the group);
//   2. dq over (batch, query head, query block) items (recomputing P and dP).
// Passes 1 and 2 recompute the scores independently (7 small GEMMs per tile pair instead of 5)
// in exchange for needing no atomics and no per-thread dq copies.
#include <algorithm>
#include <vector>

#include "attention_impl.h"
#include "cpu_common.h"

ATH_DEFINE_ATTENTION_BWD_ITEMS(scalar, VScalar)

namespace ath::cpu {
namespace {

int64_t kblock_cost(const AttnPlan& p, int64_t item) {
  const int64_t nkb = attn_num_kblocks(p), k0 = (item % nkb) * p.bk;
  const int64_t qstart = p.causal ? std::max<int64_t>(0, k0 - p.off) : 0;
  const int64_t nqb = qstart >= p.tq ? 0 : (p.tq - qstart / p.bq * p.bq + p.bq - 1) / p.bq;
  return nqb * p.group + 1;
}

// di (B, Hq, Tq) = rowsum(dout * o) in F32 (8 partial sums per row, fixed order).
void compute_di(const AttnPlan& p, float* di) {
  const int64_t rows = p.batch * p.hq * p.tq, D = p.d;
  const int nt = num_threads();
  FloatBuf scratch(2 * round_up(D, 16) * nt);
  float* base = scratch.get();
  parallel_for(rows, grain_for(4 * D, 16384), [&](int64_t r0, int64_t r1, int tid) {
    float* o = base + 2 * round_up(D, 16) * tid;
    float* g = o + round_up(D, 16);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / (p.hq * p.tq), h = (r / p.tq) % p.hq, t = r % p.tq;
      load_row(p.o, p.dtype, b * p.o_sb + h * p.o_sh + t * p.o_st, D, o);
      load_row(p.dout, p.dtype, b * p.o_sb + h * p.o_sh + t * p.o_st, D, g);
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t d = 0;
      for (; d + 8 <= D; d += 8)
        for (int j = 0; j < 8; ++j) acc[j] += o[d + j] * g[d + j];
      for (; d < D; ++d) acc[d & 7] += o[d] * g[d];
      di[r] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    }
  });
}

}  // namespace
}  // namespace ath::cpu

extern "C" ath_status ath_cpu_attention_bwd(const ath_attention_args* a) {
  static const char* kOp = "ath_cpu_attention_bwd";
  ATH_GUARD_BEGIN
  using namespace ath::cpu;
  AttnPlan p;
  ATH_TRY(attention_plan(a, 1, kOp, &p));
  AttnItemsFn dkdv = attention_bwd_dkdv_items_scalar, dq = attention_bwd_dq_items_scalar;
  switch (active_isa()) {
    case Isa::kAvx512: dkdv = attention_bwd_dkdv_items_avx512; dq = attention_bwd_dq_items_avx512; break;
    case Isa::kAvx2: dkdv = attention_bwd_dkdv_items_avx2; dq = attention_bwd_dq_items_avx2; break;
    default: break;
  }
  float* di = thread_scratch(1, p.batch * p.hq * p.tq);  // (B, Hq, Tq), fully written by compute_di
  compute_di(p, di);
  p.di = di;
  attention_run(p, p.batch * p.hkv * attn_num_kblocks(p), kblock_cost, dkdv);
  attention_run(p, p.batch * p.hq * attn_num_qblocks(p), attention_qblock_cost, dq);
  return ATH_OK;
  ATH_GUARD_END(kOp)
}
