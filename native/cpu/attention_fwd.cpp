// ath_cpu_attention_fwd: scaled dot-product attention, FlashAttention style, on the CPU.
//   o (B, Hq, Tq, D) = softmax(scale * q k^T [+ causal mask]) v,   lse (B, Hq, Tq) F32
// q, o: (B, Hq, Tq, D) and k, v: (B, Hkv, Tk, D), each addressed by (sb, sh, st) element strides with
// the last dimension contiguous; query head h reads kv head h / (Hq / Hkv). Causal masking is
// bottom-right aligned (query i sees key j iff j <= i + Tk - Tq); a query that sees no key gets
// o = 0 and lse = -inf. D in [1, 256]; dtype F32, BF16 or F16 (computed in F32, rounded once).
//
// Work is split statically over (batch, head, query block) items in contiguous ranges of about
// equal cost (causal blocks cost less); the kernels (attention_impl.h) walk key blocks with an
// online softmax and never form the (Tq, Tk) score matrix. This file also holds the argument
// validation and the pool runner shared with the backward pass, and the scalar instantiation.
#include <cmath>
#include <utility>
#include <vector>

#include "attention_impl.h"
#include "cpu_common.h"

ATH_DEFINE_ATTENTION_FWD_ITEMS(scalar, VScalar)

namespace ath::cpu {
namespace {

constexpr int64_t kBlockQ = 64, kBlockK = 64;
constexpr int64_t kMaxHeadDim = 256;

}  // namespace

int64_t attention_qblock_cost(const AttnPlan& p, int64_t item) {
  const int64_t nqb = attn_num_qblocks(p), q0 = (item % nqb) * p.bq;
  const int64_t nq = std::min(p.bq, p.tq - q0);
  const int64_t kend = p.causal ? std::max<int64_t>(0, std::min(p.tk, q0 + nq + p.off)) : p.tk;
  return (kend + p.bk - 1) / p.bk + 1;
}

ath_status attention_plan(const ath_attention_args* a, int backward, const char* op, AttnPlan* p) {
  if (a == nullptr) return fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->batch < 0 || a->tq < 0 || a->tk < 0)
    return fail(ATH_ERR_INVALID, "%s: batch=%lld, tq=%lld, tk=%lld must all be >= 0", op, (long long)a->batch,
                (long long)a->tq, (long long)a->tk);
  if (a->heads_q < 1 || a->heads_kv < 1)
    return fail(ATH_ERR_INVALID, "%s: heads_q=%lld and heads_kv=%lld must be >= 1", op, (long long)a->heads_q,
                (long long)a->heads_kv);
  if (a->heads_q % a->heads_kv != 0)
    return fail(ATH_ERR_INVALID, "%s: heads_q=%lld must be a multiple of heads_kv=%lld", op, (long long)a->heads_q,
                (long long)a->heads_kv);
  if (a->head_dim < 1 || a->head_dim > kMaxHeadDim)
    return fail(ATH_ERR_INVALID, "%s: head_dim=%lld must be in [1, %lld] on the CPU", op, (long long)a->head_dim,
                (long long)kMaxHeadDim);
  if (!is_float_dtype(a->dtype))
    return fail(ATH_ERR_INVALID, "%s: dtype=%d (%s) must be F32, BF16 or F16", op, a->dtype, dtype_name(a->dtype));
  if (!std::isfinite(a->scale)) return fail(ATH_ERR_INVALID, "%s: scale=%g must be finite", op, (double)a->scale);
  if (a->q == nullptr || a->k == nullptr || a->v == nullptr || a->o == nullptr)
    return fail(ATH_ERR_INVALID, "%s: q=%p, k=%p, v=%p and o=%p must be non-null", op, a->q, a->k, a->v, a->o);
  if (backward && (a->lse == nullptr || a->dout == nullptr || a->dq == nullptr || a->dk == nullptr || a->dv == nullptr))
    return fail(ATH_ERR_INVALID, "%s: lse=%p, dout=%p, dq=%p, dk=%p and dv=%p must be non-null", op,
                static_cast<const void*>(a->lse), a->dout, a->dq, a->dk, a->dv);
  const int64_t strides[12] = {a->q_sb, a->q_sh, a->q_st, a->k_sb, a->k_sh, a->k_st,
                               a->v_sb, a->v_sh, a->v_st, a->o_sb, a->o_sh, a->o_st};
  const char* names[12] = {"q_sb", "q_sh", "q_st", "k_sb", "k_sh", "k_st", "v_sb", "v_sh", "v_st", "o_sb", "o_sh", "o_st"};
  for (int i = 0; i < 12; ++i)
    if (strides[i] < 0)
      return fail(ATH_ERR_INVALID, "%s: %s=%lld must be >= 0", op, names[i], (long long)strides[i]);
  const int64_t D = a->head_dim;
  // Written tensors must not have overlapping rows (forward: o; backward: dq, dk, dv, which use
  // the strides of q, k, v).
  if (!rows_disjoint(D, a->batch, a->o_sb, a->heads_q, a->o_sh, a->tq, a->o_st) && !backward)
    return fail(ATH_ERR_INVALID, "%s: o strides (sb=%lld, sh=%lld, st=%lld) make rows of %lld elements overlap", op,
                (long long)a->o_sb, (long long)a->o_sh, (long long)a->o_st, (long long)D);
  if (backward) {
    if (!rows_disjoint(D, a->batch, a->q_sb, a->heads_q, a->q_sh, a->tq, a->q_st))
      return fail(ATH_ERR_INVALID, "%s: q/dq strides (sb=%lld, sh=%lld, st=%lld) make rows of %lld elements overlap", op,
                  (long long)a->q_sb, (long long)a->q_sh, (long long)a->q_st, (long long)D);
    if (!rows_disjoint(D, a->batch, a->k_sb, a->heads_kv, a->k_sh, a->tk, a->k_st))
      return fail(ATH_ERR_INVALID, "%s: k/dk strides (sb=%lld, sh=%lld, st=%lld) make rows of %lld elements overlap", op,
                  (long long)a->k_sb, (long long)a->k_sh, (long long)a->k_st, (long long)D);
    if (!rows_disjoint(D, a->batch, a->v_sb, a->heads_kv, a->v_sh, a->tk, a->v_st))
      return fail(ATH_ERR_INVALID, "%s: v/dv strides (sb=%lld, sh=%lld, st=%lld) make rows of %lld elements overlap", op,
                  (long long)a->v_sb, (long long)a->v_sh, (long long)a->v_st, (long long)D);
  }
  AttnPlan& pl = *p;
  pl = AttnPlan{};
  pl.batch = a->batch;
  pl.hq = a->heads_q;
  pl.hkv = a->heads_kv;
  pl.group = a->heads_q / a->heads_kv;
  pl.tq = a->tq;
  pl.tk = a->tk;
  pl.d = D;
  pl.off = a->tk - a->tq;
  pl.dtype = a->dtype;
  pl.causal = a->causal != 0;
  pl.scale = a->scale;
  pl.c = a->scale * 1.44269504088896340736f;
  pl.bq = kBlockQ;
  pl.bk = kBlockK;
  pl.q = a->q; pl.q_sb = a->q_sb; pl.q_sh = a->q_sh; pl.q_st = a->q_st;
  pl.k = a->k; pl.k_sb = a->k_sb; pl.k_sh = a->k_sh; pl.k_st = a->k_st;
  pl.v = a->v; pl.v_sb = a->v_sb; pl.v_sh = a->v_sh; pl.v_st = a->v_st;
  pl.o = a->o; pl.o_sb = a->o_sb; pl.o_sh = a->o_sh; pl.o_st = a->o_st;
  pl.lse = a->lse;
  pl.dout = a->dout;
  pl.dq = a->dq;
  pl.dk = a->dk;
  pl.dv = a->dv;
  return ATH_OK;
}

void attention_run(const AttnPlan& p, int64_t n, AttnCostFn cost, AttnItemsFn fn) {
  if (n <= 0) return;
  const int parts = static_cast<int>(std::min<int64_t>(num_threads(), n));
  const int64_t wsz = round_up(attn_workspace_floats(p), 16);
  float* base = thread_scratch(0, wsz * parts);  // every workspace element is written before it is read
  if (parts == 1) {
    fn(p, 0, n, base);
    return;
  }
  std::vector<int64_t> costs(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) costs[static_cast<size_t>(i)] = cost(p, i);
  const std::vector<int64_t> bounds = balanced_bounds(costs, parts);
  // Each range is one part; a part's results do not depend on which thread runs it.
  run_on_all([&](int tid, int nthreads) {
    for (int part = tid; part < parts; part += nthreads)
      if (bounds[part] < bounds[part + 1]) fn(p, bounds[part], bounds[part + 1], base + part * wsz);
  });
}

}  // namespace ath::cpu

extern "C" ath_status ath_cpu_attention_fwd(const ath_attention_args* a) {
  static const char* kOp = "ath_cpu_attention_fwd";
  ATH_GUARD_BEGIN
  using namespace ath::cpu;
  AttnPlan p;
  ATH_TRY(attention_plan(a, 0, kOp, &p));
  AttnItemsFn fn = attention_fwd_items_scalar;
  switch (active_isa()) {
    case Isa::kAvx512: fn = attention_fwd_items_avx512; break;
    case Isa::kAvx2: fn = attention_fwd_items_avx2; break;
    default: break;
  }
  attention_run(p, p.batch * p.hq * attn_num_qblocks(p), attention_qblock_cost, fn);
  return ATH_OK;
  ATH_GUARD_END(kOp)
}
