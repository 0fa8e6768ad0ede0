// libFuzzer harness for the permessage-deflate layer (csrc/deflate.*) and the client frame
// writer (csrc/encoder.hpp), built with ASan + UBSan by scripts/fuzz.sh. Checks:
//   * inflating arbitrary bytes never writes more than cap + 1 bytes for a message, and the
//     output of a successful inflate does not depend on how the input is cut;
//   * deflate -> inflate round-trips a sequence of messages exactly, with and without
//     context takeover, at every window size;
//   * a frame written by write_client_message, unmasked, parses back to the same message
//     (through the real parser, compressed or not, fragmented or not).
//
// Input layout: byte 0 = options (bit 0 no context takeover, bits 1-3 window 8..15,
// bits 4-5 pick the cap from {16 MiB, 4096, 64, 0}, bits 6-7 fragment size
// {0, 1, 7, 100}); the rest is both the "compressed" stream for the first check and the
// plaintext (split into messages at 0xFF bytes) for the other two.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "buffer.hpp"
#include "deflate.hpp"
#include "encoder.hpp"
#include "mask.hpp"
#include "parser.hpp"

namespace {

void check(bool ok) {
    if (!ok) __builtin_trap();
}

struct InflateRun {
    int result = kws::Inflater::OK;
    std::string out;
};

InflateRun inflate_pieces(const uint8_t* data, size_t n, uint64_t cap, size_t step) {
    kws::Inflater inf(15);
    kws::ByteBuf out;
    uint64_t produced = 0;
    InflateRun run;
    size_t pos = 0;
    while (pos < n && run.result == kws::Inflater::OK) {
        size_t len = step == 0 ? n : std::min(step, n - pos);
        run.result = inf.feed(data + pos, len, out, produced, cap);
        pos += len;
        check(produced == out.size());
        check(produced <= cap + 1);
    }
    if (run.result == kws::Inflater::OK) run.result = inf.finish(out, produced, cap);
    check(produced <= cap + 1);
    run.out.assign(reinterpret_cast<const char*>(out.data()), out.size());
    return run;
}

std::vector<std::string> split_messages(const uint8_t* data, size_t n) {
    std::vector<std::string> msgs(1);
    for (size_t i = 0; i < n; ++i) {
        if (data[i] == 0xFF) msgs.emplace_back();
        else msgs.back().push_back(static_cast<char>(data[i]));
    }
    return msgs;
}

// Turn masked client frames into server (unmasked) frames.
std::string unmask_frames(const uint8_t* p, size_t n) {
    std::string out;
    size_t i = 0;
    while (i < n) {
        check(n - i >= 6);
        uint8_t b0 = p[i], b1 = p[i + 1];
        check(b1 & 0x80);
        uint64_t len = b1 & 0x7F;
        size_t h = 2;
        if (len == 126) {
            len = (uint64_t{p[i + 2]} << 8) | p[i + 3];
            h = 4;
        } else if (len == 127) {
            len = 0;
            for (int k = 0; k < 8; ++k) len = (len << 8) | p[i + 2 + k];
            h = 10;
        }
        const uint8_t* key = p + i + h;
        const uint8_t* payload = key + 4;
        check(i + h + 4 + len <= n);
        out.push_back(static_cast<char>(b0));
        out.append(reinterpret_cast<const char*>(p + i + 1), h - 1);
        out[out.size() - (h - 1)] = static_cast<char>(b1 & 0x7F);
        std::string plain(len, '\0');
        kws::mask_copy(reinterpret_cast<uint8_t*>(&plain[0]), payload, len, key);
        out += plain;
        i += h + 4 + len;
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const uint8_t opts = data[0];
    const bool no_context_takeover = opts & 1;
    const int window = 8 + ((opts >> 1) & 7);
    static const uint64_t kCaps[4] = {kws::kDefaultMaxMessageSize, 4096, 64, 0};
    const uint64_t cap = kCaps[(opts >> 4) & 3];
    static const size_t kFrag[4] = {0, 1, 7, 100};
    const size_t fragment = kFrag[(opts >> 6) & 3];
    ++data;
    --size;

    // 1. Arbitrary bytes as a compressed message: bounded output, chunking-independent.
    InflateRun whole = inflate_pieces(data, size, cap, 0);
    InflateRun bytewise = inflate_pieces(data, size, cap, 1);
    InflateRun odd = inflate_pieces(data, size, cap, 13);
    if (whole.result == kws::Inflater::OK) {
        check(bytewise.result == kws::Inflater::OK && bytewise.out == whole.out);
        check(odd.result == kws::Inflater::OK && odd.out == whole.out);
    }

    // 2. Round trip through Deflater and Inflater, message after message.
    std::vector<std::string> msgs = split_messages(data, size);
    kws::Deflater def(window < 9 ? 9 : window, -1, 8);
    kws::Inflater inf(15);
    std::vector<std::string> wire_payloads;
    for (const std::string& m : msgs) {
        kws::ByteBuf comp;
        def.compress(reinterpret_cast<const uint8_t*>(m.data()), m.size(), comp);
        if (no_context_takeover) def.reset();
        kws::ByteBuf out;
        uint64_t produced = 0;
        check(inf.feed(comp.data(), comp.size(), out, produced, kws::kDefaultMaxMessageSize) ==
              kws::Inflater::OK);
        check(inf.finish(out, produced, kws::kDefaultMaxMessageSize) == kws::Inflater::OK);
        if (no_context_takeover) inf.reset();
        check(out.size() == m.size() && (m.empty() || std::memcmp(out.data(), m.data(), m.size()) == 0));
        wire_payloads.emplace_back(reinterpret_cast<const char*>(comp.data()), comp.size());
    }

    // 3. Client frames (masked, maybe fragmented) parse back through the real parser:
    //    once with every message compressed (the payloads of step 2, one shared context),
    //    once with none compressed.
    for (int compressed = 0; compressed < 2; ++compressed) {
        std::string stream;
        for (size_t i = 0; i < msgs.size(); ++i) {
            const std::string& payload = compressed ? wire_payloads[i] : msgs[i];
            size_t total = kws::message_wire_size(payload.size(), fragment);
            std::vector<uint8_t> frames(total);
            size_t written = kws::write_client_message(
                frames.data(), kws::OP_BINARY, compressed,
                reinterpret_cast<const uint8_t*>(payload.data()), payload.size(), fragment);
            check(written == total);
            stream += unmask_frames(frames.data(), frames.size());
        }
        kws::ParserOptions popt;
        popt.inflate = true;
        popt.inflate_no_context_takeover = no_context_takeover;
        kws::Parser parser(popt);
        const uint8_t* in = reinterpret_cast<const uint8_t*>(stream.data());
        parser.feed(in, stream.size());
        check(!parser.failed());
        check(parser.messages().size() == msgs.size());
        for (size_t i = 0; i < msgs.size(); ++i) {
            const kws::Message& m = parser.messages()[i];
            const uint8_t* d = parser.message_data(m, in);
            check(m.length == msgs[i].size() &&
                  (m.length == 0 || std::memcmp(d, msgs[i].data(), m.length) == 0));
        }
    }
    return 0;
}
