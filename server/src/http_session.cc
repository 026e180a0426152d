#include "http_session.h"

#include <openssl/crypto.h>

#include <array>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <chrono>
#include <cstdio>

namespace fieldsync::server {

namespace beast = boost::beast;
namespace http = beast::http;

HttpSession::HttpSession(NetServer::Impl& impl, Strand strand, tcp::socket&& socket, SessionId id)
    : impl_(impl),
      strand_(strand),
      slot_(std::make_unique<ConnectionSlot>(impl, id, endpoint_string(socket))),
      tls_(std::move(socket), *impl.tls),
      timer_(strand) {
  boost::system::error_code ec;
  tcp::endpoint ep = beast::get_lowest_layer(tls_).socket().remote_endpoint(ec);
  if (!ec) peer_address_ = ep.address();
}

void HttpSession::run() {
  slot_->attach(weak_from_this());
  asio::dispatch(strand_, [self = shared_from_this()] {
    if (self->impl_.stopping) return self->cut("server_stopping");
    beast::get_lowest_layer(self->tls_)
        .expires_after(std::chrono::milliseconds(self->impl_.options.tls_handshake_timeout_ms));
    self->tls_.async_handshake(asio::ssl::stream_base::server,
                               [self](boost::system::error_code ec) { self->on_tls_handshake(ec); });
  });
}

void HttpSession::on_tls_handshake(boost::system::error_code ec) {
  if (ec) return fail("tls_handshake", ec);
  state_ = State::kReadingHeader;
  beast::get_lowest_layer(tls_).expires_after(
      std::chrono::milliseconds(impl_.options.ws_handshake_timeout_ms));
  parser_.emplace();
  parser_->header_limit(static_cast<uint32_t>(limits::kMaxUpgradeRequestBytes));
  http::async_read_header(
      tls_, buffer_, *parser_,
      [self = shared_from_this()](boost::system::error_code ec, size_t) { self->on_header(ec); });
}

// A refusal before any handler ran. Under /api/ it is the API's JSON error ({"code", "message", "field"}), so
// a script or the dashboard reads every error the same way; elsewhere plain text as before.
void HttpSession::refuse(http::status status, std::string_view code, std::string text, Headers extra) {
  const bool api = parser_ && parser_->get().target().starts_with("/api/");
  linger_ = parser_ && !parser_->is_done();
  if (!api) return respond(status, "text/plain", std::move(text), std::move(extra));
  while (!text.empty() && text.back() == '\n') text.pop_back();
  std::string body = "{\"code\":\"" + std::string(code) + "\",\"message\":\"";
  for (char c : text) {
    if (c == '"' || c == '\\') body += '\\';
    body += c;
  }
  body += "\",\"field\":null}\n";
  respond(status, "application/json", std::move(body), std::move(extra));
}

// After a refusal that left a request body unread: closing at once would make the kernel answer the unread
// bytes with a reset, which can destroy the answer before the client reads it. So: stop sending, read and
// drop what still comes for a moment (at most kLingerBytes), then close. Lingering closes as web servers do.
void HttpSession::linger() {
  constexpr int64_t kLingerMs = 1000;
  boost::system::error_code ignored;
  auto& tcp = beast::get_lowest_layer(tls_);
  tcp.socket().shutdown(tcp::socket::shutdown_send, ignored);
  tcp.expires_after(std::chrono::milliseconds(kLingerMs));
  linger_read(std::make_shared<std::array<char, 16 * 1024>>(), 0);
}

void HttpSession::linger_read(std::shared_ptr<std::array<char, 16 * 1024>> drop, size_t total) {
  constexpr size_t kLingerBytes = 1 << 20;
  beast::get_lowest_layer(tls_).async_read_some(
      asio::buffer(*drop), [self = shared_from_this(), drop, total](boost::system::error_code ec, size_t n) {
        if (ec || total + n > kLingerBytes) {
          self->state_ = State::kClosed;
          beast::get_lowest_layer(self->tls_).close();
          return;
        }
        self->linger_read(drop, total + n);
      });
}

void HttpSession::on_header(boost::system::error_code ec) {
  if (ec == http::error::header_limit) {
    set_reason("http_header_too_large");
    return refuse(http::status::request_header_fields_too_large, "header_too_large",
                  "request header too large\n");
  }
  if (ec == http::error::body_limit) {  // a Content-Length past Beast's default cap (1 MiB)
    set_reason("http_body_too_large");
    return refuse(http::status::payload_too_large, "body_too_large", "request body too large\n");
  }
  if (ec) return fail("upgrade_request", ec);
  const auto& req = parser_->get();
  version_ = req.version();
  match_ = impl_.routes.find(req.method(), req.target());
  const Route* route = match_.route;
  // WebSocket upgrades are sessions, not requests: counted as such.
  if (!(route != nullptr && beast::websocket::is_upgrade(req)))
    impl_.metrics.add(Counter::kHttpRequests, 1, match_.label.empty() ? "other" : match_.label);
  if (route == nullptr && match_.allow.empty()) {
    set_reason("not_found");
    return refuse(http::status::not_found, "not_found",
                  req.target().starts_with("/api/")
                      ? "no such endpoint (docs/API.md)\n"
                      : "fieldsync: the sync endpoint is a WebSocket at /sync\n");
  }
  if (route == nullptr) {
    set_reason("method_not_allowed");
    return refuse(http::status::method_not_allowed, "method_not_allowed", "method not allowed\n",
                  {{http::field::allow, match_.allow}});
  }
  if (route->auth == RouteAuth::kOperator && !operator_allowed()) {
    set_reason("forbidden");
    return respond(http::status::forbidden, "text/plain", "loopback or bearer token only\n");
  }
  const bool has_body = req.has_content_length() ? parser_->content_length().value_or(0) > 0 : req.chunked();
  if (has_body && !route->content_type.empty()) {
    const std::string_view type = req[http::field::content_type];
    if (type.substr(0, type.find(';')) != route->content_type) {
      set_reason("unsupported_media_type");
      return refuse(http::status::unsupported_media_type, "unsupported_media_type",
                    "expected Content-Type: " + route->content_type + "\n");
    }
  }
  // Beast checks a Content-Length against the body limit while it parses the header: this route's limit
  // is checked here, and holds for a chunked body as it is read.
  if (parser_->content_length().value_or(0) > route->body_limit) {
    set_reason("http_body_too_large");
    return refuse(http::status::payload_too_large, "body_too_large", "request body too large\n");
  }
  parser_->body_limit(route->body_limit);
  if (parser_->is_done()) return dispatch();
  state_ = State::kReadingBody;
  http::async_read(tls_, buffer_, *parser_,
                   [self = shared_from_this()](boost::system::error_code ec, size_t) { self->on_body(ec); });
}

void HttpSession::on_body(boost::system::error_code ec) {
  if (ec == http::error::body_limit) {
    set_reason("http_body_too_large");
    return refuse(http::status::payload_too_large, "body_too_large", "request body too large\n");
  }
  if (ec) return fail("request_body", ec);
  dispatch();
}

void HttpSession::dispatch() {
  state_ = State::kHandling;
  HttpRequest req{parser_->release(), std::move(match_.params)};
  parser_.reset();
  match_.route->handler(shared_from_this(), req);
}

bool HttpSession::operator_allowed() const {
  const std::string& token = impl_.options.metrics_token;
  if (token.empty()) return peer_address_ && is_loopback(*peer_address_);
  const auto& req = parser_->get();
  auto it = req.find(http::field::authorization);
  if (it == req.end()) return false;
  const std::string expected = "Bearer " + token;
  const std::string_view got(it->value().data(), it->value().size());
  return got.size() == expected.size() && CRYPTO_memcmp(got.data(), expected.data(), got.size()) == 0;
}

void HttpSession::respond(http::status status, std::string_view content_type, std::string body,
                          Headers extra) {
  if (state_ == State::kClosed || state_ == State::kUpgraded || state_ == State::kResponding ||
      state_ == State::kStreaming)
    return;
  state_ = State::kResponding;
  auto res = std::make_shared<http::response<http::string_body>>(status, version_);
  res->set(http::field::server, "fieldsync-server");
  res->set(http::field::content_type, content_type);
  res->set(http::field::cache_control, "no-store");
  for (auto& [field, value] : extra) res->set(field, value);
  res->keep_alive(false);
  res->body() = std::move(body);
  res->prepare_payload();
  beast::get_lowest_layer(tls_).expires_after(
      std::chrono::milliseconds(impl_.options.ws_handshake_timeout_ms));
  http::async_write(tls_, *res, [self = shared_from_this(), res](boost::system::error_code ec, size_t) {
    if (!ec && self->linger_) return self->linger();
    self->state_ = State::kClosed;
    beast::get_lowest_layer(self->tls_).close();
  });
}

void HttpSession::respond_stream(http::status status, std::string_view content_type, Headers extra,
                                 ChunkSource next) {
  if (state_ != State::kHandling) return;
  state_ = State::kStreaming;
  auto res = std::make_shared<http::response<http::empty_body>>(status, version_);
  res->set(http::field::server, "fieldsync-server");
  res->set(http::field::content_type, content_type);
  res->set(http::field::cache_control, "no-store");
  for (auto& [field, value] : extra) res->set(field, value);
  res->keep_alive(false);
  res->chunked(true);
  auto sr = std::make_shared<http::response_serializer<http::empty_body>>(*res);
  beast::get_lowest_layer(tls_).expires_after(
      std::chrono::milliseconds(impl_.options.ws_handshake_timeout_ms));
  http::async_write_header(
      tls_, *sr,
      [self = shared_from_this(), res, sr, next = std::make_shared<ChunkSource>(std::move(next))](
          boost::system::error_code ec, size_t) mutable {
        if (ec) return self->fail("stream_header", ec);
        self->stream_next(std::move(next));
      });
}

void HttpSession::stream_next(std::shared_ptr<ChunkSource> next) {
  if (state_ != State::kStreaming) return;
  (*next)([self = shared_from_this(), next](std::optional<std::string> chunk) mutable {
    Strand strand = self->strand_;
    asio::post(strand, [self = std::move(self), next = std::move(next), chunk = std::move(chunk)]() mutable {
      self->stream_chunk(std::move(next), std::move(chunk));
    });
  });
}

void HttpSession::stream_chunk(std::shared_ptr<ChunkSource> next, std::optional<std::string> chunk) {
  if (state_ != State::kStreaming) return;
  if (chunk && chunk->empty()) return stream_next(std::move(next));
  // Chunked framing (RFC 9112 7.1) written by hand into one buffer: one TLS write per chunk.
  auto wire = std::make_shared<std::string>();
  if (chunk) {
    char size[24];
    const int n = std::snprintf(size, sizeof size, "%zx\r\n", chunk->size());
    wire->reserve(chunk->size() + static_cast<size_t>(n) + 2);
    wire->append(size, static_cast<size_t>(n)).append(*chunk).append("\r\n");
  } else {
    *wire = "0\r\n\r\n";
  }
  const bool last = !chunk;
  beast::get_lowest_layer(tls_).expires_after(
      std::chrono::milliseconds(impl_.options.ws_handshake_timeout_ms));
  asio::async_write(tls_, asio::buffer(*wire),
                    [self = shared_from_this(), wire, next = std::move(next), last](
                        boost::system::error_code ec, size_t) mutable {
                      if (ec) return self->fail("stream_write", ec);
                      if (!last) return self->stream_next(std::move(next));
                      self->state_ = State::kClosed;
                      beast::get_lowest_layer(self->tls_).close();
                    });
}

void HttpSession::after(int64_t delay_ms, std::function<void()> fn) {
  timer_.expires_after(std::chrono::milliseconds(delay_ms));
  timer_.async_wait([self = shared_from_this(), fn = std::move(fn)](boost::system::error_code) {
    if (self->open()) fn();
  });
}

void HttpSession::upgrade(HttpRequest& req) {
  if (buffer_.size() != 0) {  // a client sends frames only after the server's 101 (RFC 6455 4.1)
    set_reason("data_before_upgrade");
    return respond(http::status::bad_request, "text/plain", "data sent before the upgrade was answered\n");
  }
  state_ = State::kUpgraded;
  beast::get_lowest_layer(tls_).expires_never();  // the WebSocket layer's own timeouts take over
  start_ws_session(impl_, strand_, std::move(slot_), std::move(tls_), req.message);
}

void HttpSession::set_reason(std::string reason) {
  if (slot_ && slot_->reason.empty()) slot_->reason = std::move(reason);
}

// Drain: an HTTP connection has nothing to finish that the peer waits for in a close frame.
void HttpSession::request_close() {
  cut("server_stopping");
}

void HttpSession::cut(const std::string& reason) {
  if (state_ == State::kClosed || state_ == State::kUpgraded) return;
  state_ = State::kClosed;
  set_reason(reason);
  timer_.cancel();
  beast::get_lowest_layer(tls_).close();  // pending operations complete with errors and release the session
}

void HttpSession::fail(const char* stage, boost::system::error_code ec) {
  if (ec == asio::error::operation_aborted || ec == beast::error::timeout)
    set_reason(std::string(stage) + "_timeout_or_aborted");
  else
    set_reason(std::string(stage) + "_error(" + ec.message() + ")");
  cut("closed");
}

}  // namespace fieldsync::server
