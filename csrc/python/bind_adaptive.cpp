// Python binding of the adaptive scoring stage (adaptive.hpp) as edgeanom._scoring.AdaptiveScorer.
// Arguments are converted here; AdaptiveCore checks its own parameters (std::invalid_argument -> ValueError).
#include <cmath>

#include "adaptive.hpp"
#include "python/convert.hpp"
#include "python/module.hpp"

namespace edgeanom::bind {
namespace {

class AdaptiveScorer {
  public:
    AdaptiveScorer(const py::object& window, const py::object& short_window, const py::object& warmup,
                   const py::object& min_history, const py::object& gate, const py::object& holdoff,
                   const py::object& relearn_after, const py::object& relearn_every, bool log_scores,
                   const py::object& offset, const py::object& min_scale, const py::object& reference)
        : core_(make_params(window, short_window, warmup, min_history, gate, holdoff, relearn_after, relearn_every,
                            log_scores, offset, min_scale, reference)) {}

    // (surprise float64 (N,), learned bool (N,)) for a batch of raw scores, in each stream's order.
    py::tuple update(const py::object& scores_obj, const py::object& ids_obj) {
        const auto scores = score_input(scores_obj);
        const StreamIds ids(ids_obj, scores);
        const std::size_t n = static_cast<std::size_t>(scores.size());
        const Shape shape{static_cast<py::ssize_t>(n)};
        py::array_t<double> surprise(shape);
        py::array_t<bool> learned(shape);
        double* sp = surprise.mutable_data();
        bool* lp = learned.mutable_data();
        const double* xp = scores.data();
        // Streams are independent but one stream's samples must go in order, so the loop is serial; the
        // GIL is released for long batches (the state belongs to this object, which the call keeps alive).
        // Concurrent update() calls on one scorer from several threads are not supported.
        run_without_gil(n * 64, [&] {
            for (std::size_t i = 0; i < n; ++i) {
                bool l = false;
                sp[i] = core_.step(ids.of(i), xp[i], l);
                lp[i] = l;
            }
        });
        return py::make_tuple(surprise, learned);
    }

    void prime(const py::object& stream, const py::object& values) {
        const std::int64_t id = to_int(stream, "stream_id");
        const auto v = real_input<double>(values, "values");
        if (v.ndim() != 1) throw py::value_error("values must be 1-D, got shape " + shape_str(shape_of(v)));
        core_.prime(id, v.data(), static_cast<std::size_t>(v.size()));
    }

    void reset(const py::object& stream) {
        if (stream.is_none()) {
            core_.reset(nullptr);
            return;
        }
        const std::int64_t id = to_int(stream, "stream_id");
        core_.reset(&id);
    }

    py::list streams() const {
        py::list l;
        for (const auto& kv : core_.streams()) l.append(kv.first);
        return l;
    }

    py::object state(const py::object& stream) const {
        const AdaptiveStream* st = core_.find(to_int(stream, "stream_id"));
        if (!st) return py::none();
        const auto size = static_cast<std::int64_t>(st->sorted.size());
        auto maybe = [](double v) -> py::object { return std::isnan(v) ? py::none() : py::cast(v); };
        py::dict d;
        d["seen"] = st->seen;
        d["learned"] = st->learned;
        d["history"] = size;
        d["median"] = maybe(st->median);
        d["scale"] = maybe(st->scale);
        d["last_surprise"] = st->last_surprise;
        d["gated_run"] = st->gated_run;
        d["drift_count"] = st->drift_count;
        d["drift_fraction"] = size ? py::cast(static_cast<double>(st->drift_count) / static_cast<double>(size))
                                   : py::none();
        return std::move(d);
    }

    const AdaptiveParams& params() const { return core_.params(); }

  private:
    static AdaptiveParams make_params(const py::object& window, const py::object& short_window,
                                      const py::object& warmup, const py::object& min_history,
                                      const py::object& gate, const py::object& holdoff,
                                      const py::object& relearn_after, const py::object& relearn_every,
                                      bool log_scores, const py::object& offset, const py::object& min_scale,
                                      const py::object& reference) {
        AdaptiveParams p;
        p.window = to_int(window, "window");
        p.short_window = to_int(short_window, "short_window");
        p.warmup = to_int(warmup, "warmup");
        p.min_history = to_int(min_history, "min_history");
        p.gate = to_double(gate, "gate");
        p.holdoff = to_int(holdoff, "holdoff");
        p.relearn_after = to_int(relearn_after, "relearn_after");
        p.relearn_every = to_int(relearn_every, "relearn_every");
        p.log_scores = log_scores;
        p.offset = to_double(offset, "offset");
        p.min_scale = to_double(min_scale, "min_scale");
        if (!reference.is_none()) p.reference = to_double(reference, "reference");
        return p;
    }

    AdaptiveCore core_;
};

}  // namespace

void register_adaptive(py::module_& m) {
    const AdaptiveParams d;
    py::class_<AdaptiveScorer>(m, "AdaptiveScorer")
        .def(py::init<const py::object&, const py::object&, const py::object&, const py::object&, const py::object&,
                      const py::object&, const py::object&, const py::object&, bool, const py::object&,
                      const py::object&, const py::object&>(),
             py::arg("window") = d.window, py::arg("short_window") = d.short_window, py::arg("warmup") = d.warmup,
             py::arg("min_history") = d.min_history, py::arg("gate") = d.gate, py::arg("holdoff") = d.holdoff,
             py::arg("relearn_after") = d.relearn_after, py::arg("relearn_every") = d.relearn_every,
             py::arg("log_scores") = d.log_scores, py::arg("offset") = d.offset, py::arg("min_scale") = d.min_scale,
             py::arg("reference") = py::none())
        .def("update", &AdaptiveScorer::update, py::arg("scores"), py::arg("stream_ids") = py::none())
        .def("prime", &AdaptiveScorer::prime, py::arg("stream_id"), py::arg("values"))
        .def("reset", &AdaptiveScorer::reset, py::arg("stream_id") = py::none())
        .def("streams", &AdaptiveScorer::streams)
        .def("state", &AdaptiveScorer::state, py::arg("stream_id"))
        .def_property_readonly("params", [](const AdaptiveScorer& s) {
            const AdaptiveParams& p = s.params();
            py::dict d;
            d["window"] = p.window;
            d["short_window"] = p.short_window;
            d["warmup"] = p.warmup;
            d["min_history"] = p.min_history;
            d["gate"] = p.gate;
            d["holdoff"] = p.holdoff;
            d["relearn_after"] = p.relearn_after;
            d["relearn_every"] = p.relearn_every;
            d["log_scores"] = p.log_scores;
            d["offset"] = p.offset;
            d["min_scale"] = p.min_scale;
            d["reference"] = std::isinf(p.reference) ? py::none() : py::cast(p.reference);
            return d;
        });
    m.def("normal_surprise", py::vectorize(normal_surprise), py::arg("z"),
          "-log10 of the standard normal upper tail, for any z (float64).");
}

}  // namespace edgeanom::bind
