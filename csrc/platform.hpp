// Platform facts shared by the kernels: which CPU family this translation unit targets, the
// function-level target attribute of the AVX2+F16C kernels, the spin-wait hint, and the names the
// build report prints. Nothing else in csrc/ tests compiler or architecture macros directly.
#pragma once

#include <string>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define EDGEANOM_X86 1
#include <immintrin.h>
#else
#define EDGEANOM_X86 0
#endif

#if EDGEANOM_X86
// Kernels compiled for AVX2+F16C inside a baseline (SSE2) build; called only after cpu.hpp's check.
#define EDGEANOM_TARGET_AVX2 __attribute__((target("avx2,f16c")))
#define EDGEANOM_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define EDGEANOM_PAUSE() __asm__ __volatile__("yield")
#else
#define EDGEANOM_PAUSE() ((void)0)
#endif

namespace edgeanom::platform {

inline std::string compiler_name() {
#if defined(__clang__)
    return "Clang";
#elif defined(__GNUC__)
    return "GCC";
#elif defined(_MSC_VER)
    return "MSVC";
#else
    return "unknown";
#endif
}

inline std::string compiler_version() {
#if defined(__VERSION__)
    return __VERSION__;
#elif defined(_MSC_VER)
    return std::to_string(_MSC_VER);
#else
    return "unknown";
#endif
}

inline std::string cxx_standard() {
#if __cplusplus >= 202002L
    return "C++20";
#elif __cplusplus >= 201703L
    return "C++17";
#else
    return std::to_string(__cplusplus);
#endif
}

inline std::string architecture() {
#if defined(__x86_64__) || defined(_M_X64)
    return "x86_64";
#elif defined(__aarch64__)
    return "aarch64";
#else
    return "other";
#endif
}

}  // namespace edgeanom::platform
