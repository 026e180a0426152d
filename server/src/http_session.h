// One connection until it is a WebSocket: the TLS handshake, then one HTTP request read header first,
// checked against the route table (route, method, auth, content type, body limit: 404, 405 + Allow, 403,
// 415, 413, 431 before any handler runs), then its handler. A plain answer closes the connection; GET /sync
// with an upgrade hands the stream to a WsSession. Every handler runs on the session's strand. Internal to
// server/src.
#pragma once

#include <array>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/status.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fieldsync/io/tls_stream.h"
#include "net_impl.h"

namespace fieldsync::server {

class HttpSession : public Connection, public std::enable_shared_from_this<HttpSession> {
 public:
  // One extra response header: a field Beast names, or one it has no enum for (Content-Security-Policy).
  struct Header {
    Header(boost::beast::http::field f, std::string v)
        : name(boost::beast::http::to_string(f)), value(std::move(v)) {}
    Header(std::string_view n, std::string v) : name(n), value(std::move(v)) {}
    std::string name;
    std::string value;
  };
  using Headers = std::vector<Header>;

  HttpSession(NetServer::Impl& impl, Strand strand, tcp::socket&& socket, SessionId id);
  void run();

  Strand& strand() override { return strand_; }
  void enqueue(Outbound) override {}
  void request_close() override;
  void cut(const std::string& reason) override;

  // For handlers (on the strand). One plain answer, then the connection closes.
  void respond(boost::beast::http::status status, std::string_view content_type, std::string body,
               Headers extra = {});
  // A streamed answer (CSV exports, Server-Sent Events): the header with `Transfer-Encoding: chunked`, then
  // the chunks `next` produces, one at a time. `next` is asked for the next chunk only once the previous one
  // is written (backpressure: a reader that does not read holds the producer, never a growing buffer here);
  // it answers by calling its argument exactly once, from any thread, with the chunk (empty: nothing to
  // write, ask again), or nullopt for the end. A failed write or a drain closes the connection and `next` is
  // not asked again. Each write has the request timeout.
  using ChunkSink = std::function<void(std::optional<std::string> chunk)>;
  using ChunkSource = std::function<void(ChunkSink deliver)>;
  void respond_stream(boost::beast::http::status status, std::string_view content_type, Headers extra,
                      ChunkSource next);
  bool open() const { return state_ == State::kHandling || state_ == State::kStreaming; }
  // Runs `fn` on the strand after `delay_ms` (a late answer, a wait between streamed chunks).
  void after(int64_t delay_ms, std::function<void()> fn);
  // Hands the connection to a WebSocket session for the sync protocol (GET /sync with an upgrade).
  void upgrade(HttpRequest& req);
  void set_reason(std::string reason);

  NetServer::Impl& server() { return impl_; }
  SessionId id() const { return slot_->id; }
  const std::string& peer() const { return slot_->peer; }
  const std::optional<asio::ip::address>& peer_address() const { return peer_address_; }

 private:
  enum class State {
    kTlsHandshake,
    kReadingHeader,
    kReadingBody,
    kHandling,
    kResponding,
    kStreaming,
    kUpgraded,
    kClosed
  };

  void on_tls_handshake(boost::system::error_code ec);
  void on_header(boost::system::error_code ec);
  void on_body(boost::system::error_code ec);
  void dispatch();
  bool operator_allowed() const;
  void linger();
  void linger_read(std::shared_ptr<std::array<char, 16 * 1024>> drop, size_t total);
  void refuse(boost::beast::http::status status, std::string_view code, std::string text, Headers extra = {});
  void stream_next(std::shared_ptr<ChunkSource> next);
  void stream_chunk(std::shared_ptr<ChunkSource> next, std::optional<std::string> chunk);
  void fail(const char* stage, boost::system::error_code ec);

  NetServer::Impl& impl_;
  Strand strand_;
  std::unique_ptr<ConnectionSlot> slot_;
  fieldsync::net::TlsStream tls_;
  std::optional<asio::ip::address> peer_address_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  RouteTable::Match match_;
  unsigned version_ = 11;
  asio::steady_timer timer_;
  State state_ = State::kTlsHandshake;
  bool linger_ = false;  // a refusal left the request body unread: linger() before closing
};

// ws_session.cc: a WebSocket session on the connection `tls` (the upgrade request `req` read from it)
// answers the upgrade and serves the sync protocol.
void start_ws_session(NetServer::Impl& impl, Strand strand, std::unique_ptr<ConnectionSlot> slot,
                      fieldsync::net::TlsStream&& tls,
                      const boost::beast::http::request<boost::beast::http::string_body>& req);

// routes.cc: the server's routes.
void add_routes(NetServer::Impl& impl, RouteTable& routes);

}  // namespace fieldsync::server
