// Incremental RFC 6455 / RFC 7692 frame parser; see parser.hpp.
#include "parser.hpp"

#include <cstring>
#include <new>

namespace kws {

namespace {

inline bool is_control(uint8_t op) { return op >= 8; }
inline size_t header_size(uint8_t b1) {
    uint8_t len7 = b1 & 0x7F;
    return len7 == 126 ? 4 : (len7 == 127 ? 10 : 2);
}

}  // namespace

bool close_code_allowed(unsigned code) {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

int validate_close_payload(const uint8_t* p, size_t n, std::string* why) {
    if (n == 0) return 0;
    if (n == 1) {
        if (why) *why = "close frame payload of 1 byte";
        return 1002;
    }
    if (n > 125) {
        if (why) *why = "close frame payload longer than 125 bytes";
        return 1002;
    }
    unsigned code = (unsigned{p[0]} << 8) | p[1];
    if (!close_code_allowed(code)) {
        if (why) *why = "invalid close code " + std::to_string(code);
        return 1002;
    }
    if (!utf8_valid(p + 2, n - 2)) {
        if (why) *why = "invalid UTF-8 in close reason";
        return 1007;
    }
    return 0;
}

Parser::Parser(const ParserOptions& options) : opt_(options) {
    // Always a 32 KiB window, whatever the negotiated server_max_window_bits: a larger window
    // accepts every stream a smaller one does, and zlib only enforces the window on back
    // references beyond its output buffer, so a small one would make errors chunk-dependent.
    if (opt_.inflate) inflater_ = std::make_unique<Inflater>(15);
}

void Parser::fail(int code, std::string reason) {
    failed_.set(true);
    err_.code = code;
    err_.reason = std::move(reason);
}

// Everything decidable from the first two header bytes, in the reference codec's order.
bool Parser::check_first_two(uint8_t b0, uint8_t b1) {
    uint8_t op = b0 & 0x0F;
    if (b0 & 0x70) {
        if (b0 & 0x30) {
            fail(1002, "reserved bits RSV2/RSV3 set");
            return false;
        }
        if (!opt_.inflate) {
            fail(1002, "reserved bit RSV1 set without a negotiated extension");
            return false;
        }
        if (op != OP_TEXT && op != OP_BINARY) {
            fail(1002, "reserved bit RSV1 set on a control or continuation frame");
            return false;
        }
    }
    if (b1 & 0x80) {
        fail(1002, "masked frame from the server");
        return false;
    }
    if (is_control(op)) {
        if (op > 10) {
            fail(1002, "unknown opcode " + std::to_string(op));
            return false;
        }
        if (!(b0 & 0x80)) {
            fail(1002, "fragmented control frame");
            return false;
        }
        if ((b1 & 0x7F) > 125) {
            fail(1002, "control frame payload longer than 125 bytes");
            return false;
        }
        return true;
    }
    if (op == OP_CONTINUATION) {
        if (!in_msg_) {
            fail(1002, "continuation frame without a message started");
            return false;
        }
    } else if (op > 2) {
        fail(1002, "unknown opcode " + std::to_string(op));
        return false;
    } else if (in_msg_) {
        fail(1002, "new data message inside a fragmented message");
        return false;
    }
    return true;
}

// Header complete (already checked by check_first_two): set up the frame.
void Parser::begin_frame(const uint8_t* hdr) {
    uint8_t op = hdr[0] & 0x0F;
    uint8_t len7 = hdr[1] & 0x7F;
    uint64_t plen = len7;
    if (len7 == 126) {
        plen = (uint64_t{hdr[2]} << 8) | hdr[3];
    } else if (len7 == 127) {
        plen = 0;
        for (int i = 2; i < 10; ++i) plen = (plen << 8) | hdr[i];
        if (plen >> 63) {
            fail(1002, "64-bit payload length with the most significant bit set");
            return;
        }
    }
    f_fin_ = hdr[0] & 0x80;
    f_opcode_ = op;
    f_remaining_ = plen;
    if (is_control(op)) {
        ctrl_have_ = 0;
        st_ = ST_PAYLOAD;
        if (plen == 0) control_done();
        return;
    }
    if (op != OP_CONTINUATION) {
        in_msg_ = true;
        msg_opcode_ = op;
        msg_compressed_ = hdr[0] & 0x40;
        msg_wire_ = 0;
        msg_out_ = 0;
        msg_start_ = arena_.size();
        utf8_.reset();
    }
    if (plen > opt_.max_message_size - msg_wire_) {
        fail(1009, "message larger than max_message_size (" +
                       std::to_string(opt_.max_message_size) + " bytes)");
        return;
    }
    msg_wire_ += plen;
    st_ = ST_PAYLOAD;
    if (plen == 0) {
        if (msg_compressed_ && f_fin_ && !inflate_piece(nullptr, 0, true)) return;
        frame_done();
    }
}

bool Parser::check_text(const uint8_t* p, size_t n) {
    if (!utf8_.feed(p, n)) {
        fail(1007, "invalid UTF-8 in a text message");
        return false;
    }
    return true;
}

// Inflate one whole compressed frame (with the 00 00 FF FF tail when `last`) as one
// pass, then check its output. Precedence, as in the reference codec: a corrupt stream
// (1007), then the decompressed size (1009, but invalid UTF-8 within the allowed bytes is
// reported first as 1007), then UTF-8 of the whole output.
bool Parser::inflate_piece(const uint8_t* p, size_t n, bool last) {
    size_t before = arena_.size();
    const uint64_t cap = opt_.max_message_size;
    int r = inflater_->feed(p, n, arena_, msg_out_, cap);
    if (r == Inflater::OK && last) {
        r = inflater_->finish(arena_, msg_out_, cap);
    } else if (r == Inflater::TOO_BIG && last && inflater_->unused() == 0 &&
               inflater_->corrupt_ahead()) {
        r = Inflater::CORRUPT;  // what one inflate call over piece + tail reports
    }
    if (r == Inflater::CORRUPT) {
        fail(1007, "corrupt deflate stream");
        return false;
    }
    bool text = msg_opcode_ == OP_TEXT;
    if (r == Inflater::TOO_BIG) {
        size_t allowed_end = msg_start_ + static_cast<size_t>(cap);
        if (text && allowed_end > before && !check_text(arena_.data() + before, allowed_end - before))
            return false;
        fail(1009, "decompressed message larger than " + std::to_string(cap) + " bytes");
        return false;
    }
    return !text || check_text(arena_.data() + before, arena_.size() - before);
}

// Consume payload bytes of the current frame from data[pos..len); returns the new pos.
size_t Parser::consume_payload(const uint8_t* data, size_t pos, size_t len) {
    size_t avail = len - pos;
    size_t take = f_remaining_ < avail ? static_cast<size_t>(f_remaining_) : avail;
    const uint8_t* p = data + pos;
    if (is_control(f_opcode_)) {
        std::memcpy(ctrl_buf_ + ctrl_have_, p, take);
        ctrl_have_ += take;
        f_remaining_ -= take;
        if (f_remaining_ == 0) control_done();
        return pos + take;
    }
    if (!msg_compressed_) {
        if (f_fin_ && take == f_remaining_ && arena_.size() == msg_start_) {
            // The whole message is this frame, whole in the input: report it in place.
            if (msg_opcode_ == OP_TEXT) {
                if (!check_text(p, take)) return len;
                if (!utf8_.complete()) {
                    fail(1007, "invalid UTF-8 in a text message");
                    return len;
                }
            }
            msgs_.push_back(Message{pos, take, msg_opcode_, Where::Input, utf8_.non_ascii()});
            messages_received_.add(1);
            payload_bytes_.add(take);
            in_msg_ = false;
            st_ = ST_HEADER;
            return pos + take;
        }
        arena_.append(p, take);
        f_remaining_ -= take;
        if (msg_opcode_ == OP_TEXT && !check_text(p, take)) return len;
    } else {
        // A compressed frame is inflated in one pass once complete (the final one with the
        // tail in the same pass): zlib decodes ahead of a full output buffer, so inflating
        // arbitrary chunks would make "corrupt" versus "too big" depend on the chunking.
        bool frame_end = take == f_remaining_;
        f_remaining_ -= take;
        if (!frame_end) {
            zbuf_.append(p, take);
            return pos + take;
        }
        bool ok;
        if (zbuf_.size() == 0) {
            ok = inflate_piece(p, take, f_fin_);  // whole frame in the input: no copy
        } else {
            zbuf_.append(p, take);
            ok = inflate_piece(zbuf_.data(), zbuf_.size(), f_fin_);
            zbuf_.clear();
        }
        if (!ok) return len;
    }
    if (f_remaining_ == 0) frame_done();
    return pos + take;
}

// A data frame's payload is complete.
void Parser::frame_done() {
    st_ = ST_HEADER;
    if (!f_fin_) return;
    // (A compressed message's last piece, tail included, was inflated by inflate_piece.)
    if (msg_compressed_ && opt_.inflate_no_context_takeover) inflater_->reset();
    if (msg_opcode_ == OP_TEXT && !utf8_.complete()) {
        fail(1007, "invalid UTF-8 in a text message");
        return;
    }
    msgs_.push_back(Message{msg_start_, arena_.size() - msg_start_, msg_opcode_, Where::Arena,
                            utf8_.non_ascii()});
    messages_received_.add(1);
    payload_bytes_.add(arena_.size() - msg_start_);
    in_msg_ = false;
    msg_start_ = arena_.size();
}

// A control frame's payload is complete.
void Parser::control_done() {
    st_ = ST_HEADER;
    if (f_opcode_ == OP_CLOSE) {
        std::string why;
        int code = validate_close_payload(ctrl_buf_, ctrl_have_, &why);
        if (code != 0) {
            failed_.set(true);
            err_.code = code;
            err_.reason = std::move(why);
            return;
        }
    }
    ctrls_.push_back(Control{ctrl_arena_.size(), ctrl_have_, f_opcode_});
    ctrl_arena_.append(ctrl_buf_, ctrl_have_);
    if (f_opcode_ == OP_CLOSE) {
        closed_.set(true);
        in_msg_ = false;  // a partly received data message is dropped
        zbuf_.clear();
    }
}

void Parser::feed(const uint8_t* data, size_t len) {
    if (failed() || closed()) return;
    bytes_received_.add(len);
    size_t pos = 0;
    try {
        while (pos < len && !failed() && !closed()) {
            if (st_ == ST_PAYLOAD) {
                pos = consume_payload(data, pos, len);
                continue;
            }
            size_t avail = len - pos;
            if (hdr_have_ == 0 && avail >= 2) {
                // Fast path: header read straight from the input.
                const uint8_t* h = data + pos;
                if (!check_first_two(h[0], h[1])) break;
                size_t need = header_size(h[1]);
                if (avail >= need) {
                    pos += need;
                    begin_frame(h);
                    continue;
                }
                std::memcpy(hdr_, h, avail);  // checked, incomplete: keep for the next call
                hdr_have_ = avail;
                break;
            }
            // Slow path: the header is split across feed() calls.
            size_t had = hdr_have_;
            while (hdr_have_ < 2 && pos < len) hdr_[hdr_have_++] = data[pos++];
            if (hdr_have_ < 2) break;
            if (had < 2 && !check_first_two(hdr_[0], hdr_[1])) break;
            size_t need = header_size(hdr_[1]);
            size_t take = need - hdr_have_;
            if (take > len - pos) take = len - pos;
            std::memcpy(hdr_ + hdr_have_, data + pos, take);
            hdr_have_ += take;
            pos += take;
            if (hdr_have_ < need) break;
            hdr_have_ = 0;
            begin_frame(hdr_);
        }
    } catch (const std::bad_alloc&) {
        fail(1009, "out of memory while assembling a message");
    }
}

void Parser::end_batch() {
    msgs_.clear();
    ctrls_.clear();
    ctrl_arena_.clear();
    if (in_msg_) {
        arena_.erase_front(msg_start_);
        msg_start_ = 0;
    } else {
        arena_.clear();
        msg_start_ = 0;
    }
    arena_.trim(size_t{4} << 20);
    zbuf_.trim(size_t{4} << 20);
    ctrl_arena_.trim(size_t{1} << 20);
}

}  // namespace kws
