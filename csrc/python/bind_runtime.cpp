// Python bindings of the kernels' runtime settings: the thread pool (threading.hpp), the SIMD kernel
// family (cpu.hpp) and the build report that `edgeanom info` prints.
#include <pybind11/stl.h>

#include <string>

#include "cpu.hpp"
#include "platform.hpp"
#include "python/convert.hpp"
#include "python/module.hpp"
#include "reduce.hpp"
#include "threading.hpp"

#ifndef EDGEANOM_CXX_FLAGS
#define EDGEANOM_CXX_FLAGS "unknown"
#endif
#ifndef EDGEANOM_BUILD_TYPE
#define EDGEANOM_BUILD_TYPE "unknown"
#endif

namespace edgeanom::bind {
namespace {

void set_num_threads_py(const py::object& n) {
    const auto v = to_int(n, "n", 1, static_cast<std::int64_t>(kMaxThreads));
    py::gil_scoped_release release;  // may wait for a running job on another thread
    pool().set_num_threads(static_cast<std::size_t>(v));
}

bool set_simd_py(const std::string& name) {
    if (name == "generic") return cpu::set_level(cpu::Level::generic);
    if (name == "avx2") return cpu::set_level(cpu::Level::avx2);
    if (name == "auto") return cpu::set_level(cpu::best_level());
    throw py::value_error("unknown SIMD level '" + name + "'; expected generic, avx2 or auto");
}

py::dict build_info() {
    py::dict d;
    d["compiler"] = platform::compiler_name();
    d["compiler_version"] = platform::compiler_version();
    d["cxx_standard"] = platform::cxx_standard();
    d["build_type"] = EDGEANOM_BUILD_TYPE;
    d["flags"] = EDGEANOM_CXX_FLAGS;
    d["platform"] = platform::architecture();
    py::dict simd;
    simd["baseline"] = cpu::compiled_baseline();
    simd["dispatch"] = cpu::compiled_dispatch();
    simd["cpu"] = cpu::runtime_features();
    simd["active"] = cpu::level_name(cpu::level());
    d["simd"] = simd;
    d["default_threads"] = default_threads();
    d["num_threads"] = pool().num_threads();
    d["block_size"] = kBlock;
    d["lanes"] = kLanes;
    d["pybind11_version"] = std::to_string(PYBIND11_VERSION_MAJOR) + "." + std::to_string(PYBIND11_VERSION_MINOR) +
                            "." + std::to_string(PYBIND11_VERSION_PATCH);
    return d;
}

}  // namespace

void register_runtime(py::module_& m) {
    m.def("set_num_threads", &set_num_threads_py, py::arg("n"),
          "Sets the number of threads used by the kernels (results do not depend on it).");
    m.def("get_num_threads", [] { return pool().num_threads(); }, "Number of threads used by the kernels.");
    m.def("build_info", &build_info, "Compiler, flags, SIMD features and thread defaults of this build.");
    m.def("_set_simd", &set_simd_py, py::arg("name"),
          "Testing hook: force a kernel family. Returns False if the CPU lacks it.");
    m.def("_get_simd", [] { return std::string(cpu::level_name(cpu::level())); });
    m.def(
        "_set_grain", [](std::size_t g) { grain_override().store(g); }, py::arg("elements"),
        "Testing hook: minimum work per thread (0 = built-in defaults).");
}

}  // namespace edgeanom::bind
