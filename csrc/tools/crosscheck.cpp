// Cross-build determinism check (not part of the Python module).
//
// Hashes the exact bits of reduction / error-map / blur / top-k results on deterministic pseudo-random
// data. Every build and kernel family must print the same hash, e.g.:
//   g++ -std=c++17 -O3 -ffp-contract=off -Icsrc -pthread csrc/tools/crosscheck.cpp -o /tmp/cc
//   /tmp/cc            # best kernel family (AVX2 on a modern x86-64)
//   /tmp/cc generic    # portable family
//   aarch64-linux-gnu-g++ ... -static -o /tmp/cc_arm && qemu-aarch64 /tmp/cc_arm   # or run on a Jetson
// (x86 AVX2, x86 generic and aarch64 printed 3eaa15abb2662de9 when this was written.)
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <vector>

#include "blur.hpp"
#include "error_map.hpp"
#include "map_score.hpp"
#include "reduce.hpp"

using namespace edgeanom;
static uint64_t st = 88172645463325252ull;
static uint32_t rnd() { st ^= st << 13; st ^= st >> 7; st ^= st << 17; return (uint32_t)st; }
static float rf() { return (float)(rnd() % 2000001) * 1e-3f - 1000.0f; }
int main(int argc, char** argv) {
  (void)argv;
  if (argc > 1) cpu::set_level(cpu::Level::generic);
  const std::size_t n = 7, d = 9000;
  std::vector<float> x(n * d), y(n * d), w(d); std::vector<Half> xh(n * d), yh(n * d);
  for (auto& v : x) v = rf();
  for (auto& v : y) v = rf();
  for (auto& v : w) v = (float)(rnd() % 1000) * 1e-2f;
  for (auto& v : xh) v.bits = (uint16_t)(rnd() & 0x7bff);
  for (auto& v : yh) v.bits = (uint16_t)(rnd() & 0xfbff);
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const float* p, std::size_t k) { for (std::size_t i = 0; i < k; ++i) { uint32_t b; std::memcpy(&b, p + i, 4); h = (h ^ b) * 1099511628211ull; } };
  std::vector<float> out(n);
  for (int m = 0; m < 5; ++m) for (int wt = 0; wt < 2; ++wt) {
    const float* wp = wt ? w.data() : nullptr;
    reconstruction_error((Metric)m, x.data(), y.data(), false, wp, n, d, out.data()); mix(out.data(), n);
    reconstruction_error((Metric)m, xh.data(), y.data(), true, wp, n, d, out.data()); mix(out.data(), n);
    reconstruction_error((Metric)m, xh.data(), yh.data(), false, wp, n, d, out.data()); mix(out.data(), n);
    reconstruction_error((Metric)m, x.data(), yh.data(), false, wp, n, 87, out.data()); mix(out.data(), n);
  }
  std::vector<float> maps(n * 3 * 1000);
  error_map(xh.data(), y.data(), false, n, 3, 1000, maps.data()); mix(maps.data(), n * 1000);
  blur_maps(maps.data(), maps.data(), n, 25, 40, 2.5); mix(maps.data(), n * 1000);
  map_score(maps.data(), n, 1000, MapMode::topk_mean, 17, out.data()); mix(out.data(), n);
  std::printf("%016" PRIx64 "\n", h);
}
