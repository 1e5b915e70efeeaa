/*
 * Athanor native C ABI.
 *
 * One set of op signatures, two backends: every op has an argument struct (below) and two entry
 * points, ath_cpu_<op>(const args*) and ath_cuda_<op>(const args*, const ath_cuda_ctx*). The JNI
 * layer only translates Java arguments into these structs and turns a non-OK status into a Java
 * exception carrying ath_last_error().
 *
 * Conventions shared by every op:
 *  - Row-major, element strides (not bytes). The innermost dimension is contiguous unless a stride
 *    for it is given explicitly.
 *  - Pointers are host pointers for ath_cpu_* and device pointers for ath_cuda_*; scalars by value.
 *  - Backward ops WRITE input gradients (dx, dq, ...) and ACCUMULATE (+=) parameter gradients
 *    (dweight, dbias, dtable), which are always F32. This supports gradient accumulation. An
 *    accumulated output receives the op's contribution formed first and added once: it ends as
 *    H + S for the H it held, S being the op's sum on its own (never ((H + s_1) + s_2) + ...,
 *    e.g. when the gradient already holds a tied output head's contribution). All CPU ops; on
 *    CUDA all but the embedding backward (see there).
 *  - "dtype" means the dtype of activations/inputs/outputs of that op; statistics saved for the
 *    backward pass (mean, rstd, lse) are always F32.
 *  - Ops never abort: a bad argument returns ATH_ERR_INVALID with a message, an unsupported
 *    combination returns ATH_ERR_UNSUPPORTED, a CUDA failure returns ATH_ERR_CUDA with file, line
 *    and the CUDA error string in ath_last_error().
 *  - CPU ops run on the shared thread pool and give bit-identical results run to run and for ANY
 *    thread count (on a given ISA; the kernels of different ISAs round differently): a reduction
 *    sums fixed-size chunks (a constant of the op, never derived from the thread count) in a fixed
 *    order and combines the chunks in chunk order; threads only decide who computes which chunk.
 *  - CUDA ops run in an execution context (ath_cuda_ctx below): they are enqueued on its stream,
 *    take their temporary buffers from its scratch arena, and return without synchronizing. No op
 *    uses the legacy default stream.
 */
#ifndef ATHANOR_H
#define ATHANOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define ATH_API __attribute__((visibility("default")))
#else
#define ATH_API
#endif

/* ------------------------------------------------------------------ status and errors */
typedef enum ath_status {
  ATH_OK = 0,
  ATH_ERR_INVALID = 1,     /* bad argument: shape, dtype, index out of range, null pointer */
  ATH_ERR_UNSUPPORTED = 2, /* this backend lacks this op or dtype combination */
  ATH_ERR_CUDA = 3,        /* a CUDA runtime/driver call failed */
  ATH_ERR_OOM = 4,         /* allocation failed */
  ATH_ERR_IO = 5,          /* file I/O failed */
  ATH_ERR_INTERNAL = 6,    /* a bug: an invariant did not hold */
  ATH_ERR_SCRATCH = 7      /* the context's scratch arena is too small: nothing was enqueued;
                              ath_scratch_needed() gives the bytes the op needs */
} ath_status;

/* Message of the last non-OK status returned on this thread (never NULL, "" when none). */
ATH_API const char* ath_last_error(void);
/* After ATH_ERR_SCRATCH on this thread: the scratch bytes the failed op needs (0 otherwise). */
ATH_API size_t ath_scratch_needed(void);

/* ------------------------------------------------------------------ dtypes */
typedef enum ath_dtype {
  ATH_F32 = 0,
  ATH_BF16 = 1,
  ATH_F16 = 2,
  ATH_I32 = 3
} ath_dtype;

/* Size in bytes of one element, 0 for an unknown dtype. */
ATH_API size_t ath_dtype_size(int dtype);

/* CUDA stream handle (a cudaStream_t). Streams made by ath_cuda_stream_create are non-blocking
 * (they do not synchronize with the legacy default stream, which no op uses). */
typedef void* ath_stream;

/* ------------------------------------------------------------------ execution context (CUDA)
 * Where a CUDA op runs. device: the CUDA device of every pointer of the op (made current on the
 * calling thread only when it is not already). stream: a stream of that device (never NULL).
 * scratch: device memory of scratch_bytes owned by the caller, from which the op takes its
 * temporaries (reduction partials, attention workspaces); the next op on the same stream may reuse
 * it, stream order makes that safe. An op needing more than scratch_bytes enqueues nothing and
 * returns ATH_ERR_SCRATCH with ath_scratch_needed() set; the caller grows the arena and retries.
 * scratch may be NULL when scratch_bytes is 0. The op's buffers are laid out from the arena's
 * first 256-byte aligned address: an arena from cudaMalloc needs exactly ath_scratch_needed()
 * bytes; for an unaligned one, ath_scratch_needed() includes 255 bytes of slack. The bytes an op
 * needs depend only on its shape and the device, never on the arena it was given. */
typedef struct ath_cuda_ctx {
  int device;
  ath_stream stream;
  void* scratch;
  size_t scratch_bytes;
} ath_cuda_ctx;

/* ------------------------------------------------------------------ library info */
ATH_API const char* ath_version(void);
/* 1 when the library was built with CUDA kernels, else 0. */
ATH_API int ath_built_with_cuda(void);
/* Space-separated CPU features detected at run time, e.g. "avx2 fma avx512f avx512bw". */
ATH_API const char* ath_cpu_features(void);
/* The ISA the CPU kernels dispatch to: "avx512", "avx2" or "scalar". Overridable with
 * ath_cpu_set_isa (for tests and benchmarks); returns ATH_ERR_UNSUPPORTED if the CPU lacks it. */
ATH_API const char* ath_cpu_isa(void);
ATH_API ath_status ath_cpu_set_isa(const char* isa);
/* Thread pool: defaults to the number of CPUs in the process's affinity mask (sched_getaffinity;
 * the online cores when it cannot be read), so processes pinned to disjoint cores do not
 * oversubscribe them; may be resized when idle. Results do not depend on it. */
ATH_API int ath_cpu_threads(void);
ATH_API ath_status ath_cpu_set_threads(int n);
/* Names of the kernels this build provides, space separated, per backend ("cpu" / "cuda"). */
ATH_API const char* ath_kernels(const char* backend);

/* ------------------------------------------------------------------ GEMM
 * For each batch index b in [0, batch):
 *   C_b (M, N) = alpha * op(A_b) @ op(B_b) + beta * C_b  (+ bias broadcast over rows)
 * op(A_b) is (M, K): A_b is stored (M, K) with row stride lda if !trans_a, else (K, M) with lda.
 * op(B_b) is (K, N): B_b is stored (K, N) with row stride ldb if !trans_b, else (N, K) with ldb.
 * X_b = X + b * stride_x (elements). beta == 0 means C is not read (may hold NaN).
 * dtype_ab: F32, BF16 or F16 (A and B share it); dtype_c: F32 or dtype_ab. Accumulation is F32.
 * bias: NULL or N elements of dtype_c, added after alpha/beta.
 * epilogue (ath_gemm_epilogue; 0 = NONE, what a zero-initialized struct gets) and aux: a second
 * matrix of dtype_c with C's shape, ldc and stride_c. With v = alpha * AB + beta * C_old + bias
 * computed in F32 as above and round() the rounding to dtype_c (to nearest even, once):
 *   NONE:          C = round(v); aux is ignored.
 *   GELU:          p = round(v); aux = p (written when aux != NULL); C = round(gelu(p)), gelu the
 *                  tanh approximation of the activation op, evaluated in F32 on the rounded p.
 *   GELU_BACKWARD: d = round(v); C = round(d * gelu'(aux)), aux (required, read) the forward's
 *                  pre-activation, gelu' the activation op's GELU backward factor in F32.
 * So GELU equals the GEMM followed by the GELU activation op on its output (the pre-activation is
 * rounded before the activation, as a separate GELU op would see it), and GELU_BACKWARD equals
 * the GEMM followed by the GELU backward op with x = aux, dout = the GEMM's output; on the CPU
 * both are bit-identical to those two-op sequences (contiguous C). aux must not be C.
 */
typedef enum ath_gemm_epilogue {
  ATH_GEMM_EPI_NONE = 0,
  ATH_GEMM_EPI_GELU = 1,
  ATH_GEMM_EPI_GELU_BACKWARD = 2
} ath_gemm_epilogue;
typedef struct ath_gemm_args {
  int64_t m, n, k, batch;
  int dtype_ab, dtype_c;
  int trans_a, trans_b;
  const void* a; int64_t lda, stride_a;
  const void* b; int64_t ldb, stride_b;
  void* c;       int64_t ldc, stride_c;
  const void* bias;
  float alpha, beta;
  int epilogue;  /* ath_gemm_epilogue */
  void* aux;     /* dtype_c, C's shape, ldc and stride_c; GELU: written (may be NULL); GELU_BACKWARD: read */
} ath_gemm_args;

/* ------------------------------------------------------------------ attention
 * Scaled dot-product attention, FlashAttention style (never materializes (Tq, Tk) in forward).
 * q: (B, Hq, Tq, D) addressed by strides q_sb, q_sh, q_st (last dim contiguous); likewise k, v
 * (B, Hkv, Tk, D) and o (B, Hq, Tq, D). Hq % Hkv == 0 (grouped-query: query head h uses kv head
 * h / (Hq / Hkv)). D <= 128 (CUDA: D in {32, 64, 96, 128}; CPU: any D <= 256).
 * causal: query i attends key j iff j <= i + (Tk - Tq) (bottom-right aligned, as in decoding with
 * a KV cache); a query row with no visible key outputs zeros and lse = -inf.
 * lse: (B, Hq, Tq) F32 contiguous, log-sum-exp of the scaled scores per row (saved for backward;
 * may be NULL in forward when not needed).
 * dtype: F32, BF16 or F16 for q, k, v, o (and do, dq, dk, dv in backward).
 */
typedef struct ath_attention_args {
  int64_t batch, heads_q, heads_kv, tq, tk, head_dim;
  int dtype;
  int causal;
  float scale;
  const void* q; int64_t q_sb, q_sh, q_st;
  const void* k; int64_t k_sb, k_sh, k_st;
  const void* v; int64_t v_sb, v_sh, v_st;
  void* o;       int64_t o_sb, o_sh, o_st;
  float* lse;
  /* backward only: do has the strides of o; dq those of q; dk, dv those of k, v. All written. */
  const void* dout;
  void* dq; void* dk; void* dv;
} ath_attention_args;

/* ------------------------------------------------------------------ normalization
 * x, out: (rows, cols) contiguous, dtype. weight, bias: (cols), dtype (bias may be NULL; RMSNorm
 * ignores bias). mean, rstd: (rows) F32 (LayerNorm writes both, RMSNorm only rstd; may be NULL in
 * forward when not needed).
 * LayerNorm: out = (x - mean) * rstd * weight + bias,  rstd = 1/sqrt(var + eps) (biased var).
 * RMSNorm:   out = x * rstd * weight,                  rstd = 1/sqrt(mean(x^2) + eps).
 * Backward: dout (rows, cols) dtype; writes dx (rows, cols) dtype; accumulates dweight, dbias
 * (cols) F32 (dbias may be NULL): their sums over the rows are formed, then added once. Uses the
 * saved mean/rstd.
 */
typedef struct ath_norm_args {
  int64_t rows, cols;
  int dtype;
  float eps;
  const void* x; const void* weight; const void* bias;
  void* out; float* mean; float* rstd;
  const void* dout; void* dx; float* dweight; float* dbias;
} ath_norm_args;

/* ------------------------------------------------------------------ activations (elementwise, n elements, contiguous)
 * GELU (tanh approximation): out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
 * SiLU: out = x * sigmoid(x)
 * SwiGLU: out = silu(x) * y   (x is the gate, y the up projection)
 * Backward writes dx (and dy for SwiGLU) from dout and the forward inputs.
 */
typedef enum ath_activation { ATH_ACT_GELU_TANH = 0, ATH_ACT_SILU = 1, ATH_ACT_SWIGLU = 2 } ath_activation;
typedef struct ath_activation_args {
  int64_t n;
  int dtype;
  int act;
  const void* x; const void* y;   /* y only for SwiGLU */
  void* out;
  const void* dout; void* dx; void* dy;
} ath_activation_args;

/* ------------------------------------------------------------------ softmax + cross-entropy (fused)
 * logits: (rows, vocab) with row stride ld >= vocab, dtype. targets: (rows) I32; a target < 0 is
 * ignored (loss 0, gradient 0); a target >= vocab is ATH_ERR_INVALID (CPU) / treated as ignored
 * (CUDA, which cannot report it synchronously; the Java layer validates host-side targets).
 * Forward writes losses (rows) F32 = lse - logit[target], and lse (rows) F32 (may be NULL).
 * Backward: dlosses (rows) F32; writes dlogits (rows, vocab) with stride ld, dtype:
 *   dlogits[r, j] = dlosses[r] * (softmax(logits[r])[j] - [j == target[r]]) using the saved lse.
 */
typedef struct ath_cross_entropy_args {
  int64_t rows, vocab, ld;
  int dtype;
  const void* logits; const int32_t* targets;
  float* losses; float* lse;
  const float* dlosses; void* dlogits;
} ath_cross_entropy_args;

/* ------------------------------------------------------------------ embedding
 * ids: (n) I32 in [0, vocab); table: (vocab, dim) dtype; out: (n, dim) dtype (written).
 * CPU returns ATH_ERR_INVALID naming the first bad id and its position; CUDA writes zeros for a
 * bad id. Backward: dout (n, dim) dtype; accumulates into dtable (vocab, dim) F32, per row, the sum
 * of its tokens' gradients formed in token order, added once: dtable[v] ends as
 * H + (dout[i_1] + dout[i_2] + ...) for the tokens i_1 < i_2 < ... with id v and the H it held
 * (a tied output head's gradient is not summed into token by token). Rows of absent ids are not
 * touched on the CPU; CUDA forms the sums in a zeroed window of up to 64 MiB of its scratch arena
 * and adds whole windows (absent rows get +0.0 added).
 */
typedef struct ath_embedding_args {
  int64_t n, vocab, dim;
  int dtype;
  const int32_t* ids;
  const void* table; void* out;
  const void* dout; float* dtable;
} ath_embedding_args;

/* ------------------------------------------------------------------ rotary position embedding
 * x, out: (B, T, H, D) addressed by strides x_sb, x_st, x_sh (last dim contiguous); out has the
 * same strides and may alias x. Rotates pairs (i, i + D/2) for i < D/2 (the "rotate_half"
 * convention of Hugging Face Llama) by angle (pos0 + t) * theta^(-2i/D). inverse != 0 rotates by
 * the negative angle, which is the backward pass (dx from dout). D must be even.
 */
typedef struct ath_rope_args {
  int64_t batch, seq, heads, head_dim;
  int dtype;
  int inverse;
  int64_t pos0;
  float theta;
  const void* x; void* out;
  int64_t x_sb, x_st, x_sh;
} ath_rope_args;

/* ------------------------------------------------------------------ elementwise and reductions (n elements, contiguous)
 * ADD:   out = a + b          MUL: out = a * b
 * SCALE: out = alpha * a      AXPY: out = out + alpha * a
 * FILL:  out = alpha          CONVERT: out (dtype_out) = a (dtype) with round-to-nearest-even
 *        (F32/BF16/F16 any to any; also I32 <-> F32, float to int rounding to nearest even)
 * All but CONVERT use one dtype. out may alias a or b.
 */
typedef enum ath_elementwise_op {
  ATH_EW_ADD = 0, ATH_EW_MUL = 1, ATH_EW_SCALE = 2, ATH_EW_AXPY = 3, ATH_EW_FILL = 4,
  ATH_EW_CONVERT = 5
} ath_elementwise_op;
typedef struct ath_elementwise_args {
  int64_t n;
  int op;
  int dtype, dtype_out;
  const void* a; const void* b; void* out;
  float alpha;
} ath_elementwise_args;

/* SUM: out[0] = sum(x); SUM_SQUARES: out[0] = sum(x^2) (for the global gradient norm);
 * SUM_ROWS: x is (rows, cols) and out (cols) += column sums (bias gradients; n = rows * cols),
 * the sums formed first, then added once.
 * out is F32. Reduction order is fixed (deterministic on both backends; on the CPU independent of
 * the thread count). */
typedef enum ath_reduce_op { ATH_RED_SUM = 0, ATH_RED_SUM_SQUARES = 1, ATH_RED_SUM_ROWS = 2 } ath_reduce_op;
typedef struct ath_reduce_args {
  int64_t n, rows, cols;
  int op;
  int dtype;
  const void* x;
  float* out;
} ath_reduce_args;

/* ------------------------------------------------------------------ AdamW (fused)
 * params, grads, m, v: (n) F32. step >= 1 (bias correction uses beta^step).
 *   g = grads * grad_scale
 *   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
 *   params -= lr * ( (m / (1 - beta1^step)) / (sqrt(v / (1 - beta2^step)) + eps) + weight_decay * params )
 * params_lowp: NULL or (n) of dtype_lowp (BF16/F16) receiving a rounded copy of the new params.
 * grad_scale_ptr: NULL (grad_scale is the factor), or one F32 in the op's memory (device memory on CUDA,
 *   host memory on the CPU) read by the op in place of grad_scale, so a factor formed on the device
 *   (ath_train_scalars CLIP_SCALE) needs no host round trip; when *grad_scale_ptr is not finite the
 *   op leaves params, m, v and params_lowp untouched (a step refused on the device).
 */
typedef struct ath_adamw_args {
  int64_t n;
  float* params; const float* grads; float* m; float* v;
  void* params_lowp; int dtype_lowp;
  float lr, beta1, beta2, eps, weight_decay, grad_scale;
  int64_t step;
  const float* grad_scale_ptr;
} ath_adamw_args;

/* ------------------------------------------------------------------ training-step scalars
 * The scalars of a training step kept in the op's memory (no host synchronisation inside a step):
 * LOSS_MEAN: out[0] = (float)(sum over i with targets[i] >= 0 of (double) x[i], in index order,
 *            / count of such i); 0 when there is none. x (n) F32 per-row losses, targets (n) I32.
 * CLIP_SCALE: norm = (float) sqrt(sum over j of (double) x[j], in index order) (x (n): the
 *            sums-of-squares partials of the gradient's chunks); out[0] = norm;
 *            out[1] = max_norm > 0 ? (float) min(1, max_norm / ((double) norm + 1e-6)) : 1, or NaN when
 *            the norm or one of losses (n_losses, F32) is not finite (ath_adamw's grad_scale_ptr
 *            then skips the update). One thread adds in order on both backends: the same bits as the
 *            host loop it replaces. */
typedef enum ath_train_scalars_op { ATH_TS_LOSS_MEAN = 0, ATH_TS_CLIP_SCALE = 1 } ath_train_scalars_op;
typedef struct ath_train_scalars_args {
  int op;
  int64_t n;
  const float* x;
  const int32_t* targets;
  int64_t n_losses;
  const float* losses;
  float max_norm;
  float* out;
} ath_train_scalars_args;

/* ------------------------------------------------------------------ random fill
 * Counter-based (Philox-4x32-10) so the stream is identical on every backend and thread count:
 * element i uses counter i + offset with key seed. UNIFORM: [lo, hi); NORMAL: mean a, std b
 * (Box-Muller). Integer-exact on both backends for UNIFORM in F32 up to float rounding of the
 * affine map; NORMAL may differ in the last bits between CPU and CUDA (libm vs device math). */
typedef enum ath_rand_dist { ATH_RAND_UNIFORM = 0, ATH_RAND_NORMAL = 1 } ath_rand_dist;
typedef struct ath_rand_args {
  int64_t n;
  int dtype;
  int dist;
  uint64_t seed, offset;
  float a, b;
  void* out;
} ath_rand_args;

/* ------------------------------------------------------------------ sampling (decode)
 * logits: (rows, cols) with row stride ld >= cols, F32 (the decode head's logits are F32 on both backends; other
 * dtypes are ATH_ERR_UNSUPPORTED). uniforms: (rows) F32 in [0, 1), one draw per row from the caller's RNG.
 * ids: (rows) I32, written: the token chosen for each row among the columns [0, vocab), vocab <= cols.
 * temperature: finite, >= 0 (0 = greedy: the largest logit, the lowest id on ties); top_k >= 0 (0 = off);
 * top_p in (0, 1]. A row holding NaN or +inf in [0, cols), or whose sampled logits are all -inf, gets
 * ids = -1 - i, i the first such column (0 for all -inf); -inf otherwise has probability 0.
 * The algorithm (native/cpu/sample.cpp's opening comment) uses exact integer masses, so CUDA and the CPU choose
 * the same id from the same logits and uniforms, for any thread count and launch shape. */
typedef struct ath_sample_args {
  int64_t rows, cols, vocab, ld;
  int dtype;
  float temperature, top_p;
  int64_t top_k;
  const void* logits; const float* uniforms; int32_t* ids;
} ath_sample_args;

/* ------------------------------------------------------------------ strided copy and memset
 * copy: dst[i] = src[i] for every index i of `shape` (rank in [0, 8]; rank 0 is one element),
 * elements of elem_size bytes (1, 2, 4 or 8) addressed by element strides (>= 0) from dst / src.
 * Any view to any view of the same shape: transposes, slices, broadcast sources (stride 0).
 * dst must not overlap src, and dst's elements must be distinct (no stride-0 dimension of size > 1).
 * CPU: host memory. CUDA: device memory of ctx->device (use the memcpy functions below for
 * host <-> device). memset: bytes bytes at dst set to value (0..255). */
#define ATH_MAX_RANK 8
typedef struct ath_copy_args {
  int rank;
  int elem_size;
  int64_t shape[ATH_MAX_RANK];
  void* dst;       int64_t dst_strides[ATH_MAX_RANK];
  const void* src; int64_t src_strides[ATH_MAX_RANK];
} ath_copy_args;
typedef struct ath_memset_args {
  void* dst;
  int64_t bytes;
  int value;
} ath_memset_args;

/* ------------------------------------------------------------------ CPU backend ops */
ATH_API ath_status ath_cpu_gemm(const ath_gemm_args* a);
ATH_API ath_status ath_cpu_attention_fwd(const ath_attention_args* a);
ATH_API ath_status ath_cpu_attention_bwd(const ath_attention_args* a);
ATH_API ath_status ath_cpu_layernorm_fwd(const ath_norm_args* a);
ATH_API ath_status ath_cpu_layernorm_bwd(const ath_norm_args* a);
ATH_API ath_status ath_cpu_rmsnorm_fwd(const ath_norm_args* a);
ATH_API ath_status ath_cpu_rmsnorm_bwd(const ath_norm_args* a);
ATH_API ath_status ath_cpu_activation_fwd(const ath_activation_args* a);
ATH_API ath_status ath_cpu_activation_bwd(const ath_activation_args* a);
ATH_API ath_status ath_cpu_cross_entropy_fwd(const ath_cross_entropy_args* a);
ATH_API ath_status ath_cpu_cross_entropy_bwd(const ath_cross_entropy_args* a);
ATH_API ath_status ath_cpu_embedding_fwd(const ath_embedding_args* a);
ATH_API ath_status ath_cpu_embedding_bwd(const ath_embedding_args* a);
ATH_API ath_status ath_cpu_rope(const ath_rope_args* a);
ATH_API ath_status ath_cpu_elementwise(const ath_elementwise_args* a);
ATH_API ath_status ath_cpu_reduce(const ath_reduce_args* a);
ATH_API ath_status ath_cpu_adamw(const ath_adamw_args* a);
ATH_API ath_status ath_cpu_train_scalars(const ath_train_scalars_args* a);
ATH_API ath_status ath_cpu_rand(const ath_rand_args* a);
ATH_API ath_status ath_cpu_sample(const ath_sample_args* a);
ATH_API ath_status ath_cpu_copy(const ath_copy_args* a);
ATH_API ath_status ath_cpu_memset(const ath_memset_args* a);

/* ------------------------------------------------------------------ CUDA backend ops
 * Present in every build; in a CPU-only build they return ATH_ERR_UNSUPPORTED. */
ATH_API ath_status ath_cuda_gemm(const ath_gemm_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_attention_fwd(const ath_attention_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_attention_bwd(const ath_attention_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_layernorm_fwd(const ath_norm_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_layernorm_bwd(const ath_norm_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_rmsnorm_fwd(const ath_norm_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_rmsnorm_bwd(const ath_norm_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_activation_fwd(const ath_activation_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_activation_bwd(const ath_activation_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_cross_entropy_fwd(const ath_cross_entropy_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_cross_entropy_bwd(const ath_cross_entropy_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_embedding_fwd(const ath_embedding_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_embedding_bwd(const ath_embedding_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_rope(const ath_rope_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_elementwise(const ath_elementwise_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_reduce(const ath_reduce_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_adamw(const ath_adamw_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_train_scalars(const ath_train_scalars_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_rand(const ath_rand_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_sample(const ath_sample_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_copy(const ath_copy_args* a, const ath_cuda_ctx* ctx);
ATH_API ath_status ath_cuda_memset(const ath_memset_args* a, const ath_cuda_ctx* ctx);

/* ------------------------------------------------------------------ host memory */
/* 64-byte aligned host memory; *out NULL on failure (ATH_ERR_OOM). */
ATH_API ath_status ath_host_alloc(size_t bytes, void** out);
ATH_API void ath_host_free(void* p);

/* ------------------------------------------------------------------ CUDA runtime (native/cuda)
 * All return ATH_ERR_UNSUPPORTED in a CPU-only build. ath_cuda_unavailable_reason explains why CUDA is
 * unusable (no driver, no device, CPU-only build) or returns "" when it is usable. */
ATH_API int ath_cuda_device_count(void);
ATH_API const char* ath_cuda_unavailable_reason(void);
/* Writes a one-line description (name, compute capability, memory, SMs) into buf. */
ATH_API ath_status ath_cuda_device_info(int device, char* buf, size_t buf_len);
ATH_API ath_status ath_cuda_set_device(int device);
ATH_API ath_status ath_cuda_malloc(int device, size_t bytes, void** out);
ATH_API ath_status ath_cuda_free(int device, void* p);
ATH_API ath_status ath_cuda_host_alloc(size_t bytes, void** out); /* pinned */
ATH_API ath_status ath_cuda_host_free(void* p);
ATH_API ath_status ath_cuda_mem_get_info(int device, size_t* free_bytes, size_t* total_bytes);
/* kind: 0 host->device, 1 device->host, 2 device->device, 3 host->host (cudaMemcpyDefault). */
ATH_API ath_status ath_cuda_memcpy(void* dst, const void* src, size_t bytes, int kind);
ATH_API ath_status ath_cuda_memcpy_async(void* dst, const void* src, size_t bytes, int kind, ath_stream s);
/* Strided 2-D copy (cudaMemcpy2DAsync): height rows of width bytes. */
ATH_API ath_status ath_cuda_memcpy2d_async(void* dst, size_t dpitch, const void* src, size_t spitch,
                                           size_t width, size_t height, int kind, ath_stream s);
ATH_API ath_status ath_cuda_stream_create(int device, ath_stream* out);
ATH_API ath_status ath_cuda_stream_destroy(ath_stream s);
ATH_API ath_status ath_cuda_stream_synchronize(ath_stream s);
/* timing != 0 makes an event usable with ath_cuda_event_elapsed (slightly costlier to record). */
ATH_API ath_status ath_cuda_event_create(int device, int timing, void** out);
/* Milliseconds between two recorded, completed timing events (ATH_ERR_CUDA while not complete). */
ATH_API ath_status ath_cuda_event_elapsed(void* start, void* end, float* ms);
/* 1 when every piece of work before the event has completed, 0 while not (never blocks). */
ATH_API ath_status ath_cuda_event_query(void* e, int* done);
ATH_API ath_status ath_cuda_event_destroy(void* e);
ATH_API ath_status ath_cuda_event_record(void* e, ath_stream s);
ATH_API ath_status ath_cuda_stream_wait_event(ath_stream s, void* e);
ATH_API ath_status ath_cuda_event_synchronize(void* e);
ATH_API ath_status ath_cuda_device_synchronize(int device);

/* ------------------------------------------------------------------ NCCL (native/dist/nccl.cpp)
 * libnccl.so.2 opened at run time (dlopen; nothing links it). path: a file, or NULL for the library path's
 * libnccl.so.2. Until ath_nccl_load succeeds the others return ATH_ERR_UNSUPPORTED. Buffers are device memory of
 * the communicator's device, counts are elements of dtype (ath_dtype), work is enqueued on the stream and nothing
 * synchronizes. Sums are NCCL's (its order, not a fixed one). unique_id: 128 bytes, made by one rank and handed to
 * the others (e.g. an MPI broadcast). A failed call returns ATH_ERR_CUDA naming the NCCL call and NCCL's error. */
ATH_API ath_status ath_nccl_load(const char* path);
ATH_API ath_status ath_nccl_version(int* version);
ATH_API ath_status ath_nccl_unique_id(void* out /* 128 bytes */);
ATH_API ath_status ath_nccl_comm_init(int nranks, const void* unique_id, int rank, int device, void** comm);
/* abort != 0: ncclCommAbort (does not wait for the other ranks), else ncclCommDestroy. */
ATH_API ath_status ath_nccl_comm_destroy(void* comm, int abort);
ATH_API ath_status ath_nccl_all_reduce(void* comm, const void* send, void* recv, size_t count, int dtype, ath_stream s);
ATH_API ath_status ath_nccl_reduce(void* comm, const void* send, void* recv, size_t count, int dtype, int root, ath_stream s);
ATH_API ath_status ath_nccl_reduce_scatter(void* comm, const void* send, void* recv, size_t recv_count, int dtype,
                                           ath_stream s);
ATH_API ath_status ath_nccl_all_gather(void* comm, const void* send, void* recv, size_t send_count, int dtype, ath_stream s);
ATH_API ath_status ath_nccl_broadcast(void* comm, const void* send, void* recv, size_t count, int dtype, int root,
                                      ath_stream s);
ATH_API ath_status ath_nccl_send(void* comm, const void* buf, size_t count, int dtype, int peer, ath_stream s);
ATH_API ath_status ath_nccl_recv(void* comm, void* buf, size_t count, int dtype, int peer, ath_stream s);
/* start != 0: ncclGroupStart, else ncclGroupEnd (the calls between run as one). */
ATH_API ath_status ath_nccl_group(int start);

/* ------------------------------------------------------------------ disk I/O (native/io)
 * Files for the DISK tier. Opened with O_DIRECT when the file system allows it and the
 * transfer is aligned (4096 bytes), else buffered; fsync on request. */
ATH_API ath_status ath_file_open(const char* path, int create, int64_t* fd_out);
ATH_API ath_status ath_file_close(int64_t fd);
ATH_API ath_status ath_file_write(int64_t fd, const void* src, size_t bytes, int64_t offset);
ATH_API ath_status ath_file_read(int64_t fd, void* dst, size_t bytes, int64_t offset);
ATH_API ath_status ath_file_sync(int64_t fd);
ATH_API ath_status ath_file_truncate(int64_t fd, int64_t bytes);

#ifdef __cplusplus
}
#endif
#endif /* ATHANOR_H */
