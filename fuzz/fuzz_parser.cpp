// libFuzzer harness for the C++ frame parser (csrc/parser.*), built with ASan + UBSan by
// scripts/fuzz.sh. Besides memory and UB errors it checks properties and traps on any
// violation:
//   * the result does not depend on how the stream is chunked: the stream fed in one call
//     and fed in pseudo-random pieces (1 byte up to a few KiB, seeded by the input) give
//     the same messages, control frames, close/failed flags and error close code (the
//     reason text may differ: a compressed text frame cut by the limit can be reported
//     as invalid UTF-8 or as corrupt, both 1007, only in the same pass; the code may not);
//   * every text message is valid UTF-8, no message exceeds max_message_size, every
//     control payload is <= 125 bytes and a close payload passes validate_close_payload;
//   * nothing follows a close frame or an error.
//
// Input layout: byte 0 = options (bit 0 inflate, bit 1 no context takeover, bits 2-3 pick
// max_message_size from {16 MiB, 1000, 100, 1}); byte 1 = chunking seed; the rest is the
// server byte stream.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "parser.hpp"
#include "utf8.hpp"

namespace {

struct Event {
    bool control;
    uint8_t opcode;
    std::string payload;
    bool operator==(const Event& o) const {
        return control == o.control && opcode == o.opcode && payload == o.payload;
    }
};

struct Outcome {
    std::vector<Event> messages;  // in order
    std::vector<Event> controls;  // in order (the two lists are independent by contract)
    bool closed = false;
    bool failed = false;
    int code = 0;
    std::string reason;
    uint64_t messages_received = 0;
};

void check(bool ok) {
    if (!ok) __builtin_trap();
}

void collect(kws::Parser& p, const uint8_t* input, const kws::ParserOptions& opt, Outcome& out) {
    for (const kws::Message& m : p.messages()) {
        const uint8_t* d = p.message_data(m, input);
        check(m.opcode == kws::OP_TEXT || m.opcode == kws::OP_BINARY);
        check(m.length <= opt.max_message_size);
        if (m.opcode == kws::OP_TEXT) {
            bool non_ascii = false;
            check(kws::utf8_valid(d, m.length, &non_ascii));
            check(non_ascii == m.non_ascii);
        }
        out.messages.push_back(Event{false, m.opcode, std::string(reinterpret_cast<const char*>(d), m.length)});
    }
    for (const kws::Control& c : p.controls()) {
        const uint8_t* d = p.control_data(c);
        check(c.length <= 125);
        check(c.opcode == kws::OP_CLOSE || c.opcode == kws::OP_PING || c.opcode == kws::OP_PONG);
        if (c.opcode == kws::OP_CLOSE) check(kws::validate_close_payload(d, c.length, nullptr) == 0);
        out.controls.push_back(Event{true, c.opcode, std::string(reinterpret_cast<const char*>(d), c.length)});
    }
    p.end_batch();
}

void finish(kws::Parser& p, Outcome& out) {
    out.closed = p.closed();
    out.failed = p.failed();
    out.code = p.error().code;
    out.reason = p.error().reason;
    out.messages_received = p.messages_received();
    check(!(out.closed && out.failed));
}

Outcome run_whole(const kws::ParserOptions& opt, const uint8_t* data, size_t n) {
    kws::Parser p(opt);
    Outcome out;
    // Copy into an exact-size heap block so ASan sees any read past the end.
    uint8_t* buf = static_cast<uint8_t*>(std::malloc(n ? n : 1));
    if (n) std::memcpy(buf, data, n);
    p.feed(buf, n);
    collect(p, buf, opt, out);
    std::free(buf);
    finish(p, out);
    return out;
}

Outcome run_chunked(const kws::ParserOptions& opt, const uint8_t* data, size_t n, uint32_t seed) {
    kws::Parser p(opt);
    Outcome out;
    uint32_t x = seed * 2654435761u + 1;
    size_t pos = 0;
    while (pos < n) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        size_t len;
        switch (x & 3) {
            case 0: len = 1; break;
            case 1: len = 1 + (x >> 8) % 7; break;
            case 2: len = 1 + (x >> 8) % 300; break;
            default: len = 1 + (x >> 8) % 5000; break;
        }
        if (len > n - pos) len = n - pos;
        uint8_t* buf = static_cast<uint8_t*>(std::malloc(len));
        std::memcpy(buf, data + pos, len);
        bool was_done = p.closed() || p.failed();
        size_t events_before = out.messages.size() + out.controls.size();
        p.feed(buf, len);
        collect(p, buf, opt, out);
        std::free(buf);  // the parser must not keep pointers into a fed buffer
        if (was_done) check(out.messages.size() + out.controls.size() == events_before);
        pos += len;
    }
    finish(p, out);
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    kws::ParserOptions opt;
    opt.inflate = data[0] & 1;
    opt.inflate_no_context_takeover = data[0] & 2;
    static const uint64_t kMax[4] = {kws::kDefaultMaxMessageSize, 1000, 100, 1};
    opt.max_message_size = kMax[(data[0] >> 2) & 3];
    opt.inflate_window_bits = 8 + ((data[0] >> 4) & 7);
    uint32_t seed = data[1];
    data += 2;
    size -= 2;

    Outcome whole = run_whole(opt, data, size);
    Outcome pieces = run_chunked(opt, data, size, seed);

    check(whole.messages == pieces.messages);
    check(whole.controls == pieces.controls);
    check(whole.closed == pieces.closed);
    check(whole.failed == pieces.failed);
    check(whole.messages_received == pieces.messages_received);
    check(whole.code == pieces.code);
    return 0;
}
