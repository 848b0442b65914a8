// Adaptive scoring: each stream's raw anomaly score judged against that stream's own recent history.
//
// For every sample of a stream, in order (causal: only earlier samples are used):
//   1. x = the raw score. A non-finite x gives surprise +inf and changes no state except the sample count.
//   2. t = log(max(x, 0) + offset) when log_scores (reconstruction errors are skewed; on a log scale a
//      relative change weighs the same at any level), else t = x.
//   3. m = mean of the last short_window values of t (this one included), summed oldest -> newest.
//   4. The history holds up to `window` earlier values of t that were learned (step 6), kept sorted.
//      With fewer than min_history values the sample is not judged: surprise 0. Otherwise
//      z = (m - median) / max(IQR / 1.3489795, min_scale)   (linear-interpolated quantiles, as numpy's)
//      surprise = -log10(Q(z)), Q the standard normal upper tail: how unlikely a mean this high is
//      under the recent history. 0.3 at the median, 2 at 1 in 100, 4 at 1 in 10^4; it keeps growing (no
//      saturation), so alarms can be ranked by it.
//   5. drift_count = how many history values exceed the transformed `reference` (the calibrated
//      threshold): the share of recent normal-looking samples the fixed model would have alarmed on.
//   6. Learning (what keeps an anomaly from teaching itself normal): the first `warmup` samples of a
//      stream are learned unconditionally. Afterwards a sample with surprise >= gate is not learned, nor
//      are the `holdoff` samples after it. With relearn_after > 0, once more than relearn_after samples in
//      a row were gated, one in every relearn_every of them is learned, so a change that persists becomes
//      the new normal at a bounded rate (a level shift alarms, then stops; a spike never is learned).
// Memory per stream is fixed: the history ring, its sorted copy and the short ring.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace edgeanom {

struct AdaptiveParams {
    static constexpr std::int64_t kMaxWindow = std::int64_t{1} << 20;

    std::int64_t window = 1000;
    std::int64_t short_window = 1;
    std::int64_t warmup = 100;
    std::int64_t min_history = 30;
    double gate = 4.0;
    std::int64_t holdoff = 0;
    std::int64_t relearn_after = 0;  // 0: a gated sample is never learned
    std::int64_t relearn_every = 10;
    bool log_scores = true;
    double offset = 1e-6;
    double min_scale = 1e-3;
    double reference = std::numeric_limits<double>::infinity();
};

// Throws std::invalid_argument (a ValueError in Python) naming the first parameter out of range.
inline void validate(const AdaptiveParams& p) {
    std::ostringstream o;
    if (p.window < 2 || p.window > AdaptiveParams::kMaxWindow) {
        o << "window must be in [2, " << AdaptiveParams::kMaxWindow << "], got " << p.window;
    } else if (p.short_window < 1 || p.short_window > p.window) {
        o << "short_window must be in [1, window=" << p.window << "], got " << p.short_window;
    } else if (p.min_history < 2 || p.min_history > p.window) {
        o << "min_history must be in [2, window=" << p.window << "], got " << p.min_history;
    } else if (p.warmup < 0) {
        o << "warmup must be >= 0, got " << p.warmup;
    } else if (!(p.gate > 0.0)) {
        o << "gate must be > 0, got " << p.gate;
    } else if (p.holdoff < 0) {
        o << "holdoff must be >= 0, got " << p.holdoff;
    } else if (p.relearn_after < 0) {
        o << "relearn_after must be >= 0, got " << p.relearn_after;
    } else if (p.relearn_every < 1) {
        o << "relearn_every must be >= 1, got " << p.relearn_every;
    } else if (p.log_scores && !(std::isfinite(p.offset) && p.offset > 0.0)) {
        o << "offset must be a finite number > 0 with log scores, got " << p.offset;
    } else if (!(std::isfinite(p.min_scale) && p.min_scale > 0.0)) {
        o << "min_scale must be a finite number > 0, got " << p.min_scale;
    } else if (std::isnan(p.reference)) {
        o << "reference must not be NaN";
    } else {
        return;
    }
    throw std::invalid_argument(o.str());
}

// -log10 of the standard normal upper tail Q(z), accurate for any z (asymptotic series where Q underflows).
inline double normal_surprise(double z) {
    if (std::isnan(z)) return std::numeric_limits<double>::infinity();
    const double q = 0.5 * std::erfc(z / std::sqrt(2.0));
    if (q > 1e-300) return -std::log10(q);
    const double z2 = z * z;  // z > 37 here: ln Q = -z^2/2 - ln(z sqrt(2 pi)) + ln(1 - 1/z^2 + 3/z^4)
    const double ln_q = -0.5 * z2 - std::log(z) - 0.9189385332046727 + std::log1p(-1.0 / z2 + 3.0 / (z2 * z2));
    return -ln_q / std::log(10.0);
}

struct AdaptiveStream {
    std::int64_t seen = 0;            // samples of the stream (non-finite ones included)
    std::int64_t learned = 0;         // values ever added to the history
    std::vector<double> ring;         // history in arrival order (capacity window)
    std::size_t head = 0;             // next slot to overwrite once the ring is full
    std::vector<double> sorted;       // the same values, ascending
    std::vector<double> recent;       // the short window, arrival order
    std::size_t recent_head = 0;
    std::int64_t gated_run = 0;       // consecutive gated samples
    std::int64_t since_gated = std::numeric_limits<std::int64_t>::max() / 2;
    std::int64_t drift_count = 0;     // history values above the reference
    double last_surprise = 0.0;
    double median = std::numeric_limits<double>::quiet_NaN();
    double scale = std::numeric_limits<double>::quiet_NaN();
};

class AdaptiveCore {
  public:
    explicit AdaptiveCore(const AdaptiveParams& p) : p_(p) {
        validate(p_);
        ref_t_ = transform(p_.reference);
    }

    const AdaptiveParams& params() const { return p_; }

    // Processes one raw score; returns its surprise and sets `learned` to whether it joined the history.
    double step(std::int64_t stream, double x, bool& learned) {
        AdaptiveStream& st = state(stream);
        ++st.seen;
        learned = false;
        if (!std::isfinite(x)) {
            st.last_surprise = std::numeric_limits<double>::infinity();
            return st.last_surprise;
        }
        const double t = transform(x);
        push_recent(st, t);
        double sum = 0.0;
        const std::size_t r = st.recent.size();
        const std::size_t oldest = r < static_cast<std::size_t>(p_.short_window) ? 0 : st.recent_head;
        for (std::size_t i = 0; i < r; ++i) sum += st.recent[(oldest + i) % r];
        const double m = sum / static_cast<double>(r);

        double s = 0.0;
        if (static_cast<std::int64_t>(st.sorted.size()) >= p_.min_history) {
            st.median = quantile(st.sorted, 0.5);
            st.scale = std::max((quantile(st.sorted, 0.75) - quantile(st.sorted, 0.25)) / 1.3489795003921634,
                                p_.min_scale);
            s = normal_surprise((m - st.median) / st.scale);
        }
        st.last_surprise = s;

        if (st.seen <= p_.warmup) {
            learned = true;
        } else if (s >= p_.gate) {
            ++st.gated_run;
            st.since_gated = 0;
            learned = p_.relearn_after > 0 && st.gated_run > p_.relearn_after &&
                      (st.gated_run - p_.relearn_after) % p_.relearn_every == 0;
        } else {
            st.gated_run = 0;
            learned = st.since_gated >= p_.holdoff;
            ++st.since_gated;
        }
        if (learned) learn(st, t);
        return s;
    }

    // Seeds a stream's history with values known to be normal (e.g. the calibration's held-out scores)
    // before its first sample; they count as learned history but not as samples (warmup is unaffected).
    void prime(std::int64_t stream, const double* values, std::size_t n) {
        AdaptiveStream& st = state(stream);
        for (std::size_t i = 0; i < n; ++i)
            if (std::isfinite(values[i])) learn(st, transform(values[i]));
    }

    void reset(const std::int64_t* only) {
        if (only)
            streams_.erase(*only);
        else
            streams_.clear();
    }

    const std::map<std::int64_t, AdaptiveStream>& streams() const { return streams_; }

    const AdaptiveStream* find(std::int64_t stream) const {
        auto it = streams_.find(stream);
        return it == streams_.end() ? nullptr : &it->second;
    }

  private:
    double transform(double x) const {
        if (!p_.log_scores || std::isinf(x)) return x;
        return std::log(std::max(x, 0.0) + p_.offset);
    }

    // numpy's default ("linear") quantile of a sorted, non-empty vector.
    static double quantile(const std::vector<double>& v, double q) {
        const double pos = q * static_cast<double>(v.size() - 1);
        const auto lo = static_cast<std::size_t>(pos);
        const double frac = pos - static_cast<double>(lo);
        if (lo + 1 >= v.size()) return v.back();
        return v[lo] + (v[lo + 1] - v[lo]) * frac;
    }

    AdaptiveStream& state(std::int64_t stream) {
        auto it = streams_.find(stream);
        if (it == streams_.end()) {
            it = streams_.emplace(stream, AdaptiveStream{}).first;
            it->second.ring.reserve(static_cast<std::size_t>(p_.window));
            it->second.sorted.reserve(static_cast<std::size_t>(p_.window));
            it->second.recent.reserve(static_cast<std::size_t>(p_.short_window));
        }
        return it->second;
    }

    void push_recent(AdaptiveStream& st, double t) const {
        if (st.recent.size() < static_cast<std::size_t>(p_.short_window)) {
            st.recent.push_back(t);
            return;
        }
        st.recent[st.recent_head] = t;
        st.recent_head = (st.recent_head + 1) % st.recent.size();
    }

    void learn(AdaptiveStream& st, double t) {
        ++st.learned;
        if (st.ring.size() < static_cast<std::size_t>(p_.window)) {
            st.ring.push_back(t);
        } else {
            const double old = st.ring[st.head];
            st.ring[st.head] = t;
            st.head = (st.head + 1) % st.ring.size();
            st.sorted.erase(std::lower_bound(st.sorted.begin(), st.sorted.end(), old));
            if (old > ref_t_) --st.drift_count;
        }
        st.sorted.insert(std::upper_bound(st.sorted.begin(), st.sorted.end(), t), t);
        if (t > ref_t_) ++st.drift_count;
    }

    AdaptiveParams p_;
    double ref_t_;
    std::map<std::int64_t, AdaptiveStream> streams_;
};

}  // namespace edgeanom
