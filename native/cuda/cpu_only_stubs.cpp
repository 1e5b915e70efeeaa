// CPU-only build: every CUDA entry point of the C ABI exists and reports that this library was
// built without CUDA, so Java can call them unconditionally and explain why CUDA is unavailable.
#include "athanor/athanor.h"
#include "../common/status.h"

namespace {
ath_status no_cuda(const char* fn) {
  return ath::fail(ATH_ERR_UNSUPPORTED, "%s: this libathanor was built without CUDA (nvcc was not found at build time)", fn);
}
}  // namespace

#define ATH_STUB_OP(name, args_t) \
  extern "C" ath_status name(const args_t*, const ath_cuda_ctx*) { return no_cuda(#name); }
ATH_STUB_OP(ath_cuda_gemm, ath_gemm_args)
ATH_STUB_OP(ath_cuda_attention_fwd, ath_attention_args)
ATH_STUB_OP(ath_cuda_attention_bwd, ath_attention_args)
ATH_STUB_OP(ath_cuda_layernorm_fwd, ath_norm_args)
ATH_STUB_OP(ath_cuda_layernorm_bwd, ath_norm_args)
ATH_STUB_OP(ath_cuda_rmsnorm_fwd, ath_norm_args)
ATH_STUB_OP(ath_cuda_rmsnorm_bwd, ath_norm_args)
ATH_STUB_OP(ath_cuda_activation_fwd, ath_activation_args)
ATH_STUB_OP(ath_cuda_activation_bwd, ath_activation_args)
ATH_STUB_OP(ath_cuda_cross_entropy_fwd, ath_cross_entropy_args)
ATH_STUB_OP(ath_cuda_cross_entropy_bwd, ath_cross_entropy_args)
ATH_STUB_OP(ath_cuda_embedding_fwd, ath_embedding_args)
ATH_STUB_OP(ath_cuda_embedding_bwd, ath_embedding_args)
ATH_STUB_OP(ath_cuda_rope, ath_rope_args)
ATH_STUB_OP(ath_cuda_elementwise, ath_elementwise_args)
ATH_STUB_OP(ath_cuda_reduce, ath_reduce_args)
ATH_STUB_OP(ath_cuda_adamw, ath_adamw_args)
ATH_STUB_OP(ath_cuda_train_scalars, ath_train_scalars_args)
ATH_STUB_OP(ath_cuda_rand, ath_rand_args)
ATH_STUB_OP(ath_cuda_sample, ath_sample_args)
ATH_STUB_OP(ath_cuda_copy, ath_copy_args)
ATH_STUB_OP(ath_cuda_memset, ath_memset_args)

extern "C" {
int ath_cuda_device_count(void) { return 0; }
const char* ath_cuda_unavailable_reason(void) { return "CPU-only build: nvcc was not found when libathanor was built"; }
ath_status ath_cuda_device_info(int, char*, size_t) { return no_cuda("ath_cuda_device_info"); }
ath_status ath_cuda_set_device(int) { return no_cuda("ath_cuda_set_device"); }
ath_status ath_cuda_malloc(int, size_t, void** out) { if (out) *out = nullptr; return no_cuda("ath_cuda_malloc"); }
ath_status ath_cuda_free(int, void*) { return no_cuda("ath_cuda_free"); }
ath_status ath_cuda_host_alloc(size_t, void** out) { if (out) *out = nullptr; return no_cuda("ath_cuda_host_alloc"); }
ath_status ath_cuda_host_free(void*) { return no_cuda("ath_cuda_host_free"); }
ath_status ath_cuda_mem_get_info(int, size_t*, size_t*) { return no_cuda("ath_cuda_mem_get_info"); }
ath_status ath_cuda_memcpy(void*, const void*, size_t, int) { return no_cuda("ath_cuda_memcpy"); }
ath_status ath_cuda_memcpy_async(void*, const void*, size_t, int, ath_stream) { return no_cuda("ath_cuda_memcpy_async"); }
ath_status ath_cuda_memcpy2d_async(void*, size_t, const void*, size_t, size_t, size_t, int, ath_stream) { return no_cuda("ath_cuda_memcpy2d_async"); }
ath_status ath_cuda_stream_create(int, ath_stream* out) { if (out) *out = nullptr; return no_cuda("ath_cuda_stream_create"); }
ath_status ath_cuda_stream_destroy(ath_stream) { return no_cuda("ath_cuda_stream_destroy"); }
ath_status ath_cuda_stream_synchronize(ath_stream) { return no_cuda("ath_cuda_stream_synchronize"); }
ath_status ath_cuda_event_create(int, int, void** out) { if (out) *out = nullptr; return no_cuda("ath_cuda_event_create"); }
ath_status ath_cuda_event_elapsed(void*, void*, float* ms) { if (ms) *ms = 0; return no_cuda("ath_cuda_event_elapsed"); }
ath_status ath_cuda_event_query(void*, int* done) { if (done) *done = 0; return no_cuda("ath_cuda_event_query"); }
ath_status ath_cuda_event_destroy(void*) { return no_cuda("ath_cuda_event_destroy"); }
ath_status ath_cuda_event_record(void*, ath_stream) { return no_cuda("ath_cuda_event_record"); }
ath_status ath_cuda_stream_wait_event(ath_stream, void*) { return no_cuda("ath_cuda_stream_wait_event"); }
ath_status ath_cuda_event_synchronize(void*) { return no_cuda("ath_cuda_event_synchronize"); }
ath_status ath_cuda_device_synchronize(int) { return no_cuda("ath_cuda_device_synchronize"); }
}
