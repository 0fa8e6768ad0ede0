// OS CSPRNG pool for masking keys; see random.hpp.
#include "random.hpp"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/random.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <stdexcept>

namespace kws {

namespace {

constexpr size_t kPoolSize = 4096;

std::atomic<uint64_t> g_fork_generation{0};
std::once_flag g_atfork_once;

void on_fork_child() { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }

struct Pool {
    uint8_t bytes[kPoolSize];
    size_t pos = kPoolSize;  // empty
    uint64_t generation = 0;
};

thread_local Pool t_pool;

bool read_urandom(uint8_t* out, size_t n) {
    int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    while (n > 0) {
        ssize_t r = ::read(fd, out, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            ::close(fd);
            return false;
        }
        out += r;
        n -= static_cast<size_t>(r);
    }
    ::close(fd);
    return true;
}

}  // namespace

void os_random(uint8_t* out, size_t n) {
    while (n > 0) {
        ssize_t r = ::getrandom(out, n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == ENOSYS && read_urandom(out, n)) return;
            throw std::runtime_error("cannot read the OS random source");
        }
        out += r;
        n -= static_cast<size_t>(r);
    }
}

void random_mask_key(uint8_t key[4]) {
    std::call_once(g_atfork_once, [] { pthread_atfork(nullptr, nullptr, on_fork_child); });
    Pool& pool = t_pool;
    uint64_t gen = g_fork_generation.load(std::memory_order_relaxed);
    if (pool.pos + 4 > kPoolSize || pool.generation != gen) {
        os_random(pool.bytes, kPoolSize);
        pool.pos = 0;
        pool.generation = gen;
    }
    std::memcpy(key, pool.bytes + pool.pos, 4);
    std::memset(pool.bytes + pool.pos, 0, 4);  // a key is used once and not kept around
    pool.pos += 4;
}

}  // namespace kws
