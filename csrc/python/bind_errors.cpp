// Python bindings of the per-sample scoring kernels: reconstruction errors (reduce.hpp), error maps
// (error_map.hpp), their Gaussian blur (blur.hpp) and map scores (map_score.hpp). Arguments are
// converted and checked here; the numerics live in the headers.
#include <type_traits>

#include "blur.hpp"
#include "error_map.hpp"
#include "map_score.hpp"
#include "python/convert.hpp"
#include "python/module.hpp"
#include "reduce.hpp"

namespace edgeanom::bind {
namespace {

Metric parse_metric(const py::object& m) {
    const std::string s = to_str(m, "metric");
    if (s == "mse") return Metric::mse;
    if (s == "mae") return Metric::mae;
    if (s == "sse") return Metric::sse;
    if (s == "rmse") return Metric::rmse;
    if (s == "max") return Metric::max;
    throw py::value_error("unknown metric '" + s + "'; expected one of: mse, mae, sse, rmse, max");
}

MapMode parse_mode(const py::object& m) {
    const std::string s = to_str(m, "mode");
    if (s == "max") return MapMode::max;
    if (s == "topk_mean") return MapMode::topk_mean;
    throw py::value_error("unknown mode '" + s + "'; expected 'max' or 'topk_mean'");
}

// x_hat must have x's shape, or broadcast one row: (1, *tail) or tail. Returns true if broadcast.
bool match_x_hat(const Shape& xs, const Shape& ys) {
    if (ys == xs) return false;
    const Shape t = tail(xs, 1);
    Shape one_row = t;
    one_row.insert(one_row.begin(), 1);
    if (ys == one_row || ys == t) return true;
    throw py::value_error("x_hat shape " + shape_str(ys) + " does not match x shape " + shape_str(xs) +
                          " (expected " + shape_str(xs) + ", " + shape_str(one_row) + " or " + shape_str(t) + ")");
}

py::array_t<float> reconstruction_error_py(const py::object& x_obj, const py::object& y_obj,
                                           const py::object& metric_obj, const py::object& w_obj,
                                           const py::object& out_obj) {
    const Metric metric = parse_metric(metric_obj);
    Dt dx, dy;
    py::array x = float_input(x_obj, "x", dx);
    py::array y = float_input(y_obj, "x_hat", dy);
    const Shape xs = shape_of(x);
    if (xs.empty()) throw py::value_error("x must have a batch axis: expected shape (N, ...), got shape ()");
    const bool bcast = match_x_hat(xs, shape_of(y));
    const Shape per_sample = tail(xs, 1);
    const std::size_t n = static_cast<std::size_t>(xs[0]);
    const std::size_t d = prod(per_sample);

    py::array_t<float> w;
    const float* wp = nullptr;
    if (!w_obj.is_none()) {
        w = real_input<float>(w_obj, "weights");
        if (shape_of(w) != per_sample)
            throw py::value_error("weights shape " + shape_str(shape_of(w)) + " does not match the per-sample shape " +
                                  shape_str(per_sample) + " of x");
        wp = w.data();
        for (std::size_t i = 0; i < d; ++i)
            if (!(std::isfinite(wp[i]) && wp[i] >= 0.0f))
                throw py::value_error("weights must be finite and >= 0 (after conversion to float32)");
    }
    py::array_t<float> out = output(out_obj, Shape{static_cast<py::ssize_t>(n)}, "result");
    float* op = out.mutable_data();
    const void* xp = x.data();
    const void* yp = y.data();
    run_without_gil(n * d, [&] {
        with_types(dx, dy, [&](auto* tx, auto* ty) {
            using TX = std::remove_const_t<std::remove_pointer_t<decltype(tx)>>;
            using TY = std::remove_const_t<std::remove_pointer_t<decltype(ty)>>;
            reconstruction_error<TX, TY>(metric, static_cast<const TX*>(xp), static_cast<const TY*>(yp), bcast, wp,
                                         n, d, op);
        });
    });
    return out;
}

py::array_t<float> error_map_py(const py::object& x_obj, const py::object& y_obj, double sigma,
                                const py::object& out_obj) {
    check_sigma(sigma, "blur_sigma");
    Dt dx, dy;
    py::array x = float_input(x_obj, "x", dx);
    py::array y = float_input(y_obj, "x_hat", dy);
    const Shape xs = shape_of(x);
    if (xs.size() != 4) throw py::value_error("x must have shape (N, C, H, W), got shape " + shape_str(xs));
    const bool bcast = match_x_hat(xs, shape_of(y));
    const std::size_t n = static_cast<std::size_t>(xs[0]), c = static_cast<std::size_t>(xs[1]);
    const std::size_t h = static_cast<std::size_t>(xs[2]), w = static_cast<std::size_t>(xs[3]);
    py::array_t<float> out = output(out_obj, Shape{xs[0], xs[2], xs[3]}, "error map");
    float* op = out.mutable_data();
    const void* xp = x.data();
    const void* yp = y.data();
    run_without_gil(n * c * h * w, [&] {
        with_types(dx, dy, [&](auto* tx, auto* ty) {
            using TX = std::remove_const_t<std::remove_pointer_t<decltype(tx)>>;
            using TY = std::remove_const_t<std::remove_pointer_t<decltype(ty)>>;
            error_map<TX, TY>(static_cast<const TX*>(xp), static_cast<const TY*>(yp), bcast, n, c, h * w, op);
        });
        if (sigma > 0.0) blur_maps(op, op, n, h, w, sigma);
    });
    return out;
}

py::array_t<float> blur_maps_py(const py::object& maps_obj, double sigma, const py::object& out_obj) {
    check_sigma(sigma, "sigma");
    Dt dt;
    py::array m = float_input(maps_obj, "maps", dt);
    if (dt == Dt::f16) m = m.attr("astype")("float32");  // the blur works in float32
    const Shape ms = shape_of(m);
    if (ms.size() != 2 && ms.size() != 3)
        throw py::value_error("maps must have shape (N, H, W) or (H, W), got shape " + shape_str(ms));
    const std::size_t n = ms.size() == 3 ? static_cast<std::size_t>(ms[0]) : 1;
    const std::size_t h = static_cast<std::size_t>(ms[ms.size() - 2]), w = static_cast<std::size_t>(ms.back());
    py::array_t<float> out = output(out_obj, ms, "maps");
    const float* ip = static_cast<const float*>(m.data());
    float* op = out.mutable_data();
    run_without_gil(n * h * w, [&] { blur_maps(ip, op, n, h, w, sigma); });
    return out;
}

py::array_t<float> map_score_py(const py::object& maps_obj, const py::object& mode_obj, const py::object& k_obj) {
    const MapMode mode = parse_mode(mode_obj);
    Dt dt;
    py::array m = float_input(maps_obj, "maps", dt);
    const Shape ms = shape_of(m);
    if (ms.empty()) throw py::value_error("maps must have a batch axis: expected shape (N, ...), got shape ()");
    const std::size_t n = static_cast<std::size_t>(ms[0]);
    const std::size_t pixels = prod(tail(ms, 1));
    std::size_t k = 1;
    if (mode == MapMode::topk_mean) {
        const auto most = static_cast<std::int64_t>(std::max<std::size_t>(pixels, 1));
        k = k_obj.is_none() ? default_topk(pixels)
                            : static_cast<std::size_t>(to_int(k_obj, "k", 1, most, Above::clamp));
    }
    py::array_t<float> out(static_cast<py::ssize_t>(n));
    float* op = out.mutable_data();
    const void* mp = m.data();
    run_without_gil(n * pixels, [&] {
        if (dt == Dt::f32)
            map_score(static_cast<const float*>(mp), n, pixels, mode, k, op);
        else
            map_score(static_cast<const Half*>(mp), n, pixels, mode, k, op);
    });
    return out;
}

}  // namespace

void register_errors(py::module_& m) {
    m.def("reconstruction_error", &reconstruction_error_py, py::arg("x"), py::arg("x_hat"),
          py::arg("metric") = "mse", py::arg("weights") = py::none(), py::arg("out") = py::none(),
          "Per-sample reconstruction error (see edgeanom.scoring.reconstruction_error).");
    m.def("error_map", &error_map_py, py::arg("x"), py::arg("x_hat"), py::arg("blur_sigma") = 0.0,
          py::arg("out") = py::none(), "Per-pixel channel-mean squared error maps, optionally blurred.");
    m.def("blur_maps", &blur_maps_py, py::arg("maps"), py::arg("sigma"), py::arg("out") = py::none(),
          "Gaussian blur of (N, H, W) maps (scipy 'reflect', truncate 4).");
    m.def("map_score", &map_score_py, py::arg("maps"), py::arg("mode") = "max", py::arg("k") = py::none(),
          "Per-sample max or top-k mean of error maps.");
}

}  // namespace edgeanom::bind
