// Mask keys from the OS CSPRNG (getrandom(2), the source of os.urandom), drawn from a
// per-thread 4 KiB pool so a key costs a copy, not a system call. The pool is discarded
// in a forked child (pthread_atfork), so parent and child never share keys.
// Never uses rand() or any other predictable generator.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kws {

// Fill `out` with `n` bytes straight from the OS CSPRNG (blocking until seeded, retrying
// on EINTR and short reads; falls back to /dev/urandom without getrandom(2)).
// Throws std::runtime_error if no source works.
void os_random(uint8_t* out, size_t n);

// Four fresh unpredictable bytes for one frame's masking key. Thread-safe.
void random_mask_key(uint8_t key[4]);

}  // namespace kws
