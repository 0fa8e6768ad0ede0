// permessage-deflate with zlib raw streams; see deflate.hpp.
#include "deflate.hpp"

#include <algorithm>
#include <new>
#include <stdexcept>

namespace kws {

namespace {
constexpr size_t kMaxZChunk = size_t{1} << 30;  // zlib counts in uInt
constexpr size_t kOutStep = 16384;
const uint8_t kTail[4] = {0x00, 0x00, 0xFF, 0xFF};
}  // namespace

Inflater::Inflater(int window_bits) {
    if (window_bits < 8 || window_bits > 15) throw std::invalid_argument("window_bits");
    int rc = inflateInit2(&strm_, -window_bits);
    if (rc == Z_MEM_ERROR) throw std::bad_alloc();
    if (rc != Z_OK) throw std::runtime_error("inflateInit2 failed");
    ok_ = true;
}

Inflater::~Inflater() {
    if (ok_) inflateEnd(&strm_);
}

void Inflater::reset() { inflateReset(&strm_); }

// A final (BFINAL=1) block ended the raw stream. RFC 7692 section 7.2.3.3 lets a peer
// flush that way; the next bytes start a new stream that may still refer back to the
// data already seen, so restart with the current window as the preset dictionary.
void Inflater::restart_keeping_window() {
    Bytef window[32768];
    uInt len = sizeof(window);
    if (inflateGetDictionary(&strm_, window, &len) != Z_OK) len = 0;
    inflateReset(&strm_);
    if (len > 0) inflateSetDictionary(&strm_, window, len);
}

Inflater::Result Inflater::run(const uint8_t* in, size_t n, ByteBuf& out, uint64_t& produced,
                               uint64_t cap) {
    while (n > 0) {
        size_t slice = std::min(n, kMaxZChunk);
        strm_.next_in = const_cast<Bytef*>(in);
        strm_.avail_in = static_cast<uInt>(slice);
        in += slice;
        n -= slice;
        for (;;) {
            if (produced > cap) return TOO_BIG;
            uint64_t room = cap - produced + 1;  // one byte more than allowed detects excess
            size_t want = static_cast<size_t>(std::min<uint64_t>(
                room, std::max<uint64_t>(kOutStep, uint64_t{strm_.avail_in} * 4)));
            out.reserve_extra(want);
            size_t give = static_cast<size_t>(std::min<uint64_t>(
                std::min<uint64_t>(out.spare(), room), kMaxZChunk));
            strm_.next_out = out.tail();
            strm_.avail_out = static_cast<uInt>(give);
            int rc = inflate(&strm_, Z_SYNC_FLUSH);
            size_t got = give - strm_.avail_out;
            out.commit(got);
            produced += got;
            // A corrupt stream wins over the size limit (as with Python's zlib, which raises
            // even when the call that met the corruption also filled the output).
            if (rc == Z_MEM_ERROR) throw std::bad_alloc();
            if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END) return CORRUPT;
            if (produced > cap) {
                unused_ = strm_.avail_in + n;
                return TOO_BIG;
            }
            if (rc == Z_STREAM_END) {
                restart_keeping_window();
                if (strm_.avail_in == 0) break;
                continue;
            }
            if (rc == Z_BUF_ERROR) {
                // No progress possible: all input used (more will come) or output full.
                if (strm_.avail_in == 0) break;
                if (strm_.avail_out == 0) continue;
                return CORRUPT;
            }
            if (strm_.avail_in == 0 && strm_.avail_out != 0) break;
        }
    }
    return OK;
}

Inflater::Result Inflater::feed(const uint8_t* in, size_t n, ByteBuf& out, uint64_t& produced,
                                uint64_t cap) {
    return run(in, n, out, produced, cap);
}

bool Inflater::corrupt_ahead() {
    Bytef sink[1];
    strm_.next_in = const_cast<Bytef*>(kTail);
    strm_.avail_in = sizeof(kTail);
    strm_.next_out = sink;
    strm_.avail_out = 0;
    int rc = inflate(&strm_, Z_SYNC_FLUSH);
    return rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END;
}

Inflater::Result Inflater::finish(ByteBuf& out, uint64_t& produced, uint64_t cap) {
    return run(kTail, sizeof(kTail), out, produced, cap);
}

Deflater::Deflater(int window_bits, int level, int mem_level) {
    if (window_bits < 9 || window_bits > 15) throw std::invalid_argument("window_bits");
    int rc = deflateInit2(&strm_, level, Z_DEFLATED, -window_bits, mem_level, Z_DEFAULT_STRATEGY);
    if (rc == Z_MEM_ERROR) throw std::bad_alloc();
    if (rc != Z_OK) throw std::invalid_argument("deflateInit2 failed");
}

Deflater::~Deflater() { deflateEnd(&strm_); }

void Deflater::reset() { deflateReset(&strm_); }

// The same zlib call sequence as Python's compress() + flush(Z_SYNC_FLUSH): all input with
// Z_NO_FLUSH, then Z_SYNC_FLUSH with no input. (A lone Z_SYNC_FLUSH right after another
// one with no new input makes zlib emit nothing at all, so a second empty message in a
// row would come out as an empty payload, which the peer cannot inflate.)
void Deflater::compress(const uint8_t* in, size_t n, ByteBuf& out) {
    size_t start = out.size();
    auto run = [&](int flush) {
        do {
            out.reserve_extra(std::max<size_t>(kOutStep, strm_.avail_in / 2 + 64));
            size_t give = std::min(out.spare(), kMaxZChunk);
            strm_.next_out = out.tail();
            strm_.avail_out = static_cast<uInt>(give);
            int rc = deflate(&strm_, flush);
            out.commit(give - strm_.avail_out);
            if (rc == Z_STREAM_ERROR) throw std::runtime_error("deflate failed");
        } while (strm_.avail_out == 0 || strm_.avail_in != 0);
    };
    do {  // at least once, even for no input: that resets zlib's "last flush" to none
        size_t slice = std::min(n, kMaxZChunk);
        strm_.next_in = const_cast<Bytef*>(in);
        strm_.avail_in = static_cast<uInt>(slice);
        in += slice;
        n -= slice;
        run(Z_NO_FLUSH);
    } while (n > 0);
    strm_.next_in = nullptr;
    strm_.avail_in = 0;
    run(Z_SYNC_FLUSH);
    size_t len = out.size() - start;
    if (len >= 4 && std::equal(kTail, kTail + 4, out.data() + out.size() - 4)) out.truncate(out.size() - 4);
}

}  // namespace kws
