// Shared JNI helpers: turning an ath_status into a pending Java exception, and the registration
// hooks that JNI_OnLoad (jni_onload.cpp) calls for each Java class with natives.
//
// Rule for every JNI function: call the C ABI, and if the status is not ATH_OK call
// ath_jni::throw_status(env, status) and return a neutral value. No C++ exception may escape.
#pragma once
#include <jni.h>

#include "athanor/athanor.h"

namespace ath_jni {

// Throws dev.athanor.runtime.NativeException(int status, String message) with ath_last_error().
// Returns true when an exception was thrown (status != ATH_OK).
bool throw_status(JNIEnv* env, ath_status status);
// Throws the named Java exception class with a message.
void throw_new(JNIEnv* env, const char* class_name, const char* message);

// RegisterNatives for one class; returns false (with a pending exception) on failure.
bool register_natives(JNIEnv* env, const char* class_name, const JNINativeMethod* methods, int count);

// One per Java class with natives; each lives in jni_<JavaClass>.cpp.
bool register_NativeRuntime(JNIEnv* env);
bool register_NativeKernels(JNIEnv* env);
bool register_NcclNative(JNIEnv* env);

}  // namespace ath_jni

// Convenience: pointer from a Java long.
template <typename T>
inline T* jptr(jlong v) { return reinterpret_cast<T*>(static_cast<intptr_t>(v)); }
