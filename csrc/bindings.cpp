// kstlib.websocket._speedups: the C++ codec behind kstlib.websocket.codec (pybind11).
//
// FrameParser.feed() works in two phases. Phase 1 (GIL released for inputs of
// kReleaseThreshold bytes or more) frames, validates UTF-8 and inflates the whole input in
// pure C++ (parser.hpp), leaving message spans that point into the caller's buffer or the
// parser's arena. Phase 2 (GIL held) turns them into Python objects with the raw C API.
// The interface is documented in kstlib/websocket/codec.py; _pycodec.py is its reference.
#include <pybind11/pybind11.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <string>

#include "buffer.hpp"
#include "deflate.hpp"
#include "encoder.hpp"
#include "mask.hpp"
#include "parser.hpp"
#include "utf8.hpp"

namespace py = pybind11;

namespace {

constexpr int MODE_BYTES = 0;
constexpr int MODE_TEXT = 1;
constexpr int MODE_JSON = 2;
// Below this many input bytes, releasing and re-taking the GIL costs more than framing.
constexpr size_t kReleaseThreshold = 8192;
// zlib settings of the outgoing compressor (same as Python's zlib.compressobj defaults).
constexpr int kDeflateLevel = -1;
constexpr int kDeflateMemLevel = 8;

// kstlib.websocket.exceptions.WebSocketProtocolError, imported at module init.
PyObject* g_protocol_error = nullptr;

PyObject* new_protocol_error(int code, const std::string& reason) {
    PyObject* pycode = PyLong_FromLong(code);
    PyObject* pyreason = PyUnicode_DecodeUTF8(reason.data(), static_cast<Py_ssize_t>(reason.size()),
                                              "replace");
    PyObject* exc = (pycode && pyreason)
                        ? PyObject_CallFunctionObjArgs(g_protocol_error, pycode, pyreason, nullptr)
                        : nullptr;
    Py_XDECREF(pycode);
    Py_XDECREF(pyreason);
    return exc;
}

[[noreturn]] void raise_protocol_error(int code, const std::string& reason) {
    PyObject* exc = new_protocol_error(code, reason);
    if (exc) {
        PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc)), exc);
        Py_DECREF(exc);
    }
    throw py::error_already_set();
}

// A read-only view of any buffer-protocol object, released on scope exit. Contiguous
// buffers are used in place; a non-contiguous one (a strided memoryview) is copied once
// into a bytes object, as bytes(data) would. Anything else raises TypeError.
class BufferView {
public:
    explicit BufferView(PyObject* obj) {
        if (PyObject_GetBuffer(obj, &view_, PyBUF_SIMPLE) == 0) return;
        if (!PyObject_CheckBuffer(obj)) throw py::error_already_set();
        PyErr_Clear();
        copy_ = PyBytes_FromObject(obj);
        if (!copy_ || PyObject_GetBuffer(copy_, &view_, PyBUF_SIMPLE) != 0) {
            Py_XDECREF(copy_);
            throw py::error_already_set();
        }
    }
    ~BufferView() {
        PyBuffer_Release(&view_);
        Py_XDECREF(copy_);
    }
    BufferView(const BufferView&) = delete;
    BufferView& operator=(const BufferView&) = delete;
    const uint8_t* data() const { return static_cast<const uint8_t*>(view_.buf); }
    size_t size() const { return static_cast<size_t>(view_.len); }

private:
    Py_buffer view_{};
    PyObject* copy_ = nullptr;
};

// Already-validated UTF-8 to str; plain ASCII is copied straight into a 1-byte-kind str.
inline PyObject* text_to_str(const uint8_t* p, size_t n, bool non_ascii) {
    if (!non_ascii) {
        PyObject* s = PyUnicode_New(static_cast<Py_ssize_t>(n), 127);
        if (s && n) std::memcpy(PyUnicode_1BYTE_DATA(s), p, n);
        return s;
    }
    return PyUnicode_DecodeUTF8(reinterpret_cast<const char*>(p), static_cast<Py_ssize_t>(n),
                                "strict");
}

inline PyObject* to_bytes(const uint8_t* p, size_t n) {
    return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(p), static_cast<Py_ssize_t>(n));
}

class FrameParser {
public:
    FrameParser(py::handle max_message_size, int mode, py::object loads, bool inflate,
                bool inflate_no_context_takeover, int inflate_window_bits)
        : core_(make_options(max_message_size, inflate, inflate_no_context_takeover,
                             inflate_window_bits)),
          mode_(mode),
          loads_(std::move(loads)) {
        if (mode != MODE_BYTES && mode != MODE_TEXT && mode != MODE_JSON)
            throw py::value_error("unknown mode " + std::to_string(mode));
        if (mode == MODE_JSON && loads_.is_none())
            loads_ = py::module_::import("json").attr("loads");
    }

    py::object feed(py::handle data) {
        if (core_.failed() && error_) return pack({PyList_New(0), PyList_New(0), error_ref()});
        BufferView buf(data.ptr());  // held to the end: message spans point into it
        PyObject* controls = nullptr;
        PyObject* messages = parse(buf.data(), buf.size(), &controls);
        return pack({messages, controls, error_ref()});
    }

    // One non-blocking recv() from `fd` into `out` (a writable buffer), then feed() on
    // what came: (messages, controls, error, nread, payload), or None when nothing waits
    // (EAGAIN: no exception per idle read). nread 0 is the peer's end of stream.
    py::object feed_from(int fd, py::handle out) {
        // Before the read: a call from `loads` must not overwrite the buffer being parsed.
        if (busy_) throw std::runtime_error("FrameParser.feed() is already running");
        Py_buffer view{};
        if (PyObject_GetBuffer(out.ptr(), &view, PyBUF_WRITABLE) != 0)
            throw py::error_already_set();
        struct Release {
            Py_buffer& v;
            ~Release() { PyBuffer_Release(&v); }
        } release{view};
        const ssize_t n = receive(fd, view.buf, static_cast<size_t>(view.len));
        if (n < 0) return py::none();
        const uint64_t before = core_.payload_bytes();
        PyObject* controls = nullptr;
        PyObject* messages = nullptr;
        if (n == 0 || (core_.failed() && error_)) {  // end of stream, or failed: nothing
            messages = PyList_New(0);
            controls = PyList_New(0);
        } else {
            messages = parse(static_cast<const uint8_t*>(view.buf), static_cast<size_t>(n),
                             &controls);
        }
        PyObject* payload = PyLong_FromUnsignedLongLong(core_.payload_bytes() - before);
        return pack({messages, controls, error_ref(), PyLong_FromSsize_t(n), payload});
    }

    uint64_t messages_received() const { return core_.messages_received(); }
    uint64_t bytes_received() const { return core_.bytes_received(); }
    uint64_t payload_bytes() const { return core_.payload_bytes(); }
    uint64_t decode_errors() const { return decode_errors_; }
    bool closed() const { return core_.closed(); }
    bool failed() const { return core_.failed(); }

private:
    // recv() without waiting; EINTR is retried (after Python's signal handlers, as
    // socket.recv_into does). Returns -1 when nothing waits; raises OSError otherwise.
    static ssize_t receive(int fd, void* buf, size_t len) {
        for (;;) {
            const ssize_t n = ::recv(fd, buf, len, MSG_DONTWAIT);
            if (n >= 0) return n;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return -1;
            if (errno != EINTR) {
                PyErr_SetFromErrno(PyExc_OSError);
                throw py::error_already_set();
            }
            if (PyErr_CheckSignals() != 0) throw py::error_already_set();
        }
    }

    // Frame `n` bytes at `data` (alive until this returns): the new messages list
    // (returned) and controls list (in *controls); error_ is set on the first violation.
    PyObject* parse(const uint8_t* data, size_t n, PyObject** controls_out) {
        // Also guards phase 2: `loads` is arbitrary Python and could call feed() again.
        if (busy_) throw std::runtime_error("FrameParser.feed() is already running");
        busy_ = true;
        struct Done {  // whatever happens below: forget the batch, allow the next feed()
            FrameParser& self;
            ~Done() {
                self.core_.end_batch();
                self.busy_ = false;
            }
        } done{*this};
        // Phase 1: frame, validate, inflate, in pure C++.
        if (n >= kReleaseThreshold) {
            py::gil_scoped_release unlocked;
            core_.feed(data, n);
        } else {
            core_.feed(data, n);
        }
        // Phase 2: Python objects.
        PyObject* messages = build_messages(data);
        if (!messages) throw py::error_already_set();
        PyObject* controls = build_controls();
        if (!controls) {
            Py_DECREF(messages);
            throw py::error_already_set();
        }
        if (core_.failed() && !error_) {
            PyObject* exc = new_protocol_error(core_.error().code, core_.error().reason);
            if (!exc) {
                Py_DECREF(messages);
                Py_DECREF(controls);
                throw py::error_already_set();
            }
            error_ = py::reinterpret_steal<py::object>(exc);
        }
        *controls_out = controls;
        return messages;
    }

    static kws::ParserOptions make_options(py::handle max_size, bool inflate,
                                           bool no_context_takeover, int window_bits) {
        PyObject* index = PyNumber_Index(max_size.ptr());
        if (!index) throw py::error_already_set();
        int overflow = 0;
        long long max_message_size = PyLong_AsLongLongAndOverflow(index, &overflow);
        Py_DECREF(index);
        if (max_message_size == -1 && PyErr_Occurred()) throw py::error_already_set();
        if (overflow != 0 || max_message_size <= 0)
            throw py::value_error("max_message_size must be in 1..2**63-1");
        if (window_bits < 8 || window_bits > 15)
            throw py::value_error("inflate_window_bits must be in 8..15");
        kws::ParserOptions o;
        o.max_message_size = static_cast<uint64_t>(max_message_size);
        o.inflate = inflate;
        o.inflate_no_context_takeover = no_context_takeover;
        o.inflate_window_bits = window_bits;
        return o;
    }

    // A new reference to the first violation, or to None.
    PyObject* error_ref() const {
        PyObject* err = error_ ? error_.ptr() : Py_None;
        Py_INCREF(err);
        return err;
    }

    // A tuple of `items`, whose references it steals: feed()'s (messages, controls,
    // error) and feed_from()'s five. An item that is NULL (its allocation failed) releases
    // the others and raises the pending Python error.
    static py::object pack(std::initializer_list<PyObject*> items) {
        bool complete = true;
        for (PyObject* item : items) complete = complete && item != nullptr;
        PyObject* tuple = complete ? PyTuple_New(static_cast<Py_ssize_t>(items.size())) : nullptr;
        if (!tuple) {
            for (PyObject* item : items) Py_XDECREF(item);
            throw py::error_already_set();
        }
        Py_ssize_t i = 0;
        for (PyObject* item : items) PyTuple_SET_ITEM(tuple, i++, item);
        return py::reinterpret_steal<py::object>(tuple);
    }

    PyObject* build_messages(const uint8_t* input) {
        const auto& msgs = core_.messages();
        const Py_ssize_t n = static_cast<Py_ssize_t>(msgs.size());
        PyObject* list = PyList_New(n);
        if (!list) return nullptr;
        PyObject* loads = loads_.ptr();
        for (Py_ssize_t i = 0; i < n; ++i) {
            const kws::Message& m = msgs[static_cast<size_t>(i)];
            const uint8_t* p = core_.message_data(m, input);
            PyObject* item;
            if (m.opcode != kws::OP_TEXT || mode_ == MODE_BYTES) {
                item = to_bytes(p, m.length);
            } else if (mode_ == MODE_TEXT) {
                item = text_to_str(p, m.length, m.non_ascii);
            } else {
                PyObject* raw = to_bytes(p, m.length);
                if (!raw) {
                    Py_DECREF(list);
                    return nullptr;
                }
                item = PyObject_CallOneArg(loads, raw);
                Py_DECREF(raw);
                if (!item && PyErr_ExceptionMatches(PyExc_Exception)) {
                    PyErr_Clear();
                    ++decode_errors_;
                    item = text_to_str(p, m.length, m.non_ascii);
                }
            }
            if (!item) {
                Py_DECREF(list);
                return nullptr;
            }
            PyList_SET_ITEM(list, i, item);
        }
        return list;
    }

    PyObject* build_controls() {
        const auto& ctrls = core_.controls();
        const Py_ssize_t n = static_cast<Py_ssize_t>(ctrls.size());
        PyObject* list = PyList_New(n);
        if (!list) return nullptr;
        for (Py_ssize_t i = 0; i < n; ++i) {
            const kws::Control& c = ctrls[static_cast<size_t>(i)];
            PyObject* op = PyLong_FromLong(c.opcode);
            PyObject* payload = to_bytes(core_.control_data(c), c.length);
            PyObject* pair = (op && payload) ? PyTuple_New(2) : nullptr;
            if (!pair) {
                Py_XDECREF(op);
                Py_XDECREF(payload);
                Py_DECREF(list);
                return nullptr;
            }
            PyTuple_SET_ITEM(pair, 0, op);
            PyTuple_SET_ITEM(pair, 1, payload);
            PyList_SET_ITEM(list, i, pair);
        }
        return list;
    }

    kws::Parser core_;
    int mode_;
    py::object loads_;
    py::object error_;
    uint64_t decode_errors_ = 0;
    bool busy_ = false;
};

class FrameEncoder {
public:
    FrameEncoder(bool deflate, bool deflate_no_context_takeover, int deflate_window_bits,
                 long long fragment_size)
        : no_context_takeover_(deflate_no_context_takeover) {
        if (deflate_window_bits < 8 || deflate_window_bits > 15)
            throw py::value_error("deflate_window_bits must be in 8..15");
        if (fragment_size < 0) throw py::value_error("fragment_size must be >= 0");
        fragment_size_ = static_cast<size_t>(fragment_size);
        // zlib cannot produce raw streams with a 256-byte window; 9 bits is its minimum.
        if (deflate)
            deflater_ = std::make_unique<kws::Deflater>(
                deflate_window_bits < 9 ? 9 : deflate_window_bits, kDeflateLevel,
                kDeflateMemLevel);
    }

    py::bytes encode(int opcode, py::handle payload) {
        const uint8_t* p;
        size_t n;
        std::unique_ptr<BufferView> view;
        if (PyUnicode_Check(payload.ptr())) {
            Py_ssize_t len;
            const char* s = PyUnicode_AsUTF8AndSize(payload.ptr(), &len);
            if (!s) throw py::error_already_set();
            p = reinterpret_cast<const uint8_t*>(s);
            n = static_cast<size_t>(len);
        } else {
            view = std::make_unique<BufferView>(payload.ptr());
            p = view->data();
            n = view->size();
        }
        if (opcode == kws::OP_TEXT || opcode == kws::OP_BINARY)
            return finish(static_cast<uint8_t>(opcode), deflater_ != nullptr, p, n, fragment_size_,
                          true);
        if (opcode != kws::OP_PING && opcode != kws::OP_PONG && opcode != kws::OP_CLOSE)
            throw py::value_error("cannot encode opcode " + std::to_string(opcode));
        if (n > 125) throw py::value_error("control frame payload longer than 125 bytes");
        if (opcode == kws::OP_CLOSE) {
            std::string why;
            if (kws::validate_close_payload(p, n, &why) != 0)
                throw py::value_error("invalid close payload: " + why);
        }
        return finish(static_cast<uint8_t>(opcode), false, p, n, 0, false);
    }

    py::bytes encode_close(py::object code, py::object reason) {
        if (code.is_none()) {
            if (!reason.is_none() && PyObject_IsTrue(reason.ptr()))
                throw py::value_error("a close reason needs a close code");
            return finish(kws::OP_CLOSE, false, nullptr, 0, 0, false);
        }
        long c = PyLong_AsLong(code.ptr());
        if (c == -1 && PyErr_Occurred()) throw py::error_already_set();
        if (c < 0 || !kws::close_code_allowed(static_cast<unsigned>(c)))
            throw py::value_error("close code " + std::to_string(c) + " may not be sent");
        Py_ssize_t rlen = 0;
        const char* r = "";
        if (!reason.is_none()) {
            r = PyUnicode_AsUTF8AndSize(reason.ptr(), &rlen);
            if (!r) throw py::error_already_set();
        }
        if (rlen > 123) throw py::value_error("close reason too long (payload over 125 bytes)");
        uint8_t buf[125];
        buf[0] = static_cast<uint8_t>(c >> 8);
        buf[1] = static_cast<uint8_t>(c);
        std::memcpy(buf + 2, r, static_cast<size_t>(rlen));
        return finish(kws::OP_CLOSE, false, buf, static_cast<size_t>(rlen) + 2, 0, false);
    }

    uint64_t messages_sent() const { return messages_sent_; }
    uint64_t bytes_sent() const { return bytes_sent_; }

private:
    py::bytes finish(uint8_t opcode, bool compress, const uint8_t* p, size_t n,
                     size_t fragment_size, bool is_message) {
        bool big = n >= kReleaseThreshold * 8;
        if (compress) {
            scratch_.clear();
            if (big) {
                py::gil_scoped_release unlocked;
                deflate_into_scratch(p, n);
            } else {
                deflate_into_scratch(p, n);
            }
            p = scratch_.data();
            n = scratch_.size();
        }
        size_t total = kws::message_wire_size(n, fragment_size);
        PyObject* out = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(total));
        if (!out) throw py::error_already_set();
        uint8_t* dst = reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(out));
        try {
            if (big) {
                py::gil_scoped_release unlocked;
                kws::write_client_message(dst, opcode, compress, p, n, fragment_size);
            } else {
                kws::write_client_message(dst, opcode, compress, p, n, fragment_size);
            }
        } catch (...) {
            Py_DECREF(out);
            throw;
        }
        if (is_message) ++messages_sent_;
        bytes_sent_ += total;
        return py::reinterpret_steal<py::bytes>(out);
    }

    void deflate_into_scratch(const uint8_t* p, size_t n) {
        deflater_->compress(p, n, scratch_);
        if (no_context_takeover_) deflater_->reset();
    }

    bool no_context_takeover_;
    size_t fragment_size_ = 0;
    std::unique_ptr<kws::Deflater> deflater_;
    kws::ByteBuf scratch_;
    uint64_t messages_sent_ = 0;
    uint64_t bytes_sent_ = 0;
};

py::bytes apply_mask(py::handle data, py::handle key) {
    BufferView d(data.ptr());
    BufferView k(key.ptr());
    if (k.size() != 4) throw py::value_error("mask key must be 4 bytes");
    uint8_t kb[4];
    std::memcpy(kb, k.data(), 4);
    PyObject* out = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(d.size()));
    if (!out) throw py::error_already_set();
    uint8_t* dst = reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(out));
    if (d.size() >= kReleaseThreshold * 8) {
        py::gil_scoped_release unlocked;
        kws::mask_copy(dst, d.data(), d.size(), kb);
    } else {
        kws::mask_copy(dst, d.data(), d.size(), kb);
    }
    return py::reinterpret_steal<py::bytes>(out);
}

bool validate_utf8(py::handle data) {
    BufferView d(data.ptr());
    if (d.size() >= kReleaseThreshold * 8) {
        py::gil_scoped_release unlocked;
        return kws::utf8_valid(d.data(), d.size());
    }
    return kws::utf8_valid(d.data(), d.size());
}

py::tuple parse_close(py::handle payload) {
    BufferView d(payload.ptr());
    std::string why;
    int code = kws::validate_close_payload(d.data(), d.size(), &why);
    if (code != 0) raise_protocol_error(code, why);
    if (d.size() == 0) return py::make_tuple(py::none(), py::str(""));
    unsigned c = (unsigned{d.data()[0]} << 8) | d.data()[1];
    PyObject* reason = PyUnicode_DecodeUTF8(reinterpret_cast<const char*>(d.data() + 2),
                                            static_cast<Py_ssize_t>(d.size() - 2), "strict");
    if (!reason) throw py::error_already_set();
    return py::make_tuple(c, py::reinterpret_steal<py::str>(reason));
}

}  // namespace

PYBIND11_MODULE(_speedups, m) {
    m.doc() = "C++ RFC 6455 / RFC 7692 codec; interface documented in kstlib.websocket.codec.";

    py::object exc = py::module_::import("kstlib.websocket.exceptions").attr("WebSocketProtocolError");
    g_protocol_error = exc.release().ptr();  // kept for the life of the process

    m.attr("OP_CONTINUATION") = int{kws::OP_CONTINUATION};
    m.attr("OP_TEXT") = int{kws::OP_TEXT};
    m.attr("OP_BINARY") = int{kws::OP_BINARY};
    m.attr("OP_CLOSE") = int{kws::OP_CLOSE};
    m.attr("OP_PING") = int{kws::OP_PING};
    m.attr("OP_PONG") = int{kws::OP_PONG};
    m.attr("MODE_BYTES") = MODE_BYTES;
    m.attr("MODE_TEXT") = MODE_TEXT;
    m.attr("MODE_JSON") = MODE_JSON;
    m.attr("DEFAULT_MAX_MESSAGE_SIZE") = kws::kDefaultMaxMessageSize;

    py::class_<FrameParser>(m, "FrameParser",
                            "Incremental parser of server frames; see kstlib.websocket.codec.")
        .def(py::init<py::handle, int, py::object, bool, bool, int>(), py::kw_only(),
             py::arg("max_message_size") = kws::kDefaultMaxMessageSize,
             py::arg("mode") = MODE_TEXT, py::arg("loads") = py::none(),
             py::arg("inflate") = false, py::arg("inflate_no_context_takeover") = false,
             py::arg("inflate_window_bits") = 15)
        .def("feed", &FrameParser::feed, py::arg("data"),
             "feed(data) -> (messages, controls, error)")
        .def("feed_from", &FrameParser::feed_from, py::arg("fd"), py::arg("buf"),
             "feed_from(fd, buf) -> (messages, controls, error, nread, payload) | None")
        .def_property_readonly("messages_received", &FrameParser::messages_received)
        .def_property_readonly("bytes_received", &FrameParser::bytes_received)
        .def_property_readonly("payload_bytes", &FrameParser::payload_bytes)
        .def_property_readonly("decode_errors", &FrameParser::decode_errors)
        .def_property_readonly("closed", &FrameParser::closed)
        .def_property_readonly("failed", &FrameParser::failed);

    py::class_<FrameEncoder>(m, "FrameEncoder",
                             "Builder of masked client frames; see kstlib.websocket.codec.")
        .def(py::init<bool, bool, int, long long>(), py::kw_only(),
             py::arg("deflate") = false, py::arg("deflate_no_context_takeover") = false,
             py::arg("deflate_window_bits") = 15, py::arg("fragment_size") = 0)
        .def("encode", &FrameEncoder::encode, py::arg("opcode"), py::arg("payload"))
        .def("encode_close", &FrameEncoder::encode_close, py::arg("code") = py::none(),
             py::arg("reason") = "")
        .def_property_readonly("messages_sent", &FrameEncoder::messages_sent)
        .def_property_readonly("bytes_sent", &FrameEncoder::bytes_sent);

    m.def("apply_mask", &apply_mask, py::arg("data"), py::arg("key"),
          "XOR data with the 4-byte key (RFC 6455 5.3).");
    m.def("validate_utf8", &validate_utf8, py::arg("data"), "Is data complete valid UTF-8?");
    m.def("parse_close", &parse_close, py::arg("payload"),
          "Close payload -> (code | None, reason); WebSocketProtocolError when invalid.");
}
