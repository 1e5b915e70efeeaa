// Internal helpers of the CUDA host runtime (native/cuda/runtime.cu) shared with the kernel
// launchers in kernels/*.cu: whether CUDA is usable at all (probed once, thread-safe) and cached
// properties of the calling thread's current device. Not part of the C ABI.
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

// Properties of the calling thread's current device (cached per device after the first query).
ath_status current_device_props(const char* op, DeviceProps* out);

}  // namespace ath::cuda
