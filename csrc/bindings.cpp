// pybind11 bindings for edgeanom._scoring: converts and validates Python arguments, then calls the
// plain C++ kernels in the headers next to this file. No numerics live here.
//
// Argument policy (documented in docs/scoring.md):
//   * arrays must be float32 or float16 (native byte order); anything else is a TypeError naming the
//     dtype. float64 is not converted silently: the caller chooses the precision.
//   * non-C-contiguous or misaligned arrays are copied to a contiguous array first (one extra pass);
//   * shape mismatches are ValueErrors naming both shapes; `out` must match exactly.
//   * the GIL is released around the kernels (see run_without_gil()).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "alarm.hpp"
#include "blur.hpp"
#include "cpu.hpp"
#include "error_map.hpp"
#include "half.hpp"
#include "map_score.hpp"
#include "reduce.hpp"
#include "threading.hpp"

namespace py = pybind11;
using namespace edgeanom;

#ifndef EDGEANOM_CXX_FLAGS
#define EDGEANOM_CXX_FLAGS "unknown"
#endif
#ifndef EDGEANOM_BUILD_TYPE
#define EDGEANOM_BUILD_TYPE "unknown"
#endif

namespace {

constexpr double kMaxSigma = 1000.0;
constexpr int kNpyHalf = 23;   // NPY_HALF
constexpr int kNpyFloat = 11;  // NPY_FLOAT
constexpr int kAligned = py::detail::npy_api::NPY_ARRAY_ALIGNED_;
constexpr int kCContig = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_;

enum class Dt { f32, f16 };

using Shape = std::vector<py::ssize_t>;

std::string shape_str(const Shape& s) {
    std::ostringstream o;
    o << '(';
    for (std::size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
    if (s.size() == 1) o << ',';
    o << ')';
    return o.str();
}

Shape shape_of(const py::array& a) { return Shape(a.shape(), a.shape() + a.ndim()); }

Shape tail(const Shape& s, std::size_t from) {
    return from >= s.size() ? Shape{} : Shape(s.begin() + static_cast<std::ptrdiff_t>(from), s.end());
}

std::size_t prod(const Shape& s) {
    std::size_t p = 1;
    for (auto v : s) p *= static_cast<std::size_t>(v);
    return p;
}

bool native_order(const py::dtype& dt) {
    const char b = dt.byteorder();
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return b != '<';
#else
    return b != '>';
#endif
}

std::string type_name(const py::handle& h) { return Py_TYPE(h.ptr())->tp_name; }

std::string dtype_name(const py::dtype& dt) { return py::str(static_cast<const py::object&>(dt)); }

// Any array-like -> ndarray (lists become float64 arrays and are then rejected by the dtype check).
py::array as_array(const py::handle& obj, const char* name) {
    if (py::isinstance<py::array>(obj)) return py::reinterpret_borrow<py::array>(obj);
    py::array a = py::array::ensure(obj);
    if (!a) throw py::type_error(std::string(name) + " must be a numpy array, got " +
                                 type_name(obj));
    return a;
}

// Checks the dtype is float32/float16 and returns a C-contiguous, aligned array (copying if needed).
py::array float_input(const py::handle& obj, const char* name, Dt& dt) {
    py::array a = as_array(obj, name);
    const py::dtype d = a.dtype();
    const int num = d.num();
    if ((num != kNpyFloat && num != kNpyHalf) || !native_order(d))
        throw py::type_error(std::string(name) + " has dtype " + dtype_name(d) + ", expected float32 or float16");
    dt = (num == kNpyFloat) ? Dt::f32 : Dt::f16;
    if ((a.flags() & (kCContig | kAligned)) != (kCContig | kAligned)) {
        a = py::array::ensure(a, kCContig | kAligned);  // contiguous copy (documented)
        if (!a) throw py::error_already_set();
    }
    return a;
}

// Validates a caller-provided output array: float32, exact shape, C-contiguous, aligned, writeable.
py::array_t<float> output(const py::object& out, const Shape& shape, const char* what) {
    if (out.is_none()) return py::array_t<float>(shape);
    if (!py::isinstance<py::array>(out))
        throw py::type_error(std::string("out must be a numpy float32 array, got ") +
                             type_name(out));
    auto a = py::reinterpret_borrow<py::array>(out);
    const py::dtype d = a.dtype();
    if (d.num() != kNpyFloat || !native_order(d))
        throw py::type_error("out has dtype " + dtype_name(d) + ", expected float32");
    if (shape_of(a) != shape)
        throw py::value_error("out shape " + shape_str(shape_of(a)) + " does not match the " + what + " shape " +
                              shape_str(shape));
    if ((a.flags() & (kCContig | kAligned)) != (kCContig | kAligned))
        throw py::value_error("out must be C-contiguous");
    if (!a.writeable()) throw py::value_error("out is read-only");
    return py::reinterpret_borrow<py::array_t<float>>(out);
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

// Releases the GIL around a kernel. Safe because the kernels touch only raw buffers owned by numpy
// arrays that this binding frame keeps referenced (so they cannot be freed or resized meanwhile), and
// never call into Python. Another Python thread writing to the same arrays concurrently would only
// produce meaningless numbers, not a crash. Small inputs skip the release: it costs more than it saves.
template <class F>
void run_without_gil(std::size_t elements, F&& f) {
    if (elements < 16384) {
        f();
        return;
    }
    py::gil_scoped_release release;
    f();
}

template <class F>
void with_types(Dt a, Dt b, F&& f) {
    const float* F32 = nullptr;
    const Half* F16 = nullptr;
    if (a == Dt::f32 && b == Dt::f32) f(F32, F32);
    if (a == Dt::f32 && b == Dt::f16) f(F32, F16);
    if (a == Dt::f16 && b == Dt::f32) f(F16, F32);
    if (a == Dt::f16 && b == Dt::f16) f(F16, F16);
}

Metric parse_metric(const py::object& m) {
    if (!py::isinstance<py::str>(m))
        throw py::type_error("metric must be a string, got " + type_name(m));
    const std::string s = py::str(m);
    if (s == "mse") return Metric::mse;
    if (s == "mae") return Metric::mae;
    if (s == "sse") return Metric::sse;
    if (s == "rmse") return Metric::rmse;
    if (s == "max") return Metric::max;
    throw py::value_error("unknown metric '" + s + "'; expected one of: mse, mae, sse, rmse, max");
}

// A real number from a Python object (int, float, numpy scalar); TypeError otherwise.
double to_double(const py::object& v, const char* name) {
    if (PyBool_Check(v.ptr()) || !(PyFloat_Check(v.ptr()) || PyLong_Check(v.ptr()) || PyIndex_Check(v.ptr()) ||
                                   py::hasattr(v, "__float__")))
        throw py::type_error(std::string(name) + " must be a real number, got " +
                             type_name(v));
    const double d = PyFloat_AsDouble(v.ptr());
    if (d == -1.0 && PyErr_Occurred()) throw py::error_already_set();
    return d;
}

double parse_sigma(double sigma, const char* name) {
    if (!std::isfinite(sigma) || sigma < 0.0 || sigma > kMaxSigma) {
        std::ostringstream o;
        o << name << " must be a finite number in [0, " << kMaxSigma << "], got " << sigma;
        throw py::value_error(o.str());
    }
    return sigma;
}

// ---------------------------------------------------------------------------------------------------
py::array_t<float> py_reconstruction_error(const py::object& x_obj, const py::object& y_obj,
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
        py::array wa = as_array(w_obj, "weights");
        const char kind = wa.dtype().kind();
        if (kind != 'f' && kind != 'i' && kind != 'u')
            throw py::type_error("weights has dtype " + dtype_name(wa.dtype()) + ", expected a real number dtype");
        w = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(wa);
        if (!w) throw py::error_already_set();
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

py::array_t<float> py_error_map(const py::object& x_obj, const py::object& y_obj, double sigma,
                                const py::object& out_obj) {
    parse_sigma(sigma, "blur_sigma");
    Dt dx, dy;
    py::array x = float_input(x_obj, "x", dx);
    py::array y = float_input(y_obj, "x_hat", dy);
    const Shape xs = shape_of(x);
    if (xs.size() != 4)
        throw py::value_error("x must have shape (N, C, H, W), got shape " + shape_str(xs));
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

// float16 maps are converted to a float32 copy first.
py::array float32_maps(const py::object& obj, const char* name) {
    Dt dt;
    py::array a = float_input(obj, name, dt);
    if (dt == Dt::f16) a = a.attr("astype")("float32");
    return a;
}

py::array_t<float> py_blur_maps(const py::object& maps_obj, double sigma, const py::object& out_obj) {
    parse_sigma(sigma, "sigma");
    py::array m = float32_maps(maps_obj, "maps");
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

py::array_t<float> py_map_score(const py::object& maps_obj, const py::object& mode_obj, const py::object& k_obj) {
    if (!py::isinstance<py::str>(mode_obj)) throw py::type_error("mode must be a string");
    const std::string mode_s = py::str(mode_obj);
    MapMode mode;
    if (mode_s == "max")
        mode = MapMode::max;
    else if (mode_s == "topk_mean")
        mode = MapMode::topk_mean;
    else
        throw py::value_error("unknown mode '" + mode_s + "'; expected 'max' or 'topk_mean'");
    Dt dt;
    py::array m = float_input(maps_obj, "maps", dt);
    const Shape ms = shape_of(m);
    if (ms.empty()) throw py::value_error("maps must have a batch axis: expected shape (N, ...), got shape ()");
    const std::size_t n = static_cast<std::size_t>(ms[0]);
    const std::size_t pixels = prod(tail(ms, 1));
    std::size_t k = 1;
    if (mode == MapMode::topk_mean) {
        if (k_obj.is_none()) {
            k = static_cast<std::size_t>(std::llround(0.01 * static_cast<double>(pixels)));
        } else {
            if (PyBool_Check(k_obj.ptr())) throw py::type_error("k must be an integer, got bool");
            py::object idx = py::reinterpret_steal<py::object>(PyNumber_Index(k_obj.ptr()));
            if (!idx) {
                PyErr_Clear();
                throw py::type_error("k must be an integer, got " +
                                     type_name(k_obj));
            }
            int overflow = 0;
            const long long kv = PyLong_AsLongLongAndOverflow(idx.ptr(), &overflow);
            if (overflow < 0 || (overflow == 0 && kv < 1))
                throw py::value_error("k must be >= 1, got " + std::string(py::str(idx)));
            k = overflow > 0 ? pixels : static_cast<std::size_t>(kv);
        }
        k = std::max<std::size_t>(1, std::min(k, std::max<std::size_t>(pixels, 1)));
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

// ---------------------------------------------------------------------------------------------------
class PyAlarmFilter {
  public:
    PyAlarmFilter(double threshold, const py::object& ewma_alpha, const py::object& k, const py::object& n,
                  const py::object& clear_threshold, const py::object& min_hold)
        : core_(make_params(threshold, ewma_alpha, k, n, clear_threshold, min_hold)) {}

    py::tuple update(const py::object& scores_obj, const py::object& ids_obj) {
        py::array sa = as_array(scores_obj, "scores");
        const char kind = sa.dtype().kind();
        if (kind != 'f' && kind != 'i' && kind != 'u')
            throw py::type_error("scores has dtype " + dtype_name(sa.dtype()) + ", expected a real number dtype");
        if (sa.ndim() > 1) throw py::value_error("scores must be 1-D, got shape " + shape_str(shape_of(sa)));
        auto scores = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(sa);
        if (!scores) throw py::error_already_set();
        const std::size_t n = static_cast<std::size_t>(scores.size());
        const Shape sshape{static_cast<py::ssize_t>(n)};

        std::int64_t single_id = 0;
        py::array_t<std::int64_t> ids;
        const std::int64_t* idp = nullptr;
        if (!ids_obj.is_none()) {
            if (PyLong_Check(ids_obj.ptr()) && !PyBool_Check(ids_obj.ptr())) {
                single_id = ids_obj.cast<std::int64_t>();
            } else {
                py::array ia = as_array(ids_obj, "stream_ids");
                const char ik = ia.dtype().kind();
                if (ik != 'i' && ik != 'u')
                    throw py::type_error("stream_ids has dtype " + dtype_name(ia.dtype()) + ", expected an integer dtype");
                if (ia.ndim() == 0) {
                    single_id = ia.attr("item")().cast<std::int64_t>();
                } else {
                    const Shape is = shape_of(ia);
                    if (is != sshape && !(sa.ndim() == 0 && is == Shape{1}))
                        throw py::value_error("stream_ids shape " + shape_str(is) + " does not match scores shape " +
                                              shape_str(shape_of(sa)));
                    ids = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(ia);
                    if (!ids) throw py::error_already_set();
                    idp = ids.data();
                }
            }
        }
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
            fp[i] = core_.step(idp ? idp[i] : single_id, xp[i], s, events);
            sp[i] = static_cast<float>(s);
        }
        return py::make_tuple(flags, smoothed, to_list(events));
    }

    py::list flush(const py::object& stream) {
        std::vector<AlarmEvent> events;
        std::int64_t id = 0;
        core_.flush(stream_arg(stream, id), events);
        return to_list(events);
    }

    py::list close(const py::object& stream) {
        std::vector<AlarmEvent> events;
        std::int64_t id = 0;
        const std::int64_t* only = stream_arg(stream, id);
        core_.flush(only, events);
        core_.reset(only);
        return to_list(events);
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
        d["smoothed"] = st->count ? py::cast(static_cast<double>(static_cast<float>(st->last))) : py::none();
        d["ewma"] = st->has_ewma ? py::cast(st->ewma) : py::none();
        d["hot_in_window"] = core_.hot_in_window(*st);
        d["start_index"] = st->on ? py::cast(st->start_index) : py::none();
        d["peak"] = st->on ? py::cast(static_cast<double>(static_cast<float>(st->peak))) : py::none();
        d["peak_index"] = st->on ? py::cast(st->peak_index) : py::none();
        return std::move(d);
    }

    const AlarmParams& params() const { return core_.params(); }

  private:
    static const std::int64_t* stream_arg(const py::object& stream, std::int64_t& id) {
        if (stream.is_none()) return nullptr;
        if (PyBool_Check(stream.ptr())) throw py::type_error("stream_id must be an integer, got bool");
        py::object idx = py::reinterpret_steal<py::object>(PyNumber_Index(stream.ptr()));
        if (!idx) {
            PyErr_Clear();
            throw py::type_error("stream_id must be an integer, got " +
                                 type_name(stream));
        }
        id = idx.cast<std::int64_t>();
        return &id;
    }

    static py::list to_list(const std::vector<AlarmEvent>& events) {
        py::list l;
        for (const auto& e : events) {
            py::dict d;
            d["type"] = e.start ? "start" : "end";
            d["stream"] = e.stream;
            d["index"] = e.index;
            // Reported in float32 precision, like the smoothed scores array.
            d["peak"] = static_cast<double>(static_cast<float>(e.peak));
            d["peak_index"] = e.peak_index;
            d["start_index"] = e.start_index;
            l.append(std::move(d));
        }
        return l;
    }

    static std::int64_t int_param(const py::object& v, const char* name, std::int64_t lo, std::int64_t hi) {
        if (PyBool_Check(v.ptr()) || !(PyLong_Check(v.ptr()) || PyIndex_Check(v.ptr())))
            throw py::type_error(std::string(name) + " must be an integer, got " +
                                 type_name(v));
        py::object idx = py::reinterpret_steal<py::object>(PyNumber_Index(v.ptr()));
        if (!idx) throw py::error_already_set();
        int overflow = 0;
        const long long x = PyLong_AsLongLongAndOverflow(idx.ptr(), &overflow);
        if (overflow != 0 || x < lo || x > hi) {
            std::ostringstream o;
            o << name << " must be in [" << lo << ", " << hi << "], got " << std::string(py::str(idx));
            throw py::value_error(o.str());
        }
        return static_cast<std::int64_t>(x);
    }

    static AlarmParams make_params(double threshold, const py::object& ewma_alpha, const py::object& k,
                                   const py::object& n, const py::object& clear_threshold,
                                   const py::object& min_hold) {
        AlarmParams p;
        if (!std::isfinite(threshold)) throw py::value_error("threshold must be finite");
        p.threshold = threshold;
        if (!ewma_alpha.is_none()) {
            const double a = to_double(ewma_alpha, "ewma_alpha");
            if (!(a > 0.0 && a <= 1.0)) {
                std::ostringstream o;
                o << "ewma_alpha must satisfy 0 < ewma_alpha <= 1, got " << a;
                throw py::value_error(o.str());
            }
            p.use_ewma = true;
            p.alpha = a;
        }
        constexpr std::int64_t kMaxWindow = 1 << 20;
        p.n = int_param(n, "n", 1, kMaxWindow);
        p.k = int_param(k, "k", 1, kMaxWindow);
        if (p.k > p.n) {
            std::ostringstream o;
            o << "k-of-n voting needs 1 <= k <= n, got k=" << p.k << ", n=" << p.n;
            throw py::value_error(o.str());
        }
        if (!clear_threshold.is_none()) {
            const double c = to_double(clear_threshold, "clear_threshold");
            if (!std::isfinite(c)) throw py::value_error("clear_threshold must be finite");
            if (c > threshold) {
                std::ostringstream o;
                o << "clear_threshold (" << c << ") must be <= threshold (" << threshold << ")";
                throw py::value_error(o.str());
            }
            p.hysteresis = true;
            p.clear_threshold = c;
        }
        p.min_hold = int_param(min_hold, "min_hold", 0, std::numeric_limits<std::int64_t>::max());
        return p;
    }

    AlarmCore core_;
};

// ---------------------------------------------------------------------------------------------------
std::string compiler_name() {
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

std::string compiler_version() {
#if defined(__VERSION__)
    return __VERSION__;
#elif defined(_MSC_VER)
    return std::to_string(_MSC_VER);
#else
    return "unknown";
#endif
}

std::string cxx_standard() {
#if __cplusplus >= 202002L
    return "C++20";
#elif __cplusplus >= 201703L
    return "C++17";
#else
    return std::to_string(__cplusplus);
#endif
}

std::string platform_name() {
#if defined(__x86_64__) || defined(_M_X64)
    return "x86_64";
#elif defined(__aarch64__)
    return "aarch64";
#else
    return "other";
#endif
}

py::dict build_info() {
    py::dict d;
    d["compiler"] = compiler_name();
    d["compiler_version"] = compiler_version();
    d["cxx_standard"] = cxx_standard();
    d["build_type"] = EDGEANOM_BUILD_TYPE;
    d["flags"] = EDGEANOM_CXX_FLAGS;
    d["platform"] = platform_name();
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

PYBIND11_MODULE(_scoring, m) {
    m.doc() = "edgeanom's compiled scoring core. Use the documented API in edgeanom.scoring.";

    m.def("reconstruction_error", &py_reconstruction_error, py::arg("x"), py::arg("x_hat"),
          py::arg("metric") = "mse", py::arg("weights") = py::none(), py::arg("out") = py::none(),
          "Per-sample reconstruction error (see edgeanom.scoring.reconstruction_error).");
    m.def("error_map", &py_error_map, py::arg("x"), py::arg("x_hat"), py::arg("blur_sigma") = 0.0,
          py::arg("out") = py::none(), "Per-pixel channel-mean squared error maps, optionally blurred.");
    m.def("blur_maps", &py_blur_maps, py::arg("maps"), py::arg("sigma"), py::arg("out") = py::none(),
          "Gaussian blur of (N, H, W) maps (scipy 'reflect', truncate 4).");
    m.def("map_score", &py_map_score, py::arg("maps"), py::arg("mode") = "max", py::arg("k") = py::none(),
          "Per-sample max or top-k mean of error maps.");

    m.def(
        "set_num_threads",
        [](const py::object& n) {
            if (PyBool_Check(n.ptr()) || !PyIndex_Check(n.ptr()))
                throw py::type_error("n must be an integer, got " + type_name(n));
            py::object idx = py::reinterpret_steal<py::object>(PyNumber_Index(n.ptr()));
            if (!idx) throw py::error_already_set();
            int overflow = 0;
            const long long v = PyLong_AsLongLongAndOverflow(idx.ptr(), &overflow);
            if (overflow != 0 || v < 1 || v > static_cast<long long>(kMaxThreads))
                throw py::value_error("n must be in [1, " + std::to_string(kMaxThreads) + "], got " +
                                      std::string(py::str(idx)));
            py::gil_scoped_release release;  // may wait for a running job on another thread
            pool().set_num_threads(static_cast<std::size_t>(v));
        },
        py::arg("n"), "Sets the number of threads used by the kernels (results do not depend on it).");
    m.def("get_num_threads", [] { return pool().num_threads(); }, "Number of threads used by the kernels.");
    m.def("build_info", &build_info, "Compiler, flags, SIMD features and thread defaults of this build.");

    m.def(
        "_set_simd",
        [](const std::string& name) {
            if (name == "generic") return cpu::set_level(cpu::Level::generic);
            if (name == "avx2") return cpu::set_level(cpu::Level::avx2);
            if (name == "auto") return cpu::set_level(cpu::best_level());
            throw py::value_error("unknown SIMD level '" + name + "'; expected generic, avx2 or auto");
        },
        py::arg("name"), "Testing hook: force a kernel family. Returns False if the CPU lacks it.");
    m.def("_get_simd", [] { return std::string(cpu::level_name(cpu::level())); });
    m.def(
        "_set_grain",
        [](std::size_t g) {
            grain_override().store(g);
        },
        py::arg("elements"), "Testing hook: minimum work per thread (0 = built-in defaults).");

    py::class_<PyAlarmFilter>(m, "AlarmFilter")
        .def(py::init<double, const py::object&, const py::object&, const py::object&, const py::object&,
                      const py::object&>(),
             py::arg("threshold"), py::arg("ewma_alpha") = py::none(), py::arg("k") = 1, py::arg("n") = 1,
             py::arg("clear_threshold") = py::none(), py::arg("min_hold") = 0)
        .def("update", &PyAlarmFilter::update, py::arg("scores"), py::arg("stream_ids") = py::none())
        .def("flush", &PyAlarmFilter::flush, py::arg("stream_id") = py::none())
        .def("close", &PyAlarmFilter::close, py::arg("stream_id") = py::none())
        .def("reset", &PyAlarmFilter::reset, py::arg("stream_id") = py::none())
        .def("streams", &PyAlarmFilter::streams)
        .def("active_streams", &PyAlarmFilter::active_streams)
        .def("state", &PyAlarmFilter::state, py::arg("stream_id"))
        .def_property_readonly("threshold", [](const PyAlarmFilter& f) { return f.params().threshold; })
        .def_property_readonly("ewma_alpha",
                               [](const PyAlarmFilter& f) -> py::object {
                                   return f.params().use_ewma ? py::cast(f.params().alpha) : py::none();
                               })
        .def_property_readonly("k", [](const PyAlarmFilter& f) { return f.params().k; })
        .def_property_readonly("n", [](const PyAlarmFilter& f) { return f.params().n; })
        .def_property_readonly("clear_threshold",
                               [](const PyAlarmFilter& f) -> py::object {
                                   return f.params().hysteresis ? py::cast(f.params().clear_threshold) : py::none();
                               })
        .def_property_readonly("min_hold", [](const PyAlarmFilter& f) { return f.params().min_hold; });
}
