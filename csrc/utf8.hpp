// Incremental, fail-fast UTF-8 validator (RFC 3629), header-only, no Python.
//
// A table-driven DFA over 12 byte classes and 9 states. It rejects as soon as the bytes
// seen so far cannot be the prefix of valid UTF-8: overlong forms (C0, C1, E0 80..9F,
// F0 80..8F), UTF-16 surrogates (ED A0..BF), code points above U+10FFFF (F4 90..BF,
// F5..FF) and stray continuation bytes. Runs of ASCII are skipped 16 / 8 bytes at a time.
//
// Thread-safety: an instance holds the state of one stream; use it from one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace kws {

namespace utf8_detail {

// Byte classes.
enum : uint8_t {
    C_ASCII = 0,   // 00..7F
    C_CONT_LO = 1, // 80..8F
    C_CONT_MID = 2,// 90..9F
    C_CONT_HI = 3, // A0..BF
    C_BAD = 4,     // C0 C1 F5..FF
    C_LEAD2 = 5,   // C2..DF
    C_E0 = 6,      // E0
    C_LEAD3 = 7,   // E1..EC EE EF
    C_ED = 8,      // ED
    C_F0 = 9,      // F0
    C_LEAD4 = 10,  // F1..F3
    C_F4 = 11,     // F4
    NCLASSES = 12
};

// States.
enum : uint8_t {
    S_ACCEPT = 0,  // at a character boundary
    S_NEED1 = 1,   // one continuation byte (80..BF) missing
    S_NEED2 = 2,   // two missing
    S_NEED3 = 3,   // three missing
    S_E0 = 4,      // after E0: next must be A0..BF
    S_ED = 5,      // after ED: next must be 80..9F
    S_F0 = 6,      // after F0: next must be 90..BF
    S_F4 = 7,      // after F4: next must be 80..8F
    S_REJECT = 8,
    NSTATES = 9
};

struct Tables {
    uint8_t cls[256];
    uint8_t next[NSTATES][NCLASSES];
};

constexpr Tables make_tables() {
    Tables t{};
    for (int b = 0; b < 256; ++b) {
        uint8_t c = C_BAD;
        if (b <= 0x7F) c = C_ASCII;
        else if (b <= 0x8F) c = C_CONT_LO;
        else if (b <= 0x9F) c = C_CONT_MID;
        else if (b <= 0xBF) c = C_CONT_HI;
        else if (b <= 0xC1) c = C_BAD;
        else if (b <= 0xDF) c = C_LEAD2;
        else if (b == 0xE0) c = C_E0;
        else if (b == 0xED) c = C_ED;
        else if (b <= 0xEF) c = C_LEAD3;
        else if (b == 0xF0) c = C_F0;
        else if (b <= 0xF3) c = C_LEAD4;
        else if (b == 0xF4) c = C_F4;
        t.cls[b] = c;
    }
    for (int s = 0; s < NSTATES; ++s)
        for (int c = 0; c < NCLASSES; ++c) t.next[s][c] = S_REJECT;
    // At a boundary: lead bytes.
    t.next[S_ACCEPT][C_ASCII] = S_ACCEPT;
    t.next[S_ACCEPT][C_LEAD2] = S_NEED1;
    t.next[S_ACCEPT][C_E0] = S_E0;
    t.next[S_ACCEPT][C_LEAD3] = S_NEED2;
    t.next[S_ACCEPT][C_ED] = S_ED;
    t.next[S_ACCEPT][C_F0] = S_F0;
    t.next[S_ACCEPT][C_LEAD4] = S_NEED3;
    t.next[S_ACCEPT][C_F4] = S_F4;
    // Plain continuation states: any 80..BF.
    for (int c : {C_CONT_LO, C_CONT_MID, C_CONT_HI}) {
        t.next[S_NEED1][c] = S_ACCEPT;
        t.next[S_NEED2][c] = S_NEED1;
        t.next[S_NEED3][c] = S_NEED2;
    }
    t.next[S_E0][C_CONT_HI] = S_NEED1;   // E0 A0..BF (no overlongs)
    t.next[S_ED][C_CONT_LO] = S_NEED1;   // ED 80..9F (no surrogates)
    t.next[S_ED][C_CONT_MID] = S_NEED1;
    t.next[S_F0][C_CONT_MID] = S_NEED2;  // F0 90..BF (no overlongs)
    t.next[S_F0][C_CONT_HI] = S_NEED2;
    t.next[S_F4][C_CONT_LO] = S_NEED2;   // F4 80..8F (<= U+10FFFF)
    return t;
}

inline constexpr Tables kTables = make_tables();
inline constexpr uint64_t kHigh = 0x8080808080808080ULL;

}  // namespace utf8_detail

class Utf8Validator {
public:
    // Feed the next bytes. Returns false (and stays failed) as soon as the stream seen so
    // far is not a valid UTF-8 prefix.
    bool feed(const uint8_t* p, size_t n) {
        using namespace utf8_detail;
        uint8_t s = state_;
        if (s == S_REJECT) return false;
        size_t i = 0;
        while (i < n) {
            if (s == S_ACCEPT) {
                while (i + 16 <= n) {
                    uint64_t a, b;
                    std::memcpy(&a, p + i, 8);
                    std::memcpy(&b, p + i + 8, 8);
                    if ((a | b) & kHigh) break;
                    i += 16;
                }
                while (i + 8 <= n) {
                    uint64_t a;
                    std::memcpy(&a, p + i, 8);
                    if (a & kHigh) break;
                    i += 8;
                }
                while (i < n && p[i] < 0x80) ++i;
                if (i == n) break;
            }
            non_ascii_ = true;
            s = kTables.next[s][kTables.cls[p[i]]];
            ++i;
            if (s == S_REJECT) {
                state_ = s;
                return false;
            }
        }
        state_ = s;
        return true;
    }
    // True when the stream ends on a character boundary (a complete valid text).
    bool complete() const { return state_ == utf8_detail::S_ACCEPT; }
    bool failed() const { return state_ == utf8_detail::S_REJECT; }
    // True once any byte >= 0x80 was seen since the last reset().
    bool non_ascii() const { return non_ascii_; }
    void reset() {
        state_ = utf8_detail::S_ACCEPT;
        non_ascii_ = false;
    }

private:
    uint8_t state_ = utf8_detail::S_ACCEPT;
    bool non_ascii_ = false;
};

// One-shot helper: is [p, p+n) complete valid UTF-8?
inline bool utf8_valid(const uint8_t* p, size_t n, bool* non_ascii = nullptr) {
    Utf8Validator v;
    bool ok = v.feed(p, n) && v.complete();
    if (non_ascii) *non_ascii = v.non_ascii();
    return ok;
}

}  // namespace kws
