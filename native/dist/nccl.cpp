// NCCL, loaded at run time: ath_nccl_* of the C ABI (athanor.h) over libnccl.so.2 opened with dlopen, so libathanor
// neither links NCCL nor needs its headers, and loads on machines without it. Only the entry points below are
// used; their signatures are NCCL's public C API (nccl.h, stable since NCCL 2.0; ncclCommInitRank's unique id is a
// 128-byte struct passed by value, communicators are opaque pointers, streams are cudaStream_t).
//
// Layout contract: every buffer is device memory of the communicator's device (or host-mapped memory NCCL accepts),
// counts are elements of `dtype` (ath_dtype: F32, BF16, F16, I32), and work is enqueued on `stream` (a cudaStream_t
// of that device); nothing here synchronizes. Sums (ath_nccl_all_reduce, ath_nccl_reduce) are NCCL's ncclSum in
// NCCL's own order: the Java side (dev.athanor.dist.NcclCommunicator) forms rank-ordered sums itself where the run
// asks for determinism.
//
// Errors: every NCCL call is checked; a failure returns ATH_ERR_CUDA with this file, the line, the call and
// ncclGetErrorString's text (plus ncclGetLastError's detail when the library has it). No C++ exception leaves.
#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>

#include "athanor/athanor.h"
#include "common/status.h"

namespace {

// NCCL's public types, as nccl.h declares them (values are part of its ABI).
typedef struct ncclComm* ncclComm_t;
struct ncclUniqueId {
  char internal[128];
};
typedef int ncclResult_t;  // ncclSuccess = 0
typedef int ncclDataType_t;
typedef int ncclRedOp_t;
constexpr ncclDataType_t kNcclInt32 = 2, kNcclFloat16 = 6, kNcclFloat32 = 7, kNcclBfloat16 = 9;
constexpr ncclRedOp_t kNcclSum = 0;
typedef void* cudaStream_t;

struct NcclApi {
  void* handle = nullptr;
  std::string path;
  ncclResult_t (*getVersion)(int*) = nullptr;
  ncclResult_t (*getUniqueId)(ncclUniqueId*) = nullptr;
  ncclResult_t (*commInitRank)(ncclComm_t*, int, ncclUniqueId, int) = nullptr;
  ncclResult_t (*commDestroy)(ncclComm_t) = nullptr;
  ncclResult_t (*commAbort)(ncclComm_t) = nullptr;
  const char* (*getErrorString)(ncclResult_t) = nullptr;
  const char* (*getLastError)(ncclComm_t) = nullptr;  // NCCL >= 2.13; may be missing
  ncclResult_t (*allReduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*reduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*reduceScatter)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*allGather)(const void*, void*, size_t, ncclDataType_t, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*broadcast)(const void*, void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*send)(const void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*recv)(void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*groupStart)() = nullptr;
  ncclResult_t (*groupEnd)() = nullptr;
};

std::mutex g_mutex;
NcclApi g_api;  // guarded by g_mutex until loaded; read-only afterwards

template <typename F>
bool bind(void* h, const char* name, F* out) {
  *out = reinterpret_cast<F>(dlsym(h, name));
  return *out != nullptr;
}

const NcclApi* api() { return g_api.handle != nullptr ? &g_api : nullptr; }

ath_status not_loaded(const char* op) {
  return ath::fail(ATH_ERR_UNSUPPORTED, "%s: NCCL is not loaded (call ath_nccl_load first)", op);
}

ath_status nccl_failed(ncclResult_t rc, ncclComm_t comm, const char* call, const char* file, int line) {
  const NcclApi* a = api();
  const char* what = a != nullptr && a->getErrorString != nullptr ? a->getErrorString(rc) : "unknown NCCL error";
  const char* detail = a != nullptr && a->getLastError != nullptr ? a->getLastError(comm) : nullptr;
  return ath::fail(ATH_ERR_CUDA, "%s:%d: %s failed: %s (NCCL error %d)%s%s", file, line, call, what, rc,
                   detail != nullptr && detail[0] != '\0' ? ": " : "", detail != nullptr ? detail : "");
}

#define NCCL_TRY(comm, call)                                                    \
  do {                                                                          \
    ncclResult_t nccl_rc_ = (call);                                             \
    if (nccl_rc_ != 0) return nccl_failed(nccl_rc_, (comm), #call, __FILE__, __LINE__); \
  } while (0)

ath_status nccl_type(const char* op, int dtype, ncclDataType_t* out) {
  switch (dtype) {
    case ATH_F32: *out = kNcclFloat32; return ATH_OK;
    case ATH_BF16: *out = kNcclBfloat16; return ATH_OK;
    case ATH_F16: *out = kNcclFloat16; return ATH_OK;
    case ATH_I32: *out = kNcclInt32; return ATH_OK;
    default: return ath::fail(ATH_ERR_INVALID, "%s: dtype=%d is not F32, BF16, F16 or I32", op, dtype);
  }
}

// The common preamble of a collective: NCCL loaded, a communicator, a known dtype.
#define NCCL_PRELUDE(op, comm, dtype, type)                                  \
  const NcclApi* a = api();                                                  \
  if (a == nullptr) return not_loaded(op);                                   \
  ATH_CHECK_ARG((comm) != nullptr, op, "comm is NULL");                      \
  ncclDataType_t type = 0;                                                   \
  ATH_TRY(nccl_type(op, dtype, &type))

ncclComm_t C(void* comm) { return static_cast<ncclComm_t>(comm); }
cudaStream_t S(ath_stream s) { return static_cast<cudaStream_t>(s); }

}  // namespace

extern "C" {

ath_status ath_nccl_load(const char* path) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_api.handle != nullptr) return ATH_OK;
  const char* name = path != nullptr && path[0] != '\0' ? path : "libnccl.so.2";
  void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    const char* err = dlerror();
    return ath::fail(ATH_ERR_UNSUPPORTED, "ath_nccl_load: cannot open %s: %s", name, err != nullptr ? err : "dlopen failed");
  }
  NcclApi n;
  n.handle = h;
  n.path = name;
  bool ok = bind(h, "ncclGetVersion", &n.getVersion) && bind(h, "ncclGetUniqueId", &n.getUniqueId) &&
            bind(h, "ncclCommInitRank", &n.commInitRank) && bind(h, "ncclCommDestroy", &n.commDestroy) &&
            bind(h, "ncclCommAbort", &n.commAbort) && bind(h, "ncclGetErrorString", &n.getErrorString) &&
            bind(h, "ncclAllReduce", &n.allReduce) && bind(h, "ncclReduce", &n.reduce) &&
            bind(h, "ncclReduceScatter", &n.reduceScatter) && bind(h, "ncclAllGather", &n.allGather) &&
            bind(h, "ncclBroadcast", &n.broadcast) && bind(h, "ncclSend", &n.send) && bind(h, "ncclRecv", &n.recv) &&
            bind(h, "ncclGroupStart", &n.groupStart) && bind(h, "ncclGroupEnd", &n.groupEnd);
  if (!ok) {
    dlclose(h);
    return ath::fail(ATH_ERR_UNSUPPORTED, "ath_nccl_load: %s lacks NCCL entry points (ncclSend/ncclRecv need NCCL 2.7 "
                     "or newer)", name);
  }
  bind(h, "ncclGetLastError", &n.getLastError);  // optional
  g_api = n;
  return ATH_OK;
}

ath_status ath_nccl_version(int* version) {
  ATH_CHECK_ARG(version != nullptr, "ath_nccl_version", "version is NULL");
  const NcclApi* a = api();
  if (a == nullptr) return not_loaded("ath_nccl_version");
  NCCL_TRY(nullptr, a->getVersion(version));
  return ATH_OK;
}

ath_status ath_nccl_unique_id(void* out) {
  ATH_CHECK_ARG(out != nullptr, "ath_nccl_unique_id", "out is NULL");
  const NcclApi* a = api();
  if (a == nullptr) return not_loaded("ath_nccl_unique_id");
  ncclUniqueId id;
  NCCL_TRY(nullptr, a->getUniqueId(&id));
  std::memcpy(out, id.internal, sizeof id.internal);
  return ATH_OK;
}

ath_status ath_nccl_comm_init(int nranks, const void* id, int rank, int device, void** comm) {
  ATH_CHECK_ARG(comm != nullptr && id != nullptr, "ath_nccl_comm_init", "id or comm is NULL");
  *comm = nullptr;
  ATH_CHECK_ARG(nranks >= 1 && rank >= 0 && rank < nranks, "ath_nccl_comm_init", "rank %d of %d ranks", rank, nranks);
  const NcclApi* a = api();
  if (a == nullptr) return not_loaded("ath_nccl_comm_init");
  ATH_TRY(ath_cuda_set_device(device));  // NCCL binds the communicator to the current device
  ncclUniqueId u;
  std::memcpy(u.internal, id, sizeof u.internal);
  ncclComm_t c = nullptr;
  NCCL_TRY(nullptr, a->commInitRank(&c, nranks, u, rank));
  *comm = c;
  return ATH_OK;
}

ath_status ath_nccl_comm_destroy(void* comm, int abort) {
  if (comm == nullptr) return ATH_OK;
  const NcclApi* a = api();
  if (a == nullptr) return not_loaded("ath_nccl_comm_destroy");
  if (abort) NCCL_TRY(C(comm), a->commAbort(C(comm)));
  else NCCL_TRY(C(comm), a->commDestroy(C(comm)));
  return ATH_OK;
}

ath_status ath_nccl_all_reduce(void* comm, const void* send, void* recv, size_t count, int dtype, ath_stream s) {
  NCCL_PRELUDE("ath_nccl_all_reduce", comm, dtype, t);
  NCCL_TRY(C(comm), a->allReduce(send, recv, count, t, kNcclSum, C(comm), S(s)));
  return ATH_OK;
}

ath_status ath_nccl_reduce(void* comm, const void* send, void* recv, size_t count, int dtype, int root, ath_stream s) {
  NCCL_PRELUDE("ath_nccl_reduce", comm, dtype, t);
  NCCL_TRY(C(comm), a->reduce(send, recv, count, t, kNcclSum, root, C(comm), S(s)));
  return ATH_OK;
}

ath_status ath_nccl_reduce_scatter(void* comm, const void* send, void* recv, size_t recv_count, int dtype, ath_stream s) {
  NCCL_PRELUDE("ath_nccl_reduce_scatter", comm, dtype, t);
  NCCL_TRY(C(comm), a->reduceScatter(send, recv, recv_count, t, kNcclSum, C(comm), S(s)));
  return ATH_OK;
}

ath_status ath_nccl_all_gather(void* comm, const void* send, void* recv, size_t send_count, int dtype, ath_stream s) {
  NCCL_PRELUDE("ath_nccl_all_gather", comm, dtype, t);
  NCCL_TRY(C(comm), a->allGather(send, recv, send_count, t, C(comm), S(s)));
  return ATH_OK;
}

ath_status ath_nccl_broadcast(void* comm, const void* send, void* recv, size_t count, int dtype, int root, ath_stream s) {
  NCCL_PRELUDE("ath_nccl_broadcast", comm, dtype, t);
  NCCL_TRY(C(comm), a->broadcast(send, recv, count, t, root, C(comm), S(s)));
  return ATH_OK;
}

ath_status ath_nccl_send(void* comm, const void* buf, size_t count, int dtype, int peer, ath_stream s) {
  NCCL_PRELUDE("ath_nccl_send", comm, dtype, t);
  NCCL_TRY(C(comm), a->send(buf, count, t, peer, C(comm), S(s)));
  return ATH_OK;
}

ath_status ath_nccl_recv(void* comm, void* buf, size_t count, int dtype, int peer, ath_stream s) {
  NCCL_PRELUDE("ath_nccl_recv", comm, dtype, t);
  NCCL_TRY(C(comm), a->recv(buf, count, t, peer, C(comm), S(s)));
  return ATH_OK;
}

ath_status ath_nccl_group(int start) {
  const NcclApi* a = api();
  if (a == nullptr) return not_loaded("ath_nccl_group");
  if (start) NCCL_TRY(nullptr, a->groupStart());
  else NCCL_TRY(nullptr, a->groupEnd());
  return ATH_OK;
}

}  // extern "C"
