// The CPU backend's one thread pool, reused by every op. Its default size is the number of CPUs in
// the process's affinity mask (sched_getaffinity), so that processes pinned to disjoint cores do
// not oversubscribe them; the online cores when the mask cannot be read. ath_cpu_set_threads
// resizes it.
//
// Determinism contract: work is split statically (parallel_for hands thread t the same contiguous
// range [t*n/T, (t+1)*n/T) for a given thread count T), but no op lets the thread count reach its
// arithmetic: every result is bit-identical for ANY thread count. Elementwise and per-row work is
// independent of the split; a reduction cuts its input into chunks of a fixed size (a constant of
// the op), sums each chunk in order, and combines the chunk results in chunk order (cpu_common.h,
// sum_partials). Threads only decide who computes which chunk; per-thread partials are never used.
// Calls from several Java threads are serialized (the pool is never oversubscribed); a call made
// from inside a pool task runs inline on the calling thread.
#pragma once
#include <cstdint>
#include <functional>

namespace ath::cpu {

int num_threads();
// The pool's default size: CPUs in the calling thread's affinity mask (sched_getaffinity), else the
// online cores. Evaluated when the pool is first used.
int default_num_threads();
// Resizes the pool (n >= 1). Waits for running work to finish first.
bool set_num_threads(int n);

// Runs fn(tid, nthreads) once on each of the pool's threads (tid 0 is the caller) and waits.
void run_on_all(const std::function<void(int tid, int nthreads)>& fn);

// Splits [0, n) statically into at most num_threads() contiguous ranges of at least `grain`
// items each and runs fn(begin, end, tid) for each, waiting for all. tid < num_threads().
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end, int tid)>& fn);

// The static range of thread `tid` out of `nthreads` over [0, n).
inline void static_range(int64_t n, int tid, int nthreads, int64_t* begin, int64_t* end) {
  *begin = n * tid / nthreads;
  *end = n * (tid + 1) / nthreads;
}

}  // namespace ath::cpu
