// IEEE 754 binary16 ("half", numpy float16) -> binary32 conversion.
//
// Two implementations that give bit-identical results for every one of the 65536 inputs
// (zeros, subnormals, normals, +-inf, and NaN with its payload kept and made quiet, as hardware does):
//   * a branchless bit trick, written so GCC/Clang auto-vectorise it on any target
//     (SSE2 on baseline x86-64, NEON on aarch64);
//   * on aarch64 the compiler's native __fp16 conversion (FCVTL), which is the same thing in hardware;
//   * on x86-64, F16C's VCVTPH2PS, used only from functions compiled for that target and only after a
//     runtime check (see cpu.hpp); the AVX2 kernels call load8() below.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "platform.hpp"

namespace edgeanom {

// A float16 element as stored by numpy: the 16 raw bits. A distinct type (not uint16_t) so that
// templates can tell "half" from "float" and so that no integer arithmetic happens by accident.
struct Half {
    std::uint16_t bits;
};
static_assert(sizeof(Half) == 2, "Half must be exactly two bytes");

inline float bits_to_float(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

inline std::uint32_t float_to_bits(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

// Portable, branchless half -> float. Every path is computed and the result selected with bit masks
// (no ?: that could become a branch), so loops over it vectorise.
inline float half_to_float(Half h) {
    const std::uint32_t em = h.bits & 0x7fffu;  // exponent + mantissa
    const std::uint32_t sign = static_cast<std::uint32_t>(h.bits & 0x8000u) << 16;
    const std::uint32_t infnan = 0u - static_cast<std::uint32_t>(em >= 0x7c00u);  // all ones if inf/NaN
    const std::uint32_t nan = 0u - static_cast<std::uint32_t>(em > 0x7c00u);
    const std::uint32_t subn = 0u - static_cast<std::uint32_t>(em < 0x0400u);  // zero or subnormal
    // Normal numbers: rebias the exponent by (127 - 15) << 23. Inf/NaN get a second rebias so that
    // the all-ones half exponent becomes the all-ones float exponent; NaN also gets the quiet bit,
    // as F16C and FCVT set it.
    const std::uint32_t normal =
        ((em << 13) + 0x38000000u + (infnan & 0x38000000u)) | (nan & 0x00400000u);
    // Zero and subnormals: value = mantissa * 2^-24, exact in float (mantissa < 1024).
    const std::uint32_t sub =
        float_to_bits(static_cast<float>(static_cast<std::int32_t>(em)) * 5.9604644775390625e-8f);
    return bits_to_float(((sub & subn) | (normal & ~subn)) | sign);
}

// Scalar conversion used by generic (non-SIMD-dispatched) code.
inline float to_float(float v) { return v; }
inline float to_float(Half v) {
#if defined(__aarch64__) && defined(__ARM_FP16_FORMAT_IEEE)
    __fp16 f;
    std::memcpy(&f, &v.bits, sizeof f);
    return static_cast<float>(f);
#else
    return half_to_float(v);
#endif
}

// Converts n halves to floats (generic, auto-vectorised).
inline void half_to_float_row_generic(const Half* src, float* dst, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) dst[i] = to_float(src[i]);
}

#if EDGEANOM_X86

EDGEANOM_TARGET_AVX2 inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
EDGEANOM_TARGET_AVX2 inline __m256 load8(const Half* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Loads the first `count` (0..8) elements; the other lanes are 0.0f. Never reads past p + count.
EDGEANOM_TARGET_AVX2 inline __m256 load8_partial(const float* p, int count) {
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_maskload_ps(p, mask);
}
EDGEANOM_TARGET_AVX2 inline __m256 load8_partial(const Half* p, int count) {
    if (count >= 8) return load8(p);
    alignas(16) std::uint16_t buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int j = 0; j < count; ++j) buf[j] = p[j].bits;
    return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(buf)));
}

// Converts n halves to floats with F16C. Call only when cpu::has_avx2_f16c() is true.
EDGEANOM_TARGET_AVX2 inline void half_to_float_row_f16c(const Half* src, float* dst, std::size_t n) {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8(src + i));
    for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i].bits);
}
#endif

}  // namespace edgeanom
