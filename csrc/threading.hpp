// A small persistent thread pool that runs "parallel for" jobs over chunks.
//
// Kernels cut their work into contiguous ranges of *fixed* units (samples, 4096-element blocks,
// rows); every unit is computed by the same code and written to its own output slot whatever thread
// runs it, so results are bit-identical for any thread count and any chunking. Chunks are handed
// out through an atomic counter: on a busy machine a thread that is not scheduled simply takes no
// chunk, and the caller does not wait for threads that never started (see run()).
//
// Design notes:
//   * Workers are started lazily on the first parallel call, not at import.
//   * After a job a worker spins briefly (about 50 microseconds) before sleeping on a condition
//     variable, so back-to-back calls (a video stream, a benchmark) do not pay a futex wake-up.
//   * One job at a time: a call made while the pool is busy (another Python thread with the GIL
//     released, or a nested call) runs its parts serially on its own thread instead of waiting.
//   * fork(): a child process does not have the parent's worker threads. A pthread_atfork child
//     handler abandons (intentionally leaks) the old threads and locks; the child starts fresh ones.
//   * Part functions must not throw (kernels do no allocation and no Python calls).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

#include "platform.hpp"

namespace edgeanom {

constexpr std::size_t kMaxThreads = 1024;

// CPUs this process may run on (cgroup/affinity aware on Linux), at least 1.
inline std::size_t hardware_threads() {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        const int n = CPU_COUNT(&set);
        if (n > 0) return static_cast<std::size_t>(n);
    }
#endif
    const unsigned n = std::thread::hardware_concurrency();
    return n > 0 ? n : 1;
}

// Default thread count: EDGEANOM_NUM_THREADS if set to a valid number, else hardware_threads().
inline std::size_t default_threads() {
    if (const char* env = std::getenv("EDGEANOM_NUM_THREADS")) {
        char* end = nullptr;
        const long v = std::strtol(env, &end, 10);
        if (end != env && *end == '\0' && v >= 1 && v <= static_cast<long>(kMaxThreads))
            return static_cast<std::size_t>(v);
    }
    return std::min(hardware_threads(), kMaxThreads);
}

class ThreadPool {
  public:
    ThreadPool() : nthreads_(default_threads()), s_(std::make_unique<State>()) {}
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;
    ~ThreadPool() { stop_workers(*s_); }

    std::size_t num_threads() const { return nthreads_.load(std::memory_order_relaxed); }

    // Changes the thread count (1..kMaxThreads); waits for a running job to finish.
    void set_num_threads(std::size_t n) {
        State& s = *s_;
        std::lock_guard<std::mutex> run_lock(s.run_mutex);
        if (n == nthreads_.load()) return;
        stop_workers(s);
        nthreads_.store(n);
    }

    // Calls fn(chunk, slot) once for every chunk in [0, nchunks), on at most `max_slots` threads
    // (the caller is slot 0). Chunks are handed out dynamically; returns when all are done.
    template <class F>
    void run(std::size_t nchunks, std::size_t max_slots, F& fn) {
        if (nchunks == 0) return;
        const std::size_t nthreads = std::min(num_threads(), max_slots);
        if (nchunks == 1 || nthreads <= 1) {
            for (std::size_t c = 0; c < nchunks; ++c) fn(c, 0);
            return;
        }
        State& s = *s_;
        std::unique_lock<std::mutex> run_lock(s.run_mutex, std::try_to_lock);
        if (!run_lock.owns_lock()) {  // busy: run serially here, same results
            for (std::size_t c = 0; c < nchunks; ++c) fn(c, 0);
            return;
        }
        ensure_workers(s, num_threads() - 1);
        // Publish the job, then open it (release), then wake the workers.
        s.job_call = &call_chunk<F>;
        s.job_ctx = &fn;
        s.job_nchunks = nchunks;
        s.job_slots = nthreads;
        s.next.store(0, std::memory_order_relaxed);
        s.open.store(true, std::memory_order_seq_cst);
        {
            std::lock_guard<std::mutex> lock(s.mutex);
            s.epoch.fetch_add(1, std::memory_order_release);
        }
        s.cv_work.notify_all();
        for (std::size_t c; (c = s.next.fetch_add(1, std::memory_order_relaxed)) < nchunks;) fn(c, 0);
        // Close the job. A worker that registers (active++) after this sees open == false and leaves
        // without touching the job; one that registered before is waited for. Workers that were not
        // scheduled at all in the meantime (a busy machine) are not waited for.
        s.open.store(false, std::memory_order_seq_cst);
        for (int i = 0; i < 4096; ++i) {
            if (s.active.load(std::memory_order_seq_cst) == 0) return;
            EDGEANOM_PAUSE();
        }
        std::unique_lock<std::mutex> lock(s.mutex);
        s.cv_done.wait(lock, [&s] { return s.active.load(std::memory_order_seq_cst) == 0; });
    }

    // pthread_atfork child handler: the child has only the forking thread, so the worker threads and
    // possibly held mutexes are gone/stale. Joining would hang and destroying a joinable std::thread
    // would abort, so the old state is deliberately leaked and a fresh one started lazily.
    void after_fork_child() {
        (void)s_.release();
        s_ = std::make_unique<State>();
    }

  private:
    struct State {
        std::mutex run_mutex;  // held for the duration of a parallel job
        std::mutex mutex;      // guards the sleep/wake handshake
        std::condition_variable cv_work, cv_done;
        std::vector<std::thread> workers;
        std::atomic<std::uint64_t> epoch{0};  // bumped to wake the workers
        std::atomic<bool> open{false};        // a job is accepting helpers
        std::atomic<std::size_t> active{0};   // workers registered in the current job
        std::atomic<std::size_t> next{0};     // next chunk to hand out
        void (*job_call)(void*, std::size_t, std::size_t) = nullptr;
        void* job_ctx = nullptr;
        std::size_t job_nchunks = 0, job_slots = 0;
        bool stop = false;
    };

    template <class F>
    static void call_chunk(void* ctx, std::size_t chunk, std::size_t slot) {
        (*static_cast<F*>(ctx))(chunk, slot);
    }

    static void ensure_workers(State& s, std::size_t want) {
        if (s.workers.size() == want) return;
        stop_workers(s);
        s.workers.reserve(want);
        // The epoch is read here, not in the new thread, so that a thread that starts late still
        // sees the job about to be published as new.
        const std::uint64_t start_epoch = s.epoch.load(std::memory_order_acquire);
        for (std::size_t i = 0; i < want; ++i)
            s.workers.emplace_back([&s, i, start_epoch] { worker_loop(s, i + 1, start_epoch); });
    }

    static void stop_workers(State& s) {
        if (s.workers.empty()) return;
        {
            std::lock_guard<std::mutex> lock(s.mutex);
            s.stop = true;
            s.epoch.fetch_add(1, std::memory_order_release);
        }
        s.cv_work.notify_all();
        for (auto& t : s.workers) t.join();
        s.workers.clear();
        s.stop = false;
    }

    static void help(State& s, std::size_t slot) {
        s.active.fetch_add(1, std::memory_order_seq_cst);
        if (s.open.load(std::memory_order_seq_cst) && slot < s.job_slots) {
            const std::size_t n = s.job_nchunks;
            for (std::size_t c; (c = s.next.fetch_add(1, std::memory_order_relaxed)) < n;)
                s.job_call(s.job_ctx, c, slot);
        }
        if (s.active.fetch_sub(1, std::memory_order_seq_cst) == 1) {
            std::lock_guard<std::mutex> lock(s.mutex);
            s.cv_done.notify_one();
        }
    }

    static void worker_loop(State& s, std::size_t slot, std::uint64_t seen) {
        for (;;) {
            std::uint64_t e = seen;
            // Spin for a short while (about 50 us) before blocking.
            const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
            for (unsigned i = 0;; ++i) {
                e = s.epoch.load(std::memory_order_acquire);
                if (e != seen) break;
                if ((i & 63u) == 63u && std::chrono::steady_clock::now() > spin_until) break;
                EDGEANOM_PAUSE();
            }
            if (e == seen) {
                std::unique_lock<std::mutex> lock(s.mutex);
                s.cv_work.wait(lock, [&] { return s.epoch.load(std::memory_order_acquire) != seen; });
                e = s.epoch.load(std::memory_order_acquire);
            }
            seen = e;
            {
                std::lock_guard<std::mutex> lock(s.mutex);
                if (s.stop) return;
            }
            help(s, slot);
        }
    }

    std::atomic<std::size_t> nthreads_;
    std::unique_ptr<State> s_;
};

// The process-wide pool. Intentionally never destroyed: joining threads from a static destructor
// during interpreter shutdown is fragile, and the OS reclaims everything at exit.
inline ThreadPool& pool() {
    static ThreadPool* p = [] {
        ThreadPool* created = std::make_unique<ThreadPool>().release();
#if defined(__unix__) || defined(__APPLE__)
        pthread_atfork(nullptr, nullptr, [] { pool().after_fork_child(); });
#endif
        return created;
    }();
    return *p;
}

// Splits [0, n) into `parts` contiguous ranges of near-equal size; returns range p.
struct Range {
    std::size_t begin, end;
};
inline Range split_range(std::size_t n, std::size_t parts, std::size_t p) {
    const std::size_t q = n / parts, r = n % parts;
    const std::size_t begin = p * q + std::min(p, r);
    return {begin, begin + q + (p < r ? 1 : 0)};
}

// Testing hook: when non-zero, replaces every kernel's work thresholds below, so that small inputs
// can be split across many threads and chunks (to check that results do not depend on the split).
inline std::atomic<std::size_t>& grain_override() {
    static std::atomic<std::size_t> g{0};
    return g;
}

// How a kernel splits `units` work units (of total cost `work`) across threads.
struct Plan {
    std::size_t chunks;  // contiguous ranges of units, handed out dynamically
    std::size_t slots;   // threads that may take part (scratch buffers needed)
};

// Serial below `min_parallel` work; otherwise chunks of about `chunk_work` (at least one per thread,
// at most one per unit).
inline Plan plan_work(std::size_t work, std::size_t units, std::size_t min_parallel, std::size_t chunk_work) {
    const std::size_t g = grain_override().load(std::memory_order_relaxed);
    if (g != 0) min_parallel = chunk_work = g;
    const std::size_t t = pool().num_threads();
    if (t <= 1 || work < min_parallel || units <= 1) return {1, 1};
    std::size_t chunks = std::max(work / std::max<std::size_t>(chunk_work, 1), t);
    chunks = std::min(chunks, units);
    return {std::max<std::size_t>(chunks, 1), t};
}

// Runs f(begin, end, slot) over the plan's chunks of [0, units).
template <class F>
void parallel_ranges(std::size_t units, const Plan& plan, F&& f) {
    auto chunk = [&](std::size_t c, std::size_t slot) {
        const Range r = split_range(units, plan.chunks, c);
        f(r.begin, r.end, slot);
    };
    pool().run(plan.chunks, plan.slots, chunk);
}

}  // namespace edgeanom
