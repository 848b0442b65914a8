// Runtime CPU feature detection and the choice of kernel family ("SIMD level").
//
// The wheel is compiled for the baseline of its platform (x86-64 = SSE2, aarch64 = NEON), so it runs
// everywhere. Hot kernels additionally exist as AVX2+F16C versions (function-level target attributes,
// no global -mavx2), picked at runtime only when the CPU and OS support them. (An AVX-512 variant was
// measured and gave nothing here: float32 is bandwidth-bound, float16 is bound by the conversion.) All kernel families
// produce bit-identical results: they use the same lane layout and the same operation order, and the
// build disables FMA contraction (-ffp-contract=off).
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "half.hpp"

namespace edgeanom {
namespace cpu {

enum class Level : int { generic = 0, avx2 = 1 };

inline bool has_avx2_f16c() {
#if EDGEANOM_X86 && (defined(__GNUC__) || defined(__clang__))
    // libgcc / compiler-rt check OSXSAVE + XCR0 before reporting AVX-family features.
    static const bool ok = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
    }();
    return ok;
#else
    return false;
#endif
}

inline Level best_level() { return has_avx2_f16c() ? Level::avx2 : Level::generic; }

// The kernel family in use; tests force "generic" to check that both agree bit for bit.
inline std::atomic<int>& level_storage() {
    static std::atomic<int> level{static_cast<int>(best_level())};
    return level;
}

inline Level level() { return static_cast<Level>(level_storage().load(std::memory_order_relaxed)); }

inline const char* level_name(Level l) { return l == Level::avx2 ? "avx2" : "generic"; }

// Returns false when the requested level is not supported by this CPU.
inline bool set_level(Level l) {
    if (l == Level::avx2 && !has_avx2_f16c()) return false;
    level_storage().store(static_cast<int>(l), std::memory_order_relaxed);
    return true;
}

// Features of the running CPU that matter to us (for build_info()).
inline std::vector<std::string> runtime_features() {
    std::vector<std::string> f;
#if EDGEANOM_X86 && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) f.emplace_back("sse4.2");
    if (__builtin_cpu_supports("avx")) f.emplace_back("avx");
    if (__builtin_cpu_supports("avx2")) f.emplace_back("avx2");
    if (__builtin_cpu_supports("f16c")) f.emplace_back("f16c");
    if (__builtin_cpu_supports("fma")) f.emplace_back("fma");
    if (__builtin_cpu_supports("avx512f")) f.emplace_back("avx512f");
#elif defined(__aarch64__)
    f.emplace_back("neon");
#if defined(__ARM_FP16_FORMAT_IEEE)
    f.emplace_back("fp16-conversion");
#endif
#endif
    return f;
}

// Instruction sets the compiler was allowed to use everywhere in this build (the baseline).
inline std::vector<std::string> compiled_baseline() {
    std::vector<std::string> f;
#if defined(__SSE2__)
    f.emplace_back("sse2");
#endif
#if defined(__SSE4_2__)
    f.emplace_back("sse4.2");
#endif
#if defined(__AVX__)
    f.emplace_back("avx");
#endif
#if defined(__AVX2__)
    f.emplace_back("avx2");
#endif
#if defined(__F16C__)
    f.emplace_back("f16c");
#endif
#if defined(__ARM_NEON)
    f.emplace_back("neon");
#endif
    return f;
}

// Kernel families compiled into this build.
inline std::vector<std::string> compiled_dispatch() {
    std::vector<std::string> f{"generic"};
#if EDGEANOM_X86
    f.emplace_back("avx2");
#endif
    return f;
}

}  // namespace cpu
}  // namespace edgeanom
