// Python binding of the streaming alarm state machine (alarm.hpp) as edgeanom._scoring.AlarmFilter.
// Arguments are converted here; AlarmCore checks its own parameters (std::invalid_argument ->
// ValueError).
#include <pybind11/stl.h>

#include <utility>
#include <vector>

#include "alarm.hpp"
#include "python/convert.hpp"
#include "python/module.hpp"

namespace edgeanom::bind {
namespace {

AlarmParams make_params(double threshold, const py::object& ewma_alpha, const py::object& k, const py::object& n,
                        const py::object& clear_threshold, const py::object& min_hold) {
    AlarmParams p;
    p.threshold = threshold;
    if (!ewma_alpha.is_none()) {
        p.use_ewma = true;
        p.alpha = to_double(ewma_alpha, "ewma_alpha");
    }
    p.n = to_int(n, "n");
    p.k = to_int(k, "k");
    if (!clear_threshold.is_none()) {
        p.hysteresis = true;
        p.clear_threshold = to_double(clear_threshold, "clear_threshold");
    }
    p.min_hold = to_int(min_hold, "min_hold");
    return p;
}

// Reported in float32 precision, like the smoothed scores array.
double as_reported(double v) { return static_cast<double>(static_cast<float>(v)); }

py::list event_list(const std::vector<AlarmEvent>& events) {
    py::list l;
    for (const auto& e : events) {
        py::dict d;
        d["type"] = e.start ? "start" : "end";
        d["stream"] = e.stream;
        d["index"] = e.index;
        d["peak"] = as_reported(e.peak);
        d["peak_index"] = e.peak_index;
        d["start_index"] = e.start_index;
        l.append(std::move(d));
    }
    return l;
}

class AlarmFilter {
  public:
    AlarmFilter(double threshold, const py::object& ewma_alpha, const py::object& k, const py::object& n,
                const py::object& clear_threshold, const py::object& min_hold)
        : core_(make_params(threshold, ewma_alpha, k, n, clear_threshold, min_hold)) {}

    py::tuple update(const py::object& scores_obj, const py::object& ids_obj) {
        const auto scores = score_input(scores_obj);
        const StreamIds ids(ids_obj, scores);
        const std::size_t n = static_cast<std::size_t>(scores.size());
        const Shape sshape{static_cast<py::ssize_t>(n)};
        py::array_t<bool> flags(sshape);
        py::array_t<float> smoothed(sshape);
        bool* fp = flags.mutable_data();
        float* sp = smoothed.mutable_data();
        const double* xp = scores.data();
        std::vector<AlarmEvent> events;
        // The GIL stays held: the state machine is cheap, and holding it makes concurrent update()
        // calls on the same filter from several Python threads safe.
        for (std::size_t i = 0; i < n; ++i) {
            double s = 0.0;
            fp[i] = core_.step(ids.of(i), xp[i], s, events);
            sp[i] = static_cast<float>(s);
        }
        return py::make_tuple(flags, smoothed, event_list(events));
    }

    py::list flush(const py::object& stream) {
        std::vector<AlarmEvent> events;
        std::int64_t id = 0;
        core_.flush(stream_arg(stream, id), events);
        return event_list(events);
    }

    py::list close(const py::object& stream) {
        std::vector<AlarmEvent> events;
        std::int64_t id = 0;
        const std::int64_t* only = stream_arg(stream, id);
        core_.flush(only, events);
        core_.reset(only);
        return event_list(events);
    }

    void reset(const py::object& stream) {
        std::int64_t id = 0;
        core_.reset(stream_arg(stream, id));
    }

    py::list streams() const {
        py::list l;
        for (const auto& kv : core_.streams()) l.append(kv.first);
        return l;
    }

    py::list active_streams() const {
        py::list l;
        for (const auto& kv : core_.streams())
            if (kv.second.on) l.append(kv.first);
        return l;
    }

    py::object state(std::int64_t stream) const {
        const StreamState* st = core_.find(stream);
        if (!st) return py::none();
        py::dict d;
        d["stream"] = stream;
        d["count"] = st->count;
        d["in_alarm"] = st->on;
        d["smoothed"] = st->count ? py::cast(as_reported(st->last)) : py::none();
        d["ewma"] = st->has_ewma ? py::cast(st->ewma) : py::none();
        d["hot_in_window"] = core_.hot_in_window(*st);
        d["start_index"] = st->on ? py::cast(st->start_index) : py::none();
        d["peak"] = st->on ? py::cast(as_reported(st->peak)) : py::none();
        d["peak_index"] = st->on ? py::cast(st->peak_index) : py::none();
        return std::move(d);
    }

    const AlarmParams& params() const { return core_.params(); }

  private:
    // None -> all streams (nullptr); otherwise the id, stored in `id`.
    static const std::int64_t* stream_arg(const py::object& stream, std::int64_t& id) {
        if (stream.is_none()) return nullptr;
        id = to_int(stream, "stream_id");
        return &id;
    }

    AlarmCore core_;
};

}  // namespace

void register_alarm(py::module_& m) {
    py::class_<AlarmFilter>(m, "AlarmFilter")
        .def(py::init<double, const py::object&, const py::object&, const py::object&, const py::object&,
                      const py::object&>(),
             py::arg("threshold"), py::arg("ewma_alpha") = py::none(), py::arg("k") = 1, py::arg("n") = 1,
             py::arg("clear_threshold") = py::none(), py::arg("min_hold") = 0)
        .def("update", &AlarmFilter::update, py::arg("scores"), py::arg("stream_ids") = py::none())
        .def("flush", &AlarmFilter::flush, py::arg("stream_id") = py::none())
        .def("close", &AlarmFilter::close, py::arg("stream_id") = py::none())
        .def("reset", &AlarmFilter::reset, py::arg("stream_id") = py::none())
        .def("streams", &AlarmFilter::streams)
        .def("active_streams", &AlarmFilter::active_streams)
        .def("state", &AlarmFilter::state, py::arg("stream_id"))
        .def_property_readonly("threshold", [](const AlarmFilter& f) { return f.params().threshold; })
        .def_property_readonly("ewma_alpha",
                               [](const AlarmFilter& f) -> py::object {
                                   return f.params().use_ewma ? py::cast(f.params().alpha) : py::none();
                               })
        .def_property_readonly("k", [](const AlarmFilter& f) { return f.params().k; })
        .def_property_readonly("n", [](const AlarmFilter& f) { return f.params().n; })
        .def_property_readonly("clear_threshold",
                               [](const AlarmFilter& f) -> py::object {
                                   return f.params().hysteresis ? py::cast(f.params().clear_threshold) : py::none();
                               })
        .def_property_readonly("min_hold", [](const AlarmFilter& f) { return f.params().min_hold; });
}

}  // namespace edgeanom::bind
