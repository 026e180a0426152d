// TlsStream: a TLS byte stream over TCP whose asynchronous operations take type-erased completion handlers.
//
// Both ends of the sync protocol run WebSocket (and HTTP) over TLS. Beast's ssl_stream is a template over the
// handler of every operation, and a WebSocket or HTTP operation calls it from several places with handlers of
// its own: every one of those call sites instantiated OpenSSL's whole asynchronous state machine again (over
// 2,000 functions and most of the compile time of the server's network code). This stream gives
// `websocket::stream` and `http::async_read/async_write` one handler type, `any_completion_handler`, so the
// TLS machinery is compiled once, in tls_stream.cc, for the server, the client and the load generator alike.
//
// Every operation completes on the stream's own executor, not the handler's (Boost 1.81's erased handlers
// cannot be posted to otherwise): give the stream the executor its operations run on, the session's strand
// on the server, the single-threaded io_context in the clients.
//
// The cost is one small allocation per read or write (the erased handler, through the handler's own
// allocator). A read uses the first non-empty buffer of its sequence, which is what Asio's SSL stream does
// itself. A write keeps up to kMaxWriteBuffers buffers (a WebSocket frame is its header and its payload):
// ssl_stream joins them into one TLS record, and a frame's header sent alone would cost a record and a
// syscall of its own. `_some` operations may always transfer less than asked.
//
// Internal to the transports (ws_client.cc, the server's ws_session.cc and http_session.cc, bench/): not part
// of the device API.
#pragma once

#include <array>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket/stream_fwd.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <utility>

namespace fieldsync::net {

class TlsStream {
 public:
  using executor_type = boost::asio::any_io_executor;
  using next_layer_type = boost::beast::ssl_stream<boost::beast::tcp_stream>;
  using IoHandler = boost::asio::any_completion_handler<void(boost::system::error_code, std::size_t)>;
  using Handler = boost::asio::any_completion_handler<void(boost::system::error_code)>;

  TlsStream(executor_type ex, boost::asio::ssl::context& ctx);
  TlsStream(boost::asio::io_context& ioc, boost::asio::ssl::context& ctx)
      : TlsStream(ioc.get_executor(), ctx) {}
  TlsStream(boost::asio::ip::tcp::socket&& socket, boost::asio::ssl::context& ctx);

  executor_type get_executor() noexcept { return tls_.get_executor(); }
  next_layer_type& next_layer() noexcept { return tls_; }
  const next_layer_type& next_layer() const noexcept { return tls_; }

  template <class MutableBufferSequence, class Token>
  auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](IoHandler h, boost::asio::mutable_buffer b) { start_read(b, std::move(h)); }, token,
        first_mutable(buffers));
  }

  // The buffers of one write, as a buffer sequence of a single type.
  static constexpr std::size_t kMaxWriteBuffers = 16;
  struct WriteBuffers {
    std::array<boost::asio::const_buffer, kMaxWriteBuffers> items;
    std::size_t count = 0;
    const boost::asio::const_buffer* begin() const noexcept { return items.data(); }
    const boost::asio::const_buffer* end() const noexcept { return items.data() + count; }
  };

  template <class ConstBufferSequence, class Token>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](IoHandler h, const WriteBuffers& b) { start_write(b, std::move(h)); }, token,
        collect(buffers));
  }

  template <class Token>
  auto async_handshake(boost::asio::ssl::stream_base::handshake_type type, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [this, type](Handler h) { start_handshake(type, std::move(h)); }, token);
  }

  // What websocket::stream calls (through the free functions below) to close the TLS session, then TCP.
  void start_teardown(boost::beast::role_type role, Handler h);
  void teardown(boost::beast::role_type role, boost::system::error_code& ec);

 private:
  template <class Buffers>
  static boost::asio::mutable_buffer first_mutable(const Buffers& buffers) {
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it)
      if (boost::asio::mutable_buffer b(*it); b.size() != 0) return b;
    return {};
  }
  template <class Buffers>
  static WriteBuffers collect(const Buffers& buffers) {
    WriteBuffers out;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers) && out.count < kMaxWriteBuffers; ++it)
      if (boost::asio::const_buffer b(*it); b.size() != 0) out.items[out.count++] = b;
    return out;
  }

  void start_read(boost::asio::mutable_buffer b, IoHandler h);
  void start_write(const WriteBuffers& b, IoHandler h);
  void start_handshake(boost::asio::ssl::stream_base::handshake_type type, Handler h);

  next_layer_type tls_;
};

// The WebSocket stream of both ends and the load generator. No permessage-deflate: compression under TLS
// leaks secrets (CRIME-style), and none of its code is built.
using WebSocketStream = boost::beast::websocket::stream<TlsStream, /*deflateSupported=*/false>;

// Found by argument-dependent lookup from websocket::stream's close and destruction paths.
void teardown(boost::beast::role_type role, TlsStream& stream, boost::system::error_code& ec);

template <class TeardownHandler>
void async_teardown(boost::beast::role_type role, TlsStream& stream, TeardownHandler&& handler) {
  stream.start_teardown(role, TlsStream::Handler(std::forward<TeardownHandler>(handler)));
}

}  // namespace fieldsync::net
