// JNI glue for dev.athanor.runtime.NativeKernels: one static native per op of the C ABI, shared by
// both backends. Every native takes (int device, long stream, ...): device < 0 selects the CPU
// backend (ath_cpu_*, stream ignored); device >= 0 selects CUDA device `device` (made current on
// the calling thread) and enqueues ath_cuda_* on `stream` (0 = legacy default stream).
// Pointers arrive as Java longs holding native addresses (host for CPU, device for CUDA); 0 is NULL.
// The glue only copies arguments into the ath_*_args struct; all validation happens in the C ABI
// (and, before it, in dev.athanor.ops.Ops). A non-OK status becomes a pending NativeException.
#include <cstdint>

#include "jni_common.h"

namespace {

inline const void* cptr(jlong v) { return reinterpret_cast<const void*>(static_cast<intptr_t>(v)); }
inline void* mptr(jlong v) { return reinterpret_cast<void*>(static_cast<intptr_t>(v)); }
inline const ath_cuda_ctx* ctxptr(jlong v) { return reinterpret_cast<const ath_cuda_ctx*>(static_cast<intptr_t>(v)); }

// Runs the CPU or the CUDA entry point of one op and throws on a non-OK status.
template <typename Args>
void dispatch(JNIEnv* env, jint device, jlong stream, const Args& args,
              ath_status (*cpu)(const Args*), ath_status (*cuda)(const Args*, const ath_cuda_ctx*)) {
  ath_status st;
  if (device < 0) {
    st = cpu(&args);
  } else {
    st = ath_cuda_set_device(device);
    if (st == ATH_OK) st = cuda(&args, ctxptr(stream));  // TODO(runtime): the Java side passes an ath_cuda_ctx*
  }
  ath_jni::throw_status(env, st);
}

// ------------------------------------------------------------------ GEMM
void JNICALL gemm(JNIEnv* env, jclass, jint device, jlong stream, jlong m, jlong n, jlong k, jlong batch,
                  jint dtype_ab, jint dtype_c, jboolean trans_a, jboolean trans_b,
                  jlong a, jlong lda, jlong stride_a, jlong b, jlong ldb, jlong stride_b,
                  jlong c, jlong ldc, jlong stride_c, jlong bias, jfloat alpha, jfloat beta) {
  ath_gemm_args g{};
  g.m = m; g.n = n; g.k = k; g.batch = batch;
  g.dtype_ab = dtype_ab; g.dtype_c = dtype_c;
  g.trans_a = trans_a ? 1 : 0; g.trans_b = trans_b ? 1 : 0;
  g.a = cptr(a); g.lda = lda; g.stride_a = stride_a;
  g.b = cptr(b); g.ldb = ldb; g.stride_b = stride_b;
  g.c = mptr(c); g.ldc = ldc; g.stride_c = stride_c;
  g.bias = cptr(bias);
  g.alpha = alpha; g.beta = beta;
  dispatch(env, device, stream, g, ath_cpu_gemm, ath_cuda_gemm);
}

// ------------------------------------------------------------------ attention
ath_attention_args attention_args(jlong batch, jlong heads_q, jlong heads_kv, jlong tq, jlong tk, jlong head_dim,
                                  jint dtype, jboolean causal, jfloat scale,
                                  jlong q, jlong q_sb, jlong q_sh, jlong q_st,
                                  jlong k, jlong k_sb, jlong k_sh, jlong k_st,
                                  jlong v, jlong v_sb, jlong v_sh, jlong v_st,
                                  jlong o, jlong o_sb, jlong o_sh, jlong o_st, jlong lse) {
  ath_attention_args a{};
  a.batch = batch; a.heads_q = heads_q; a.heads_kv = heads_kv; a.tq = tq; a.tk = tk; a.head_dim = head_dim;
  a.dtype = dtype; a.causal = causal ? 1 : 0; a.scale = scale;
  a.q = cptr(q); a.q_sb = q_sb; a.q_sh = q_sh; a.q_st = q_st;
  a.k = cptr(k); a.k_sb = k_sb; a.k_sh = k_sh; a.k_st = k_st;
  a.v = cptr(v); a.v_sb = v_sb; a.v_sh = v_sh; a.v_st = v_st;
  a.o = mptr(o); a.o_sb = o_sb; a.o_sh = o_sh; a.o_st = o_st;
  a.lse = static_cast<float*>(mptr(lse));
  return a;
}

void JNICALL attentionForward(JNIEnv* env, jclass, jint device, jlong stream,
                              jlong batch, jlong heads_q, jlong heads_kv, jlong tq, jlong tk, jlong head_dim,
                              jint dtype, jboolean causal, jfloat scale,
                              jlong q, jlong q_sb, jlong q_sh, jlong q_st,
                              jlong k, jlong k_sb, jlong k_sh, jlong k_st,
                              jlong v, jlong v_sb, jlong v_sh, jlong v_st,
                              jlong o, jlong o_sb, jlong o_sh, jlong o_st, jlong lse) {
  ath_attention_args a = attention_args(batch, heads_q, heads_kv, tq, tk, head_dim, dtype, causal, scale,
                                        q, q_sb, q_sh, q_st, k, k_sb, k_sh, k_st, v, v_sb, v_sh, v_st,
                                        o, o_sb, o_sh, o_st, lse);
  dispatch(env, device, stream, a, ath_cpu_attention_fwd, ath_cuda_attention_fwd);
}

void JNICALL attentionBackward(JNIEnv* env, jclass, jint device, jlong stream,
                               jlong batch, jlong heads_q, jlong heads_kv, jlong tq, jlong tk, jlong head_dim,
                               jint dtype, jboolean causal, jfloat scale,
                               jlong q, jlong q_sb, jlong q_sh, jlong q_st,
                               jlong k, jlong k_sb, jlong k_sh, jlong k_st,
                               jlong v, jlong v_sb, jlong v_sh, jlong v_st,
                               jlong o, jlong o_sb, jlong o_sh, jlong o_st, jlong lse,
                               jlong dout, jlong dq, jlong dk, jlong dv) {
  ath_attention_args a = attention_args(batch, heads_q, heads_kv, tq, tk, head_dim, dtype, causal, scale,
                                        q, q_sb, q_sh, q_st, k, k_sb, k_sh, k_st, v, v_sb, v_sh, v_st,
                                        o, o_sb, o_sh, o_st, lse);
  a.dout = cptr(dout); a.dq = mptr(dq); a.dk = mptr(dk); a.dv = mptr(dv);
  dispatch(env, device, stream, a, ath_cpu_attention_bwd, ath_cuda_attention_bwd);
}

// ------------------------------------------------------------------ normalization
ath_norm_args norm_args(jlong rows, jlong cols, jint dtype, jfloat eps, jlong x, jlong weight, jlong bias,
                        jlong out, jlong mean, jlong rstd) {
  ath_norm_args a{};
  a.rows = rows; a.cols = cols; a.dtype = dtype; a.eps = eps;
  a.x = cptr(x); a.weight = cptr(weight); a.bias = cptr(bias);
  a.out = mptr(out); a.mean = static_cast<float*>(mptr(mean)); a.rstd = static_cast<float*>(mptr(rstd));
  return a;
}

void JNICALL layerNormForward(JNIEnv* env, jclass, jint device, jlong stream, jlong rows, jlong cols, jint dtype,
                              jfloat eps, jlong x, jlong weight, jlong bias, jlong out, jlong mean, jlong rstd) {
  ath_norm_args a = norm_args(rows, cols, dtype, eps, x, weight, bias, out, mean, rstd);
  dispatch(env, device, stream, a, ath_cpu_layernorm_fwd, ath_cuda_layernorm_fwd);
}

void JNICALL layerNormBackward(JNIEnv* env, jclass, jint device, jlong stream, jlong rows, jlong cols, jint dtype,
                               jfloat eps, jlong x, jlong weight, jlong mean, jlong rstd, jlong dout, jlong dx,
                               jlong dweight, jlong dbias) {
  ath_norm_args a = norm_args(rows, cols, dtype, eps, x, weight, 0, 0, mean, rstd);
  a.dout = cptr(dout); a.dx = mptr(dx);
  a.dweight = static_cast<float*>(mptr(dweight)); a.dbias = static_cast<float*>(mptr(dbias));
  dispatch(env, device, stream, a, ath_cpu_layernorm_bwd, ath_cuda_layernorm_bwd);
}

void JNICALL rmsNormForward(JNIEnv* env, jclass, jint device, jlong stream, jlong rows, jlong cols, jint dtype,
                            jfloat eps, jlong x, jlong weight, jlong out, jlong rstd) {
  ath_norm_args a = norm_args(rows, cols, dtype, eps, x, weight, 0, out, 0, rstd);
  dispatch(env, device, stream, a, ath_cpu_rmsnorm_fwd, ath_cuda_rmsnorm_fwd);
}

void JNICALL rmsNormBackward(JNIEnv* env, jclass, jint device, jlong stream, jlong rows, jlong cols, jint dtype,
                             jfloat eps, jlong x, jlong weight, jlong rstd, jlong dout, jlong dx, jlong dweight) {
  ath_norm_args a = norm_args(rows, cols, dtype, eps, x, weight, 0, 0, 0, rstd);
  a.dout = cptr(dout); a.dx = mptr(dx); a.dweight = static_cast<float*>(mptr(dweight));
  dispatch(env, device, stream, a, ath_cpu_rmsnorm_bwd, ath_cuda_rmsnorm_bwd);
}

// ------------------------------------------------------------------ activations
void JNICALL activationForward(JNIEnv* env, jclass, jint device, jlong stream, jlong n, jint dtype, jint act,
                               jlong x, jlong y, jlong out) {
  ath_activation_args a{};
  a.n = n; a.dtype = dtype; a.act = act;
  a.x = cptr(x); a.y = cptr(y); a.out = mptr(out);
  dispatch(env, device, stream, a, ath_cpu_activation_fwd, ath_cuda_activation_fwd);
}

void JNICALL activationBackward(JNIEnv* env, jclass, jint device, jlong stream, jlong n, jint dtype, jint act,
                                jlong x, jlong y, jlong dout, jlong dx, jlong dy) {
  ath_activation_args a{};
  a.n = n; a.dtype = dtype; a.act = act;
  a.x = cptr(x); a.y = cptr(y);
  a.dout = cptr(dout); a.dx = mptr(dx); a.dy = mptr(dy);
  dispatch(env, device, stream, a, ath_cpu_activation_bwd, ath_cuda_activation_bwd);
}

// ------------------------------------------------------------------ cross-entropy
void JNICALL crossEntropyForward(JNIEnv* env, jclass, jint device, jlong stream, jlong rows, jlong vocab, jlong ld,
                                 jint dtype, jlong logits, jlong targets, jlong losses, jlong lse) {
  ath_cross_entropy_args a{};
  a.rows = rows; a.vocab = vocab; a.ld = ld; a.dtype = dtype;
  a.logits = cptr(logits); a.targets = static_cast<const int32_t*>(cptr(targets));
  a.losses = static_cast<float*>(mptr(losses)); a.lse = static_cast<float*>(mptr(lse));
  dispatch(env, device, stream, a, ath_cpu_cross_entropy_fwd, ath_cuda_cross_entropy_fwd);
}

void JNICALL crossEntropyBackward(JNIEnv* env, jclass, jint device, jlong stream, jlong rows, jlong vocab, jlong ld,
                                  jint dtype, jlong logits, jlong targets, jlong lse, jlong dlosses, jlong dlogits) {
  ath_cross_entropy_args a{};
  a.rows = rows; a.vocab = vocab; a.ld = ld; a.dtype = dtype;
  a.logits = cptr(logits); a.targets = static_cast<const int32_t*>(cptr(targets));
  a.lse = static_cast<float*>(mptr(lse));
  a.dlosses = static_cast<const float*>(cptr(dlosses)); a.dlogits = mptr(dlogits);
  dispatch(env, device, stream, a, ath_cpu_cross_entropy_bwd, ath_cuda_cross_entropy_bwd);
}

// ------------------------------------------------------------------ embedding
void JNICALL embeddingForward(JNIEnv* env, jclass, jint device, jlong stream, jlong n, jlong vocab, jlong dim,
                              jint dtype, jlong ids, jlong table, jlong out) {
  ath_embedding_args a{};
  a.n = n; a.vocab = vocab; a.dim = dim; a.dtype = dtype;
  a.ids = static_cast<const int32_t*>(cptr(ids)); a.table = cptr(table); a.out = mptr(out);
  dispatch(env, device, stream, a, ath_cpu_embedding_fwd, ath_cuda_embedding_fwd);
}

void JNICALL embeddingBackward(JNIEnv* env, jclass, jint device, jlong stream, jlong n, jlong vocab, jlong dim,
                               jint dtype, jlong ids, jlong dout, jlong dtable) {
  ath_embedding_args a{};
  a.n = n; a.vocab = vocab; a.dim = dim; a.dtype = dtype;
  a.ids = static_cast<const int32_t*>(cptr(ids));
  a.dout = cptr(dout); a.dtable = static_cast<float*>(mptr(dtable));
  dispatch(env, device, stream, a, ath_cpu_embedding_bwd, ath_cuda_embedding_bwd);
}

// ------------------------------------------------------------------ rotary position embedding
void JNICALL rope(JNIEnv* env, jclass, jint device, jlong stream, jlong batch, jlong seq, jlong heads,
                  jlong head_dim, jint dtype, jboolean inverse, jlong pos0, jfloat theta, jlong x, jlong out,
                  jlong x_sb, jlong x_st, jlong x_sh) {
  ath_rope_args a{};
  a.batch = batch; a.seq = seq; a.heads = heads; a.head_dim = head_dim;
  a.dtype = dtype; a.inverse = inverse ? 1 : 0; a.pos0 = pos0; a.theta = theta;
  a.x = cptr(x); a.out = mptr(out);
  a.x_sb = x_sb; a.x_st = x_st; a.x_sh = x_sh;
  dispatch(env, device, stream, a, ath_cpu_rope, ath_cuda_rope);
}

// ------------------------------------------------------------------ elementwise, reductions
void JNICALL elementwise(JNIEnv* env, jclass, jint device, jlong stream, jlong n, jint op, jint dtype,
                         jint dtype_out, jlong a, jlong b, jlong out, jfloat alpha) {
  ath_elementwise_args e{};
  e.n = n; e.op = op; e.dtype = dtype; e.dtype_out = dtype_out;
  e.a = cptr(a); e.b = cptr(b); e.out = mptr(out); e.alpha = alpha;
  dispatch(env, device, stream, e, ath_cpu_elementwise, ath_cuda_elementwise);
}

void JNICALL reduce(JNIEnv* env, jclass, jint device, jlong stream, jlong n, jlong rows, jlong cols, jint op,
                    jint dtype, jlong x, jlong out) {
  ath_reduce_args r{};
  r.n = n; r.rows = rows; r.cols = cols; r.op = op; r.dtype = dtype;
  r.x = cptr(x); r.out = static_cast<float*>(mptr(out));
  dispatch(env, device, stream, r, ath_cpu_reduce, ath_cuda_reduce);
}

// ------------------------------------------------------------------ optimizer, random fill
void JNICALL adamw(JNIEnv* env, jclass, jint device, jlong stream, jlong n, jlong params, jlong grads, jlong m,
                   jlong v, jlong params_lowp, jint dtype_lowp, jfloat lr, jfloat beta1, jfloat beta2, jfloat eps,
                   jfloat weight_decay, jfloat grad_scale, jlong step) {
  ath_adamw_args a{};
  a.n = n;
  a.params = static_cast<float*>(mptr(params)); a.grads = static_cast<const float*>(cptr(grads));
  a.m = static_cast<float*>(mptr(m)); a.v = static_cast<float*>(mptr(v));
  a.params_lowp = mptr(params_lowp); a.dtype_lowp = dtype_lowp;
  a.lr = lr; a.beta1 = beta1; a.beta2 = beta2; a.eps = eps; a.weight_decay = weight_decay;
  a.grad_scale = grad_scale; a.step = step;
  dispatch(env, device, stream, a, ath_cpu_adamw, ath_cuda_adamw);
}

void JNICALL rand(JNIEnv* env, jclass, jint device, jlong stream, jlong n, jint dtype, jint dist, jlong seed,
                  jlong offset, jfloat a, jfloat b, jlong out) {
  ath_rand_args r{};
  r.n = n; r.dtype = dtype; r.dist = dist;
  r.seed = static_cast<uint64_t>(seed); r.offset = static_cast<uint64_t>(offset);
  r.a = a; r.b = b; r.out = mptr(out);
  dispatch(env, device, stream, r, ath_cpu_rand, ath_cuda_rand);
}

#define ATH_NATIVE(name, sig) {const_cast<char*>(#name), const_cast<char*>(sig), reinterpret_cast<void*>(&name)}

// Signatures: I = int device, J = long, Z = boolean, F = float.
const JNINativeMethod kMethods[] = {
    ATH_NATIVE(gemm, "(IJJJJJIIZZJJJJJJJJJJFF)V"),
    ATH_NATIVE(attentionForward, "(IJJJJJJJIZFJJJJJJJJJJJJJJJJJ)V"),
    ATH_NATIVE(attentionBackward, "(IJJJJJJJIZFJJJJJJJJJJJJJJJJJJJJJ)V"),
    ATH_NATIVE(layerNormForward, "(IJJJIFJJJJJJ)V"),
    ATH_NATIVE(layerNormBackward, "(IJJJIFJJJJJJJJ)V"),
    ATH_NATIVE(rmsNormForward, "(IJJJIFJJJJ)V"),
    ATH_NATIVE(rmsNormBackward, "(IJJJIFJJJJJJ)V"),
    ATH_NATIVE(activationForward, "(IJJIIJJJ)V"),
    ATH_NATIVE(activationBackward, "(IJJIIJJJJJ)V"),
    ATH_NATIVE(crossEntropyForward, "(IJJJJIJJJJ)V"),
    ATH_NATIVE(crossEntropyBackward, "(IJJJJIJJJJJ)V"),
    ATH_NATIVE(embeddingForward, "(IJJJJIJJJ)V"),
    ATH_NATIVE(embeddingBackward, "(IJJJJIJJJ)V"),
    ATH_NATIVE(rope, "(IJJJJJIZJFJJJJJ)V"),
    ATH_NATIVE(elementwise, "(IJJIIIJJJF)V"),
    ATH_NATIVE(reduce, "(IJJJJIIJJ)V"),
    ATH_NATIVE(adamw, "(IJJJJJJJIFFFFFFJ)V"),
    ATH_NATIVE(rand, "(IJJIIJJFFJ)V"),
};

#undef ATH_NATIVE

}  // namespace

namespace ath_jni {

bool register_NativeKernels(JNIEnv* env) {
  return register_natives(env, "dev/athanor/runtime/NativeKernels", kMethods,
                          static_cast<int>(sizeof(kMethods) / sizeof(kMethods[0])));
}

}  // namespace ath_jni
