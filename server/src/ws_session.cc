// WsSession: one WebSocket on /sync. Answers the upgrade, then reads binary messages in pieces (a typed
// kMessageTooLarge past the limit), passes them through the session's token bucket (kRateLimited) to the
// SyncService, and writes what the service sends it through a bounded queue (past a cap: a typed
// kRateLimited and a close frame). The only file that instantiates Beast's WebSocket templates.
#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <deque>

#include "fieldsync/sync/codec.h"
#include "http_session.h"
#include "wall_clock.h"

namespace fieldsync::server {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using WsStream = fieldsync::net::WebSocketStream;

namespace {

class WsSession : public Connection, public std::enable_shared_from_this<WsSession> {
 public:
  WsSession(NetServer::Impl& impl, Strand strand, std::unique_ptr<ConnectionSlot> slot,
            fieldsync::net::TlsStream&& tls)
      : impl_(impl),
        strand_(strand),
        slot_(std::move(slot)),
        ws_(std::move(tls)),
        delay_timer_(strand),
        bucket_(impl.options.session_message_burst) {}
  ~WsSession() override {
    if (registered_) impl_.service.disconnect(slot_->id);
  }

  Strand& strand() override { return strand_; }

  void run(const http::request<http::string_body>& req) {
    slot_->attach(weak_from_this());
    websocket::stream_base::timeout t;
    t.handshake_timeout = std::chrono::milliseconds(impl_.options.ws_handshake_timeout_ms);
    t.idle_timeout = std::chrono::milliseconds(impl_.options.idle_timeout_ms);
    t.keep_alive_pings = true;
    ws_.set_option(t);
    // The limit is enforced in on_read (with a typed Error), never by Beast: its cap refuses a frame whose
    // header is over it before a byte is read, with close code 1009 and no Error. Reading in pieces bounds
    // what is buffered; the rest of an oversized message is dropped within the close handshake's timeout.
    ws_.read_message_max(0);
    ws_.binary(true);
    ws_.auto_fragment(false);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "fieldsync-server"); }));
    ws_.async_accept(req, [self = shared_from_this()](boost::system::error_code ec) { self->on_accept(ec); });
  }

  // Queues a frame (or, with close_after, a close once the queue is sent). A frame with a delay holds itself
  // and everything after it back that long.
  void enqueue(Outbound out) override {
    if (state_ != State::kOpen) return;
    if (delaying_ || out.delay_ms > 0) {
      const int64_t delay_ms = std::exchange(out.delay_ms, 0);
      delayed_.push_back(std::move(out));
      if (!delaying_) {
        delaying_ = true;
        delay_timer_.expires_after(std::chrono::milliseconds(delay_ms));
        delay_timer_.async_wait([self = shared_from_this()](boost::system::error_code) {
          self->delaying_ = false;
          std::deque<Outbound> ready = std::exchange(self->delayed_, {});
          for (Outbound& o : ready) self->enqueue(std::move(o));
        });
      }
      return;
    }
    Frame frame = std::move(out.frame);
    if (out.close_after || !frame) {
      if (out.close_after) close(websocket::close_code::policy_error);
      return;
    }
    if (queue_.size() >= impl_.options.max_queued_frames ||
        queued_bytes_ + frame->size() > impl_.options.max_queued_bytes)
      return overflow();
    queued_bytes_ += frame->size();
    queue_.push_back(std::move(frame));
    if (!backlogged_ && queue_.size() >= tuning::kMaxPendingLiveBatches) report_backlog(true);
    if (!writing_) do_write();
  }

  void request_close() override { close(websocket::close_code::going_away); }
  void cut(const std::string& reason) override { hard_close(reason); }

 private:
  // kAccepting: the upgrade response is being written. kOpen: messages both ways. kClosing: a close is
  // wanted, sent once the queue is written. kCloseSent: waiting for the peer's close frame. kClosed: the
  // socket is closed; pending operations complete with errors and release the session.
  enum class State { kAccepting, kOpen, kClosing, kCloseSent, kClosed };

  void on_accept(boost::system::error_code ec) {
    if (ec) return fail("ws_accept", ec);
    state_ = State::kOpen;
    slot_->websocket = true;
    impl_.metrics.add(Counter::kSessionsOpened);
    impl_.log("event=session_open session=" + std::to_string(slot_->id) + " peer=" + slot_->peer);
    if (close_after_accept_) return close(*close_after_accept_);
    if (impl_.stopping) return close(websocket::close_code::going_away);
    registered_ = true;
    impl_.service.connect(slot_->id, wall_ms());
    do_read();
  }

  // Sends a close frame once everything queued is written.
  void close(websocket::close_code code) {
    // While the upgrade response is being written the peer may already hold it and expect a WebSocket: the
    // close waits for on_accept, which sends a close frame (cutting the socket here lost the close code).
    if (state_ == State::kAccepting) return void(close_after_accept_ = code);
    if (state_ != State::kOpen) return;
    state_ = State::kClosing;
    close_code_ = code;
    maybe_close();
  }

  // Messages are read in pieces so that one over the limit is noticed after at most one piece more than the
  // limit, and answered with a typed Error (kMessageTooLarge) before the close, not only a close code.
  void do_read() {
    ws_.async_read_some(
        buffer_, limits::kReadChunkBytes,
        [self = shared_from_this()](boost::system::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(boost::system::error_code ec) {
    if (ec) {
      if (ec == websocket::error::closed)
        return set_reason(state_ == State::kOpen ? "closed_by_peer" : "closed_by_server");
      return fail("read", ec);
    }
    if (discarding_ || buffer_.size() > limits::kReadMessageMax) {
      // The rest of an oversized message is read and dropped while the close handshake runs.
      if (!discarding_ && state_ == State::kOpen) {
        set_reason("message_too_large");
        impl_.service.bad_frame(slot_->id, Status(ErrorCode::kMessageTooLarge,
                                                  "a message may hold at most " +
                                                      std::to_string(limits::kReadMessageMax) + " bytes"));
      }
      discarding_ = !ws_.is_message_done();
      buffer_.consume(buffer_.size());
      return do_read();
    }
    if (!ws_.is_message_done()) return do_read();
    if (state_ == State::kOpen) {
      if (!take_message_token()) {
        set_reason("rate_limited");
        impl_.service.bad_frame(
            slot_->id,
            Status(ErrorCode::kRateLimited,
                   "more than " +
                       std::to_string(static_cast<int>(impl_.options.session_messages_per_second)) +
                       " messages per second",
                   true));
      } else if (!ws_.got_binary()) {
        impl_.service.bad_frame(slot_->id, Status(ErrorCode::kMalformedMessage, "text WebSocket message"));
      } else {
        auto data = buffer_.cdata();
        // A request the server asked for (a catch-up pull after has_more, the next bootstrap page) gets its
        // token back: a device catching up on a fast link pulls as fast as the answers come, faster than
        // the limit, which is for floods (a live head office far behind 1,000 busy reps was cut by its own
        // catch-up).
        if (impl_.service.frame(
                slot_->id, std::span<const uint8_t>(static_cast<const uint8_t*>(data.data()), data.size()),
                wall_ms()))
          bucket_ = std::min(impl_.options.session_message_burst, bucket_ + 1.0);
      }
    }
    buffer_.consume(buffer_.size());
    do_read();  // also while closing: the read completes with `closed` when the peer answers the close frame
  }

  bool take_message_token() {
    const auto now = std::chrono::steady_clock::now();
    const double elapsed_s = std::chrono::duration<double>(now - bucket_at_).count();
    bucket_at_ = now;
    bucket_ = std::min(impl_.options.session_message_burst,
                       bucket_ + elapsed_s * impl_.options.session_messages_per_second);
    if (bucket_ < 1.0) return false;
    bucket_ -= 1.0;
    return true;
  }

  // The peer asks faster than it reads its answers (or cannot take live batches fast enough): its unsent
  // frames are dropped (it pulls them again from its cursor), and it is told so -- a retryable kRateLimited
  // and a close frame (1013, try again later) -- so it backs off instead of taking it for a network failure.
  // The Error goes past the caps: one small frame. The close handshake's timeout bounds a peer that never
  // reads it.
  void overflow() {
    impl_.overflow_closes.fetch_add(1);
    set_reason("write_queue_overflow");
    drop_unsent();
    protocol::Error e;
    e.code = ErrorCode::kRateLimited;
    e.message = "answers are not being read as fast as they are asked for: slow down";
    e.retryable = true;
    Frame frame = std::make_shared<const std::vector<uint8_t>>(codec::encode(e));
    impl_.metrics.add(Counter::kErrors, 1, to_string(e.code));
    impl_.log("event=error session=" + std::to_string(slot_->id) + " code=" + std::string(to_string(e.code)) +
              " message=\"" + e.message + "\" retryable=true");
    queued_bytes_ += frame->size();
    queue_.push_back(std::move(frame));
    close(websocket::close_code::try_again_later);
    if (!writing_) do_write();
  }

  void do_write() {
    writing_ = true;
    ws_.async_write(
        asio::buffer(*queue_.front()),
        [self = shared_from_this()](boost::system::error_code ec, size_t) { self->on_write(ec); });
  }

  void on_write(boost::system::error_code ec) {
    writing_ = false;
    queued_bytes_ -= queue_.front()->size();
    queue_.pop_front();
    if (ec) return fail("write", ec);
    if (state_ == State::kClosed) return;  // cut while this frame was being written: nothing more goes out
    if (!queue_.empty()) return do_write();
    if (backlogged_) report_backlog(false);
    maybe_close();
  }

  // Tells the sync state machine that this session's queue backed up or drained, so live batches wait and
  // coalesce instead of piling up here until the queue overflows. Posted, never called from here: enqueue
  // may run inside a call of the service itself (its sink, under its lock), and posting keeps the reports in
  // order on the strand.
  void report_backlog(bool backlogged) {
    backlogged_ = backlogged;
    asio::post(strand_, [self = shared_from_this(), backlogged] {
      if (self->registered_ && self->state_ != State::kClosed)
        self->impl_.service.set_backlogged(self->slot_->id, backlogged);
    });
  }

  void maybe_close() {
    if (state_ != State::kClosing || writing_ || !queue_.empty()) return;
    state_ = State::kCloseSent;
    ws_.async_close(close_code_, [self = shared_from_this()](boost::system::error_code ec) {
      if (ec) self->fail("close", ec);
    });
  }

  void fail(const char* stage, boost::system::error_code ec) {
    if (state_ == State::kClosed) return;
    if (ec == asio::error::operation_aborted || ec == beast::error::timeout)
      set_reason(std::string(stage) + "_timeout_or_aborted");
    else
      set_reason(std::string(stage) + "_error(" + ec.message() + ")");
    hard_close(slot_->reason);
  }

  void hard_close(const std::string& reason) {
    if (state_ == State::kClosed) return;
    state_ = State::kClosed;
    set_reason(reason);
    drop_unsent();
    beast::get_lowest_layer(ws_).close();  // pending operations complete with errors and release the session
  }

  // The frame being written stays alive until its write completes: Beast reads from it until then.
  void drop_unsent() {
    if (writing_ && !queue_.empty()) {
      queue_.erase(queue_.begin() + 1, queue_.end());
      queued_bytes_ = queue_.front()->size();
    } else {
      queue_.clear();
      queued_bytes_ = 0;
    }
  }

  void set_reason(const std::string& reason) {
    if (slot_->reason.empty()) slot_->reason = reason;
  }

  NetServer::Impl& impl_;
  Strand strand_;
  std::unique_ptr<ConnectionSlot> slot_;
  WsStream ws_;
  beast::flat_buffer buffer_;
  asio::steady_timer delay_timer_;  // delayed frames (refused handshakes)
  std::deque<Outbound> delayed_;
  double bucket_;  // message tokens (take_message_token), a full bucket at first
  std::chrono::steady_clock::time_point bucket_at_ = std::chrono::steady_clock::now();
  std::deque<Frame> queue_;
  size_t queued_bytes_ = 0;
  State state_ = State::kAccepting;
  std::optional<websocket::close_code> close_after_accept_;  // close() while kAccepting
  websocket::close_code close_code_ = websocket::close_code::normal;
  // Orthogonal to the state: an operation or a report in flight.
  bool writing_ = false;     // an async_write is in flight
  bool delaying_ = false;    // delayed_ waits for delay_timer_
  bool discarding_ = false;  // reading the rest of an oversized message
  bool registered_ = false;  // known to the SyncService (connect() called)
  bool backlogged_ = false;  // reported to the SyncService (report_backlog)
};

}  // namespace

void start_ws_session(NetServer::Impl& impl, Strand strand, std::unique_ptr<ConnectionSlot> slot,
                      fieldsync::net::TlsStream&& tls, const http::request<http::string_body>& req) {
  std::make_shared<WsSession>(impl, strand, std::move(slot), std::move(tls))->run(req);
}

}  // namespace fieldsync::server
