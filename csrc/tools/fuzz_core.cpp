// Randomised stress of every C++ kernel and state machine, built with AddressSanitizer and
// UndefinedBehaviorSanitizer by tools/sanitize.sh (not part of the Python module).
//
// Each round draws shapes (including 0 and 1), values (NaN, +-inf, subnormals, huge), kernel families,
// thread counts and parameters, runs the kernel and checks what must hold whatever the input: no sanitizer
// report, outputs finite or +inf where the contract says so, and AVX2 == generic bit for bit.
//   g++ -std=c++17 -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -Icsrc -pthread \
//       csrc/tools/fuzz_core.cpp -o /tmp/fuzz && /tmp/fuzz 2000
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "adaptive.hpp"
#include "alarm.hpp"
#include "blur.hpp"
#include "error_map.hpp"
#include "map_score.hpp"
#include "reduce.hpp"

using namespace edgeanom;

namespace {

std::uint64_t state = 0x9E3779B97F4A7C15ull;
std::uint64_t next() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}
std::size_t below(std::size_t n) { return n ? static_cast<std::size_t>(next() % n) : 0; }

float value() {
    switch (below(12)) {
        case 0: return std::numeric_limits<float>::quiet_NaN();
        case 1: return std::numeric_limits<float>::infinity();
        case 2: return -std::numeric_limits<float>::infinity();
        case 3: return 1e-40f;  // subnormal
        case 4: return 3e38f;
        default: return static_cast<float>(static_cast<double>(below(2000001)) * 1e-3 - 1000.0);
    }
}

int failures = 0;
void check(bool ok, const char* what, int round) {
    if (!ok) {
        std::fprintf(stderr, "round %d: %s\n", round, what);
        ++failures;
    }
}

void reductions(int round) {
    const std::size_t n = below(6), d = below(3) ? below(300) : below(20000);
    std::vector<float> x(n * d + 1), y(n * d + 1), w(d + 1), out(n + 1), out2(n + 1);
    for (auto& v : x) v = value();
    for (auto& v : y) v = value();
    for (auto& v : w) v = std::fabs(static_cast<float>(below(1000)) * 1e-2f);
    const Metric metric = static_cast<Metric>(below(5));
    const bool bcast = below(2);
    const float* wp = below(2) ? w.data() : nullptr;
    cpu::set_level(cpu::Level::generic);
    reconstruction_error(metric, x.data(), y.data(), bcast, wp, n, d, out.data());
    cpu::set_level(cpu::best_level());
    reconstruction_error(metric, x.data(), y.data(), bcast, wp, n, d, out2.data());
    check(std::memcmp(out.data(), out2.data(), n * sizeof(float)) == 0, "AVX2 and generic differ", round);
    for (std::size_t i = 0; i < n; ++i) check(!std::isnan(out[i]), "NaN score (must be +inf)", round);
}

void maps(int round) {
    const std::size_t n = below(4), c = 1 + below(3), h = below(40), w = below(40);
    std::vector<float> x(n * c * h * w + 1), y(n * c * h * w + 1), m(n * h * w + 1), s(n + 1);
    for (auto& v : x) v = value();
    for (auto& v : y) v = value();
    error_map(x.data(), y.data(), false, n, c, h * w, m.data());
    const double sigma = below(2) ? 0.0 : static_cast<double>(below(60)) * 0.1;
    check_sigma(sigma, "sigma");
    blur_maps(m.data(), m.data(), n, h, w, sigma);
    map_score(m.data(), n, h * w, below(2) ? MapMode::max : MapMode::topk_mean, below(h * w + 3), s.data());
    for (std::size_t i = 0; i < n; ++i) check(!std::isnan(s[i]), "NaN map score", round);
}

void alarms(int round) {
    AlarmParams p;
    p.threshold = static_cast<double>(below(100)) * 0.1;
    p.n = 1 + static_cast<std::int64_t>(below(20));
    p.k = 1 + static_cast<std::int64_t>(below(static_cast<std::size_t>(p.n)));
    p.use_ewma = below(2);
    p.alpha = 0.05 + static_cast<double>(below(95)) * 0.01;
    p.min_hold = static_cast<std::int64_t>(below(5));
    AlarmCore core(p);
    std::vector<AlarmEvent> events;
    for (int i = 0; i < 500; ++i) {
        double smoothed = 0.0;
        core.step(static_cast<std::int64_t>(below(4)) - 1, value(), smoothed, events);
    }
    core.flush(nullptr, events);
    std::int64_t starts = 0, ends = 0;
    for (const auto& e : events) (e.start ? starts : ends) += 1;
    check(starts == ends, "every alarm that starts ends (after flush)", round);
}

void adaptive(int round) {
    AdaptiveParams p;
    p.window = 2 + static_cast<std::int64_t>(below(200));
    p.short_window = 1 + static_cast<std::int64_t>(below(static_cast<std::size_t>(p.window)));
    p.min_history = 2 + static_cast<std::int64_t>(below(static_cast<std::size_t>(p.window - 1)));
    p.warmup = static_cast<std::int64_t>(below(100));
    p.gate = 0.5 + static_cast<double>(below(80)) * 0.1;
    p.holdoff = static_cast<std::int64_t>(below(5));
    p.relearn_after = static_cast<std::int64_t>(below(50));
    p.log_scores = below(2);
    AdaptiveCore core(p);
    std::vector<double> prior(below(50));
    for (auto& v : prior) v = value();
    core.prime(0, prior.data(), prior.size());
    for (int i = 0; i < 800; ++i) {
        bool learned = false;
        const double s = core.step(static_cast<std::int64_t>(below(3)), value(), learned);
        check(!std::isnan(s) && s >= 0.0, "surprise NaN or negative", round);
    }
}

}  // namespace

int main(int argc, char** argv) {
    const int rounds = argc > 1 ? std::atoi(argv[1]) : 500;
    for (int r = 0; r < rounds; ++r) {
        pool().set_num_threads(1 + below(4));
        reductions(r);
        maps(r);
        alarms(r);
        adaptive(r);
    }
    std::printf("fuzz_core: %d rounds, %d failures\n", rounds, failures);
    return failures ? 1 : 0;
}
