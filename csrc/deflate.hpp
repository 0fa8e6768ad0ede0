// permessage-deflate (RFC 7692) on top of zlib raw streams. No Python.
//
// Inflater: decompresses one message at a time into a ByteBuf, never producing more than
// the caller's cap + 1 bytes for a message, so a deflate bomb is detected with bounded
// memory. Deflater: compresses one message with Z_SYNC_FLUSH and strips the trailing
// 00 00 FF FF (RFC 7692 section 7.2.1). Both keep the LZ77 window between messages
// ("context takeover") unless reset() is called after each message.
//
// Thread-safety: one instance per connection, used by one thread at a time.
#pragma once

#include <zlib.h>

#include <cstddef>
#include <cstdint>

#include "buffer.hpp"

namespace kws {

class Inflater {
public:
    enum Result { OK = 0, TOO_BIG = 1, CORRUPT = 2 };

    // window_bits: 8..15 (the LZ77 window of the peer's compressor).
    explicit Inflater(int window_bits);
    ~Inflater();
    Inflater(const Inflater&) = delete;
    Inflater& operator=(const Inflater&) = delete;

    // Inflate `n` compressed bytes of the current message, appending the output to `out`.
    // `produced` counts this message's output so far and is updated; if it would exceed
    // `cap` the call stops and returns TOO_BIG (having appended at most cap + 1 bytes).
    Result feed(const uint8_t* in, size_t n, ByteBuf& out, uint64_t& produced, uint64_t cap);
    // End the message: inflate the 00 00 FF FF tail (RFC 7692 section 7.2.2).
    Result finish(ByteBuf& out, uint64_t& produced, uint64_t cap);
    // After feed() returned TOO_BIG with all its input used (unused() == 0): does the
    // 00 00 FF FF tail make the stream corrupt before any further output? A one-shot
    // decoder given piece + tail in one call would report that corruption (zlib decodes the
    // next code even when the output is full); this lets a piecewise caller agree with it.
    bool corrupt_ahead();
    // Input bytes the last TOO_BIG feed() left unread.
    size_t unused() const { return unused_; }
    // Forget the LZ77 window (no context takeover) and any error.
    void reset();

private:
    Result run(const uint8_t* in, size_t n, ByteBuf& out, uint64_t& produced, uint64_t cap);
    void restart_keeping_window();
    z_stream strm_{};
    size_t unused_ = 0;
    bool ok_ = false;
};

class Deflater {
public:
    // window_bits: 9..15 (zlib cannot make raw streams with an 8-bit window);
    // level: zlib level (-1 = default); mem_level: 1..9.
    Deflater(int window_bits, int level, int mem_level);
    ~Deflater();
    Deflater(const Deflater&) = delete;
    Deflater& operator=(const Deflater&) = delete;

    // Compress one whole message, appending to `out` without the 00 00 FF FF tail.
    // Throws std::bad_alloc when memory runs out.
    void compress(const uint8_t* in, size_t n, ByteBuf& out);
    void reset();

private:
    z_stream strm_{};
};

}  // namespace kws
