// A growable byte buffer without zero-filling (std::vector<uint8_t>::resize writes every
// byte it adds; this one hands out uninitialised tail space). Header-only, no Python.
// Allocation failure throws std::bad_alloc. Single-threaded use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace kws {

class ByteBuf {
public:
    ByteBuf() = default;
    ByteBuf(const ByteBuf&) = delete;
    ByteBuf& operator=(const ByteBuf&) = delete;
    ~ByteBuf() { std::free(data_); }

    uint8_t* data() { return data_; }
    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    size_t capacity() const { return cap_; }
    size_t spare() const { return cap_ - size_; }
    uint8_t* tail() { return data_ + size_; }

    // Ensure at least `n` bytes of spare capacity (grows geometrically).
    void reserve_extra(size_t n) {
        if (cap_ - size_ >= n) return;
        size_t want = size_ + n;
        if (want < size_) throw std::bad_alloc();
        size_t grown = cap_ < 256 ? 256 : cap_ + cap_ / 2;
        if (grown < want) grown = want;
        void* p = std::realloc(data_, grown);
        if (!p) throw std::bad_alloc();
        data_ = static_cast<uint8_t*>(p);
        cap_ = grown;
    }
    // Mark `n` bytes written at tail() as part of the content.
    void commit(size_t n) { size_ += n; }
    void append(const uint8_t* p, size_t n) {
        if (n == 0) return;
        reserve_extra(n);
        std::memcpy(data_ + size_, p, n);
        size_ += n;
    }
    void clear() { size_ = 0; }
    void truncate(size_t n) {
        if (n < size_) size_ = n;
    }
    // Drop the first `n` bytes, moving the rest to the front.
    void erase_front(size_t n) {
        if (n == 0) return;
        if (n >= size_) {
            size_ = 0;
            return;
        }
        std::memmove(data_, data_ + n, size_ - n);
        size_ -= n;
    }
    // Give memory back after a burst of large messages: when more than `limit` bytes are
    // reserved and at most an eighth is in use, shrink to twice the content (>= 64 KiB).
    void trim(size_t limit) {
        if (cap_ <= limit || size_ > cap_ / 8) return;
        size_t want = size_ * 2;
        if (want < 65536) want = 65536;
        if (want >= cap_) return;
        void* p = std::realloc(data_, want);
        if (!p) return;  // keeping the larger block is harmless
        data_ = static_cast<uint8_t*>(p);
        cap_ = want;
    }

private:
    uint8_t* data_ = nullptr;
    size_t size_ = 0;
    size_t cap_ = 0;
};

}  // namespace kws
