// Streaming alarm state machine, one state per stream id.
//
// For every sample of a stream, in order (index = 0-based count of that stream's samples):
//   1. x = the score; NaN and +-inf count as +inf.
//   2. smoothed s: without EWMA s = x; with EWMA s = a*x + (1-a)*s_prev (the first finite sample
//      initialises s = x). A non-finite x gives s = +inf for that sample but is not folded into the
//      EWMA state, so one bad frame cannot hold the alarm on forever.
//   3. hot = s > threshold. "vote" = at least k of the last n samples were hot (while the alarm is
//      off; the window is emptied whenever an alarm ends, so a new alarm needs k fresh hot samples).
//   4. OFF -> ON when vote holds: a "start" event (index = this sample).
//      ON -> OFF when the clear condition holds AND the alarm has lasted at least min_hold samples
//      (index - start_index >= min_hold). Clear condition: without hysteresis, the vote fails; with
//      clear_threshold set, s < clear_threshold. The "end" event's index is this sample (the first one
//      not in alarm), so an alarm covers the samples [start_index, index). The peak is the max s over
//      those samples, peak_index the first sample that reached it.
//   5. flag = alarm state after the sample.
// flush() ends open alarms with index = the stream's sample count (one past its last sample).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace edgeanom {

struct AlarmParams {
    // Largest voting window: the per-stream ring holds k indices, so this bounds its memory.
    static constexpr std::int64_t kMaxWindow = std::int64_t{1} << 20;

    double threshold = 0.0;
    bool use_ewma = false;
    double alpha = 1.0;
    std::int64_t k = 1, n = 1;
    bool hysteresis = false;
    double clear_threshold = 0.0;
    std::int64_t min_hold = 0;
};

// Throws std::invalid_argument (a ValueError in Python) naming the first parameter that breaks the
// state machine's invariants: a finite threshold, 0 < alpha <= 1, 1 <= k <= n <= kMaxWindow (k = 0
// would make every sample a vote), a finite clear threshold not above the threshold, min_hold >= 0.
inline void validate(const AlarmParams& p) {
    std::ostringstream o;
    if (!std::isfinite(p.threshold)) {
        o << "threshold must be finite, got " << p.threshold;
    } else if (p.use_ewma && !(p.alpha > 0.0 && p.alpha <= 1.0)) {
        o << "ewma_alpha must satisfy 0 < ewma_alpha <= 1, got " << p.alpha;
    } else if (p.n < 1 || p.n > AlarmParams::kMaxWindow) {
        o << "n must be in [1, " << AlarmParams::kMaxWindow << "], got " << p.n;
    } else if (p.k < 1 || p.k > AlarmParams::kMaxWindow) {
        o << "k must be in [1, " << AlarmParams::kMaxWindow << "], got " << p.k;
    } else if (p.k > p.n) {
        o << "k-of-n voting needs 1 <= k <= n, got k=" << p.k << ", n=" << p.n;
    } else if (p.hysteresis && !std::isfinite(p.clear_threshold)) {
        o << "clear_threshold must be finite, got " << p.clear_threshold;
    } else if (p.hysteresis && p.clear_threshold > p.threshold) {
        o << "clear_threshold (" << p.clear_threshold << ") must be <= threshold (" << p.threshold << ")";
    } else if (p.min_hold < 0) {
        o << "min_hold must be >= 0, got " << p.min_hold;
    } else {
        return;
    }
    throw std::invalid_argument(o.str());
}

struct AlarmEvent {
    bool start;  // true: "start", false: "end"
    std::int64_t stream;
    std::int64_t index;
    double peak;
    std::int64_t peak_index;
    std::int64_t start_index;
};

struct StreamState {
    std::int64_t count = 0;  // samples seen
    bool has_ewma = false;
    double ewma = 0.0;
    double last = 0.0;  // last smoothed value (inf for a non-finite sample)
    // Indices of the most recent hot samples (at most k, a ring once k are held; it grows as hot samples come,
    // so memory follows use, not k): the vote holds when there are
    // k of them and the oldest is inside the window of the last n samples.
    std::vector<std::int64_t> hot;
    std::size_t hot_head = 0;  // once the ring holds k: the oldest entry, overwritten next
    bool on = false;
    std::int64_t start_index = -1, peak_index = -1;
    double peak = 0.0;
};

class AlarmCore {
  public:
    explicit AlarmCore(const AlarmParams& p) : p_(p) { validate(p_); }

    const AlarmParams& params() const { return p_; }

    // Processes one sample; returns the alarm flag after it and the smoothed score.
    bool step(std::int64_t stream, double x, double& smoothed, std::vector<AlarmEvent>& events) {
        StreamState& st = state(stream);
        const std::int64_t idx = st.count++;
        double s;
        if (!std::isfinite(x)) {
            s = std::numeric_limits<double>::infinity();
        } else if (p_.use_ewma) {
            st.ewma = st.has_ewma ? p_.alpha * x + (1.0 - p_.alpha) * st.ewma : x;
            st.has_ewma = true;
            s = st.ewma;
        } else {
            s = x;
        }
        st.last = s;
        smoothed = s;
        if (s > p_.threshold) push_hot(st, idx);
        const bool vote = votes(st, idx);
        if (!st.on) {
            if (vote) {
                st.on = true;
                st.start_index = idx;
                st.peak = s;
                st.peak_index = idx;
                events.push_back({true, stream, idx, s, idx, idx});
            }
            return st.on;
        }
        const bool clear = p_.hysteresis ? (s < p_.clear_threshold) : !vote;
        if (clear && idx - st.start_index >= p_.min_hold) {
            end_alarm(stream, st, idx, events);
            return false;
        }
        if (s > st.peak) {
            st.peak = s;
            st.peak_index = idx;
        }
        return true;
    }

    // Ends open alarms (all streams, or one); keeps the streams. Events in stream-id order.
    void flush(const std::int64_t* only, std::vector<AlarmEvent>& events) {
        for (auto& kv : streams_) {
            if (only && kv.first != *only) continue;
            if (kv.second.on) end_alarm(kv.first, kv.second, kv.second.count, events);
        }
    }

    // Forgets all streams, or one (its next sample starts again at index 0). No events.
    void reset(const std::int64_t* only) {
        cached_ = nullptr;
        if (only)
            streams_.erase(*only);
        else
            streams_.clear();
    }

    const std::map<std::int64_t, StreamState>& streams() const { return streams_; }

    const StreamState* find(std::int64_t stream) const {
        auto it = streams_.find(stream);
        return it == streams_.end() ? nullptr : &it->second;
    }

    // Number of hot samples in the current window (at most k are tracked).
    std::int64_t hot_in_window(const StreamState& st) const {
        std::int64_t c = 0;
        const std::int64_t lo = st.count - p_.n;  // window = indices [count - n, count - 1]
        for (std::size_t i = 0; i < st.hot.size(); ++i) {
            const std::size_t slot = (st.hot_head + st.hot.size() - 1 - i) % st.hot.size();
            if (st.hot[slot] >= lo) ++c;
        }
        return c;
    }

  private:
    StreamState& state(std::int64_t stream) {
        if (cached_ && cached_id_ == stream) return *cached_;
        auto it = streams_.find(stream);
        if (it == streams_.end()) {
            it = streams_.emplace(stream, StreamState{}).first;
        }
        cached_ = &it->second;  // std::map nodes are stable; reset() clears the cache
        cached_id_ = stream;
        return *cached_;
    }

    void push_hot(StreamState& st, std::int64_t idx) const {
        if (st.hot.size() < static_cast<std::size_t>(p_.k)) {
            st.hot.push_back(idx);  // in arrival order; head stays 0, the oldest once full
            return;
        }
        st.hot[st.hot_head] = idx;
        st.hot_head = (st.hot_head + 1) % st.hot.size();
    }

    bool votes(const StreamState& st, std::int64_t idx) const {
        if (st.hot.size() < static_cast<std::size_t>(p_.k)) return false;  // fewer than k hot samples tracked
        const std::int64_t oldest = st.hot[st.hot_head];  // ring is full: head is the oldest
        return oldest > idx - p_.n;
    }

    static void end_alarm(std::int64_t stream, StreamState& st, std::int64_t idx, std::vector<AlarmEvent>& events) {
        events.push_back({false, stream, idx, st.peak, st.peak_index, st.start_index});
        st.on = false;
        st.hot.clear();  // keeps its capacity: no allocation for the next alarm
        st.hot_head = 0;
    }

    AlarmParams p_;
    std::map<std::int64_t, StreamState> streams_;
    StreamState* cached_ = nullptr;
    std::int64_t cached_id_ = 0;
};

}  // namespace edgeanom
