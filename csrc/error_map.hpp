// Per-pixel error maps: for x, x_hat of shape (N, C, H, W), map[n, h, w] = mean_c (x - x_hat)^2.
//
// Each pixel's channel sum is accumulated in float64 in channel order (c = 0 .. C-1), then divided by
// C and rounded to float32, so results do not depend on the thread count. A pixel whose inputs
// contain NaN/Inf becomes +inf. C == 0 gives 0.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>

#include "cpu.hpp"
#include "half.hpp"
#include "threading.hpp"

namespace edgeanom {

namespace detail {

constexpr std::size_t kMapTile = 1024;  // pixels per work unit

// Returns a float view of src[0:len): src itself for float32, else the converted copy in buf.
inline const float* as_float_row(const float* src, float* /*buf*/, std::size_t /*len*/, cpu::Level /*lv*/) {
    return src;
}
inline const float* as_float_row(const Half* src, float* buf, std::size_t len, cpu::Level level) {
#if EDGEANOM_X86
    if (level == cpu::Level::avx2) {
        half_to_float_row_f16c(src, buf, len);
        return buf;
    }
#else
    (void)level;
#endif
    half_to_float_row_generic(src, buf, len);
    return buf;
}

}  // namespace detail

template <class TX, class TY>
void error_map(const TX* x, const TY* y, bool y_broadcast, std::size_t n, std::size_t c, std::size_t hw,
               float* out) {
    using namespace detail;
    if (n == 0 || hw == 0) return;
    if (c == 0) {
        for (std::size_t i = 0; i < n * hw; ++i) out[i] = 0.0f;
        return;
    }
    const cpu::Level level = cpu::level();
    const std::size_t tiles = (hw + kMapTile - 1) / kMapTile;
    const std::size_t units = n * tiles;
    const Plan plan = plan_work(n * c * hw, units, std::size_t{1} << 17, std::size_t{1} << 16);
    const double inv_c = 1.0 / static_cast<double>(c);
    parallel_ranges(units, plan, [&](std::size_t begin, std::size_t end, std::size_t) {
        float xb[kMapTile], yb[kMapTile];
        double acc[kMapTile];
        for (std::size_t u = begin; u < end; ++u) {
            const std::size_t s = u / tiles, p0 = (u % tiles) * kMapTile;
            const std::size_t len = (p0 + kMapTile <= hw) ? kMapTile : hw - p0;
            for (std::size_t i = 0; i < len; ++i) acc[i] = 0.0;
            for (std::size_t ch = 0; ch < c; ++ch) {
                const float* xr = as_float_row(x + (s * c + ch) * hw + p0, xb, len, level);
                const float* yr = as_float_row(y + ((y_broadcast ? 0 : s * c) + ch) * hw + p0, yb, len, level);
                for (std::size_t i = 0; i < len; ++i) {
                    const float d = xr[i] - yr[i];
                    acc[i] = acc[i] + static_cast<double>(d * d);
                }
            }
            float* o = out + s * hw + p0;
            for (std::size_t i = 0; i < len; ++i) {
                const double v = acc[i] * inv_c;
                o[i] = (v == v) ? static_cast<float>(v) : std::numeric_limits<float>::infinity();
            }
        }
    });
}

}  // namespace edgeanom
