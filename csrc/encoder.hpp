// Client frame writer (RFC 6455 section 5.2): header, fresh mask key per frame, masked
// payload, optional fragmentation. Header-only, no Python; writes into caller memory so
// the Python binding can build a bytes object in place.
#pragma once

#include <cstddef>
#include <cstdint>

#include "mask.hpp"
#include "random.hpp"

namespace kws {

// Wire size of one masked frame header for a payload of `len` bytes.
inline size_t client_header_size(uint64_t len) {
    return (len < 126 ? 2 : (len < 65536 ? 4 : 10)) + 4;
}

// Number of frames for `n` payload bytes split at `fragment_size` (0 = no split).
inline size_t frame_count(size_t n, size_t fragment_size) {
    if (fragment_size == 0 || n <= fragment_size) return 1;
    return (n + fragment_size - 1) / fragment_size;
}

// Total wire size of a message of `n` payload bytes split at `fragment_size`.
inline size_t message_wire_size(size_t n, size_t fragment_size) {
    size_t frames = frame_count(n, fragment_size);
    if (frames == 1) return client_header_size(n) + n;
    size_t full = frames - 1;
    size_t last = n - full * fragment_size;
    return full * (client_header_size(fragment_size) + fragment_size) + client_header_size(last) +
           last;
}

// Write one masked frame at `out`; returns the bytes written.
inline size_t write_client_frame(uint8_t* out, bool fin, bool rsv1, uint8_t opcode,
                                 const uint8_t* payload, size_t n) {
    uint8_t* p = out;
    *p++ = static_cast<uint8_t>((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0F));
    if (n < 126) {
        *p++ = static_cast<uint8_t>(0x80 | n);
    } else if (n < 65536) {
        *p++ = 0x80 | 126;
        *p++ = static_cast<uint8_t>(n >> 8);
        *p++ = static_cast<uint8_t>(n);
    } else {
        *p++ = 0x80 | 127;
        uint64_t len = n;
        for (int shift = 56; shift >= 0; shift -= 8) *p++ = static_cast<uint8_t>(len >> shift);
    }
    uint8_t key[4];
    random_mask_key(key);
    p[0] = key[0];
    p[1] = key[1];
    p[2] = key[2];
    p[3] = key[3];
    p += 4;
    mask_copy(p, payload, n, key);
    return static_cast<size_t>(p - out) + n;
}

// Write a whole message (message_wire_size(n, fragment_size) bytes) at `out`: the first
// frame carries `opcode` and RSV1 when `rsv1`, the others are continuations.
inline size_t write_client_message(uint8_t* out, uint8_t opcode, bool rsv1,
                                   const uint8_t* payload, size_t n, size_t fragment_size) {
    size_t frames = frame_count(n, fragment_size);
    uint8_t* p = out;
    for (size_t i = 0; i < frames; ++i) {
        size_t chunk = frames == 1 ? n : (i + 1 < frames ? fragment_size : n - i * fragment_size);
        p += write_client_frame(p, i + 1 == frames, rsv1 && i == 0, i == 0 ? opcode : 0,
                                payload, chunk);
        payload += chunk;
    }
    return static_cast<size_t>(p - out);
}

}  // namespace kws
