// Thread-local error message storage behind ath_last_error().
#include "status.h"

#include <cstdio>

namespace {
thread_local char g_message[2048] = "";
}

namespace ath {

ath_status fail(ath_status status, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(g_message, sizeof g_message, fmt, ap);
  va_end(ap);
  return status;
}

}  // namespace ath

extern "C" const char* ath_last_error(void) { return g_message; }

extern "C" size_t ath_dtype_size(int dtype) {
  switch (dtype) {
    case ATH_F32: return 4;
    case ATH_BF16: return 2;
    case ATH_F16: return 2;
    case ATH_I32: return 4;
    default: return 0;
  }
}
