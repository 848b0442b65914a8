// edgeanom._scoring: only registration calls. Each concept's bindings live in its own bind_*.cpp.
#include "python/module.hpp"

PYBIND11_MODULE(_scoring, m) {
    m.doc() = "edgeanom's compiled scoring core. Use the documented API in edgeanom.scoring.";
    edgeanom::bind::register_errors(m);
    edgeanom::bind::register_adaptive(m);
    edgeanom::bind::register_alarm(m);
    edgeanom::bind::register_runtime(m);
}
