// Real processes for end-to-end tests: temporary directories, child processes (posix_spawn) and
// fieldsync-server on a data directory in development mode, waited for by its "listening on" line. Shared by
// tests/e2e_test.cc and the mobile-glue tests' server harness (mobile-glue/tests/with_server.cc).
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#ifndef FIELDSYNC_SERVER_BIN
#error "FIELDSYNC_SERVER_BIN must name the fieldsync-server binary"
#endif

extern char** environ;

namespace fieldsync::testsupport {

using namespace std::chrono_literals;

// The bound on any condition that normally holds within milliseconds: generous for a sanitized child on two
// shared cores, yet a hang still fails the test instead of the CI job.
constexpr std::chrono::milliseconds kWait = 30s;

inline std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Polls `done` every few milliseconds until it holds or `timeout` passes.
inline bool eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout = kWait) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
}

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "e2e") {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / ("fieldsync-" + prefix + "-XXXXXX")).string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }

 private:
  std::string path_;
};

// ---- Child processes

struct ExitStatus {
  bool exited = false;  // false: killed by a signal
  int code = -1;
  int signal = 0;
};

// One child process, stdin from /dev/null, stdout and stderr appended to files. posix_spawnp (a bare name is
// looked up in PATH: `java`, `qemu-aarch64`) rather than fork: the test process has transport threads
// running.
class Child {
 public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (running()) {
      ::kill(pid_, SIGKILL);
      wait_for(kWait);
    }
  }

  bool spawn(const std::vector<std::string>& argv, const std::string& out, const std::string& err) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const int rc = posix_spawnp(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) pid_ = -1;
    return rc == 0;
  }
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  void signal(int sig) {
    if (running()) ::kill(pid_, sig);
  }
  // The exit status once the child ended (reaped), or nothing while it still runs.
  std::optional<ExitStatus> poll() {
    if (!running()) return std::nullopt;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) != pid_) return std::nullopt;
    pid_ = -1;
    ExitStatus e;
    e.exited = WIFEXITED(status);
    if (e.exited) e.code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) e.signal = WTERMSIG(status);
    return e;
  }
  std::optional<ExitStatus> wait_for(std::chrono::milliseconds timeout) {
    std::optional<ExitStatus> e;
    eventually([&] { return (e = poll()).has_value(); }, timeout);
    return e;
  }

 private:
  pid_t pid_ = -1;
};

struct RunResult {
  ExitStatus status;
  std::string out, err;
};

// Runs a command to its end (bounded) and returns its exit status and output.
inline RunResult run(std::vector<std::string> argv, const TempDir& tmp) {
  static std::atomic<int> counter{0};
  const int n = counter++;
  const std::string out = tmp.file("run-" + std::to_string(n) + ".out"),
                    err = tmp.file("run-" + std::to_string(n) + ".err");
  Child c;
  RunResult r;
  if (!c.spawn(argv, out, err)) {
    ADD_FAILURE() << "cannot start " << argv[0];
    return r;
  }
  std::optional<ExitStatus> e = c.wait_for(kWait);
  EXPECT_TRUE(e.has_value()) << argv[0] << " did not finish";
  if (e) r.status = *e;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

// fieldsync-server on a data directory, in development mode (self-signed certificate in the data directory).
class ServerProcess {
 public:
  // stdout and stderr of every start are appended to `log_prefix`.out and .err.
  ServerProcess(std::string data_dir, const std::string& log_prefix)
      : data_dir_(std::move(data_dir)), out_(log_prefix + ".out"), err_(log_prefix + ".err") {}

  // Starts the server on 127.0.0.1:`port` (0: any free port) and waits for its "listening on" line.
  ::testing::AssertionResult start(uint16_t port = 0, std::vector<std::string> extra = {}) {
    if (child_.running()) return ::testing::AssertionFailure() << "already running";
    std::vector<std::string> argv = {FIELDSYNC_SERVER_BIN, "--dev",
                                     "--data-dir",         data_dir_,
                                     "--listen",           "127.0.0.1:" + std::to_string(port),
                                     "--threads",          "2",
                                     "--drain-timeout-ms", "5000"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    const size_t from = slurp(out_).size();
    if (!child_.spawn(argv, out_, err_)) return ::testing::AssertionFailure() << "cannot spawn the server";
    const std::string marker = "listening on wss://127.0.0.1:";
    std::optional<ExitStatus> died;
    const bool up = eventually([&] {
      std::string text = slurp(out_).substr(from);
      size_t at = text.find(marker);
      if (at != std::string::npos) {
        size_t end = text.find("/sync", at);
        if (end != std::string::npos) {
          port_ = static_cast<uint16_t>(std::stoi(text.substr(at + marker.size(), end - at - marker.size())));
          return true;
        }
      }
      return (died = child_.poll()).has_value();
    });
    if (!up || died)
      return ::testing::AssertionFailure()
             << "the server did not start (" << (died ? "exited" : "timeout") << "); stderr:\n"
             << slurp(err_);
    return ::testing::AssertionSuccess();
  }
  void kill9() {
    child_.signal(SIGKILL);
    std::optional<ExitStatus> e = child_.wait_for(kWait);
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->signal, SIGKILL);
  }
  // SIGTERM and the exit status (bounded).
  std::optional<ExitStatus> terminate() {
    child_.signal(SIGTERM);
    return child_.wait_for(kWait);
  }
  bool running() const { return child_.running(); }
  uint16_t port() const { return port_; }
  std::string url() const { return "wss://127.0.0.1:" + std::to_string(port_) + "/sync"; }
  std::string ca_file() const { return data_dir_ + "/dev-cert.pem"; }
  std::string stdout_text() const { return slurp(out_); }
  std::string stderr_text() const { return slurp(err_); }

 private:
  std::string data_dir_, out_, err_;
  Child child_;
  uint16_t port_ = 0;
};

}  // namespace fieldsync::testsupport
