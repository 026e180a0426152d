#include "fieldsync/server/log_follower.h"

#include <libpq-fe.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "libpq_status.h"

namespace fieldsync::server {

namespace {

// How long the thread sleeps in poll() when nothing happens: bounds how late it notices stop or a dead
// connection that sent nothing.
constexpr int kIdleWaitMs = 1000;
// Reconnect backoff: from the first to the cap, doubling.
constexpr int kReconnectFirstMs = 100;
constexpr int kReconnectCapMs = 2000;

std::string listen_sql() {
  return std::string("LISTEN ") + kLogChannel + "; LISTEN " + kDirectoryChannel;
}
std::string notify_sql() {
  return std::string("NOTIFY ") + kLogChannel;
}

Status exec(PGconn* conn, const std::string& sql) {
  PGresult* r = PQexec(conn, sql.c_str());
  Status s = pg_raw::status_of(r, conn, "log follower: " + sql);
  PQclear(r);
  return s;
}

}  // namespace

struct LogFollower::Impl {
  std::string url;
  std::function<void()> on_commit;
  std::function<void(const std::string&)> on_directory;
  PGconn* conn = nullptr;
  int wake_fd = -1;  // eventfd: local_commit() and stop
  std::atomic<bool> stop{false};
  std::atomic<bool> notify_pending{false};
  std::thread thread;

  ~Impl() {
    if (conn) PQfinish(conn);
    if (wake_fd >= 0) ::close(wake_fd);
  }
  void wake() {
    const uint64_t one = 1;
    (void)!::write(wake_fd, &one, sizeof one);
  }
  Status connect() {
    if (conn) PQfinish(conn);
    conn = PQconnectdb(url.c_str());
    if (PQstatus(conn) != CONNECTION_OK)
      return Status(ErrorCode::kStorageIo,
                    std::string("log follower: cannot connect: ") + pg_raw::one_line(PQerrorMessage(conn)),
                    true);
    return exec(conn, listen_sql());
  }
};

Result<std::unique_ptr<LogFollower>> LogFollower::start(
    const std::string& url, std::function<void()> on_commit,
    std::function<void(const std::string& payload)> on_directory) {
  auto impl = std::make_unique<Impl>();
  impl->url = url;
  impl->on_commit = std::move(on_commit);
  impl->on_directory = std::move(on_directory);
  impl->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (impl->wake_fd < 0) return Status(ErrorCode::kInternal, "log follower: eventfd failed");
  if (Status s = impl->connect(); !s) return s;
  std::unique_ptr<LogFollower> f(new LogFollower(std::move(impl)));
  LogFollower* self = f.get();
  self->impl_->thread = std::thread([self] {
    Impl& m = *self->impl_;
    int backoff_ms = kReconnectFirstMs;
    while (!m.stop) {
      if (PQstatus(m.conn) != CONNECTION_OK) {
        // Lost: wait, reconnect, and look at the log once, for what was committed meanwhile.
        pollfd p{m.wake_fd, POLLIN, 0};
        (void)::poll(&p, 1, backoff_ms);
        uint64_t drained = 0;
        (void)!::read(m.wake_fd, &drained, sizeof drained);
        if (m.stop) break;
        if (!m.connect()) {
          backoff_ms = std::min(backoff_ms * 2, kReconnectCapMs);
          continue;
        }
        backoff_ms = kReconnectFirstMs;
        self->reconnects_++;
        m.notify_pending = true;  // what this server committed while disconnected
        m.on_commit();
        if (m.on_directory) m.on_directory("*");
        continue;
      }
      // Notifications that arrived while our NOTIFY ran are already read into libpq's buffer: the socket
      // will not say so again, so they are taken before waiting.
      if (m.notify_pending.exchange(false) && exec(m.conn, notify_sql())) self->take_notifications();
      pollfd fds[2] = {{PQsocket(m.conn), POLLIN, 0}, {m.wake_fd, POLLIN, 0}};
      (void)::poll(fds, 2, kIdleWaitMs);
      if (fds[1].revents & POLLIN) {
        uint64_t drained = 0;
        (void)!::read(m.wake_fd, &drained, sizeof drained);
      }
      if (m.stop) break;
      if (!(fds[0].revents & (POLLIN | POLLERR | POLLHUP))) continue;
      if (PQconsumeInput(m.conn) == 0) continue;  // broken: PQstatus says so on the next turn
      self->take_notifications();
    }
  });
  return f;
}

LogFollower::LogFollower(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

void LogFollower::take_notifications() {
  Impl& m = *impl_;
  bool others = false;
  const int own = PQbackendPID(m.conn);
  std::vector<std::string> directory;
  while (PGnotify* n = PQnotifies(m.conn)) {
    if (std::string_view(n->relname) == kDirectoryChannel) {
      directory.emplace_back(n->extra ? n->extra : "");
    } else if (n->be_pid != own) {
      others = true;  // our own NOTIFY comes back to us too
    }
    PQfreemem(n);
  }
  if (m.on_directory)
    for (const std::string& payload : directory) m.on_directory(payload);
  if (!others) return;
  notifications_++;
  m.on_commit();
}

LogFollower::~LogFollower() {
  impl_->stop = true;
  impl_->wake();
  if (impl_->thread.joinable()) impl_->thread.join();
}

void LogFollower::local_commit() {
  if (!impl_->notify_pending.exchange(true)) impl_->wake();
}

Status notify_log(const std::string& url) {
  PGconn* conn = PQconnectdb(url.c_str());
  Status s = PQstatus(conn) == CONNECTION_OK
                 ? exec(conn, notify_sql())
                 : Status(ErrorCode::kStorageIo,
                          std::string("cannot connect: ") + pg_raw::one_line(PQerrorMessage(conn)), true);
  PQfinish(conn);
  return s;
}

}  // namespace fieldsync::server
