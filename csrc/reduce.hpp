// Per-sample reductions: reconstruction error of x against x_hat over all trailing dimensions.
//
// Summation order (the same for every thread count and every kernel family):
//   * a sample's D elements are cut into blocks of kBlock = 4096 elements (the last may be shorter);
//   * inside a block, element i goes to float32 lane (i % 32); each lane accumulates its elements in
//     increasing order, starting from +0.0f (lanes past a partial last chunk get nothing, which is
//     the same as zero padding: adding +0.0f to a non-negative sum changes nothing);
//   * the 32 lanes are widened to float64 and combined by a fixed pairwise tree
//     (lane j += lane j+16, then j+8, j+4, j+2, j+1);
//   * the blocks' float64 partials are added in block order; the total is scaled (mean) in float64
//     and rounded once to float32.
// If a block's float32 lanes overflow (|d| above ~1e19), that block is recomputed in float64 (same
// result for all thread counts). Any NaN/Inf input makes the sample's score +inf (non-finite policy).
// Weighted: each |d| or d^2 is multiplied by its weight; "max" takes the max of w*|d|.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu.hpp"
#include "half.hpp"
#include "threading.hpp"

namespace edgeanom {

enum class Metric { mse, mae, sse, rmse, max };
enum class Op { sq, abs, max };

constexpr std::size_t kBlock = 4096;
constexpr std::size_t kLanes = 32;

inline constexpr Op op_of(Metric m) {
    return (m == Metric::mae) ? Op::abs : (m == Metric::max) ? Op::max : Op::sq;
}

namespace detail {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Fixed pairwise tree over 32 float lanes, in float64.
inline double lane_tree(const float* acc) {
    double v[kLanes];
    for (std::size_t j = 0; j < kLanes; ++j) v[j] = static_cast<double>(acc[j]);
    for (std::size_t w = kLanes / 2; w >= 1; w /= 2)
        for (std::size_t j = 0; j < w; ++j) v[j] = v[j] + v[j + w];
    return v[0];
}

inline double lane_max(const float* acc) {
    float m = acc[0];
    for (std::size_t j = 1; j < kLanes; ++j) m = acc[j] > m ? acc[j] : m;
    return static_cast<double>(m);
}

// Reference path in float64, used when the float32 lanes overflowed. NaN -> +inf.
template <Op OP, bool W, class TX, class TY>
double block_f64(const TX* x, const TY* y, const float* w, std::size_t len) {
    double s = 0.0;
    for (std::size_t i = 0; i < len; ++i) {
        const double d = static_cast<double>(to_float(x[i])) - static_cast<double>(to_float(y[i]));
        double v = (OP == Op::sq) ? d * d : std::fabs(d);
        if (W) v = v * static_cast<double>(w[i]);
        if (OP == Op::max) {
            if (!(v <= s)) s = v;  // NaN propagates
        } else {
            s = s + v;
        }
    }
    return std::isnan(s) ? kInf : s;
}

// One chunk of 32 elements into the 32 lanes (generic; GCC/Clang vectorise the j loop).
template <Op OP, bool W, class TX, class TY>
inline void chunk_generic(const TX* x, const TY* y, const float* w, float* acc, float* chk) {
    for (std::size_t j = 0; j < kLanes; ++j) {
        const float d = to_float(x[j]) - to_float(y[j]);
        float v = (OP == Op::sq) ? d * d : std::fabs(d);
        if (W) v = v * w[j];
        if (OP == Op::max) {
            acc[j] = acc[j] < v ? v : acc[j];
            chk[j] = chk[j] + v * 0.0f;  // NaN if v is NaN or inf
        } else {
            acc[j] = acc[j] + v;
        }
    }
}

template <Op OP, bool W, class TX, class TY>
double block_generic(const TX* x, const TY* y, const float* w, std::size_t len) {
    float acc[kLanes] = {};
    float chk[kLanes] = {};
    std::size_t i = 0;
    for (; i + kLanes <= len; i += kLanes) chunk_generic<OP, W>(x + i, y + i, W ? w + i : w, acc, chk);
    // Tail: element i + j goes to lane j. The lanes past the tail would only add +0.0f (zero padding),
    // which changes nothing, so they are skipped.
    for (std::size_t j = 0; i + j < len; ++j) {
        const float d = to_float(x[i + j]) - to_float(y[i + j]);
        float v = (OP == Op::sq) ? d * d : std::fabs(d);
        if (W) v = v * w[i + j];
        if (OP == Op::max) {
            acc[j] = acc[j] < v ? v : acc[j];
            chk[j] = chk[j] + v * 0.0f;
        } else {
            acc[j] = acc[j] + v;
        }
    }
    if (OP == Op::max) {
        float c = 0.0f;
        for (std::size_t j = 0; j < kLanes; ++j) c = c + chk[j];
        return (c == 0.0f) ? lane_max(acc) : kInf;
    }
    const double s = lane_tree(acc);
    return std::isfinite(s) ? s : block_f64<OP, W>(x, y, w, len);
}

#if EDGEANOM_X86
EDGEANOM_TARGET_AVX2 inline __m256 abs8(__m256 v) {
    return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
}

// One chunk of 32 elements into 4 x 8 lanes; `count` < 32 loads only the first `count` elements
// (the rest read as 0.0f, exactly like the generic path's zero padding).
template <Op OP, bool W, bool PARTIAL, class TX, class TY>
EDGEANOM_TARGET_AVX2 inline void chunk_avx2(const TX* x, const TY* y, const float* w, int count, __m256 (&acc)[4],
                                             __m256 (&chk)[4]) {
    for (int k = 0; k < 4; ++k) {
        const int c = count - 8 * k;
        if (PARTIAL && c <= 0) break;  // remaining lanes would add +0.0f: nothing to do
        const __m256 xv = PARTIAL ? load8_partial(x + 8 * k, c) : load8(x + 8 * k);
        const __m256 yv = PARTIAL ? load8_partial(y + 8 * k, c) : load8(y + 8 * k);
        const __m256 d = _mm256_sub_ps(xv, yv);
        __m256 v = (OP == Op::sq) ? _mm256_mul_ps(d, d) : abs8(d);
        if (W) v = _mm256_mul_ps(v, PARTIAL ? load8_partial(w + 8 * k, c) : _mm256_loadu_ps(w + 8 * k));
        if (OP == Op::max) {
            // max(v, acc) returns acc when v is NaN, like the generic path; chk catches NaN/inf.
            acc[k] = _mm256_max_ps(v, acc[k]);
            chk[k] = _mm256_add_ps(chk[k], _mm256_mul_ps(v, _mm256_setzero_ps()));
        } else {
            acc[k] = _mm256_add_ps(acc[k], v);
        }
    }
}

constexpr std::size_t kPrefetchBytes = 4096;

// One chunk of 32 elements spans 128 bytes of float32 (two cache lines) or 64 of float16 (one).
template <class T>
inline void prefetch_ahead(const T* p) {
    const char* c = reinterpret_cast<const char*>(p) + kPrefetchBytes;
    _mm_prefetch(c, _MM_HINT_T0);
    if (sizeof(T) * kLanes > 64) _mm_prefetch(c + 64, _MM_HINT_T0);
}

template <Op OP, bool W, class TX, class TY>
EDGEANOM_TARGET_AVX2 double block_avx2(const TX* x, const TY* y, const float* w, std::size_t len) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    __m256 chk[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    std::size_t i = 0;
    for (; i + kLanes <= len; i += kLanes) {
        // Software prefetch ~4 KB ahead (measured +15-25% single-core bandwidth from DRAM/L3 here; the
        // hardware prefetcher alone keeps too few lines in flight). Prefetches never fault, so running
        // past the end of the array is harmless.
        prefetch_ahead(x + i);
        prefetch_ahead(y + i);
        chunk_avx2<OP, W, false>(x + i, y + i, W ? w + i : w, 32, acc, chk);
    }
    if (i < len) chunk_avx2<OP, W, true>(x + i, y + i, W ? w + i : w, static_cast<int>(len - i), acc, chk);
    if (OP == Op::max) {
        alignas(32) float lanes[kLanes];
        for (int k = 0; k < 4; ++k) _mm256_store_ps(lanes + 8 * k, acc[k]);
        alignas(32) float c[kLanes];
        for (int k = 0; k < 4; ++k) _mm256_store_ps(c + 8 * k, chk[k]);
        float cs = 0.0f;
        for (std::size_t j = 0; j < kLanes; ++j) cs = cs + c[j];
        return (cs == 0.0f) ? lane_max(lanes) : kInf;
    }
    // The same pairwise tree as lane_tree(), on 4-wide double vectors.
    const __m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(acc[0]));     // lanes 0-3
    const __m256d d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(acc[0], 1));  // 4-7
    const __m256d d2 = _mm256_cvtps_pd(_mm256_castps256_ps128(acc[1]));     // 8-11
    const __m256d d3 = _mm256_cvtps_pd(_mm256_extractf128_ps(acc[1], 1));  // 12-15
    const __m256d d4 = _mm256_cvtps_pd(_mm256_castps256_ps128(acc[2]));     // 16-19
    const __m256d d5 = _mm256_cvtps_pd(_mm256_extractf128_ps(acc[2], 1));  // 20-23
    const __m256d d6 = _mm256_cvtps_pd(_mm256_castps256_ps128(acc[3]));     // 24-27
    const __m256d d7 = _mm256_cvtps_pd(_mm256_extractf128_ps(acc[3], 1));  // 28-31
    const __m256d e0 = _mm256_add_pd(d0, d4), e1 = _mm256_add_pd(d1, d5);  // +16
    const __m256d e2 = _mm256_add_pd(d2, d6), e3 = _mm256_add_pd(d3, d7);
    const __m256d f0 = _mm256_add_pd(e0, e2), f1 = _mm256_add_pd(e1, e3);  // +8
    const __m256d g = _mm256_add_pd(f0, f1);                                // +4
    const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(g), _mm256_extractf128_pd(g, 1));  // +2
    const double s = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));                  // +1
    return std::isfinite(s) ? s : block_f64<OP, W>(x, y, w, len);
}
#endif

template <Op OP, bool W, class TX, class TY>
inline double block(cpu::Level level, const TX* x, const TY* y, const float* w, std::size_t len) {
#if EDGEANOM_X86
    if (level == cpu::Level::avx2) return block_avx2<OP, W>(x, y, w, len);
#else
    (void)level;
#endif
    return block_generic<OP, W>(x, y, w, len);
}

inline float finalize(Metric m, double s, std::size_t d) {
    switch (m) {
        case Metric::sse:
        case Metric::max:
            return static_cast<float>(s);
        case Metric::mse:
        case Metric::mae:
            return static_cast<float>(s / static_cast<double>(d));
        case Metric::rmse:
            return static_cast<float>(std::sqrt(s / static_cast<double>(d)));
    }
    return static_cast<float>(s);
}

template <Op OP, bool W, class TX, class TY>
void reduce_typed(Metric metric, const TX* x, const TY* y, bool y_broadcast, const float* w, std::size_t n,
                  std::size_t d, float* out) {
    if (n == 0) return;
    if (d == 0) {  // empty samples: empty sum / mean / max defined as 0
        for (std::size_t i = 0; i < n; ++i) out[i] = 0.0f;
        return;
    }
    const cpu::Level level = cpu::level();
    const std::size_t nb = (d + kBlock - 1) / kBlock;  // blocks per sample
    const std::size_t nblocks = n * nb;
    // Threads only from 256k elements (~1 MB of float32 x): one core streams that from cache in
    // ~10-20 us, less than waking and joining a worker can cost. Chunks of ~64k elements.
    const Plan plan = plan_work(n * d, nb == 1 ? n : nblocks, std::size_t{1} << 18, std::size_t{1} << 16);
    auto block_value = [&](std::size_t g) {
        const std::size_t s = g / nb, b = g % nb;
        const std::size_t off = b * kBlock;
        const std::size_t len = (b + 1 == nb) ? d - off : kBlock;
        const TY* yrow = y_broadcast ? y : y + s * d;
        return block<OP, W>(level, x + s * d + off, yrow + off, W ? w + off : w, len);
    };
    if (nb == 1) {  // one block per sample: chunks write final scores directly
        parallel_ranges(n, plan, [&](std::size_t begin, std::size_t end, std::size_t) {
            for (std::size_t s = begin; s < end; ++s) out[s] = finalize(metric, block_value(s), d);
        });
        return;
    }
    std::vector<double> partial(nblocks);
    parallel_ranges(nblocks, plan, [&](std::size_t begin, std::size_t end, std::size_t) {
        for (std::size_t g = begin; g < end; ++g) partial[g] = block_value(g);
    });
    for (std::size_t s = 0; s < n; ++s) {  // combine blocks in block order
        const double* ps = partial.data() + s * nb;
        double acc = ps[0];
        for (std::size_t b = 1; b < nb; ++b) acc = (OP == Op::max) ? (ps[b] > acc ? ps[b] : acc) : acc + ps[b];
        out[s] = finalize(metric, acc, d);
    }
}

}  // namespace detail

// Entry point. x: n*d elements; y: n*d elements, or d elements when y_broadcast; w: d weights or null.
template <class TX, class TY>
void reconstruction_error(Metric metric, const TX* x, const TY* y, bool y_broadcast, const float* w,
                          std::size_t n, std::size_t d, float* out) {
    using namespace detail;
    const bool weighted = (w != nullptr);
    switch (op_of(metric)) {
        case Op::sq:
            return weighted ? reduce_typed<Op::sq, true>(metric, x, y, y_broadcast, w, n, d, out)
                            : reduce_typed<Op::sq, false>(metric, x, y, y_broadcast, w, n, d, out);
        case Op::abs:
            return weighted ? reduce_typed<Op::abs, true>(metric, x, y, y_broadcast, w, n, d, out)
                            : reduce_typed<Op::abs, false>(metric, x, y, y_broadcast, w, n, d, out);
        case Op::max:
            return weighted ? reduce_typed<Op::max, true>(metric, x, y, y_broadcast, w, n, d, out)
                            : reduce_typed<Op::max, false>(metric, x, y, y_broadcast, w, n, d, out);
    }
}

}  // namespace edgeanom
