// Incremental RFC 6455 parser of *server* frames, with permessage-deflate (RFC 7692).
// Pure C++ (no Python), so it is unit-tested and fuzzed on its own.
//
// feed() consumes any number of bytes, frames split anywhere, and appends completed data
// messages and control frames to two lists. A message whose single frame lies whole in
// the input is not copied: it is reported as a span of the input. Fragmented, split or
// inflated messages are assembled in an internal arena. A compressed frame is inflated in
// one pass once complete (so results do not depend on the chunking); its bytes are copied
// only if it arrives split. Only an incomplete tail (header bytes, a partial control
// payload, a partial message or compressed frame) is kept between calls.
//
// The first protocol violation stops the parser (failed()); what completed before it stays
// in the lists. A close frame stops it too (closed()); later input is ignored.
//
// Thread-safety: one parser per connection, used by one thread at a time.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "buffer.hpp"
#include "deflate.hpp"
#include "utf8.hpp"

namespace kws {

enum : uint8_t {
    OP_CONTINUATION = 0,
    OP_TEXT = 1,
    OP_BINARY = 2,
    OP_CLOSE = 8,
    OP_PING = 9,
    OP_PONG = 10,
};

constexpr uint64_t kDefaultMaxMessageSize = uint64_t{16} * 1024 * 1024;

struct ParserOptions {
    uint64_t max_message_size = kDefaultMaxMessageSize;
    bool inflate = false;
    bool inflate_no_context_takeover = false;
    int inflate_window_bits = 15;  // validated (8..15); inflating always uses 15, see parser.cpp
};

// Where a completed message's bytes are.
enum class Where : uint8_t { Input = 0, Arena = 1 };

struct Message {
    size_t offset;   // into the feed() input (Where::Input) or the arena
    size_t length;
    uint8_t opcode;  // OP_TEXT or OP_BINARY
    Where where;
    bool non_ascii;  // text only: some byte >= 0x80 (so not plain ASCII)
};

struct Control {
    size_t offset;  // into the control arena
    size_t length;
    uint8_t opcode;  // OP_CLOSE, OP_PING or OP_PONG
};

struct ProtocolError {
    int code = 0;        // RFC 6455 close code to send: 1002, 1007, 1009
    std::string reason;  // human-readable
};

// Validate a close frame payload (RFC 6455 5.5.1 / 7.4). Returns 0 when valid, else the
// close code (1002 bad length or code, 1007 bad UTF-8 reason) and sets *why.
int validate_close_payload(const uint8_t* p, size_t n, std::string* why);
// May a close frame carry this code? (1000-1003, 1007-1014, 3000-4999)
bool close_code_allowed(unsigned code);

// A value written by one thread (the parser's owner, maybe without the GIL) and read by
// others (a stats snapshot) without a data race. Relaxed atomic loads and stores compile
// to plain moves: no locked instruction on the hot path.
template <typename T>
class Published {
public:
    T get() const { return v_.load(std::memory_order_relaxed); }
    void set(T v) { v_.store(v, std::memory_order_relaxed); }
    void add(T n) { set(get() + n); }  // single writer only

private:
    std::atomic<T> v_{};
};

class Parser {
public:
    explicit Parser(const ParserOptions& options);
    Parser(const Parser&) = delete;
    Parser& operator=(const Parser&) = delete;

    // Phase 1: consume `len` bytes. Completed events are appended to messages() and
    // controls(); a violation sets failed()/error(). Never throws (an allocation failure
    // becomes error 1009). Input spans in messages() point into `data`, so the caller keeps
    // `data` alive until end_batch().
    void feed(const uint8_t* data, size_t len);

    const std::vector<Message>& messages() const { return msgs_; }
    const std::vector<Control>& controls() const { return ctrls_; }
    const uint8_t* message_data(const Message& m, const uint8_t* input) const {
        return m.where == Where::Input ? input + m.offset : arena_.data() + m.offset;
    }
    const uint8_t* control_data(const Control& c) const { return ctrl_arena_.data() + c.offset; }

    // Forget the events returned so far (the caller has copied them out).
    void end_batch();

    // closed(), failed() and the counters may be read from any
    // thread at any time (a snapshot); everything else belongs to the owning thread.
    bool closed() const { return closed_.get(); }
    bool failed() const { return failed_.get(); }
    uint64_t messages_received() const { return messages_received_.get(); }  // data messages
    uint64_t bytes_received() const { return bytes_received_.get(); }  // wire bytes fed
    // payload bytes of the completed data messages, after decompression
    uint64_t payload_bytes() const { return payload_bytes_.get(); }
    const ProtocolError& error() const { return err_; }


private:
    enum State : uint8_t { ST_HEADER, ST_PAYLOAD };

    void fail(int code, std::string reason);
    bool check_first_two(uint8_t b0, uint8_t b1);
    void begin_frame(const uint8_t* hdr);
    size_t consume_payload(const uint8_t* data, size_t pos, size_t len);
    void frame_done();
    void control_done();
    bool check_text(const uint8_t* p, size_t n);
    bool inflate_piece(const uint8_t* p, size_t n, bool last);

    ParserOptions opt_;
    std::unique_ptr<Inflater> inflater_;

    State st_ = ST_HEADER;
    uint8_t hdr_[10];
    size_t hdr_have_ = 0;
    bool f_fin_ = false;
    uint8_t f_opcode_ = 0;
    uint64_t f_remaining_ = 0;

    bool in_msg_ = false;
    uint8_t msg_opcode_ = 0;
    bool msg_compressed_ = false;
    uint64_t msg_wire_ = 0;  // payload bytes on the wire so far
    uint64_t msg_out_ = 0;   // inflated bytes so far
    size_t msg_start_ = 0;   // arena offset of the message being assembled
    Utf8Validator utf8_;

    uint8_t ctrl_buf_[125];
    size_t ctrl_have_ = 0;

    ByteBuf arena_;
    ByteBuf zbuf_;  // compressed bytes of the current frame while it is incomplete
    ByteBuf ctrl_arena_;
    std::vector<Message> msgs_;
    std::vector<Control> ctrls_;

    Published<bool> closed_;
    Published<bool> failed_;
    Published<uint64_t> messages_received_;
    Published<uint64_t> bytes_received_;
    Published<uint64_t> payload_bytes_;
    ProtocolError err_;
};

}  // namespace kws
