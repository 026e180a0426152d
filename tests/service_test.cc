// The server's service layer: group commit in SyncService (every frame held until the store is durable, many
// pushes per flush, fail-stop when a flush fails), delayed refusals, metrics and structured logs; and the
// plain HTTPS endpoints of NetServer (/login, /metrics, /healthz) over real TLS on 127.0.0.1.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "fieldsync/client/ws_client.h"
#include "fieldsync/server/metrics.h"
#include "fieldsync/server/net_server.h"
#include "fieldsync/server/sync_service.h"
#include "fieldsync/server/tls.h"
#include "fieldsync/sync/codec.h"
#include "fieldsync/sync/record_id.h"
#include "fieldsync/sync/tuning.h"
#include "routes.h"
#include "support/forwarding_store.h"
#include "support/memory_store.h"
#include "support/test_pki.h"

namespace fieldsync {
namespace {

using namespace std::chrono_literals;
using schema::EntityId;
using server::Counter;
using server::Outbound;
using server::SyncService;
using testing_support::TestPki;
using testing_support::wall_now_ms;

// A central store whose commits need a sync(), which the test holds shut until it opens the gate: what an
// fsync that takes a while looks like to the service.
class GatedStore final : public testing_support::ForwardingCentralStore {
 public:
  GatedStore() : ForwardingCentralStore(inner) {}
  bool commits_need_sync() const override { return true; }

  Status sync() override {
    std::unique_lock lock(mu);
    ++entered;
    cv.notify_all();
    cv.wait(lock, [&] { return open || released > 0; });
    if (released > 0) --released;
    ++syncs;
    return fail_with;
  }
  void set_open(bool o) {
    std::lock_guard lock(mu);
    open = o;
    cv.notify_all();
  }
  void release_one() {  // lets exactly one waiting sync() finish
    std::lock_guard lock(mu);
    ++released;
    cv.notify_all();
  }
  bool wait_entered(int n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 5s, [&] { return entered >= n; });
  }

  MemoryCentralStore inner;
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  int released = 0;
  int entered = 0;
  int syncs = 0;
  Status fail_with;
};

class Captured {
 public:
  void operator()(Outbound o) {
    std::lock_guard lock(mu_);
    out_.push_back(std::move(o));
    cv_.notify_all();
  }
  std::vector<Outbound> all() {
    std::lock_guard lock(mu_);
    return out_;
  }
  size_t size() {
    std::lock_guard lock(mu_);
    return out_.size();
  }
  bool wait_for_size(size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return out_.size() >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Outbound> out_;
};

protocol::Message decode(const Outbound& o) {
  EXPECT_TRUE(o.frame != nullptr);
  Result<protocol::Message> m = codec::decode(*o.frame);
  EXPECT_TRUE(m.is_ok()) << m.status().to_string();
  return m.is_ok() ? m.value() : protocol::Message{};
}

std::vector<uint8_t> hello(NodeId node, const std::string& token,
                           uint32_t protocol_version = protocol::kProtocolVersion) {
  protocol::Hello h;
  h.protocol_version = protocol_version;
  h.schema_version = schema::kSchemaVersion;
  h.node = node;
  h.token = token;
  h.client_time_ms = wall_now_ms();
  return codec::encode(h);
}

// A push of `txns` transactions of `accounts` new accounts each (4 changes per account), created by `user`
// (created_by is required) in `territory`. Record ids are unique across calls with disjoint node sequences.
std::vector<uint8_t> push_accounts(NodeId node, uint64_t first_seq, int txns, int accounts,
                                   const std::string& territory, const std::string& user) {
  RecordIdGenerator ids(node);
  protocol::PushTxns p;
  p.request_id = first_seq;
  for (int t = 0; t < txns; ++t) {
    ClientTxn txn;
    txn.node = node;
    txn.node_seq = first_seq + static_cast<uint64_t>(t);
    txn.created_at_ms = wall_now_ms();
    Hlc hlc = make_hlc(wall_now_ms(), static_cast<uint16_t>(txn.node_seq));
    for (int a = 0; a < accounts; ++a) {
      const RecordId id = ids.next(wall_now_ms() + static_cast<int64_t>(txn.node_seq));
      auto change = [&](ChangeOp op, uint16_t field, Value v) {
        Change c{op, EntityId::kAccount, id, field};
        c.value = std::move(v);
        c.version = Version{hlc++, node};
        return c;
      };
      const std::string name = "Account " + std::to_string(txn.node_seq) + "." + std::to_string(a);
      txn.changes.push_back(change(ChangeOp::kCreate, 0, Value::null()));
      txn.changes.push_back(change(ChangeOp::kSet, 1, Value::text(name)));
      txn.changes.push_back(change(ChangeOp::kSet, 2, Value::text(territory)));
      txn.changes.push_back(change(ChangeOp::kSet, 10, Value::text(user)));
    }
    p.txns.push_back(std::move(txn));
  }
  return codec::encode(p);
}

std::vector<uint8_t> push_account(NodeId node, uint64_t node_seq, const std::string& territory,
                                  const std::string& user) {
  return push_accounts(node, node_seq, 1, 1, territory, user);
}

std::string rep_token(const std::string& user) {
  return server::DevAuthenticator::token(user, "rep", "north");
}

SyncService::Options quiet_options(server::Metrics* metrics = nullptr,
                                   std::vector<std::string>* log = nullptr, std::mutex* log_mu = nullptr) {
  SyncService::Options o;
  o.metrics = metrics;
  if (log != nullptr)
    o.log = [log, log_mu](const std::string& line) {
      std::lock_guard lock(*log_mu);
      log->push_back(line);
    };
  return o;
}

TEST(SyncServiceGroupCommit, EveryFrameWaitsForTheSyncAfterItsCommit) {
  GatedStore store;
  server::DevAuthenticator auth;
  Captured sink;
  SyncService service(store, auth, quiet_options(), std::ref(sink));
  ASSERT_TRUE(service.group_commit());

  service.connect(1, wall_now_ms());
  service.frame(1, hello(101, rep_token("alice")), wall_now_ms());
  ASSERT_TRUE(store.wait_entered(1));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(sink.size(), 0u) << "the Welcome waits for the flush like everything else";
  store.release_one();
  ASSERT_TRUE(sink.wait_for_size(1));
  EXPECT_TRUE(std::holds_alternative<protocol::Welcome>(decode(sink.all()[0])));

  service.frame(1, push_account(101, 1, "north", "alice"), wall_now_ms());
  ASSERT_TRUE(store.wait_entered(2));
  EXPECT_EQ(store.head_seq().value(), 1u) << "committed (visible) before it is durable";
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(sink.size(), 1u) << "no acknowledgement before the store is durable";
  store.release_one();
  ASSERT_TRUE(sink.wait_for_size(2));
  const protocol::Message ack = decode(sink.all()[1]);
  ASSERT_TRUE(std::holds_alternative<protocol::PushAck>(ack));
  EXPECT_EQ(std::get<protocol::PushAck>(ack).results.at(0).outcome, protocol::TxnOutcome::kApplied);
  store.set_open(true);
}

TEST(SyncServiceGroupCommit, PushesArrivingDuringAFlushShareTheNextOne) {
  GatedStore store;
  server::DevAuthenticator auth;
  Captured sink;
  server::Metrics metrics;
  SyncService service(store, auth, quiet_options(&metrics), std::ref(sink));
  store.set_open(true);
  for (SessionId s = 1; s <= 4; ++s) {
    service.connect(s, wall_now_ms());
    service.frame(s, hello(100 + s, rep_token("rep" + std::to_string(s))), wall_now_ms());
  }
  ASSERT_TRUE(sink.wait_for_size(4));
  store.set_open(false);
  const int syncs_before = store.syncs;
  const int entered_before = store.entered;

  // The first push's flush is in progress (held shut) while three more pushes arrive and commit.
  service.frame(1, push_account(101, 1, "north", "rep1"), wall_now_ms());
  ASSERT_TRUE(store.wait_entered(entered_before + 1));
  for (SessionId s = 2; s <= 4; ++s)
    service.frame(s, push_account(100 + s, 1, "north", "rep" + std::to_string(s)), wall_now_ms());
  EXPECT_EQ(store.head_seq().value(), 4u) << "commits go on while the disk flushes";
  store.release_one();  // the first flush: the first ack (and the live batches it caused)
  ASSERT_TRUE(store.wait_entered(entered_before + 2));
  store.release_one();  // one flush for the other three
  auto acks = [&] {
    size_t n = 0;
    for (const Outbound& o : sink.all())
      if (o.frame && std::holds_alternative<protocol::PushAck>(decode(o))) ++n;
    return n;
  };
  for (int i = 0; i < 200 && acks() < 4; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(acks(), 4u);
  EXPECT_EQ(store.syncs - syncs_before, 2) << "four pushes, two flushes";
  EXPECT_EQ(metrics.value(Counter::kTxns, "applied"), 4u);
  EXPECT_EQ(metrics.value(Counter::kChangesApplied), 16u);
  store.set_open(true);
}

// A flush bigger than one live scan is fanned out over several rounds; the flusher runs the next round even
// when the previous one found nothing for anybody and nothing else is waiting to be sent.
TEST(SyncServiceGroupCommit, AFanOutLeftPendingContinuesWithNothingElseHeld) {
  GatedStore store;
  server::DevAuthenticator auth;
  Captured sink;
  SyncService service(store, auth, quiet_options(), std::ref(sink));
  store.set_open(true);
  service.connect(1, wall_now_ms());
  service.frame(1, hello(101, rep_token("alice")), wall_now_ms());
  protocol::PullRequest pull;
  pull.request_id = 1;
  pull.live = true;
  service.frame(1, codec::encode(pull), wall_now_ms());
  service.connect(2, wall_now_ms());
  service.frame(2, hello(102, server::DevAuthenticator::token("bob", "rep", "south")), wall_now_ms());
  service.connect(3, wall_now_ms());
  service.frame(3, hello(103, rep_token("carol")), wall_now_ms());
  ASSERT_TRUE(sink.wait_for_size(4));  // three Welcomes and alice's pull answer

  // With the gate shut, bob commits more than one live scan of south (nothing for alice), then carol one
  // north account: every ack goes in the next flush, alice's live batch only in a round after it.
  store.set_open(false);
  const int entered = store.entered;
  service.frame(3, push_accounts(103, 1, 1, 1, "north", "carol"), wall_now_ms());  // opens a flush: held shut
  ASSERT_TRUE(store.wait_entered(entered + 1));
  const int pushes = static_cast<int>(tuning::kMaxChangesPerLiveScan / 4000 + 1);
  for (int i = 0; i < pushes; ++i)
    service.frame(2, push_accounts(102, 1 + static_cast<uint64_t>(i) * 10, 10, 100, "south", "bob"),
                  wall_now_ms());
  service.frame(3, push_accounts(103, 2, 1, 1, "north", "carol"), wall_now_ms());
  store.set_open(true);

  auto alice_accounts = [&] {
    size_t n = 0;
    for (const Outbound& o : sink.all()) {
      if (o.session != 1 || !o.frame) continue;
      const protocol::Message m = decode(o);
      if (const auto* b = std::get_if<protocol::ChangeBatch>(&m))
        for (const ServerTxn& t : b->txns) n += t.changes.size() / 4;
    }
    return n;
  };
  for (int i = 0; i < 400 && alice_accounts() < 2; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(alice_accounts(), 2u) << "carol's second account never reached alice live";
}

TEST(SyncServiceGroupCommit, FailedSyncSendsNothingItHeldAndFailsStop) {
  GatedStore store;
  server::DevAuthenticator auth;
  Captured sink;
  std::atomic<int> fatal{0};
  SyncService::Options o = quiet_options();
  o.on_fatal = [&](const Status& s) {
    EXPECT_EQ(s.code(), ErrorCode::kStorageIo);
    fatal++;
  };
  SyncService service(store, auth, o, std::ref(sink));
  store.set_open(true);
  service.connect(1, wall_now_ms());
  service.frame(1, hello(101, rep_token("alice")), wall_now_ms());
  ASSERT_TRUE(sink.wait_for_size(1));

  store.fail_with = Status(ErrorCode::kStorageIo, "fsync: I/O error");
  service.frame(1, push_account(101, 1, "north", "alice"), wall_now_ms());
  ASSERT_TRUE(sink.wait_for_size(2));
  const Outbound last = sink.all().back();
  EXPECT_EQ(last.frame, nullptr) << "the acknowledgement is never sent";
  EXPECT_TRUE(last.close_after);
  EXPECT_EQ(fatal.load(), 1);
}

TEST(SyncService, WithoutGroupCommitFramesLeaveAtOnce) {
  MemoryCentralStore store;
  server::DevAuthenticator auth;
  Captured sink;
  std::vector<std::string> log;
  std::mutex log_mu;
  server::Metrics metrics;
  SyncService service(store, auth, quiet_options(&metrics, &log, &log_mu), std::ref(sink));
  EXPECT_FALSE(service.group_commit());
  service.connect(1, wall_now_ms());
  service.frame(1, hello(101, rep_token("alice")), wall_now_ms());
  ASSERT_EQ(sink.size(), 1u);
  service.frame(1, push_account(101, 1, "north", "alice"), wall_now_ms());
  ASSERT_EQ(sink.size(), 2u);
  EXPECT_TRUE(std::holds_alternative<protocol::PushAck>(decode(sink.all()[1])));

  // One structured line per handshake and per push batch, with who and what.
  std::lock_guard lock(log_mu);
  ASSERT_GE(log.size(), 2u);
  EXPECT_NE(log[0].find("event=hello session=1 user=alice node=101"), std::string::npos) << log[0];
  EXPECT_NE(log[1].find("event=push session=1 user=alice node=101 request=1 txns=1 applied=1 rejected=0"),
            std::string::npos)
      << log[1];
  EXPECT_NE(log[1].find("durable_ms="), std::string::npos) << log[1];
  EXPECT_EQ(metrics.value(Counter::kHandshakes), 1u);
  EXPECT_EQ(metrics.value(Counter::kPushes), 1u);
}

// Protocol version 2 (issue 17): each session's frames are encoded for the version its Welcome named -- a v1
// device gets exactly the v1 bytes, a v2 device the compact and compressed forms -- with and without group
// commit (whose flusher encodes the held frames).
void expect_frames_per_session_version(CentralStore& store, bool group_commit) {
  server::DevAuthenticator auth;
  Captured sink;
  SyncService service(store, auth, quiet_options(), std::ref(sink));
  ASSERT_EQ(service.group_commit(), group_commit);
  const std::map<SessionId, uint32_t> versions{{1, 1}, {2, 2}};
  for (const auto& [session, version] : versions) {
    service.connect(session, wall_now_ms());
    service.frame(session, hello(100 + session, rep_token("rep" + std::to_string(session)), version),
                  wall_now_ms());
  }
  ASSERT_TRUE(sink.wait_for_size(2));
  // Enough accounts that the page and the live batches are well over the compression threshold.
  service.frame(2, push_accounts(102, 1, 4, 10, "north", "rep2"), wall_now_ms());
  ASSERT_TRUE(sink.wait_for_size(3));
  protocol::BootstrapRequest request;
  request.request_id = 9;
  for (const auto& [session, version] : versions)
    service.frame(session, codec::encode(request, version), wall_now_ms());
  std::map<SessionId, int> pages;
  for (int i = 0; i < 400 && (pages[1] == 0 || pages[2] == 0); ++i) {
    pages.clear();
    for (const Outbound& o : sink.all())
      if (o.frame && std::holds_alternative<protocol::BootstrapPage>(decode(o))) pages[o.session]++;
    if (pages[1] == 0 || pages[2] == 0) std::this_thread::sleep_for(5ms);
  }
  ASSERT_EQ(pages[1], 1);
  ASSERT_EQ(pages[2], 1);
  bool compressed = false;
  for (const Outbound& o : sink.all()) {
    if (!o.frame) continue;
    const protocol::Message m = decode(o);
    SCOPED_TRACE(std::string(protocol::message_name(m)) + " to session " + std::to_string(o.session));
    EXPECT_EQ(*o.frame, codec::encode(m, versions.at(o.session)));
    if (o.session == 1) {
      EXPECT_EQ(*o.frame, codec::encode(m));  // the v1 bytes
    }
    if (const auto* w = std::get_if<protocol::Welcome>(&m)) {
      EXPECT_EQ(w->protocol_version, versions.at(o.session));
    }
    compressed = compressed || (o.frame->size() >= 8 && std::memcmp(o.frame->data() + 4, "FSZ1", 4) == 0);
  }
  EXPECT_TRUE(compressed) << "the v2 session's page is compressed";
}

TEST(SyncService, EachSessionGetsTheFrameFormsOfItsProtocolVersion) {
  MemoryCentralStore store;
  expect_frames_per_session_version(store, false);
}

TEST(SyncServiceGroupCommit, HeldFramesAreEncodedForTheirSessionsVersion) {
  GatedStore store;
  store.set_open(true);
  expect_frames_per_session_version(store, true);
}

TEST(SyncService, RefusedHandshakeIsAnsweredLateAndRejectionsAreCountedByReason) {
  MemoryCentralStore store;
  server::DevAuthenticator auth;
  Captured sink;
  server::Metrics metrics;
  SyncService::Options o = quiet_options(&metrics);
  o.auth_failure_delay_ms = 750;
  SyncService service(store, auth, o, std::ref(sink));
  service.connect(1, wall_now_ms());
  service.frame(1, hello(101, "not-a-token"), wall_now_ms());
  std::vector<Outbound> out = sink.all();
  ASSERT_EQ(out.size(), 2u);
  const protocol::Message m = decode(out[0]);
  ASSERT_TRUE(std::holds_alternative<protocol::Error>(m));
  EXPECT_EQ(std::get<protocol::Error>(m).code, ErrorCode::kAuthFailed);
  EXPECT_EQ(out[0].delay_ms, 750);
  EXPECT_TRUE(out[1].close_after);
  EXPECT_EQ(metrics.value(Counter::kErrors, "auth_failed"), 1u);

  // An authenticated session's errors are not delayed; a rejected push is counted by its reason.
  service.connect(2, wall_now_ms());
  service.frame(2, hello(102, rep_token("bob")), wall_now_ms());
  service.frame(2, push_account(102, 1, "south", "bob"), wall_now_ms());  // bob's scope is north
  out = sink.all();
  const protocol::Message ack = decode(out.back());
  ASSERT_TRUE(std::holds_alternative<protocol::PushAck>(ack));
  EXPECT_EQ(std::get<protocol::PushAck>(ack).results.at(0).reason, ErrorCode::kOutOfScope);
  EXPECT_EQ(out.back().delay_ms, 0);
  EXPECT_EQ(metrics.value(Counter::kRejections, "out_of_scope"), 1u);
  EXPECT_EQ(metrics.value(Counter::kTxns, "rejected"), 1u);
  const std::string page = metrics.render();
  EXPECT_NE(page.find("fieldsync_rejections_total{reason=\"out_of_scope\"} 1\n"), std::string::npos) << page;
  EXPECT_NE(page.find("fieldsync_push_durable_seconds_count 1\n"), std::string::npos) << page;
}

// Hand-built frames with a valid token, as an attacker or another client would send them: a rep's account in
// someone else's name and one with a malformed e-mail are rejected by the model's rules, and nothing is
// stored.
TEST(SyncService, PushesInAnotherUsersNameOrWithABadValueAreRejected) {
  MemoryCentralStore store;
  server::DevAuthenticator auth;
  Captured sink;
  SyncService service(store, auth, quiet_options(), std::ref(sink));
  service.connect(1, wall_now_ms());
  service.frame(1, hello(101, rep_token("bob")), wall_now_ms());
  auto rejection = [&](std::vector<uint8_t> frame) {
    service.frame(1, std::move(frame), wall_now_ms());
    const protocol::Message ack = decode(sink.all().back());
    EXPECT_TRUE(std::holds_alternative<protocol::PushAck>(ack));
    return std::holds_alternative<protocol::PushAck>(ack) ? std::get<protocol::PushAck>(ack).results.at(0)
                                                          : protocol::TxnResult{};
  };
  protocol::TxnResult r = rejection(push_account(101, 1, "north", "head-office"));
  EXPECT_EQ(r.reason, ErrorCode::kPermissionDenied) << r.message;
  EXPECT_NE(r.message.find("field created_by"), std::string::npos) << r.message;

  Result<protocol::Message> valid = codec::decode(push_account(101, 2, "north", "bob"));
  ASSERT_TRUE(valid.is_ok());
  protocol::PushTxns bad_email = std::get<protocol::PushTxns>(valid.value());
  ASSERT_EQ(bad_email.txns.size(), 1u);
  Change email = bad_email.txns[0].changes.back();
  email.field = schema::fields::kAccountEmail;
  email.value = Value::text("bob at example.com");
  ++email.version.hlc;
  bad_email.txns[0].changes.push_back(email);
  r = rejection(codec::encode(bad_email));
  EXPECT_EQ(r.reason, ErrorCode::kValueInvalid) << r.message;
  EXPECT_NE(r.message.find("field email"), std::string::npos) << r.message;

  EXPECT_TRUE(store.log().empty());
  EXPECT_TRUE(store.records().empty());
}

TEST(Metrics, PrometheusTextWithRatesAndGauges) {
  server::Metrics m;
  m.add(Counter::kPushes, 3);
  m.add(Counter::kConflicts, 2, "concurrent_write");
  m.add(Counter::kConflicts, 1, "scheduling");
  m.observe_push_durable(0.004);
  m.observe_push_durable(0.2);
  m.gauge("fieldsync_store_size_bytes", "Size of the store.", [] { return 4096.0; });
  m.tick(1'000);
  m.add(Counter::kChangesApplied, 50);
  m.tick(11'000);
  const std::string page = m.render();
  EXPECT_NE(page.find("# TYPE fieldsync_pushes_total counter\nfieldsync_pushes_total 3\n"),
            std::string::npos);
  EXPECT_NE(page.find("fieldsync_conflicts_total{kind=\"concurrent_write\"} 2\n"), std::string::npos);
  EXPECT_NE(page.find("fieldsync_conflicts_total{kind=\"scheduling\"} 1\n"), std::string::npos);
  // Histogram buckets are cumulative and end with +Inf = count.
  EXPECT_NE(page.find("fieldsync_push_durable_seconds_bucket{le=\"0.005\"} 1\n"), std::string::npos) << page;
  EXPECT_NE(page.find("fieldsync_push_durable_seconds_bucket{le=\"0.25\"} 2\n"), std::string::npos);
  EXPECT_NE(page.find("fieldsync_push_durable_seconds_bucket{le=\"+Inf\"} 2\n"), std::string::npos);
  EXPECT_NE(page.find("fieldsync_changes_per_second 5\n"), std::string::npos) << "50 changes in 10 s";
  EXPECT_NE(page.find("fieldsync_store_size_bytes 4096\n"), std::string::npos);
  EXPECT_EQ(m.total(Counter::kConflicts), 3u);
}

// ---- HTTPS endpoints of NetServer

struct HttpReply {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;
};

// One HTTPS request on a fresh connection (the server closes after each plain HTTP answer). The server's
// certificate is not verified here: what is tested is what it answers.
HttpReply https(uint16_t port, std::string_view method, const std::string& target,
                const std::string& body = {}, const std::map<std::string, std::string>& headers = {}) {
  namespace net = boost::asio;
  namespace http = boost::beast::http;
  net::io_context ioc;
  net::ssl::context ctx(net::ssl::context::tls_client);
  ctx.set_verify_mode(net::ssl::verify_none);
  boost::beast::ssl_stream<boost::beast::tcp_stream> stream(ioc, ctx);
  boost::beast::get_lowest_layer(stream).expires_after(10s);
  boost::beast::get_lowest_layer(stream).connect(
      net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  stream.handshake(net::ssl::stream_base::client);
  http::request<http::string_body> req;
  req.method_string(method);  // any method, also made-up ones
  req.target(target);
  req.version(11);
  req.set(http::field::host, "127.0.0.1");
  for (const auto& [k, v] : headers) req.set(k, v);
  if (!body.empty() && headers.count("Content-Type") == 0)
    req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  http::write(stream, req);
  boost::beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  HttpReply r;
  r.status = static_cast<int>(res.result_int());
  r.body = res.body();
  for (const auto& f : res) r.headers[std::string(f.name_string())] = std::string(f.value());
  boost::system::error_code ignored;
  stream.shutdown(ignored);
  return r;
}
HttpReply https(uint16_t port, boost::beast::http::verb method, const std::string& target,
                const std::string& body = {}, const std::map<std::string, std::string>& headers = {}) {
  return https(port, boost::beast::http::to_string(method), target, body, headers);
}

class HttpEndpoints : public ::testing::Test {
 protected:
  void start(server::NetServerOptions o = {}) {
    o.address = "127.0.0.1";
    o.port = 0;
    o.threads = 2;
    o.cert_pem = TestPki::get().pem.cert_pem;
    o.key_pem = TestPki::get().pem.key_pem;
    o.drain_timeout_ms = 1000;
    o.log = [](const std::string&) {};
    if (!o.login)
      o.login = [this](const std::string& user, const std::string& password, NodeId node,
                       int64_t) -> Result<server::LoginGrant> {
        logins++;
        if (user == "alice" && password == "correct horse" && node == 42)
          return server::LoginGrant{"signed-token-for-alice", 1'900'000'000'000};
        return Status(ErrorCode::kAuthFailed, "authentication failed");
      };
    server_ = std::make_unique<server::NetServer>(store, auth, std::move(o));
    Result<uint16_t> p = server_->start();
    ASSERT_TRUE(p.is_ok()) << p.status().to_string();
    port = p.value();
  }
  ~HttpEndpoints() override {
    if (server_) server_->stop();
  }
  HttpReply login(const std::string& body) {
    return https(port, boost::beast::http::verb::post, "/login", body);
  }

  MemoryCentralStore store;
  server::DevAuthenticator auth;
  std::unique_ptr<server::NetServer> server_;
  uint16_t port = 0;
  std::atomic<int> logins{0};
};

TEST_F(HttpEndpoints, LoginIssuesATokenAndRefusesLateWithoutDetails) {
  server::NetServerOptions o;
  o.login_failure_delay_ms = 300;
  start(o);
  HttpReply ok = login(R"({"user":"alice","password":"correct horse","node":42})");
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_NE(ok.body.find(R"("token":"signed-token-for-alice")"), std::string::npos) << ok.body;
  EXPECT_NE(ok.body.find(R"("expires_at_ms":1900000000000)"), std::string::npos) << ok.body;
  EXPECT_EQ(ok.headers["Cache-Control"], "no-store");
  // Node ids use 64 bits: they may come as text.
  EXPECT_EQ(login(R"({"user":"alice","password":"correct horse","node":"42"})").status, 200);

  const auto t0 = std::chrono::steady_clock::now();
  HttpReply wrong = login(R"({"user":"alice","password":"wrong","node":42})");
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(wrong.body, "{\"error\":\"auth_failed\",\"message\":\"authentication failed\"}\n");
  EXPECT_GE(waited, 300ms) << "a failure is answered late";
  HttpReply unknown = login(R"({"user":"mallory","password":"x","node":42})");
  EXPECT_EQ(unknown.body, wrong.body) << "an unknown user reads exactly like a wrong password";

  EXPECT_EQ(login("not json").status, 400);
  EXPECT_EQ(login(R"({"user":"alice","password":"correct horse"})").status, 400) << "no node";
  EXPECT_EQ(login(R"({"user":"alice","password":7,"node":42})").status, 400);
  EXPECT_EQ(https(port, boost::beast::http::verb::get, "/login").status, 405);
  EXPECT_EQ(login(std::string(8000, ' ') + "{}").status, 413) << "bodies are capped";
  EXPECT_EQ(logins.load(), 4) << "malformed requests never reach the password check";
  EXPECT_EQ(server_->metrics().value(Counter::kLogins, "ok"), 2u);
  EXPECT_EQ(server_->metrics().value(Counter::kLogins, "failed"), 2u);
  EXPECT_EQ(server_->metrics().value(Counter::kLogins, "bad_request"), 3u);
}

TEST_F(HttpEndpoints, ClientCoreLoginOverTheSyncUrlsHostWithPinning) {
  server::NetServerOptions o;
  o.login_failure_delay_ms = 0;
  start(o);
  client::WsClientOptions wo;
  wo.url = "wss://127.0.0.1:" + std::to_string(port) + "/sync";
  wo.pin_sha256 = TestPki::get().pin;
  wo.connect_timeout_ms = 5000;
  client::LoginReply ok = client::login(wo, "alice", "correct horse", 42);
  ASSERT_TRUE(ok.ok()) << ok.to_string();
  EXPECT_EQ(ok.token, "signed-token-for-alice");
  EXPECT_EQ(ok.expires_at_ms, 1'900'000'000'000);

  client::LoginReply wrong = client::login(wo, "alice", "nope", 42);
  EXPECT_TRUE(wrong.transport.ok());
  EXPECT_EQ(wrong.status.code(), ErrorCode::kAuthFailed);
  EXPECT_TRUE(wrong.token.empty());
  EXPECT_EQ(client::login(wo, "alice", "correct horse", 43).status.code(), ErrorCode::kAuthFailed)
      << "another device";

  client::WsClientOptions bad_pin = wo;
  bad_pin.pin_sha256 = std::string(64, 'a');
  client::LoginReply pinned = client::login(bad_pin, "alice", "correct horse", 42);
  EXPECT_EQ(pinned.transport.code, client::WsError::kPinMismatch) << pinned.to_string();
  EXPECT_EQ(logins.load(), 3) << "a failed pin never sends the password";

  for (size_t i = 2; i < server::limits::kLoginFailuresPerWindow; ++i)
    ASSERT_EQ(client::login(wo, "alice", "guess", 42).status.code(), ErrorCode::kAuthFailed);
  client::LoginReply limited = client::login(wo, "alice", "correct horse", 42);
  EXPECT_EQ(limited.status.code(), ErrorCode::kRateLimited);
  EXPECT_TRUE(limited.status.retryable());
  EXPECT_EQ(limited.retry_after_s, 60);
}

TEST_F(HttpEndpoints, TooManyFailuresFromOneAddressAreThrottled) {
  server::NetServerOptions o;
  o.login_failure_delay_ms = 0;
  start(o);
  for (size_t i = 0; i < server::limits::kLoginFailuresPerWindow; ++i)
    ASSERT_EQ(login(R"({"user":"alice","password":"guess","node":42})").status, 401) << i;
  HttpReply throttled = login(R"({"user":"alice","password":"correct horse","node":42})");
  EXPECT_EQ(throttled.status, 429) << "even the right password waits out the window";
  EXPECT_EQ(throttled.headers["Retry-After"], "60");
  EXPECT_EQ(logins.load(), static_cast<int>(server::limits::kLoginFailuresPerWindow));
}

TEST_F(HttpEndpoints, MetricsAndHealth) {
  start();
  HttpReply health = https(port, boost::beast::http::verb::get, "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");
  HttpReply metrics = https(port, boost::beast::http::verb::get, "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.headers["Content-Type"], "text/plain; version=0.0.4");
  EXPECT_NE(metrics.body.find("fieldsync_http_requests_total{path=\"/healthz\"} 1\n"), std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("# TYPE fieldsync_push_durable_seconds histogram"), std::string::npos);
  EXPECT_EQ(https(port, boost::beast::http::verb::get, "/nope").status, 404);
}

TEST_F(HttpEndpoints, MetricsWithATokenNeedTheToken) {
  server::NetServerOptions o;
  o.metrics_token = "s3cret";
  start(o);
  EXPECT_EQ(https(port, boost::beast::http::verb::get, "/metrics").status, 403);
  EXPECT_EQ(
      https(port, boost::beast::http::verb::get, "/metrics", "", {{"Authorization", "Bearer wrong!"}}).status,
      403);
  EXPECT_EQ(
      https(port, boost::beast::http::verb::get, "/metrics", "", {{"Authorization", "Bearer s3cret"}}).status,
      200);
}

TEST_F(HttpEndpoints, RefusedSyncHandshakeArrivesAfterTheDelay) {
  server::NetServerOptions o;
  o.auth_failure_delay_ms = 400;
  start(o);
  client::WsClientOptions wo;
  wo.url = "wss://127.0.0.1:" + std::to_string(port) + "/sync";
  wo.pin_sha256 = TestPki::get().pin;
  wo.connect_timeout_ms = 3000;
  client::WsRawPeer peer(wo);
  ASSERT_TRUE(peer.connect().ok());
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(peer.send(hello(77, "dev:forged"), 2s).ok());
  std::vector<uint8_t> msg;
  client::WsStatus got = peer.receive(msg, 5s);
  ASSERT_TRUE(got.ok()) << got.to_string();
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 400ms);
  Result<protocol::Message> m = codec::decode(msg);
  ASSERT_TRUE(m.is_ok());
  ASSERT_TRUE(std::holds_alternative<protocol::Error>(m.value()));
  EXPECT_EQ(std::get<protocol::Error>(m.value()).code, ErrorCode::kAuthFailed);
  EXPECT_EQ(peer.receive(msg, 3s).code, client::WsError::kClosed);
}

TEST_F(HttpEndpoints, ASessionThatFloodsIsRateLimitedAndClosed) {
  // A small bucket, so the flood trips it long before the unread answers fill the write queue (the default
  // 400/s, burst 800, would need a flood the queue cap closes first under a sanitizer).
  server::NetServerOptions o;
  o.session_messages_per_second = 20;
  o.session_message_burst = 40;
  start(o);
  client::WsClientOptions wo;
  wo.url = "wss://127.0.0.1:" + std::to_string(port) + "/sync";
  wo.pin_sha256 = TestPki::get().pin;
  wo.connect_timeout_ms = 3000;
  client::WsRawPeer peer(wo);
  ASSERT_TRUE(peer.connect().ok());
  ASSERT_TRUE(peer.send(hello(78, rep_token("alice")), 2s).ok());
  std::vector<uint8_t> msg;
  ASSERT_TRUE(peer.receive(msg, 5s).ok());  // Welcome
  protocol::PullRequest pull;
  pull.live = false;
  const std::vector<uint8_t> frame = codec::encode(pull);
  // Far more than the burst, faster than the refill: the server answers kRateLimited and closes.
  const int flood = 120;
  for (int i = 0; i < flood; ++i)
    if (!peer.send(frame, 2s).ok()) break;
  bool limited = false;
  for (int i = 0; i < flood + 10; ++i) {
    client::WsStatus got = peer.receive(msg, 5s);
    if (!got.ok()) break;
    Result<protocol::Message> m = codec::decode(msg);
    ASSERT_TRUE(m.is_ok());
    if (const auto* e = std::get_if<protocol::Error>(&m.value())) {
      EXPECT_EQ(e->code, ErrorCode::kRateLimited);
      EXPECT_TRUE(e->retryable);
      limited = true;
      EXPECT_EQ(peer.receive(msg, 5s).code, client::WsError::kClosed);
      break;
    }
  }
  EXPECT_TRUE(limited);
  EXPECT_EQ(server_->metrics().value(Counter::kErrors, "rate_limited"), 1u);
}

// A device behind the log pulls page after page as fast as the answers come, which on a fast link beats any
// fixed rate: the pulls the server asks for (from the end of a batch with has_more) do not count against the
// limit. Repeating a pull from the same cursor is not one the server asked for, so a flood stays a flood.
TEST_F(HttpEndpoints, CatchUpPullsTheServerAsksForAreNotRateLimited) {
  server::NetServerOptions o;
  o.session_messages_per_second = 20;
  o.session_message_burst = 10;
  start(o);
  client::WsClientOptions wo;
  wo.url = "wss://127.0.0.1:" + std::to_string(port) + "/sync";
  wo.pin_sha256 = TestPki::get().pin;
  wo.connect_timeout_ms = 3000;
  auto decoded = [](const std::vector<uint8_t>& msg) {
    Result<protocol::Message> m = codec::decode(msg);
    EXPECT_TRUE(m.is_ok()) << m.status().to_string();
    return m.is_ok() ? m.value() : protocol::Message{};
  };
  std::vector<uint8_t> msg;
  const int txns = 60;  // one account each: a pull of 4 changes holds one, so 60 pulls
  {
    client::WsRawPeer bob(wo);
    ASSERT_TRUE(bob.connect().ok());
    ASSERT_TRUE(bob.send(hello(201, rep_token("bob")), 2s).ok());
    ASSERT_TRUE(bob.receive(msg, 5s).ok());  // Welcome
    ASSERT_TRUE(bob.send(push_accounts(201, 1, txns, 1, "north", "bob"), 2s).ok());
    ASSERT_TRUE(bob.receive(msg, 5s).ok());
    ASSERT_TRUE(std::holds_alternative<protocol::PushAck>(decoded(msg)));
  }

  client::WsRawPeer alice(wo);
  ASSERT_TRUE(alice.connect().ok());
  ASSERT_TRUE(alice.send(hello(202, rep_token("alice")), 2s).ok());
  ASSERT_TRUE(alice.receive(msg, 5s).ok());  // Welcome
  protocol::PullRequest pull;
  pull.max_changes = 4;
  pull.live = false;
  int pulls = 0, received = 0;
  for (bool more = true; more;) {
    pull.request_id = static_cast<uint64_t>(++pulls);
    ASSERT_TRUE(alice.send(codec::encode(pull), 2s).ok());
    ASSERT_TRUE(alice.receive(msg, 5s).ok()) << "pull " << pulls;
    protocol::Message m = decoded(msg);
    const auto* b = std::get_if<protocol::ChangeBatch>(&m);
    ASSERT_NE(b, nullptr) << "pull " << pulls << " was not answered with a batch (rate limited?)";
    received += static_cast<int>(b->txns.size());
    pull.cursor = b->to_cursor;
    more = b->has_more;
  }
  EXPECT_EQ(received, txns);
  EXPECT_GE(pulls, txns) << "pages of one transaction";
  EXPECT_EQ(server_->metrics().value(Counter::kErrors, "rate_limited"), 0u);

  // Pulls from the start again and again, all sent at once: none continues a batch, every one is charged.
  client::WsRawPeer greedy(wo);
  ASSERT_TRUE(greedy.connect().ok());
  ASSERT_TRUE(greedy.send(hello(203, rep_token("carol")), 2s).ok());
  ASSERT_TRUE(greedy.receive(msg, 5s).ok());  // Welcome
  pull.cursor = 0;
  const std::vector<uint8_t> frame = codec::encode(pull);
  for (int i = 0; i < txns; ++i)
    if (!greedy.send(frame, 2s).ok()) break;
  bool limited = false;
  for (int i = 0; i < txns + 1 && !limited; ++i) {
    if (!greedy.receive(msg, 5s).ok()) break;
    const protocol::Message m = decoded(msg);
    if (const auto* e = std::get_if<protocol::Error>(&m); e != nullptr) {
      EXPECT_EQ(e->code, ErrorCode::kRateLimited);
      limited = true;
    }
  }
  EXPECT_TRUE(limited) << "pipelined pulls must still hit the limit";
}

// ---- The server tested as an attacker would (issue 16, section 6)

// Thirty wrong passwords sent at once from one address: attempts count when they arrive, so the ones past
// the limit are answered 429 without reaching the password check, even while the first ones are still in the
// KDF (before, failures counted only when answered, so all thirty got 401).
TEST_F(HttpEndpoints, ConcurrentWrongPasswordsFromOneAddressAreThrottled) {
  server::NetServerOptions o;
  o.login_failure_delay_ms = 300;
  o.login = [this](const std::string&, const std::string&, NodeId, int64_t) -> Result<server::LoginGrant> {
    logins++;
    std::this_thread::sleep_for(20ms);  // a KDF's worth: the attempts overlap
    return Status(ErrorCode::kAuthFailed, "authentication failed");
  };
  start(o);
  const int attempts = 30;
  std::vector<int> status(attempts, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < attempts; ++i)
    threads.emplace_back([&, i] {
      try {
        status[static_cast<size_t>(i)] = login(R"({"user":"alice","password":"guess","node":42})").status;
      } catch (const std::exception&) {
        status[static_cast<size_t>(i)] = -1;
      }
    });
  for (std::thread& t : threads) t.join();
  const auto n = [&](int code) { return std::count(status.begin(), status.end(), code); };
  EXPECT_EQ(n(401), static_cast<long>(server::limits::kLoginFailuresPerWindow));
  EXPECT_EQ(n(429), attempts - static_cast<long>(server::limits::kLoginFailuresPerWindow));
  EXPECT_EQ(logins.load(), static_cast<int>(server::limits::kLoginFailuresPerWindow))
      << "throttled attempts never reach the password check";
}

// Every path answers only its methods: another method on a path that exists is 405 with Allow, an unknown
// path 404 (before, /metrics and /healthz answered 200 to any method).
TEST_F(HttpEndpoints, OnlyTheRoutesMethodsAreAnswered) {
  start();
  for (const char* path : {"/metrics", "/healthz"}) {
    for (const char* method : {"OPTIONS", "TRACE", "DELETE", "POST", "PUT", "HEAD", "BREW"}) {
      HttpReply r = https(port, method, path);
      EXPECT_EQ(r.status, 405) << method << " " << path;
      EXPECT_EQ(r.headers["Allow"], "GET") << method << " " << path;
    }
    EXPECT_EQ(https(port, "GET", path).status, 200) << path;
  }
  HttpReply login_get = https(port, "GET", "/login");
  EXPECT_EQ(login_get.status, 405);
  EXPECT_EQ(login_get.headers["Allow"], "POST");
  EXPECT_EQ(https(port, "TRACE", "/nope").status, 404);
  EXPECT_EQ(https(port, "GET", "/sync").status, 426) << "the sync path is a WebSocket";
}

// What a route says is checked before its handler runs: the content type of a body (415), the size of the
// headers (431).
TEST_F(HttpEndpoints, ARoutesContentTypeAndTheHeaderLimitAreCheckedFirst) {
  start();
  EXPECT_EQ(https(port, "POST", "/login", R"({"user":"alice","password":"correct horse","node":42})",
                  {{"Content-Type", "text/plain"}})
                .status,
            415);
  EXPECT_EQ(https(port, "POST", "/login", R"({"user":"alice","password":"correct horse","node":42})",
                  {{"Content-Type", "application/json; charset=utf-8"}})
                .status,
            200);
  EXPECT_EQ(logins.load(), 1) << "a refused content type never reaches the password check";
  EXPECT_EQ(https(port, "GET", "/healthz", "", {{"X-Padding", std::string(9000, 'x')}}).status, 431);
}

TEST(RouteTable, MethodAndPatternWithParametersAndAllow) {
  namespace http = boost::beast::http;
  server::RouteTable t;
  t.add({http::verb::get, "/accounts/{id}", server::RouteAuth::kPublic, 0, "", "/accounts/{id}", {}});
  t.add({http::verb::put,
         "/accounts/{id}",
         server::RouteAuth::kPublic,
         1024,
         "application/json",
         "/accounts/{id}",
         {}});
  t.add({http::verb::get, "/healthz", server::RouteAuth::kPublic, 0, "", "/healthz", {}});
  server::RouteTable::Match m = t.find(http::verb::put, "/accounts/a1b2?dry=1");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->body_limit, 1024u);
  EXPECT_EQ(m.params["id"], "a1b2");
  m = t.find(http::verb::delete_, "/accounts/a1b2");
  EXPECT_EQ(m.route, nullptr);
  EXPECT_EQ(m.allow, "GET, PUT");
  EXPECT_EQ(m.label, "/accounts/{id}");
  m = t.find(http::verb::unknown, "/healthz");
  EXPECT_EQ(m.route, nullptr);
  EXPECT_EQ(m.allow, "GET");
  for (const char* path : {"/accounts", "/accounts/", "/accounts/a/b", "/nope", "", "healthz"}) {
    m = t.find(http::verb::get, path);
    EXPECT_EQ(m.route, nullptr) << path;
    EXPECT_TRUE(m.allow.empty()) << path;
  }
}

// One WebSocket message, in one frame, far over the 4 MiB limit: answered with a typed kMessageTooLarge and
// a close frame, counted among the errors (before, Beast refused the frame header with close code 1009 and
// no Error, logged as a read error).
TEST_F(HttpEndpoints, OneOversizedFrameGetsTheTypedErrorAndIsCounted) {
  start();
  namespace net = boost::asio;
  namespace beast = boost::beast;
  namespace websocket = beast::websocket;
  net::io_context ioc;
  net::ssl::context ctx(net::ssl::context::tls_client);
  ctx.set_verify_mode(net::ssl::verify_none);
  websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws(ioc, ctx);
  beast::get_lowest_layer(ws).expires_after(20s);
  beast::get_lowest_layer(ws).connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  ws.next_layer().handshake(net::ssl::stream_base::client);
  beast::get_lowest_layer(ws).expires_never();
  ws.handshake("127.0.0.1", "/sync");
  ws.binary(true);
  ws.auto_fragment(false);  // one frame whose header says 10 MiB
  const std::vector<uint8_t> big(10 << 20, 0x42);
  boost::system::error_code ec;
  ws.write(net::buffer(big), ec);  // the server reads and drops the rest while it closes
  beast::flat_buffer buffer;
  ws.read(buffer, ec);
  ASSERT_FALSE(ec) << "expected an Error frame, got " << ec.message() << " (close code " << ws.reason().code
                   << ")";
  const auto d = buffer.cdata();
  Result<protocol::Message> m = codec::decode(std::vector<uint8_t>(
      static_cast<const uint8_t*>(d.data()), static_cast<const uint8_t*>(d.data()) + d.size()));
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  ASSERT_TRUE(std::holds_alternative<protocol::Error>(m.value()));
  EXPECT_EQ(std::get<protocol::Error>(m.value()).code, ErrorCode::kMessageTooLarge);
  buffer.consume(buffer.size());
  ws.read(buffer, ec);
  EXPECT_EQ(ec, websocket::error::closed) << ec.message();
  EXPECT_EQ(server_->metrics().value(Counter::kErrors, "message_too_large"), 1u);
}

// Hundreds of pulls sent back to back by a peer that does not read its answers: when the write queue is
// full the session ends with a typed, retryable kRateLimited and a close frame, so the device can tell it
// from a network failure (before, the socket was cut without a word).
TEST_F(HttpEndpoints, ABurstThatFillsTheWriteQueueIsAnsweredWithATypedErrorAndAClose) {
  server::NetServerOptions o;
  o.max_queued_frames = 8;
  start(o);
  client::WsClientOptions wo;
  wo.url = "wss://127.0.0.1:" + std::to_string(port) + "/sync";
  wo.pin_sha256 = TestPki::get().pin;
  wo.connect_timeout_ms = 3000;
  std::vector<uint8_t> msg;
  {  // 500 changes to pull, so that every answer is a full page
    client::WsRawPeer bob(wo);
    ASSERT_TRUE(bob.connect().ok());
    ASSERT_TRUE(bob.send(hello(301, rep_token("bob")), 2s).ok());
    ASSERT_TRUE(bob.receive(msg, 5s).ok());  // Welcome
    ASSERT_TRUE(bob.send(push_accounts(301, 1, 5, 25, "north", "bob"), 2s).ok());
    ASSERT_TRUE(bob.receive(msg, 5s).ok());  // PushAck
  }
  client::WsRawPeer peer(wo);
  ASSERT_TRUE(peer.connect().ok());
  ASSERT_TRUE(peer.send(hello(302, rep_token("alice")), 2s).ok());
  ASSERT_TRUE(peer.receive(msg, 5s).ok());  // Welcome
  protocol::PullRequest pull;
  pull.live = false;
  const std::vector<uint8_t> frame = codec::encode(pull);
  const int burst = 300;
  for (int i = 0; i < burst; ++i)
    if (!peer.send(frame, 2s).ok()) break;
  int batches = 0;
  std::optional<protocol::Error> error;
  client::WsStatus end;
  for (;;) {
    end = peer.receive(msg, 5s);
    if (!end.ok()) break;
    Result<protocol::Message> m = codec::decode(msg);
    ASSERT_TRUE(m.is_ok());
    if (std::holds_alternative<protocol::ChangeBatch>(m.value())) ++batches;
    if (const auto* e = std::get_if<protocol::Error>(&m.value())) error = *e;
  }
  ASSERT_EQ(server_->overflow_closes(), 1u) << "the burst must fill the queue (" << batches << " batches)";
  EXPECT_EQ(end.code, client::WsError::kClosed) << "a close frame, not a cut: " << end.to_string();
  EXPECT_EQ(end.close_code, 1013) << "try again later";
  ASSERT_TRUE(error.has_value()) << "no typed error after " << batches << " batches";
  EXPECT_EQ(error->code, ErrorCode::kRateLimited);
  EXPECT_TRUE(error->retryable);
  EXPECT_EQ(server_->metrics().value(Counter::kErrors, "rate_limited"), 1u);
}

}  // namespace
}  // namespace fieldsync
