// Internal helpers of the CUDA host runtime (native/cuda/runtime.cu) shared with the kernel
// launchers in kernels/*.cu: whether CUDA is usable at all (probed once, thread-safe), cached
// device properties, and the check of an op's execution context (ath_cuda_ctx). Not part of the
// C ABI.
#pragma once
#include "athanor/athanor.h"

namespace ath::cuda {

struct DeviceProps {
  int device = -1;
  int sm_count = 0;            // multiprocessors
  int max_smem_optin = 0;      // bytes of shared memory a block may use after opting in
  int cc_major = 0, cc_minor = 0;
};

// ATH_OK when a usable CUDA device exists; else ATH_ERR_UNSUPPORTED with "<op>: CUDA is
// unavailable: <reason>" (the reason of ath_cuda_unavailable_reason()).
ath_status require_cuda(const char* op);

// Properties of `device` (queried once per device, then cached; thread-safe).
ath_status device_props(const char* op, int device, DeviceProps* out);

// Checks an op's execution context without calling CUDA: ctx not NULL, ctx->stream not NULL (the
// legacy default stream is not used), ctx->scratch not NULL when scratch_bytes > 0, ctx->device
// >= 0. ATH_ERR_INVALID naming the op otherwise.
ath_status check_context(const char* op, const ath_cuda_ctx* ctx);

// check_context, then: CUDA usable (ATH_ERR_UNSUPPORTED otherwise), ctx->device in range, and
// ctx->device made current on the calling thread when cudaGetDevice says it is not (it stays
// current afterwards). *props gets the device's properties.
ath_status enter_context(const char* op, const ath_cuda_ctx* ctx, DeviceProps* props);

}  // namespace ath::cuda
