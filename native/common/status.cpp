// Thread-local error message storage behind ath_last_error().
#include "status.h"

#include <cstdio>

namespace {
thread_local char g_message[2048] = "";
thread_local size_t g_scratch_needed = 0;
}

namespace ath {

ath_status fail(ath_status status, const char* fmt, ...) {
  g_scratch_needed = 0;
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(g_message, sizeof g_message, fmt, ap);
  va_end(ap);
  return status;
}

ath_status need_scratch(const char* op, size_t bytes, size_t available) {
  fail(ATH_ERR_SCRATCH, "%s: needs %zu bytes of scratch, the context has %zu", op, bytes, available);
  g_scratch_needed = bytes;
  return ATH_ERR_SCRATCH;
}

}  // namespace ath

extern "C" const char* ath_last_error(void) { return g_message; }

extern "C" size_t ath_scratch_needed(void) { return g_scratch_needed; }

extern "C" size_t ath_dtype_size(int dtype) {
  switch (dtype) {
    case ATH_F32: return 4;
    case ATH_BF16: return 2;
    case ATH_F16: return 2;
    case ATH_I32: return 4;
    default: return 0;
  }
}
