// Fixed-size thread pool with a generation counter: workers sleep on a condition variable, the
// caller publishes a job, every worker runs its slice, and the caller waits for the count to drop.
#include "threadpool.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace ath::cpu {
namespace {

thread_local bool t_in_pool_task = false;

class Pool {
 public:
  explicit Pool(int n) { start(n); }
  ~Pool() { stop(); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int n) {
    std::lock_guard<std::mutex> call(call_mutex_);
    stop();
    start(n);
  }

  void run(const std::function<void(int, int)>& fn) {
    if (t_in_pool_task || workers_.empty()) {  // nested or single-threaded: run inline
      if (workers_.empty()) {
        bool prev = t_in_pool_task;
        t_in_pool_task = true;
        fn(0, 1);
        t_in_pool_task = prev;
      } else {
        fn(0, 1);
      }
      return;
    }
    std::lock_guard<std::mutex> call(call_mutex_);
    const int nt = size();
    {
      std::lock_guard<std::mutex> lk(mutex_);
      job_ = &fn;
      pending_ = nt - 1;
      ++generation_;
    }
    wake_.notify_all();
    t_in_pool_task = true;
    fn(0, nt);
    t_in_pool_task = false;
    std::unique_lock<std::mutex> lk(mutex_);
    done_.wait(lk, [&] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  void start(int n) {
    n = std::max(1, n);
    quit_ = false;
    // Workers start from the generation current now: a job published before a new thread first
    // takes the lock must still be seen by it (reading generation_ in the thread would miss it).
    const uint64_t start_gen = generation_;
    for (int t = 1; t < n; ++t) workers_.emplace_back([this, t, start_gen] { loop(t, start_gen); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mutex_);
      quit_ = true;
      ++generation_;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  void loop(int tid, uint64_t seen) {
    t_in_pool_task = true;
    for (;;) {
      const std::function<void(int, int)>* job;
      int nt;
      {
        std::unique_lock<std::mutex> lk(mutex_);
        wake_.wait(lk, [&] { return generation_ != seen; });
        seen = generation_;
        if (quit_) return;
        job = job_;
        nt = static_cast<int>(workers_.size()) + 1;
      }
      (*job)(tid, nt);
      {
        std::lock_guard<std::mutex> lk(mutex_);
        if (--pending_ == 0) done_.notify_one();
      }
    }
  }

  std::vector<std::thread> workers_;
  std::mutex call_mutex_;  // one job at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int, int)>* job_ = nullptr;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool quit_ = false;
};

}  // namespace

// The CPUs this process may run on (its affinity mask: taskset, cgroup cpusets, a launcher pinning
// ranks to cores), so that processes pinned to disjoint cores do not oversubscribe them; the
// online cores when the mask cannot be read.
int default_num_threads() {
  for (int cpus = 1024; cpus <= (1 << 20); cpus *= 2) {  // the mask may be wider than a cpu_set_t
    cpu_set_t* set = CPU_ALLOC(cpus);
    if (set == nullptr) break;
    const size_t bytes = CPU_ALLOC_SIZE(cpus);
    CPU_ZERO_S(bytes, set);
    const int rc = sched_getaffinity(0, bytes, set);
    const int err = errno;
    const int n = rc == 0 ? CPU_COUNT_S(bytes, set) : 0;
    CPU_FREE(set);
    if (rc == 0) {
      if (n > 0) return n;
      break;
    }
    if (err != EINVAL) break;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

namespace {

Pool& pool() {
  static Pool* p = new Pool(default_num_threads());  // never destroyed: avoids joins during exit
  return *p;
}

}  // namespace

int num_threads() { return pool().size(); }

bool set_num_threads(int n) {
  if (n < 1) return false;
  if (n != pool().size()) pool().resize(n);
  return true;
}

void run_on_all(const std::function<void(int, int)>& fn) { pool().run(fn); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_chunks = (n + grain - 1) / grain;
  const int nt = num_threads();
  if (max_chunks <= 1 || nt == 1 || t_in_pool_task) {
    fn(0, n, 0);
    return;
  }
  const int chunks = static_cast<int>(std::min<int64_t>(max_chunks, nt));
  run_on_all([&](int tid, int) {
    if (tid >= chunks) return;
    int64_t b, e;
    static_range(n, tid, chunks, &b, &e);
    if (b < e) fn(b, e, tid);
  });
}

}  // namespace ath::cpu
