// fieldsync_with_server: runs a test program (the C test, the Java test) against a real fieldsync-server.
//
//   fieldsync_with_server COMMAND [ARGS...]
//
// Seeds a fresh data directory through the real Directory (fieldsync::server::Admin, as tests/e2e_test.cc
// does, with a low PBKDF2 work factor: tests only), starts fieldsync-server on it (--dev: a generated
// self-signed certificate) with tests/support/server_process.h, runs COMMAND with the environment below,
// prints its output, stops the server and exits with COMMAND's status (1 if the harness itself failed).
//
// The company: territory north with reps alice (node 0x2001) and bob (node 0x2002), passwords
// "<user>-password"; product P-1 "Flour" at 250 cents in price list retail (EUR). Environment for COMMAND:
//   FS_TEST_URL        wss://127.0.0.1:PORT/sync
//   FS_TEST_CA         the server's certificate (PEM) to trust
//   FS_TEST_DATA_DIR   the server's data directory (for fieldsync-admin --data-dir)
//   FS_TEST_ADMIN      the fieldsync-admin binary
//   FS_TEST_SCRATCH    an empty directory for replicas, removed afterwards
//   FS_TEST_PRODUCT    the record id of product P-1
#include <stdlib.h>

#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include "fieldsync/server/admin.h"
#include "support/server_process.h"

#ifndef FIELDSYNC_ADMIN_BIN
#error "FIELDSYNC_ADMIN_BIN must name the fieldsync-admin binary"
#endif

namespace {

using namespace fieldsync;
using namespace std::chrono_literals;

// The test program's own bound: a Java test on a JVM under a loaded CI machine needs far more than a
// condition poll.
constexpr std::chrono::milliseconds kProgramTimeout = 300s;

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool seed(const std::string& data_dir, std::string& product_id) {
  server::Admin::Options o;
  o.directory.pbkdf2_iterations = 1000;  // tests only
  auto admin = server::Admin::open(data_dir, o);
  auto check = [](const Status& s, const char* what) {
    if (!s.is_ok()) std::cerr << "with_server: " << what << ": " << s.to_string() << '\n';
    return s.is_ok();
  };
  if (!check(admin.status(), "open the data directory")) return false;
  server::Directory& dir = (*admin)->directory();
  const int64_t now = wall_ms();
  if (!check(dir.add_territory({"north", "North"}), "territory")) return false;
  const std::pair<const char*, NodeId> reps[] = {{"alice", 0x2001}, {"bob", 0x2002}};
  for (const auto& [user, node] : reps) {
    if (!check(dir.add_user({user, user, schema::Role::kRep}, std::string(user) + "-password", now),
               "user") ||
        !check(dir.assign_territory(user, "north"), "assign") ||
        !check(dir.register_device(node, user, now), "device"))
      return false;
  }
  auto flour = (*admin)->add_product("P-1", "Flour", "bag");
  if (!check(flour.status(), "product")) return false;
  product_id = flour->to_string();
  return check((*admin)->set_price("P-1", "retail", 250, "EUR").status(), "price");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: fieldsync_with_server COMMAND [ARGS...]\n";
    return 2;
  }
  testsupport::TempDir tmp("mobile");
  const std::string data_dir = tmp.file("data"), scratch = tmp.file("scratch");
  std::filesystem::create_directories(scratch);
  std::string product_id;
  if (!seed(data_dir, product_id)) return 1;

  testsupport::ServerProcess server(data_dir, tmp.file("server"));
  if (testing::AssertionResult up = server.start(); !up) {
    std::cerr << "with_server: " << up.message() << '\n';
    return 1;
  }
  setenv("FS_TEST_URL", server.url().c_str(), 1);
  setenv("FS_TEST_CA", server.ca_file().c_str(), 1);
  setenv("FS_TEST_DATA_DIR", data_dir.c_str(), 1);
  setenv("FS_TEST_ADMIN", FIELDSYNC_ADMIN_BIN, 1);
  setenv("FS_TEST_SCRATCH", scratch.c_str(), 1);
  setenv("FS_TEST_PRODUCT", product_id.c_str(), 1);

  std::vector<std::string> command(argv + 1, argv + argc);
  testsupport::Child program;
  const std::string out = tmp.file("program.out"), err = tmp.file("program.err");
  if (!program.spawn(command, out, err)) {
    std::cerr << "with_server: cannot start " << command[0] << '\n';
    return 1;
  }
  std::optional<testsupport::ExitStatus> status = program.wait_for(kProgramTimeout);
  std::cout << testsupport::slurp(out);
  std::cerr << testsupport::slurp(err);
  int rc = 1;
  if (!status) {
    std::cerr << "with_server: " << command[0] << " did not finish within " << kProgramTimeout.count()
              << " ms\n";
    program.signal(SIGKILL);
  } else if (!status->exited) {
    std::cerr << "with_server: " << command[0] << " was killed by signal " << status->signal << '\n';
  } else {
    rc = status->code;
  }
  std::optional<testsupport::ExitStatus> stopped = server.terminate();
  if (rc != 0) std::cerr << "---- fieldsync-server stderr:\n" << server.stderr_text();
  if (!stopped || !stopped->exited || stopped->code != 0) {
    std::cerr << "with_server: the server did not stop cleanly\n" << server.stderr_text();
    if (rc == 0) rc = 1;
  }
  return rc;
}
