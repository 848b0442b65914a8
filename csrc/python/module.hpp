// The registration functions of the Python module edgeanom._scoring, one per concept. module.cpp
// calls them in order; a new kernel family adds one bind_*.cpp file and one line there.
#pragma once

#include <pybind11/pybind11.h>

namespace edgeanom::bind {

void register_errors(pybind11::module_& m);   // bind_errors.cpp: reconstruction errors, maps, map scores
void register_alarm(pybind11::module_& m);    // bind_alarm.cpp: the streaming AlarmFilter
void register_adaptive(pybind11::module_& m);  // bind_adaptive.cpp: the streaming AdaptiveScorer
void register_runtime(pybind11::module_& m);  // bind_runtime.cpp: threads, SIMD level, build report

}  // namespace edgeanom::bind
