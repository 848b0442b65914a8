// Argument conversion for the Python bindings: the one place that turns Python objects into the
// C++ kernels' arguments and says, in one line, which argument was wrong and why.
//
// Policy (documented in docs/scoring.md):
//   * arrays must be float32 or float16 (native byte order); anything else is a TypeError naming the
//     dtype. float64 is not converted silently: the caller chooses the precision.
//   * non-C-contiguous or misaligned arrays are copied to a contiguous array first (one extra pass);
//   * shape mismatches are ValueErrors naming both shapes; `out` must match exactly;
//   * integers and reals accept Python and numpy scalars, never bool.
// The kernels' own invariants (alarm parameters, blur sigma) are checked in their headers, which
// throw std::invalid_argument; pybind11 raises it as ValueError.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "half.hpp"

namespace edgeanom::bind {

namespace py = pybind11;

enum class Dt { f32, f16 };
using Shape = std::vector<py::ssize_t>;

inline constexpr int kNpyHalf = 23;   // NPY_HALF
inline constexpr int kNpyFloat = 11;  // NPY_FLOAT
inline constexpr int kAligned = py::detail::npy_api::NPY_ARRAY_ALIGNED_;
inline constexpr int kCContig = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_;

inline std::string shape_str(const Shape& s) {
    std::ostringstream o;
    o << '(';
    for (std::size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
    if (s.size() == 1) o << ',';
    o << ')';
    return o.str();
}

inline Shape shape_of(const py::array& a) { return Shape(a.shape(), a.shape() + a.ndim()); }

inline Shape tail(const Shape& s, std::size_t from) {
    return from >= s.size() ? Shape{} : Shape(s.begin() + static_cast<std::ptrdiff_t>(from), s.end());
}

inline std::size_t prod(const Shape& s) {
    std::size_t p = 1;
    for (auto v : s) p *= static_cast<std::size_t>(v);
    return p;
}

inline std::string type_name(const py::handle& h) { return Py_TYPE(h.ptr())->tp_name; }

inline std::string dtype_name(const py::dtype& dt) { return py::str(static_cast<const py::object&>(dt)); }

inline bool native_order(const py::dtype& dt) {
    const char b = dt.byteorder();
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return b != '<';
#else
    return b != '>';
#endif
}

// Any array-like -> ndarray (lists become float64 arrays and are then rejected by the dtype check).
inline py::array as_array(const py::handle& obj, const char* name) {
    if (py::isinstance<py::array>(obj)) return py::reinterpret_borrow<py::array>(obj);
    py::array a = py::array::ensure(obj);
    if (!a) throw py::type_error(std::string(name) + " must be a numpy array, got " + type_name(obj));
    return a;
}

// Raises MemoryError naming the argument: a copy the documented policy needs could not be made (pybind11's
// ensure() returns null and clears Python's error, which would otherwise surface as a confusing RuntimeError).
[[noreturn]] inline void copy_failed(const char* name, const py::array& a) {
    std::ostringstream o;
    o << name << " with shape " << shape_str(shape_of(a)) << " could not be copied to a contiguous, aligned array"
      << " (" << static_cast<double>(a.size()) * static_cast<double>(a.itemsize()) / 1e9 << " GB)";
    PyErr_SetString(PyExc_MemoryError, o.str().c_str());
    throw py::error_already_set();
}

// Checks the dtype is float32/float16 and returns a C-contiguous, aligned array (copying if needed).
inline py::array float_input(const py::handle& obj, const char* name, Dt& dt) {
    py::array a = as_array(obj, name);
    const py::dtype d = a.dtype();
    const int num = d.num();
    if ((num != kNpyFloat && num != kNpyHalf) || !native_order(d))
        throw py::type_error(std::string(name) + " has dtype " + dtype_name(d) + ", expected float32 or float16");
    dt = (num == kNpyFloat) ? Dt::f32 : Dt::f16;
    if ((a.flags() & (kCContig | kAligned)) != (kCContig | kAligned)) {
        py::array copy = py::array::ensure(a, kCContig | kAligned);  // contiguous copy (documented)
        if (!copy) copy_failed(name, a);
        a = copy;
    }
    return a;
}

// Any real-number array -> C-contiguous array of T (a copy when the dtype differs).
template <class T>
py::array_t<T> real_input(const py::handle& obj, const char* name) {
    py::array a = as_array(obj, name);
    const char kind = a.dtype().kind();
    if (kind != 'f' && kind != 'i' && kind != 'u')
        throw py::type_error(std::string(name) + " has dtype " + dtype_name(a.dtype()) +
                             ", expected a real number dtype");
    auto t = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);
    if (!t) copy_failed(name, a);
    if (!(t.flags() & kAligned)) {  // a misaligned view: copy, reading it in place is undefined behaviour
        t = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(py::array::ensure(t, kCContig | kAligned));
        if (!t) copy_failed(name, a);
    }
    return t;
}

// Validates a caller-provided output array: float32, exact shape, C-contiguous, aligned, writeable.
inline py::array_t<float> output(const py::object& out, const Shape& shape, const char* what) {
    if (out.is_none()) return py::array_t<float>(shape);
    if (!py::isinstance<py::array>(out))
        throw py::type_error(std::string("out must be a numpy float32 array, got ") + type_name(out));
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

enum class Above { reject, clamp };

// A Python or numpy integer (not bool) -> int64 in [lo, hi]. With Above::clamp, values above hi
// (however large) become hi. The error names the argument and its value.
inline std::int64_t to_int(const py::handle& v, const char* name,
                           std::int64_t lo = std::numeric_limits<std::int64_t>::min(),
                           std::int64_t hi = std::numeric_limits<std::int64_t>::max(), Above above = Above::reject) {
    if (PyBool_Check(v.ptr()) || !PyIndex_Check(v.ptr()))
        throw py::type_error(std::string(name) + " must be an integer, got " + type_name(v));
    py::object idx = py::reinterpret_steal<py::object>(PyNumber_Index(v.ptr()));
    if (!idx) throw py::error_already_set();
    int overflow = 0;
    const long long x = PyLong_AsLongLongAndOverflow(idx.ptr(), &overflow);
    if (above == Above::clamp && (overflow > 0 || (overflow == 0 && x > hi))) return hi;
    if (overflow == 0 && x >= lo && x <= hi) return static_cast<std::int64_t>(x);
    std::ostringstream o;
    o << name << " must be ";
    if (hi == std::numeric_limits<std::int64_t>::max() && lo == std::numeric_limits<std::int64_t>::min())
        o << "a 64-bit integer";
    else if (above == Above::clamp || hi == std::numeric_limits<std::int64_t>::max())
        o << ">= " << lo;
    else
        o << "in [" << lo << ", " << hi << "]";
    o << ", got " << std::string(py::str(idx));
    throw py::value_error(o.str());
}

// A real number (int, float, numpy scalar; not bool) -> double.
inline double to_double(const py::handle& v, const char* name) {
    if (PyBool_Check(v.ptr()) || !(PyFloat_Check(v.ptr()) || PyLong_Check(v.ptr()) || PyIndex_Check(v.ptr()) ||
                                   py::hasattr(v, "__float__")))
        throw py::type_error(std::string(name) + " must be a real number, got " + type_name(v));
    const double d = PyFloat_AsDouble(v.ptr());
    if (d == -1.0 && PyErr_Occurred()) throw py::error_already_set();
    return d;
}

// A str argument that must be one of a fixed set of names.
inline std::string to_str(const py::handle& v, const char* name) {
    if (!py::isinstance<py::str>(v)) throw py::type_error(std::string(name) + " must be a string, got " + type_name(v));
    return py::str(v);
}

// The per-sample stream ids of a streaming update(): None (all stream 0), one integer for the whole batch,
// or an integer array shaped like the scores. `of(i)` is sample i's stream.
class StreamIds {
  public:
    StreamIds(const py::object& ids_obj, const py::array& scores) {
        if (ids_obj.is_none()) return;
        if (PyLong_Check(ids_obj.ptr()) && !PyBool_Check(ids_obj.ptr())) {
            single_ = to_int(ids_obj, "stream_ids");
            return;
        }
        py::array ia = as_array(ids_obj, "stream_ids");
        const char ik = ia.dtype().kind();
        if (ik != 'i' && ik != 'u')
            throw py::type_error("stream_ids has dtype " + dtype_name(ia.dtype()) + ", expected an integer dtype");
        if (ia.ndim() == 0) {
            single_ = to_int(ia.attr("item")(), "stream_ids");
            return;
        }
        const Shape is = shape_of(ia);
        const Shape ss{static_cast<py::ssize_t>(scores.size())};
        if (is != ss && !(scores.ndim() == 0 && is == Shape{1}))
            throw py::value_error("stream_ids shape " + shape_str(is) + " does not match scores shape " +
                                  shape_str(shape_of(scores)));
        ids_ = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(ia);
        if (!ids_) throw py::error_already_set();
        data_ = ids_.data();
    }

    std::int64_t of(std::size_t i) const { return data_ ? data_[i] : single_; }

  private:
    std::int64_t single_ = 0;
    py::array_t<std::int64_t> ids_;
    const std::int64_t* data_ = nullptr;
};

// A 1-D array of real scores, as float64 (the streaming stages work in float64).
inline py::array_t<double> score_input(const py::object& obj) {
    const py::array raw = as_array(obj, "scores");
    if (raw.ndim() > 1) throw py::value_error("scores must be 1-D, got shape " + shape_str(shape_of(raw)));
    return real_input<double>(raw, "scores");
}

// Releases the GIL around a kernel. Safe because the kernels touch only raw buffers owned by numpy
// arrays that the calling binding frame keeps referenced (so they cannot be freed or resized
// meanwhile), and never call into Python. Another Python thread writing to the same arrays
// concurrently would only produce meaningless numbers, not a crash. Small inputs skip the release:
// it costs more than it saves.
template <class F>
void run_without_gil(std::size_t elements, F&& f) {
    if (elements < 16384) {
        f();
        return;
    }
    py::gil_scoped_release release;
    f();
}

// Calls f with typed null pointers for the (x, x_hat) element types, so one lambda covers the four
// float32/float16 combinations.
template <class F>
void with_types(Dt a, Dt b, F&& f) {
    const float* F32 = nullptr;
    const Half* F16 = nullptr;
    if (a == Dt::f32 && b == Dt::f32) f(F32, F32);
    if (a == Dt::f32 && b == Dt::f16) f(F32, F16);
    if (a == Dt::f16 && b == Dt::f32) f(F16, F32);
    if (a == Dt::f16 && b == Dt::f16) f(F16, F16);
}

}  // namespace edgeanom::bind
