// Per-sample scores from error maps: the max pixel, or the mean of the k largest pixels.
//
// NaN pixels count as +inf (non-finite policy). An empty map scores 0. top-k: the k largest values are
// selected with std::nth_element, sorted in descending order and summed in float64 in that order, so
// the result is a function of the map alone (any thread count).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <vector>

#include "half.hpp"
#include "threading.hpp"

namespace edgeanom {

enum class MapMode { max, topk_mean };

// The top-k default: 1% of the pixels (rounded), at least one. A small defect still moves the score.
inline std::size_t default_topk(std::size_t pixels) {
    const auto k = static_cast<std::size_t>(std::llround(0.01 * static_cast<double>(pixels)));
    return std::max<std::size_t>(1, k);
}

template <class T>
void map_score(const T* maps, std::size_t n, std::size_t pixels, MapMode mode, std::size_t k, float* out) {
    if (n == 0) return;
    if (pixels == 0) {
        for (std::size_t s = 0; s < n; ++s) out[s] = 0.0f;
        return;
    }
    constexpr float inf = std::numeric_limits<float>::infinity();
    const Plan plan = plan_work(n * pixels, n, std::size_t{1} << 17, std::size_t{1} << 16);
    if (mode == MapMode::max) {
        parallel_ranges(n, plan, [&](std::size_t begin, std::size_t end, std::size_t) {
            for (std::size_t s = begin; s < end; ++s) {
                const T* m = maps + s * pixels;
                float best = -inf;
                bool bad = false;
                for (std::size_t i = 0; i < pixels; ++i) {
                    const float v = to_float(m[i]);
                    bad = bad || (v != v);
                    best = v > best ? v : best;
                }
                out[s] = bad ? inf : best;
            }
        });
        return;
    }
    k = std::max<std::size_t>(1, std::min(k, pixels));
    std::vector<float> scratch(plan.slots * pixels);
    parallel_ranges(n, plan, [&](std::size_t begin, std::size_t end, std::size_t slot) {
        float* buf = scratch.data() + slot * pixels;
        for (std::size_t s = begin; s < end; ++s) {
            const T* m = maps + s * pixels;
            for (std::size_t i = 0; i < pixels; ++i) {
                const float v = to_float(m[i]);
                buf[i] = (v == v) ? v : inf;
            }
            if (k < pixels) std::nth_element(buf, buf + (k - 1), buf + pixels, std::greater<float>());
            std::sort(buf, buf + k, std::greater<float>());
            double sum = 0.0;
            for (std::size_t i = 0; i < k; ++i) sum += static_cast<double>(buf[i]);
            const double mean = sum / static_cast<double>(k);
            out[s] = (mean == mean) ? static_cast<float>(mean) : inf;  // +inf and -inf pixels
        }
    });
}

}  // namespace edgeanom
