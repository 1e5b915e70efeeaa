// Host side of the bulk tensor copy engine (TMA) for the sm_90a kernels (gemm_wgmma.cu,
// attention_fwd_wgmma.cu): a tiled tensor map over a 16-bit (BF16/F16) tensor of rank 1..5,
// 128-byte swizzle, zero fill outside the tensor, encoded by the driver's cuTensorMapEncodeTiled
// (looked up once through the runtime: the library does not link libcuda).
//   dims[0] innermost (contiguous) .. dims[rank-1] outermost, in elements;
//   strides[i] (i = 1 .. rank-1): elements between consecutive indices of dimension i (strides[0]
//   is ignored: the innermost dimension is contiguous); the driver wants them as multiples of 16
//   bytes (8 elements) and the base 16-byte aligned;
//   box[i]: the box copied per instruction (box[0] * 2 bytes <= 128 for the swizzle).
// Failures return ATH_ERR_CUDA (or ATH_ERR_UNSUPPORTED without the driver function) naming `op`.
#pragma once
#include <cuda.h>  // CUtensorMap and its enums

#include <cstdint>

#include "common.cuh"

namespace ath::cuda {

ath_status make_tensor_map(CUtensorMap* map, const char* op, const void* base, int dtype, int rank,
                           const int64_t* dims, const int64_t* strides, const int* box);

}  // namespace ath::cuda
