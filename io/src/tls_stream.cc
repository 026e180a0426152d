// The one place the TLS stream's asynchronous operations are instantiated (see tls_stream.h).
#include "fieldsync/io/tls_stream.h"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/websocket/ssl.hpp>

namespace fieldsync::net {

TlsStream::TlsStream(executor_type ex, boost::asio::ssl::context& ctx) : tls_(std::move(ex), ctx) {}

TlsStream::TlsStream(boost::asio::ip::tcp::socket&& socket, boost::asio::ssl::context& ctx)
    : tls_(std::move(socket), ctx) {}

// Asio's SSL operations post to their handler's executor with blocking.never, which Boost 1.81's
// any_completion_executor (the executor of an erased handler) does not offer: every operation completes on
// the stream's own executor instead (tls_stream.h).
template <class Erased>
auto on_stream(TlsStream::executor_type ex, Erased&& h) {
  return boost::asio::bind_executor(std::move(ex), std::forward<Erased>(h));
}

void TlsStream::start_read(boost::asio::mutable_buffer b, IoHandler h) {
  tls_.async_read_some(b, on_stream(get_executor(), std::move(h)));
}

void TlsStream::start_write(const WriteBuffers& b, IoHandler h) {
  tls_.async_write_some(b, on_stream(get_executor(), std::move(h)));
}

void TlsStream::start_handshake(boost::asio::ssl::stream_base::handshake_type type, Handler h) {
  tls_.async_handshake(type, on_stream(get_executor(), std::move(h)));
}

void TlsStream::start_teardown(boost::beast::role_type role, Handler h) {
  boost::beast::async_teardown(role, tls_, on_stream(get_executor(), std::move(h)));
}

void TlsStream::teardown(boost::beast::role_type role, boost::system::error_code& ec) {
  boost::beast::teardown(role, tls_, ec);
}

void teardown(boost::beast::role_type role, TlsStream& stream, boost::system::error_code& ec) {
  stream.teardown(role, ec);
}

}  // namespace fieldsync::net
