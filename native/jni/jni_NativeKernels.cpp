// JNI glue for dev.athanor.runtime.NativeKernels: the op table. Java writes an op's argument struct
// (ath_*_args) into native memory (dev.athanor.runtime.CStruct, from the records of KernelArgs) and makes one
// call, run(op, device, ctx, args): device < 0 runs ath_cpu_<op>(args); device >= 0 runs
// ath_cuda_<op>(args, ctx) in the execution context at ctx (an ath_cuda_ctx owned by the Java
// ExecutionContext; the op makes ctx->device current itself when needed). run returns the ath_status; Java turns
// a non-OK status into an exception (reading lastError / scratchNeeded on the same thread) and retries once
// after ATH_ERR_SCRATCH. ops() and structs() describe the table and every struct's layout (offsetof/sizeof), so
// Java checks its layouts against the compiler's (KernelLayoutTest).
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/status.h"
#include "jni_common.h"

namespace {

struct Op {
  const char* name;
  const char* args;
  size_t args_size;
  ath_status (*cpu)(const void*);
  ath_status (*cuda)(const void*, const ath_cuda_ctx*);
};

// One line per op: the C names are ath_cpu_<name> and ath_cuda_<name>, taking a T. Java finds ops by name.
#define ATH_OP(name, T)                                                                                  \
  Op {                                                                                                   \
    #name, #T, sizeof(T), [](const void* a) { return ath_cpu_##name(static_cast<const T*>(a)); },       \
        [](const void* a, const ath_cuda_ctx* c) { return ath_cuda_##name(static_cast<const T*>(a), c); } \
  }
const Op kOps[] = {
    ATH_OP(gemm, ath_gemm_args),
    ATH_OP(attention_fwd, ath_attention_args),
    ATH_OP(attention_bwd, ath_attention_args),
    ATH_OP(layernorm_fwd, ath_norm_args),
    ATH_OP(layernorm_bwd, ath_norm_args),
    ATH_OP(rmsnorm_fwd, ath_norm_args),
    ATH_OP(rmsnorm_bwd, ath_norm_args),
    ATH_OP(activation_fwd, ath_activation_args),
    ATH_OP(activation_bwd, ath_activation_args),
    ATH_OP(cross_entropy_fwd, ath_cross_entropy_args),
    ATH_OP(cross_entropy_bwd, ath_cross_entropy_args),
    ATH_OP(embedding_fwd, ath_embedding_args),
    ATH_OP(embedding_bwd, ath_embedding_args),
    ATH_OP(rope, ath_rope_args),
    ATH_OP(elementwise, ath_elementwise_args),
    ATH_OP(reduce, ath_reduce_args),
    ATH_OP(adamw, ath_adamw_args),
    ATH_OP(rand, ath_rand_args),
    ATH_OP(sample, ath_sample_args),
    ATH_OP(copy, ath_copy_args),
    ATH_OP(memset, ath_memset_args),
    ATH_OP(train_scalars, ath_train_scalars_args),
};
#undef ATH_OP
constexpr int kOpCount = static_cast<int>(sizeof kOps / sizeof kOps[0]);

jint run(JNIEnv*, jclass, jint op, jint device, jlong ctx, jlong args) {
  if (op < 0 || op >= kOpCount) return ath::fail(ATH_ERR_INVALID, "run: op %d out of range [0, %d)", op, kOpCount);
  const Op& o = kOps[op];
  const void* a = jptr<const void>(args);
  if (a == nullptr) return ath::fail(ATH_ERR_INVALID, "%s: null argument struct", o.name);
  if (device < 0) return o.cpu(a);
  const ath_cuda_ctx* c = jptr<const ath_cuda_ctx>(ctx);
  if (c == nullptr) return ath::fail(ATH_ERR_INVALID, "ath_cuda_%s: null execution context", o.name);
  if (c->device != device) {
    return ath::fail(ATH_ERR_INVALID, "ath_cuda_%s: context of device %d used for device %d", o.name, c->device, device);
  }
  return o.cuda(a, c);
}

jstring lastError(JNIEnv* env, jclass) { return env->NewStringUTF(ath_last_error()); }
jlong scratchNeeded(JNIEnv*, jclass) { return static_cast<jlong>(ath_scratch_needed()); }

jstring ops(JNIEnv* env, jclass) {
  std::string s;
  for (const Op& o : kOps) s += std::string(o.name) + " " + o.args + " " + std::to_string(o.args_size) + "\n";
  return env->NewStringUTF(s.c_str());
}

// Layout of one struct: "name sizeof field:offset:size ...".
template <typename T>
struct Layout {
  std::string line;
  explicit Layout(const char* name) : line(std::string(name) + " " + std::to_string(sizeof(T))) {}
  Layout& f(const char* field, size_t offset, size_t size) {
    line += std::string(" ") + field + ":" + std::to_string(offset) + ":" + std::to_string(size);
    return *this;
  }
};
#define F(field) .f(#field, offsetof(S, field), sizeof(S::field))
#define STRUCT(T, fields) \
  { using S = T; s += (Layout<S>(#T) fields).line + "\n"; }

jstring structs(JNIEnv* env, jclass) {
  std::string s;
  STRUCT(ath_cuda_ctx, F(device) F(stream) F(scratch) F(scratch_bytes))
  STRUCT(ath_gemm_args, F(m) F(n) F(k) F(batch) F(dtype_ab) F(dtype_c) F(trans_a) F(trans_b) F(a) F(lda) F(stride_a)
                        F(b) F(ldb) F(stride_b) F(c) F(ldc) F(stride_c) F(bias) F(alpha) F(beta) F(epilogue) F(aux))
  STRUCT(ath_attention_args, F(batch) F(heads_q) F(heads_kv) F(tq) F(tk) F(head_dim) F(dtype) F(causal) F(scale)
                             F(q) F(q_sb) F(q_sh) F(q_st) F(k) F(k_sb) F(k_sh) F(k_st) F(v) F(v_sb) F(v_sh) F(v_st)
                             F(o) F(o_sb) F(o_sh) F(o_st) F(lse) F(dout) F(dq) F(dk) F(dv))
  STRUCT(ath_norm_args, F(rows) F(cols) F(dtype) F(eps) F(x) F(weight) F(bias) F(out) F(mean) F(rstd) F(dout) F(dx)
                        F(dweight) F(dbias))
  STRUCT(ath_activation_args, F(n) F(dtype) F(act) F(x) F(y) F(out) F(dout) F(dx) F(dy))
  STRUCT(ath_cross_entropy_args, F(rows) F(vocab) F(ld) F(dtype) F(logits) F(targets) F(losses) F(lse) F(dlosses)
                                 F(dlogits))
  STRUCT(ath_embedding_args, F(n) F(vocab) F(dim) F(dtype) F(ids) F(table) F(out) F(dout) F(dtable))
  STRUCT(ath_rope_args, F(batch) F(seq) F(heads) F(head_dim) F(dtype) F(inverse) F(pos0) F(theta) F(x) F(out) F(x_sb)
                        F(x_st) F(x_sh))
  STRUCT(ath_elementwise_args, F(n) F(op) F(dtype) F(dtype_out) F(a) F(b) F(out) F(alpha))
  STRUCT(ath_reduce_args, F(n) F(rows) F(cols) F(op) F(dtype) F(x) F(out))
  STRUCT(ath_adamw_args, F(n) F(params) F(grads) F(m) F(v) F(params_lowp) F(dtype_lowp) F(lr) F(beta1) F(beta2) F(eps)
                         F(weight_decay) F(grad_scale) F(step) F(grad_scale_ptr))
  STRUCT(ath_rand_args, F(n) F(dtype) F(dist) F(seed) F(offset) F(a) F(b) F(out))
  STRUCT(ath_sample_args, F(rows) F(cols) F(vocab) F(ld) F(dtype) F(temperature) F(top_p) F(top_k) F(logits)
                          F(uniforms) F(ids))
  STRUCT(ath_copy_args, F(rank) F(elem_size) F(shape) F(dst) F(dst_strides) F(src) F(src_strides))
  STRUCT(ath_memset_args, F(dst) F(bytes) F(value))
  STRUCT(ath_train_scalars_args, F(op) F(n) F(x) F(targets) F(n_losses) F(losses) F(max_norm) F(out))
  return env->NewStringUTF(s.c_str());
}
#undef STRUCT
#undef F

#define ATH_NATIVE(name, sig) {const_cast<char*>(#name), const_cast<char*>(sig), reinterpret_cast<void*>(&name)}
const JNINativeMethod kMethods[] = {
    ATH_NATIVE(run, "(IIJJ)I"),
    ATH_NATIVE(lastError, "()Ljava/lang/String;"),
    ATH_NATIVE(scratchNeeded, "()J"),
    ATH_NATIVE(ops, "()Ljava/lang/String;"),
    ATH_NATIVE(structs, "()Ljava/lang/String;"),
};
#undef ATH_NATIVE

}  // namespace

namespace ath_jni {

bool register_NativeKernels(JNIEnv* env) {
  return register_natives(env, "dev/athanor/runtime/NativeKernels", kMethods,
                          static_cast<int>(sizeof(kMethods) / sizeof(kMethods[0])));
}

}  // namespace ath_jni
