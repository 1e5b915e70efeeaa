// libathanor_mpi: the MPI shim behind dev.athanor.dist.MpiNative. A separate shared library, built only when
// CMake finds MPI and loaded by Java only when a distributed run is asked for, so libathanor and the jar load and
// run single-process on machines without MPI.
//
// It moves raw bytes between host buffers and nothing else: all-gather(v), all-to-all(v), broadcast, send/recv,
// barrier and communicator splits (process groups, by handle; 0 is the world), plus MPI_Allreduce / MPI_Reduce_scatter_block sums for the "fast" mode (F32, I32). Summation in the
// deterministic mode is done in Java by Athanor's own kernels, in rank order (dev.athanor.dist.RankOrderSum).
// Pointers come from Java as longs (Tensor.address()), byte counts as ints checked in Java (MPI counts are int).
//
// Errors: every communicator gets MPI_ERRORS_RETURN, and every MPI call is checked: a failure throws
// dev.athanor.dist.CommunicatorException with this file, the line, the MPI function and MPI's error string.
// No C++ exception leaves a JNI function (none is thrown here; std::vector's bad_alloc is caught).
#include <dlfcn.h>
#include <jni.h>
#include <mpi.h>

#include <cstdlib>

#include <cstdint>
#include <cstdio>
#include <mutex>
#include <new>
#include <vector>

namespace {

constexpr const char* kExceptionClass = "dev/athanor/dist/CommunicatorException";

void throw_message(JNIEnv* env, const char* message) {
  if (env->ExceptionCheck()) return;
  jclass cls = env->FindClass(kExceptionClass);
  if (cls == nullptr) return;  // NoClassDefFoundError pending
  env->ThrowNew(cls, message);
  env->DeleteLocalRef(cls);
}

// Returns true (with a pending Java exception) when rc is not MPI_SUCCESS.
bool mpi_failed(JNIEnv* env, int rc, const char* call, const char* file, int line) {
  if (rc == MPI_SUCCESS) return false;
  char err[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  if (MPI_Error_string(rc, err, &len) != MPI_SUCCESS) std::snprintf(err, sizeof err, "MPI error code %d", rc);
  char msg[MPI_MAX_ERROR_STRING + 256];
  std::snprintf(msg, sizeof msg, "%s:%d: %s failed: %s", file, line, call, err);
  throw_message(env, msg);
  return true;
}

#define MPI_CHECK(env, call) mpi_failed(env, (call), #call, __FILE__, __LINE__)

void* ptr(jlong v) { return reinterpret_cast<void*>(static_cast<intptr_t>(v)); }

// Communicators by handle: 0 is MPI_COMM_WORLD, the others come from split0 and are MPI_COMM_NULL once freed.
std::mutex g_comms_mutex;
std::vector<MPI_Comm> g_comms{MPI_COMM_WORLD};

// The communicator of handle h, or MPI_COMM_NULL with a pending exception when h names none.
MPI_Comm comm_of(JNIEnv* env, jint h) {
  std::lock_guard<std::mutex> lock(g_comms_mutex);
  if (h < 0 || static_cast<size_t>(h) >= g_comms.size() || g_comms[static_cast<size_t>(h)] == MPI_COMM_NULL) {
    char msg[96];
    std::snprintf(msg, sizeof msg, "mpi_shim: no communicator with handle %d (freed or never made)", static_cast<int>(h));
    throw_message(env, msg);
    return MPI_COMM_NULL;
  }
  return g_comms[static_cast<size_t>(h)];
}

#define COMM_OR_RETURN(env, h, ...)          \
  MPI_Comm comm = comm_of(env, h);           \
  if (comm == MPI_COMM_NULL) return __VA_ARGS__

// Copies a Java int[] (counts or displacements, one per rank).
bool ints(JNIEnv* env, jintArray a, std::vector<int>& out) {
  if (a == nullptr) {
    throw_message(env, "mpi_shim: null int[] argument");
    return false;
  }
  try {
    out.resize(static_cast<size_t>(env->GetArrayLength(a)));
  } catch (const std::bad_alloc&) {
    throw_message(env, "mpi_shim: out of host memory");
    return false;
  }
  env->GetIntArrayRegion(a, 0, static_cast<jsize>(out.size()), out.data());
  return !env->ExceptionCheck();
}

// Open MPI loads its components (transports, collectives) with dlopen; they need libmpi's symbols in the
// global namespace, which System.load (RTLD_LOCAL) does not give. Re-open libmpi RTLD_GLOBAL first.
void promote_libmpi() {
  const char* names[] = {"libmpi.so.40", "libmpi.so.12", "libmpi.so"};
  for (const char* n : names) {
    if (dlopen(n, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD) != nullptr) return;
  }
}

jboolean initialized0(JNIEnv*, jclass) {
  int flag = 0;
  MPI_Initialized(&flag);
  return flag ? JNI_TRUE : JNI_FALSE;
}

// MPI_Init_thread with MPI_THREAD_SERIALIZED (Java serializes its calls); MPI_ERRORS_RETURN on the world.
// Open MPI busy-polls inside a blocking call unless told to yield; with a communication thread (the
// bucketed gradient all-reduce, ZeRO 3's read-ahead) that thread then takes the core from the compute
// threads it shares it with (mpirun binds each rank to a core by default). So, unless the user set it,
// waiting calls yield the processor (OMPI_MCA_mpi_yield_when_idle=1, read by MPI_Init; other MPIs
// ignore it).
void init0(JNIEnv* env, jclass) {
  promote_libmpi();
  int flag = 0;
  if (MPI_CHECK(env, MPI_Initialized(&flag))) return;
  if (!flag) {
    setenv("OMPI_MCA_mpi_yield_when_idle", "1", /*overwrite=*/0);
    int provided = 0;
    if (MPI_CHECK(env, MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided))) return;
  }
  MPI_CHECK(env, MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
}

void finalize0(JNIEnv* env, jclass) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) MPI_CHECK(env, MPI_Finalize());
}

void abort0(JNIEnv*, jclass, jint code) { MPI_Abort(MPI_COMM_WORLD, code); }

jint rank0(JNIEnv* env, jclass, jint h) {
  COMM_OR_RETURN(env, h, -1);
  int r = -1;
  if (MPI_CHECK(env, MPI_Comm_rank(comm, &r))) return -1;
  return r;
}

jint size0(JNIEnv* env, jclass, jint h) {
  COMM_OR_RETURN(env, h, -1);
  int s = -1;
  if (MPI_CHECK(env, MPI_Comm_size(comm, &s))) return -1;
  return s;
}

jstring libraryVersion0(JNIEnv* env, jclass) {
  char v[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int len = 0;
  if (MPI_CHECK(env, MPI_Get_library_version(v, &len))) return nullptr;
  for (int i = 0; i < len; i++) {
    if (v[i] == '\n') {  // the first line is enough ("Open MPI v4.1.4, package: ...")
      v[i] = 0;
      break;
    }
  }
  return env->NewStringUTF(v);
}

void barrier0(JNIEnv* env, jclass, jint h) {
  COMM_OR_RETURN(env, h);
  MPI_CHECK(env, MPI_Barrier(comm));
}

// MPI_Comm_split of communicator `parent`: ranks with the same color form a new communicator, ordered by key.
// Returns the new handle (collective over parent).
jint split0(JNIEnv* env, jclass, jint parent, jint color, jint key) {
  COMM_OR_RETURN(env, parent, -1);
  MPI_Comm child = MPI_COMM_NULL;
  if (MPI_CHECK(env, MPI_Comm_split(comm, color, key, &child))) return -1;
  if (MPI_CHECK(env, MPI_Comm_set_errhandler(child, MPI_ERRORS_RETURN))) {
    MPI_Comm_free(&child);
    return -1;
  }
  std::lock_guard<std::mutex> lock(g_comms_mutex);
  try {
    g_comms.push_back(child);
  } catch (const std::bad_alloc&) {
    MPI_Comm_free(&child);
    throw_message(env, "mpi_shim: out of host memory");
    return -1;
  }
  return static_cast<jint>(g_comms.size() - 1);
}

// MPI_Comm_free of a communicator made by split0 (collective over it); the world is freed by MPI_Finalize.
void free0(JNIEnv* env, jclass, jint h) {
  if (h == 0) {
    throw_message(env, "mpi_shim: MPI_COMM_WORLD is not freed (MPI_Finalize ends it)");
    return;
  }
  COMM_OR_RETURN(env, h);
  MPI_Comm c = comm;
  if (MPI_CHECK(env, MPI_Comm_free(&c))) return;
  std::lock_guard<std::mutex> lock(g_comms_mutex);
  g_comms[static_cast<size_t>(h)] = MPI_COMM_NULL;
}

void allgatherv0(JNIEnv* env, jclass, jint h, jlong send, jint sendBytes, jlong recv, jintArray counts, jintArray displs) {
  COMM_OR_RETURN(env, h);
  std::vector<int> c, d;
  if (!ints(env, counts, c) || !ints(env, displs, d)) return;
  // send == 0: MPI_IN_PLACE, this rank's part is already at its place in recv
  const void* s = send == 0 ? MPI_IN_PLACE : ptr(send);
  MPI_CHECK(env, MPI_Allgatherv(s, sendBytes, MPI_BYTE, ptr(recv), c.data(), d.data(), MPI_BYTE, comm));
}

void alltoallv0(JNIEnv* env, jclass, jint h, jlong send, jintArray sendCounts, jintArray sendDispls, jlong recv,
                jintArray recvCounts, jintArray recvDispls) {
  COMM_OR_RETURN(env, h);
  std::vector<int> sc, sd, rc, rd;
  if (!ints(env, sendCounts, sc) || !ints(env, sendDispls, sd) || !ints(env, recvCounts, rc) || !ints(env, recvDispls, rd)) {
    return;
  }
  MPI_CHECK(env, MPI_Alltoallv(ptr(send), sc.data(), sd.data(), MPI_BYTE, ptr(recv), rc.data(), rd.data(), MPI_BYTE,
                               comm));
}

void bcast0(JNIEnv* env, jclass, jint h, jlong addr, jint bytes, jint root) {
  COMM_OR_RETURN(env, h);
  MPI_CHECK(env, MPI_Bcast(ptr(addr), bytes, MPI_BYTE, root, comm));
}

void send0(JNIEnv* env, jclass, jint h, jlong addr, jint bytes, jint dest, jint tag) {
  COMM_OR_RETURN(env, h);
  MPI_CHECK(env, MPI_Send(ptr(addr), bytes, MPI_BYTE, dest, tag, comm));
}

void recv0(JNIEnv* env, jclass, jint h, jlong addr, jint bytes, jint src, jint tag) {
  COMM_OR_RETURN(env, h);
  MPI_Status st;
  if (MPI_CHECK(env, MPI_Recv(ptr(addr), bytes, MPI_BYTE, src, tag, comm, &st))) return;
  int got = 0;
  if (MPI_CHECK(env, MPI_Get_count(&st, MPI_BYTE, &got))) return;
  if (got != bytes) {
    char msg[160];
    std::snprintf(msg, sizeof msg, "%s:%d: MPI_Recv from rank %d received %d bytes, expected %d", __FILE__, __LINE__,
                  static_cast<int>(src), got, static_cast<int>(bytes));
    throw_message(env, msg);
  }
}

// dtype: 0 = F32 (MPI_FLOAT), 3 = I32 (MPI_INT); the codes of dev.athanor.tensor.DType.
bool mpi_type(JNIEnv* env, jint dtype, MPI_Datatype* t) {
  if (dtype == 0) {
    *t = MPI_FLOAT;
  } else if (dtype == 3) {
    *t = MPI_INT;
  } else {
    char msg[128];
    std::snprintf(msg, sizeof msg, "mpi_shim: MPI sums support F32 and I32 only, got dtype code %d", static_cast<int>(dtype));
    throw_message(env, msg);
    return false;
  }
  return true;
}

void allreduceSum0(JNIEnv* env, jclass, jint h, jlong addr, jint count, jint dtype) {
  COMM_OR_RETURN(env, h);
  MPI_Datatype t;
  if (!mpi_type(env, dtype, &t)) return;
  MPI_CHECK(env, MPI_Allreduce(MPI_IN_PLACE, ptr(addr), count, t, MPI_SUM, comm));
}

void reduceScatterSum0(JNIEnv* env, jclass, jint h, jlong send, jlong recv, jint countPerRank, jint dtype) {
  COMM_OR_RETURN(env, h);
  MPI_Datatype t;
  if (!mpi_type(env, dtype, &t)) return;
  MPI_CHECK(env, MPI_Reduce_scatter_block(ptr(send), ptr(recv), countPerRank, t, MPI_SUM, comm));
}

const JNINativeMethod kMethods[] = {
    {const_cast<char*>("initialized0"), const_cast<char*>("()Z"), reinterpret_cast<void*>(initialized0)},
    {const_cast<char*>("init0"), const_cast<char*>("()V"), reinterpret_cast<void*>(init0)},
    {const_cast<char*>("finalize0"), const_cast<char*>("()V"), reinterpret_cast<void*>(finalize0)},
    {const_cast<char*>("abort0"), const_cast<char*>("(I)V"), reinterpret_cast<void*>(abort0)},
    {const_cast<char*>("rank0"), const_cast<char*>("(I)I"), reinterpret_cast<void*>(rank0)},
    {const_cast<char*>("size0"), const_cast<char*>("(I)I"), reinterpret_cast<void*>(size0)},
    {const_cast<char*>("libraryVersion0"), const_cast<char*>("()Ljava/lang/String;"), reinterpret_cast<void*>(libraryVersion0)},
    {const_cast<char*>("barrier0"), const_cast<char*>("(I)V"), reinterpret_cast<void*>(barrier0)},
    {const_cast<char*>("split0"), const_cast<char*>("(III)I"), reinterpret_cast<void*>(split0)},
    {const_cast<char*>("free0"), const_cast<char*>("(I)V"), reinterpret_cast<void*>(free0)},
    {const_cast<char*>("allgatherv0"), const_cast<char*>("(IJIJ[I[I)V"), reinterpret_cast<void*>(allgatherv0)},
    {const_cast<char*>("alltoallv0"), const_cast<char*>("(IJ[I[IJ[I[I)V"), reinterpret_cast<void*>(alltoallv0)},
    {const_cast<char*>("bcast0"), const_cast<char*>("(IJII)V"), reinterpret_cast<void*>(bcast0)},
    {const_cast<char*>("send0"), const_cast<char*>("(IJIII)V"), reinterpret_cast<void*>(send0)},
    {const_cast<char*>("recv0"), const_cast<char*>("(IJIII)V"), reinterpret_cast<void*>(recv0)},
    {const_cast<char*>("allreduceSum0"), const_cast<char*>("(IJII)V"), reinterpret_cast<void*>(allreduceSum0)},
    {const_cast<char*>("reduceScatterSum0"), const_cast<char*>("(IJJII)V"), reinterpret_cast<void*>(reduceScatterSum0)},
};

}  // namespace

// Registers MpiNative's natives explicitly, so a missing or misspelled one fails at load time by name.
extern "C" JNIEXPORT jint JNICALL JNI_OnLoad(JavaVM* vm, void*) {
  JNIEnv* env = nullptr;
  if (vm->GetEnv(reinterpret_cast<void**>(&env), JNI_VERSION_10) != JNI_OK) return JNI_ERR;
  jclass cls = env->FindClass("dev/athanor/dist/MpiNative");
  if (cls == nullptr) return JNI_ERR;
  bool ok = env->RegisterNatives(cls, kMethods, static_cast<jint>(sizeof kMethods / sizeof kMethods[0])) == JNI_OK;
  env->DeleteLocalRef(cls);
  return ok ? JNI_VERSION_10 : JNI_ERR;
}
