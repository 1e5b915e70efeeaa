// JNI_OnLoad: registers the natives of every Java class explicitly (RegisterNatives), so a
// missing or misspelled native fails at load time with the class named, not at first call.
#include <cstdio>

#include "jni_common.h"

namespace ath_jni {

void throw_new(JNIEnv* env, const char* class_name, const char* message) {
  jclass cls = env->FindClass(class_name);
  if (cls == nullptr) return;  // NoClassDefFoundError is pending
  env->ThrowNew(cls, message);
  env->DeleteLocalRef(cls);
}

bool throw_status(JNIEnv* env, ath_status status) {
  if (status == ATH_OK) return false;
  if (env->ExceptionCheck()) return true;
  jclass cls = env->FindClass("dev/athanor/runtime/NativeException");
  if (cls == nullptr) return true;
  jmethodID ctor = env->GetMethodID(cls, "<init>", "(ILjava/lang/String;)V");
  if (ctor == nullptr) return true;
  jstring msg = env->NewStringUTF(ath_last_error());
  if (msg == nullptr) return true;
  jobject ex = env->NewObject(cls, ctor, static_cast<jint>(status), msg);
  if (ex != nullptr) env->Throw(static_cast<jthrowable>(ex));
  env->DeleteLocalRef(msg);
  env->DeleteLocalRef(cls);
  return true;
}

bool register_natives(JNIEnv* env, const char* class_name, const JNINativeMethod* methods, int count) {
  jclass cls = env->FindClass(class_name);
  if (cls == nullptr) return false;
  bool ok = env->RegisterNatives(cls, methods, count) == JNI_OK;
  env->DeleteLocalRef(cls);
  return ok;
}

}  // namespace ath_jni

extern "C" JNIEXPORT jint JNICALL JNI_OnLoad(JavaVM* vm, void*) {
  JNIEnv* env = nullptr;
  if (vm->GetEnv(reinterpret_cast<void**>(&env), JNI_VERSION_10) != JNI_OK) return JNI_ERR;
  if (!ath_jni::register_NativeRuntime(env)) return JNI_ERR;
  if (!ath_jni::register_NativeKernels(env)) return JNI_ERR;
  if (!ath_jni::register_NcclNative(env)) return JNI_ERR;
  return JNI_VERSION_10;
}
