// RFC 6455 section 5.3 masking: XOR with a 4-byte key, a machine word at a time.
// Header-only, no Python. Works in place (dst == src) or out of place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace kws {

// XOR `n` bytes of `src` into `dst` with `key`, starting at byte `phase` (0..3) of the
// key (so a payload can be masked in pieces). Returns the phase for the next piece.
inline size_t mask_copy(uint8_t* dst, const uint8_t* src, size_t n, const uint8_t key[4],
                        size_t phase = 0) {
    phase &= 3;
    uint8_t rk[8];
    for (int i = 0; i < 8; ++i) rk[i] = key[(phase + static_cast<size_t>(i)) & 3];
    uint64_t k64;
    std::memcpy(&k64, rk, 8);
    size_t i = 0;
    // 32 bytes per iteration: independent loads/stores the compiler can vectorise.
    for (; i + 32 <= n; i += 32) {
        uint64_t w0, w1, w2, w3;
        std::memcpy(&w0, src + i, 8);
        std::memcpy(&w1, src + i + 8, 8);
        std::memcpy(&w2, src + i + 16, 8);
        std::memcpy(&w3, src + i + 24, 8);
        w0 ^= k64;
        w1 ^= k64;
        w2 ^= k64;
        w3 ^= k64;
        std::memcpy(dst + i, &w0, 8);
        std::memcpy(dst + i + 8, &w1, 8);
        std::memcpy(dst + i + 16, &w2, 8);
        std::memcpy(dst + i + 24, &w3, 8);
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        std::memcpy(&w, src + i, 8);
        w ^= k64;
        std::memcpy(dst + i, &w, 8);
    }
    for (; i < n; ++i) dst[i] = static_cast<uint8_t>(src[i] ^ rk[i & 7]);
    return (phase + n) & 3;
}

}  // namespace kws
