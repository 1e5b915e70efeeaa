// Error reporting shared by every native source: a thread-local message behind ath_last_error().
// Ops return ath_status; on failure they call ath::fail(status, fmt, ...) which formats the message
// and returns the status, so `return ath::fail(ATH_ERR_INVALID, "m=%lld must be > 0", m);` reads as
// one statement. No C++ exception ever leaves a function of the C ABI.
#pragma once
#include "athanor/athanor.h"

#include <cstdarg>

namespace ath {

// Formats the message for the current thread and returns `status`.
ath_status fail(ath_status status, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Returns ATH_ERR_SCRATCH with a message naming `op`, and sets ath_scratch_needed() to `bytes`.
ath_status need_scratch(const char* op, size_t bytes, size_t available);

}  // namespace ath

// Evaluates an expression returning ath_status and propagates a failure.
#define ATH_TRY(expr)                          \
  do {                                         \
    ath_status ath_try_status_ = (expr);       \
    if (ath_try_status_ != ATH_OK) return ath_try_status_; \
  } while (0)

// Argument check: returns ATH_ERR_INVALID naming the op and the failed condition.
#define ATH_CHECK_ARG(cond, op, ...)                                              \
  do {                                                                            \
    if (!(cond)) return ::ath::fail(ATH_ERR_INVALID, op ": " __VA_ARGS__);        \
  } while (0)

// Wraps a C ABI body so that any C++ exception (std::bad_alloc, ...) becomes a status.
#define ATH_GUARD_BEGIN try {
#define ATH_GUARD_END(op)                                                         \
  }                                                                               \
  catch (const std::bad_alloc&) {                                                 \
    return ::ath::fail(ATH_ERR_OOM, "%s: host allocation failed", op);            \
  }                                                                               \
  catch (const std::exception& e) {                                               \
    return ::ath::fail(ATH_ERR_INTERNAL, "%s: %s", op, e.what());                 \
  }                                                                               \
  catch (...) {                                                                   \
    return ::ath::fail(ATH_ERR_INTERNAL, "%s: unknown C++ exception", op);        \
  }
