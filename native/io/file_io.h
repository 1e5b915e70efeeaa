// Internal helpers of the DISK-tier file I/O (file_io.cpp) that are not part of the C ABI, used by the
// JNI layer (jni_NativeRuntime.cpp) for diagnostics and tests.
#pragma once
#include <cstdint>

namespace ath::io {

// 1 when transfers on this handle may use O_DIRECT (the file system accepted O_DIRECT at open and no
// direct transfer has failed with EINVAL since), 0 when every transfer is buffered, -1 for an unknown handle.
int is_direct(int64_t handle);

// The alignment (bytes) that address, file offset and length must share for a transfer to go direct.
constexpr int64_t kDirectAlignment = 4096;

}  // namespace ath::io
