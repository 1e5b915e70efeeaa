// JNI for dev.athanor.dist.NcclNative: NCCL loaded at run time (native/dist/nccl.cpp). Each function translates
// Java arguments, calls the C ABI and turns a non-OK status into NativeException (ath_jni::throw_status). Pointers
// and streams come as longs (Tensor.address(), Stream.handle()); Java (NcclCommunicator) checks devices, dtypes and
// sizes first, the checks here only keep a bad call from crashing the JVM.
#include <cstdint>

#include "common/status.h"
#include "jni_common.h"

namespace {

void* P(jlong v) { return reinterpret_cast<void*>(static_cast<intptr_t>(v)); }
ath_stream S(jlong v) { return static_cast<ath_stream>(P(v)); }

bool count_ok(JNIEnv* env, jlong n, const char* op) {
  if (n >= 0) return true;
  ath_jni::throw_status(env, ath::fail(ATH_ERR_INVALID, "%s: count=%lld must be >= 0", op, static_cast<long long>(n)));
  return false;
}

void load0(JNIEnv* env, jclass, jstring path) {
  const char* p = path != nullptr ? env->GetStringUTFChars(path, nullptr) : nullptr;
  if (path != nullptr && p == nullptr) return;  // OutOfMemoryError pending
  ath_status st = ath_nccl_load(p);
  if (p != nullptr) env->ReleaseStringUTFChars(path, p);
  ath_jni::throw_status(env, st);
}

jint version0(JNIEnv* env, jclass) {
  int v = 0;
  ath_jni::throw_status(env, ath_nccl_version(&v));
  return v;
}

jbyteArray uniqueId0(JNIEnv* env, jclass) {
  jbyte id[128] = {0};
  if (ath_jni::throw_status(env, ath_nccl_unique_id(id))) return nullptr;
  jbyteArray out = env->NewByteArray(128);
  if (out != nullptr) env->SetByteArrayRegion(out, 0, 128, id);
  return out;
}

jlong commInit0(JNIEnv* env, jclass, jint nranks, jbyteArray id, jint rank, jint device) {
  if (id == nullptr || env->GetArrayLength(id) != 128) {
    ath_jni::throw_status(env, ath::fail(ATH_ERR_INVALID, "ath_nccl_comm_init: the unique id must be 128 bytes"));
    return 0;
  }
  jbyte bytes[128];
  env->GetByteArrayRegion(id, 0, 128, bytes);
  void* comm = nullptr;
  if (ath_jni::throw_status(env, ath_nccl_comm_init(nranks, bytes, rank, device, &comm))) return 0;
  return static_cast<jlong>(reinterpret_cast<intptr_t>(comm));
}

void commDestroy0(JNIEnv* env, jclass, jlong comm, jboolean abort) {
  ath_jni::throw_status(env, ath_nccl_comm_destroy(P(comm), abort ? 1 : 0));
}

void allReduce0(JNIEnv* env, jclass, jlong comm, jlong send, jlong recv, jlong count, jint dtype, jlong stream) {
  if (!count_ok(env, count, "ath_nccl_all_reduce")) return;
  ath_jni::throw_status(env, ath_nccl_all_reduce(P(comm), P(send), P(recv), static_cast<size_t>(count), dtype, S(stream)));
}

void reduce0(JNIEnv* env, jclass, jlong comm, jlong send, jlong recv, jlong count, jint dtype, jint root, jlong stream) {
  if (!count_ok(env, count, "ath_nccl_reduce")) return;
  ath_jni::throw_status(env, ath_nccl_reduce(P(comm), P(send), P(recv), static_cast<size_t>(count), dtype, root, S(stream)));
}

void reduceScatter0(JNIEnv* env, jclass, jlong comm, jlong send, jlong recv, jlong count, jint dtype, jlong stream) {
  if (!count_ok(env, count, "ath_nccl_reduce_scatter")) return;
  ath_jni::throw_status(env, ath_nccl_reduce_scatter(P(comm), P(send), P(recv), static_cast<size_t>(count), dtype,
                                                     S(stream)));
}

void allGather0(JNIEnv* env, jclass, jlong comm, jlong send, jlong recv, jlong count, jint dtype, jlong stream) {
  if (!count_ok(env, count, "ath_nccl_all_gather")) return;
  ath_jni::throw_status(env, ath_nccl_all_gather(P(comm), P(send), P(recv), static_cast<size_t>(count), dtype, S(stream)));
}

void broadcast0(JNIEnv* env, jclass, jlong comm, jlong send, jlong recv, jlong count, jint dtype, jint root, jlong stream) {
  if (!count_ok(env, count, "ath_nccl_broadcast")) return;
  ath_jni::throw_status(env, ath_nccl_broadcast(P(comm), P(send), P(recv), static_cast<size_t>(count), dtype, root,
                                                S(stream)));
}

void send0(JNIEnv* env, jclass, jlong comm, jlong buf, jlong count, jint dtype, jint peer, jlong stream) {
  if (!count_ok(env, count, "ath_nccl_send")) return;
  ath_jni::throw_status(env, ath_nccl_send(P(comm), P(buf), static_cast<size_t>(count), dtype, peer, S(stream)));
}

void recv0(JNIEnv* env, jclass, jlong comm, jlong buf, jlong count, jint dtype, jint peer, jlong stream) {
  if (!count_ok(env, count, "ath_nccl_recv")) return;
  ath_jni::throw_status(env, ath_nccl_recv(P(comm), P(buf), static_cast<size_t>(count), dtype, peer, S(stream)));
}

void group0(JNIEnv* env, jclass, jboolean start) { ath_jni::throw_status(env, ath_nccl_group(start ? 1 : 0)); }

#define M(name, sig) {const_cast<char*>(#name), const_cast<char*>(sig), reinterpret_cast<void*>(name)}
const JNINativeMethod kMethods[] = {
    M(load0, "(Ljava/lang/String;)V"),
    M(version0, "()I"),
    M(uniqueId0, "()[B"),
    M(commInit0, "(I[BII)J"),
    M(commDestroy0, "(JZ)V"),
    M(allReduce0, "(JJJJIJ)V"),
    M(reduce0, "(JJJJIIJ)V"),
    M(reduceScatter0, "(JJJJIJ)V"),
    M(allGather0, "(JJJJIJ)V"),
    M(broadcast0, "(JJJJIIJ)V"),
    M(send0, "(JJJIIJ)V"),
    M(recv0, "(JJJIIJ)V"),
    M(group0, "(Z)V"),
};
#undef M

}  // namespace

namespace ath_jni {
bool register_NcclNative(JNIEnv* env) {
  return register_natives(env, "dev/athanor/dist/NcclNative", kMethods, sizeof kMethods / sizeof kMethods[0]);
}
}  // namespace ath_jni
