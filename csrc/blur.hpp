// Separable Gaussian blur of (N, H, W) float32 maps, matching scipy.ndimage.gaussian_filter
// (mode="reflect", truncate=4.0) up to float32 rounding:
//   * radius r = int(4 * sigma + 0.5); weights w[k] = exp(-0.5 * (k - r)^2 / sigma^2), k = 0 .. 2r,
//     normalised to sum 1 in float64, then rounded to float32;
//   * border "reflect" = half-sample symmetric (d c b a | a b c d | d c b a), repeated as needed
//     when r exceeds the map size;
//   * pass 1 along H, pass 2 along W; each output is a float32 sum over k in increasing k order.
// Every output pixel is computed by the same code whatever the thread count. NaN outputs become +inf
// (non-finite policy). sigma == 0 (or r == 0) copies the maps (NaN -> +inf).
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "threading.hpp"

namespace edgeanom {

// Largest accepted sigma: the kernel has 8 * sigma + 1 taps, so this bounds its size and cost.
constexpr double kMaxSigma = 1000.0;

// Throws std::invalid_argument (a ValueError in Python) unless 0 <= sigma <= kMaxSigma.
inline void check_sigma(double sigma, const char* name) {
    if (std::isfinite(sigma) && sigma >= 0.0 && sigma <= kMaxSigma) return;
    std::ostringstream o;
    o << name << " must be a finite number in [0, " << kMaxSigma << "], got " << sigma;
    throw std::invalid_argument(o.str());
}

inline std::size_t gaussian_radius(double sigma) { return static_cast<std::size_t>(4.0 * sigma + 0.5); }

inline std::vector<float> gaussian_kernel(double sigma) {
    const std::size_t r = gaussian_radius(sigma);
    std::vector<double> phi(2 * r + 1);
    double sum = 0.0;
    for (std::size_t k = 0; k < phi.size(); ++k) {
        const double x = static_cast<double>(k) - static_cast<double>(r);
        phi[k] = std::exp(-0.5 / (sigma * sigma) * x * x);
        sum += phi[k];
    }
    std::vector<float> w(phi.size());
    for (std::size_t k = 0; k < phi.size(); ++k) w[k] = static_cast<float>(phi[k] / sum);
    return w;
}

// scipy's "reflect": index i (any integer) into [0, n), period 2n.
inline std::size_t reflect_index(std::ptrdiff_t i, std::size_t n) {
    const std::ptrdiff_t period = 2 * static_cast<std::ptrdiff_t>(n);
    std::ptrdiff_t m = i % period;
    if (m < 0) m += period;
    return static_cast<std::size_t>(m < static_cast<std::ptrdiff_t>(n) ? m : period - 1 - m);
}

namespace detail {
inline float nan_to_inf(float v) { return (v == v) ? v : std::numeric_limits<float>::infinity(); }
}  // namespace detail

// in and out may be the same buffer. sigma must be finite and >= 0.
inline void blur_maps(const float* in, float* out, std::size_t n, std::size_t h, std::size_t w, double sigma) {
    const std::size_t total = n * h * w;
    if (total == 0) return;
    // radius 0 (sigma < 0.125) is the identity; computing it would divide by a possibly-zero sigma^2
    const std::vector<float> kern =
        (sigma > 0.0 && gaussian_radius(sigma) > 0) ? gaussian_kernel(sigma) : std::vector<float>{1.0f};
    const std::size_t r = (kern.size() - 1) / 2;
    const std::size_t rows = n * h;
    const Plan plan = plan_work(total * (2 * r + 1), rows, std::size_t{1} << 17, std::size_t{1} << 16);
    if (r == 0) {
        parallel_ranges(rows, plan, [&](std::size_t begin, std::size_t end, std::size_t) {
            for (std::size_t i = begin * w; i < end * w; ++i) out[i] = detail::nan_to_inf(in[i]);
        });
        return;
    }
    const std::size_t taps = kern.size();
    const float* kw = kern.data();
    std::vector<float> tmp(total);
    // Pass 1, along H: tmp[s, i, :] = sum_k kw[k] * in[s, reflect(i + k - r), :]
    parallel_ranges(rows, plan, [&](std::size_t begin, std::size_t end, std::size_t) {
        for (std::size_t row = begin; row < end; ++row) {
            const std::size_t s = row / h, i = row % h;
            const float* img = in + s * h * w;
            float* acc = tmp.data() + row * w;
            for (std::size_t j = 0; j < w; ++j) acc[j] = 0.0f;
            for (std::size_t k = 0; k < taps; ++k) {
                const std::ptrdiff_t src = static_cast<std::ptrdiff_t>(i + k) - static_cast<std::ptrdiff_t>(r);
                const float* srow = img + reflect_index(src, h) * w;
                const float wk = kw[k];
                for (std::size_t j = 0; j < w; ++j) acc[j] = acc[j] + wk * srow[j];
            }
        }
    });
    // Pass 2, along W, from a reflect-padded copy of each row.
    const std::size_t padded = w + 2 * r;
    std::vector<float> scratch(plan.slots * (padded + w));
    parallel_ranges(rows, plan, [&](std::size_t begin, std::size_t end, std::size_t slot) {
        float* pad = scratch.data() + slot * (padded + w);
        float* acc = pad + padded;
        for (std::size_t row = begin; row < end; ++row) {
            const float* src = tmp.data() + row * w;
            for (std::size_t q = 0; q < padded; ++q)
                pad[q] = src[reflect_index(static_cast<std::ptrdiff_t>(q) - static_cast<std::ptrdiff_t>(r), w)];
            for (std::size_t j = 0; j < w; ++j) acc[j] = 0.0f;
            for (std::size_t k = 0; k < taps; ++k) {
                const float wk = kw[k];
                const float* pk = pad + k;
                for (std::size_t j = 0; j < w; ++j) acc[j] = acc[j] + wk * pk[j];
            }
            float* o = out + row * w;
            for (std::size_t j = 0; j < w; ++j) o[j] = detail::nan_to_inf(acc[j]);
        }
    });
}

}  // namespace edgeanom
