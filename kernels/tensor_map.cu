// make_tensor_map (tensor_map.cuh): tiled TMA tensor maps for the sm_90a kernels, through the
// driver's cuTensorMapEncodeTiled looked up once by the runtime.
#include "tensor_map.cuh"

#include <mutex>

namespace ath::cuda {
namespace {

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

ath_status encode_tiled(const char* op, EncodeTiled* out) {
  static std::once_flag once;
  static EncodeTiled fn = nullptr;
  static cudaError_t err = cudaSuccess;
  static cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
  std::call_once(once, [] {
    void* f = nullptr;
    err = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &found);
    if (err == cudaSuccess && found == cudaDriverEntryPointSuccess) fn = reinterpret_cast<EncodeTiled>(f);
  });
  if (err != cudaSuccess) {
    return ath::fail(ATH_ERR_CUDA, "%s:%d: cudaGetDriverEntryPointByVersion(cuTensorMapEncodeTiled) failed: %s (%s)",
                     __FILE__, __LINE__, cudaGetErrorString(err), cudaGetErrorName(err));
  }
  if (fn == nullptr) {
    return ath::fail(ATH_ERR_UNSUPPORTED, "%s: the CUDA driver has no cuTensorMapEncodeTiled (result %d)", op,
                     static_cast<int>(found));
  }
  *out = fn;
  return ATH_OK;
}

}  // namespace

ath_status make_tensor_map(CUtensorMap* map, const char* op, const void* base, int dtype, int rank,
                           const int64_t* dims, const int64_t* strides, const int* box) {
  if (rank < 1 || rank > 5) return ath::fail(ATH_ERR_INTERNAL, "%s: tensor map of rank %d", op, rank);
  EncodeTiled fn = nullptr;
  ATH_TRY(encode_tiled(op, &fn));
  cuuint64_t gdims[5], gstrides[4];
  cuuint32_t gbox[5], elem_strides[5];
  for (int i = 0; i < rank; ++i) {
    gdims[i] = static_cast<cuuint64_t>(dims[i]);
    gbox[i] = static_cast<cuuint32_t>(box[i]);
    elem_strides[i] = 1;
    if (i > 0) gstrides[i - 1] = static_cast<cuuint64_t>(strides[i]) * 2;  // bytes, 16-bit elements
  }
  const CUresult r = fn(map, dtype == ATH_BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                        static_cast<cuuint32_t>(rank), const_cast<void*>(base), gdims, gstrides, gbox, elem_strides,
                        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    long long d[5] = {1, 1, 1, 1, 1}, s[5] = {1, 0, 0, 0, 0};
    int b[5] = {1, 1, 1, 1, 1};
    for (int i = 0; i < rank; ++i) {
      d[i] = dims[i];
      if (i > 0) s[i] = strides[i];
      b[i] = box[i];
    }
    return ath::fail(ATH_ERR_CUDA, "%s:%d: %s: cuTensorMapEncodeTiled failed with CUresult %d (rank %d, dims %lld x %lld "
                     "x %lld x %lld x %lld, element strides %lld %lld %lld %lld, box %d x %d x %d x %d x %d)",
                     __FILE__, __LINE__, op, static_cast<int>(r), rank, d[0], d[1], d[2], d[3], d[4], s[1], s[2],
                     s[3], s[4], b[0], b[1], b[2], b[3], b[4]);
  }
  return ATH_OK;
}

}  // namespace ath::cuda
