// The C ABI (include/fieldsync/fieldsync.h): noexcept shims over client-core's FieldClient and WsClient.
//
// Every exported function runs its body through `shim()`, which turns any exception into an fs_error
// (FS_API_OUT_OF_MEMORY, FS_API_INTERNAL), so nothing but plain C data leaves the library. Handle lifetime:
// an fs_client is valid from fs_client_open to fs_client_free; fs_client_close ends its use. Calls hold
// `life` shared, close takes it exclusively after the transport was stopped, so a call in progress on
// another thread finishes before the replica closes, and a later call sees `closed` and fails cleanly.
#include "fieldsync/fieldsync.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <shared_mutex>
#include <string>
#include <utility>

#include "fieldsync/client/field_client.h"
#include "fieldsync/client/ws_client.h"
#include "json_io.h"

// The structs are the ABI: the same layout on every target, 32- or 64-bit (no pointers, no size_t, 64-bit
// fields at 8-byte offsets), so a change here is a major version (fieldsync.h's promise).
static_assert(sizeof(fs_error) == 12 + FS_ERROR_MESSAGE_MAX && offsetof(fs_error, message) == 12);
static_assert(sizeof(fs_sync_status) == 48 && offsetof(fs_sync_status, pending_count) == 16 &&
              offsetof(fs_sync_status, bootstrap_total) == 40);

namespace {

using fieldsync::ErrorCode;
using fieldsync::Result;
using fieldsync::Status;
using fieldsync::client::FieldClient;
using fieldsync::client::WsClient;
using fieldsync::client::WsClientOptions;
using fieldsync::client::WsError;
using fieldsync::client::WsStatus;
namespace glue = fieldsync::glue;
namespace json = boost::json;

// Depth of callbacks running on this thread: functions that wait for the sync thread refuse to run inside
// one (the sync thread would wait for itself). `t_callback_client` is the client whose callback runs
// innermost: calls into that client need not take its `life` lock again (see Use).
thread_local int t_callback_depth = 0;
thread_local const fs_client* t_callback_client = nullptr;

class CallbackScope {
 public:
  explicit CallbackScope(const fs_client* c) : previous_(t_callback_client) {
    ++t_callback_depth;
    t_callback_client = c;
  }
  ~CallbackScope() {
    --t_callback_depth;
    t_callback_client = previous_;
  }
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;

 private:
  const fs_client* previous_;
};

// An error on its way out: filled by the shims, copied into the caller's fs_error (if any) at the boundary.
void set_error(fs_error* error, fs_error_domain domain, int32_t code, std::string_view message,
               bool retryable = false) noexcept {
  if (error == nullptr) return;
  error->domain = domain;
  error->code = code;
  error->retryable = retryable ? 1 : 0;
  const size_t n = std::min(message.size(), static_cast<size_t>(FS_ERROR_MESSAGE_MAX - 1));
  std::memcpy(error->message, message.data(), n);
  error->message[n] = '\0';
}

void api_error(fs_error* error, int32_t code, std::string_view message) noexcept {
  set_error(error, FS_DOMAIN_API, code, message);
}

void status_error(fs_error* error, const Status& s) noexcept {
  try {
    set_error(error, FS_DOMAIN_FIELDSYNC, static_cast<int32_t>(s.code()), s.to_string(), s.retryable());
  } catch (...) {
    set_error(error, FS_DOMAIN_FIELDSYNC, static_cast<int32_t>(s.code()), "(no message: out of memory)");
  }
}

void transport_error(fs_error* error, const WsStatus& s) noexcept {
  try {
    // Transport failures are worth retrying except a bad configuration or a stopped engine.
    const bool retryable = s.code != WsError::kBadUrl && s.code != WsError::kInvalidArgument &&
                           s.code != WsError::kStopped && s.code != WsError::kPinMismatch &&
                           s.code != WsError::kCertificate;
    set_error(error, FS_DOMAIN_TRANSPORT, static_cast<int32_t>(s.code), s.to_string(), retryable);
  } catch (...) {
    set_error(error, FS_DOMAIN_TRANSPORT, static_cast<int32_t>(s.code), "(no message: out of memory)");
  }
}

// Runs `body` (which returns bool and fills `error` itself on failure), turning exceptions into errors.
template <typename F>
bool shim(fs_error* error, F&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    api_error(error, FS_API_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    api_error(error, FS_API_INTERNAL, e.what());
  } catch (...) {
    api_error(error, FS_API_INTERNAL, "unknown exception");
  }
  return false;
}

char* copy_string(std::string_view s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p == nullptr) throw std::bad_alloc();
  std::memcpy(p, s.data(), s.size());
  p[s.size()] = '\0';
  return p;
}

void put_string(char** out, std::string_view s) {
  if (out) *out = copy_string(s);
}

bool need(const void* p, const char* name, fs_error* error) {
  if (p != nullptr) return true;
  api_error(error, FS_API_NULL_ARGUMENT, std::string(name) + " is NULL");
  return false;
}

bool input_failed(const glue::Input& in, fs_error* error) {
  api_error(error, FS_API_INVALID_ARGUMENT, in.error());
  return false;
}

}  // namespace

// ---- Handles

struct fs_config {
  std::string path, user, token, server_url, ca_file, pin_sha256, price_list, app_version;
  fieldsync::schema::Role role = fieldsync::schema::Role::kRep;
  uint64_t node = 0;
  int utc_offset_minutes = 0;
  int64_t reconnect_cap_ms = 0;
  int64_t connect_timeout_ms = 15'000;
  int64_t idle_timeout_ms = 60'000;
  bool synchronous_full = true;
};

namespace {

struct Callbacks {
  fs_records_changed_fn records_changed = nullptr;
  void* records_changed_data = nullptr;
  fs_progress_fn progress = nullptr;
  void* progress_data = nullptr;
  fs_conflict_fn conflict = nullptr;
  void* conflict_data = nullptr;
  fs_rejection_fn rejection = nullptr;
  void* rejection_data = nullptr;
  fs_synced_fn synced = nullptr;
  void* synced_data = nullptr;
  fs_error_fn error = nullptr;
  void* error_data = nullptr;
  fs_erased_fn erased = nullptr;
  void* erased_data = nullptr;
};

}  // namespace

struct fs_client {
  fs_config config;
  std::atomic<bool> closed{false};
  // Shared by every call using `client`; exclusive while close() destroys it.
  std::shared_mutex life;
  std::unique_ptr<FieldClient> client;

  std::mutex transport_mu;  // guards ws and one_shot, and `closed` against a concurrent start
  std::shared_ptr<WsClient> ws;
  bool one_shot = false;  // fs_sync_now's own connection is open

  std::mutex callbacks_mu;
  Callbacks callbacks;

  std::atomic<uint64_t> bootstrap_done{0}, bootstrap_total{0};

  Callbacks snapshot() {
    std::lock_guard lock(callbacks_mu);
    return callbacks;
  }
  WsClientOptions transport_options() {
    WsClientOptions o;
    o.url = config.server_url;
    o.ca_file = config.ca_file;
    o.pin_sha256 = config.pin_sha256;
    o.reconnect_cap_ms = config.reconnect_cap_ms;
    o.connect_timeout_ms = config.connect_timeout_ms;
    o.idle_timeout_ms = config.idle_timeout_ms;
    return o;
  }
};

namespace {

// A call's hold on an open client: `life` shared and the client not closed.
class Use {
 public:
  Use(fs_client* c, fs_error* error) : c_(c) {
    if (c == nullptr) {
      api_error(error, FS_API_NULL_ARGUMENT, "client is NULL");
      return;
    }
    // Checked before locking too: a call from the transport thread while close() waits for it must not queue
    // behind close()'s exclusive lock.
    if (c->closed.load()) {
      api_error(error, FS_API_CLOSED, "the client is closed");
      return;
    }
    // Inside one of its own callbacks the client cannot go away: an app write's callback runs under that
    // call's own hold, and close() joins the sync thread before taking `life`. Not locking again avoids a
    // recursive shared lock, which may deadlock behind a waiting close().
    if (t_callback_client == c) {
      ok_ = c->client != nullptr;
      if (!ok_) api_error(error, FS_API_CLOSED, "the client is closed");
      return;
    }
    lock_ = std::shared_lock(c->life);
    if (c->closed.load() || !c->client) {
      lock_.unlock();
      api_error(error, FS_API_CLOSED, "the client is closed");
      return;
    }
    ok_ = true;
  }
  explicit operator bool() const { return ok_; }
  FieldClient& operator*() const { return *c_->client; }
  FieldClient* operator->() const { return c_->client.get(); }

 private:
  fs_client* c_;
  std::shared_lock<std::shared_mutex> lock_;
  bool ok_ = false;
};

bool not_in_callback(const char* what, fs_error* error) {
  if (t_callback_depth == 0) return true;
  api_error(error, FS_API_IN_CALLBACK, std::string(what) + " may not be called from a callback");
  return false;
}

template <typename T>
bool result_out(Result<T>&& r, char** out, fs_error* error) {
  if (!r.is_ok()) {
    status_error(error, r.status());
    return false;
  }
  if constexpr (std::is_same_v<T, std::string>) {
    put_string(out, r.value());
  } else if constexpr (requires(const T& v) { v.begin(); }) {
    put_string(out, json::serialize(glue::to_json_array(r.value())));
  } else {
    put_string(out, json::serialize(glue::to_json(r.value())));
  }
  return true;
}

bool status_out(const Status& s, fs_error* error) {
  if (s.is_ok()) return true;
  status_error(error, s);
  return false;
}

fs_error status_as_fs_error(const Status& s) {
  fs_error e{};
  status_error(&e, s);
  return e;
}

void install_observer(fs_client* c) {
  fieldsync::client::Observer o;
  o.records_changed = [c](const std::vector<fieldsync::RecordKey>& keys) {
    Callbacks cb = c->snapshot();
    if (!cb.records_changed) return;
    const std::string text = json::serialize(glue::to_json_array(keys));
    CallbackScope scope(c);
    cb.records_changed(cb.records_changed_data, text.c_str());
  };
  o.sync_progress = [c](uint64_t done, uint64_t total) {
    c->bootstrap_done = done;
    c->bootstrap_total = total;
    Callbacks cb = c->snapshot();
    if (!cb.progress) return;
    CallbackScope scope(c);
    cb.progress(cb.progress_data, FS_PROGRESS_BOOTSTRAP, done, total);
  };
  o.push_progress = [c](uint64_t done, uint64_t total) {
    Callbacks cb = c->snapshot();
    if (!cb.progress) return;
    CallbackScope scope(c);
    cb.progress(cb.progress_data, FS_PROGRESS_PUSH, done, total);
  };
  o.conflict = [c](const fieldsync::ConflictRecord& record) {
    Callbacks cb = c->snapshot();
    if (!cb.conflict) return;
    const std::string text = json::serialize(glue::to_json(record));
    CallbackScope scope(c);
    cb.conflict(cb.conflict_data, text.c_str());
  };
  o.rejection = [c](const fieldsync::Rejection& rejection) {
    Callbacks cb = c->snapshot();
    if (!cb.rejection) return;
    const std::string text = json::serialize(glue::to_json(rejection));
    CallbackScope scope(c);
    cb.rejection(cb.rejection_data, text.c_str());
  };
  o.synced = [c] {
    Callbacks cb = c->snapshot();
    if (!cb.synced) return;
    CallbackScope scope(c);
    cb.synced(cb.synced_data);
  };
  o.error = [c](const Status& s) {
    Callbacks cb = c->snapshot();
    if (!cb.error) return;
    const fs_error e = status_as_fs_error(s);
    CallbackScope scope(c);
    cb.error(cb.error_data, &e);
  };
  o.erased = [c](const Status& s) {
    Callbacks cb = c->snapshot();
    if (!cb.erased) return;
    const fs_error e = status_as_fs_error(s);
    CallbackScope scope(c);
    cb.erased(cb.erased_data, &e);
  };
  c->client->add_observer(std::move(o));
}

// Observers throwing (out of memory while building a JSON text) must not unwind through the transport thread.
void dispatch(FieldClient& client) noexcept {
  try {
    client.dispatch_events();
  } catch (...) {
  }
}

template <typename Fn>
bool set_callback(fs_client* c, fs_error* error, Fn&& assign) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use) return false;
    std::lock_guard lock(c->callbacks_mu);
    assign(c->callbacks);
    return true;
  });
}

}  // namespace

// ---- Exported functions

extern "C" {

FS_API uint32_t fs_abi_version(void) {
  return FS_ABI_VERSION;
}

FS_API void fs_string_free(char* s) {
  std::free(s);
}

FS_API fs_config* fs_config_new(fs_error* error) {
  fs_config* out = nullptr;
  shim(error, [&] {
    out = new fs_config();
    return true;
  });
  return out;
}

FS_API void fs_config_free(fs_config* config) {
  delete config;
}

FS_API bool fs_config_set_text(fs_config* config, fs_option option, const char* value, fs_error* error) {
  return shim(error, [&] {
    if (!need(config, "config", error)) return false;
    const std::string v = value ? value : "";
    switch (option) {
      case FS_OPT_PATH:
        config->path = v;
        return true;
      case FS_OPT_USER:
        config->user = v;
        return true;
      case FS_OPT_TOKEN:
        config->token = v;
        return true;
      case FS_OPT_SERVER_URL:
        config->server_url = v;
        return true;
      case FS_OPT_CA_FILE:
        config->ca_file = v;
        return true;
      case FS_OPT_PIN_SHA256:
        config->pin_sha256 = v;
        return true;
      case FS_OPT_PRICE_LIST:
        config->price_list = v;
        return true;
      case FS_OPT_APP_VERSION:
        // Checked here, where the app sets it, rather than at every handshake the server would refuse.
        if (v.size() > 64 || std::any_of(v.begin(), v.end(), [](char c) { return c < 0x20 || c > 0x7e; })) {
          api_error(error, FS_API_INVALID_ARGUMENT,
                    "app version must be at most 64 bytes of printable ASCII");
          return false;
        }
        config->app_version = v;
        return true;
      case FS_OPT_ROLE: {
        if (v.empty()) {
          config->role = fieldsync::schema::Role::kRep;
          return true;
        }
        auto role = fieldsync::schema::role_from_string(v);
        if (!role) {
          api_error(error, FS_API_INVALID_ARGUMENT,
                    "role must be rep, manager or head_office, got '" + v + "'");
          return false;
        }
        config->role = *role;
        return true;
      }
      default:
        api_error(error, FS_API_UNKNOWN_ENUM, "not a text option: " + std::to_string(option));
        return false;
    }
  });
}

FS_API bool fs_config_set_int(fs_config* config, fs_option option, int64_t value, fs_error* error) {
  return shim(error, [&] {
    if (!need(config, "config", error)) return false;
    auto range = [&](int64_t lo, int64_t hi, const char* name) {
      if (value >= lo && value <= hi) return true;
      api_error(error, FS_API_INVALID_ARGUMENT,
                std::string(name) + " must be in " + std::to_string(lo) + ".." + std::to_string(hi) +
                    ", got " + std::to_string(value));
      return false;
    };
    switch (option) {
      case FS_OPT_NODE:
        config->node = static_cast<uint64_t>(value);
        return true;
      case FS_OPT_UTC_OFFSET_MINUTES:
        if (!range(-24 * 60, 24 * 60, "utc offset minutes")) return false;
        config->utc_offset_minutes = static_cast<int>(value);
        return true;
      case FS_OPT_RECONNECT_CAP_MS:
        if (!range(0, 24LL * 3600 * 1000, "reconnect cap ms")) return false;
        config->reconnect_cap_ms = value;
        return true;
      case FS_OPT_CONNECT_TIMEOUT_MS:
        if (!range(1, 3600LL * 1000, "connect timeout ms")) return false;
        config->connect_timeout_ms = value;
        return true;
      case FS_OPT_IDLE_TIMEOUT_MS:
        if (!range(1000, 24LL * 3600 * 1000, "idle timeout ms")) return false;
        config->idle_timeout_ms = value;
        return true;
      case FS_OPT_SYNCHRONOUS_FULL:
        if (!range(0, 1, "synchronous full")) return false;
        config->synchronous_full = value == 1;
        return true;
      default:
        api_error(error, FS_API_UNKNOWN_ENUM, "not an integer option: " + std::to_string(option));
        return false;
    }
  });
}

FS_API bool fs_login(const fs_config* config, const char* password, char** token_out, int64_t* expires_at_ms,
                     fs_error* error) {
  return shim(error, [&] {
    if (!need(config, "config", error) || !need(password, "password", error) ||
        !need(token_out, "token_out", error))
      return false;
    if (config->server_url.empty() || config->user.empty() || config->node == 0) {
      api_error(error, FS_API_BAD_STATE, "fs_login needs FS_OPT_SERVER_URL, FS_OPT_USER and FS_OPT_NODE");
      return false;
    }
    WsClientOptions o;
    o.url = config->server_url;
    o.ca_file = config->ca_file;
    o.pin_sha256 = config->pin_sha256;
    o.connect_timeout_ms = config->connect_timeout_ms;
    fieldsync::client::LoginReply r = fieldsync::client::login(o, config->user, password, config->node);
    if (!r.transport.ok()) {
      transport_error(error, r.transport);
      return false;
    }
    if (!r.status.is_ok()) {
      status_error(error, r.status);
      return false;
    }
    *token_out = copy_string(r.token);
    if (expires_at_ms) *expires_at_ms = r.expires_at_ms;
    return true;
  });
}

FS_API fs_client* fs_client_open(const fs_config* config, fs_error* error) {
  fs_client* out = nullptr;
  shim(error, [&] {
    if (!need(config, "config", error)) return false;
    if (config->path.empty() || config->user.empty()) {
      api_error(error, FS_API_INVALID_ARGUMENT, "fs_client_open needs FS_OPT_PATH and FS_OPT_USER");
      return false;
    }
    FieldClient::Options o;
    o.user = config->user;
    o.token = config->token;
    o.role = config->role;
    o.utc_offset_minutes = config->utc_offset_minutes;
    o.price_list = config->price_list;
    o.app_version = config->app_version;
    o.synchronous_full = config->synchronous_full;
    o.node = config->node;
    auto opened = FieldClient::open(config->path, std::move(o));
    if (!opened.is_ok()) {
      status_error(error, opened.status());
      return false;
    }
    auto c = std::make_unique<fs_client>();
    c->config = *config;
    c->client = std::move(opened.value());
    install_observer(c.get());
    out = c.release();
    return true;
  });
  return out;
}

FS_API bool fs_client_close(fs_client* c, fs_error* error) {
  return shim(error, [&] {
    if (!need(c, "client", error) || !not_in_callback("fs_client_close", error)) return false;
    std::shared_ptr<WsClient> ws;
    {
      std::lock_guard lock(c->transport_mu);
      if (c->closed.exchange(true)) return true;
      ws = std::move(c->ws);
    }
    // Stopped before taking `life`: the transport thread's callbacks may be inside a call holding it.
    if (ws) ws->stop();
    ws.reset();
    std::unique_lock lock(c->life);
    c->client.reset();
    return true;
  });
}

FS_API void fs_client_free(fs_client* c) {
  if (c == nullptr || t_callback_depth > 0) return;  // the header forbids freeing from a callback
  fs_client_close(c, nullptr);
  delete c;
}

FS_API bool fs_clear_revocation(const char* path, fs_error* error) {
  return shim(error, [&] {
    if (!need(path, "path", error)) return false;
    return status_out(FieldClient::clear_revocation(path), error);
  });
}

FS_API bool fs_client_node(fs_client* c, uint64_t* node_out, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(node_out, "node_out", error)) return false;
    *node_out = use->node();
    return true;
  });
}

// ---- Writes

FS_API bool fs_create_account(fs_client* c, const char* account_json, char** id_out, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use) return false;
    glue::Input in(account_json, "account_json");
    fieldsync::client::NewAccount a;
    a.name = in.text("name");
    a.territory_id = in.text("territory_id");
    a.address = in.opt_text("address");
    a.city = in.opt_text("city");
    a.phone = in.opt_text("phone");
    a.email = in.opt_text("email");
    a.segment = in.opt_text("segment");
    if (!in.finish()) return input_failed(in, error);
    return result_out(use->create_account(a), id_out, error);
  });
}

FS_API bool fs_edit_account(fs_client* c, const char* account_id, const char* edit_json, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(account_id, "account_id", error)) return false;
    glue::Input in(edit_json, "edit_json");
    fieldsync::client::AccountEdit e;
    e.name = in.opt_text("name");
    e.address = in.opt_text("address");
    e.city = in.opt_text("city");
    e.phone = in.opt_text("phone");
    e.email = in.opt_text("email");
    e.segment = in.opt_text("segment");
    e.add_note = in.opt_text("add_note");
    e.territory_id = in.opt_text("territory_id");
    if (!in.finish()) return input_failed(in, error);
    return status_out(use->edit_account(account_id, e), error);
  });
}

FS_API bool fs_create_contact(fs_client* c, const char* contact_json, char** id_out, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use) return false;
    glue::Input in(contact_json, "contact_json");
    fieldsync::client::NewContact n;
    n.account_id = in.text("account_id");
    n.name = in.text("name");
    n.title = in.opt_text("title");
    n.email = in.opt_text("email");
    n.phone = in.opt_text("phone");
    n.is_primary = in.opt_boolean("is_primary");
    if (!in.finish()) return input_failed(in, error);
    return result_out(use->create_contact(n), id_out, error);
  });
}

FS_API bool fs_edit_contact(fs_client* c, const char* contact_id, const char* edit_json, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(contact_id, "contact_id", error)) return false;
    glue::Input in(edit_json, "edit_json");
    fieldsync::client::ContactEdit e;
    e.name = in.opt_text("name");
    e.title = in.opt_text("title");
    e.email = in.opt_text("email");
    e.phone = in.opt_text("phone");
    e.is_primary = in.opt_boolean("is_primary");
    if (!in.finish()) return input_failed(in, error);
    return status_out(use->edit_contact(contact_id, e), error);
  });
}

FS_API bool fs_check_in(fs_client* c, const char* check_in_json, char** id_out, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use) return false;
    glue::Input in(check_in_json, "check_in_json");
    fieldsync::client::CheckIn ci;
    ci.account_id = in.text("account_id");
    ci.at_ms = in.opt_integer("at_ms");
    ci.latitude = in.opt_real("latitude");
    ci.longitude = in.opt_real("longitude");
    ci.calendar_event_id = in.opt_text("calendar_event_id");
    if (!in.finish()) return input_failed(in, error);
    return result_out(use->check_in(ci), id_out, error);
  });
}

FS_API bool fs_add_visit_note(fs_client* c, const char* visit_id, const char* text, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(visit_id, "visit_id", error) || !need(text, "text", error)) return false;
    return status_out(use->add_visit_note(visit_id, text), error);
  });
}

FS_API bool fs_check_out(fs_client* c, const char* visit_id, const char* outcome, const int64_t* at_ms,
                         fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(visit_id, "visit_id", error) || !need(outcome, "outcome", error)) return false;
    std::optional<int64_t> at;
    if (at_ms) at = *at_ms;
    return status_out(use->check_out(visit_id, outcome, at), error);
  });
}

namespace {

bool read_line(glue::Input& in, fieldsync::client::NewLine& line) {
  line.product_id = in.text("product_id");
  line.quantity = in.opt_integer("quantity").value_or(1);
  line.unit_price_cents = in.opt_integer("unit_price_cents");
  line.discount_bp = in.opt_integer("discount_bp");
  line.note = in.opt_text("note");
  return in.finish();
}

}  // namespace

FS_API bool fs_draft_order(fs_client* c, const char* account_id, const char* currency, const char* lines_json,
                           char** id_out, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(account_id, "account_id", error)) return false;
    std::vector<fieldsync::client::NewLine> lines;
    if (lines_json) {
      std::string problem;
      auto array = glue::parse_array(lines_json, "lines_json", problem);
      if (!array) {
        api_error(error, FS_API_INVALID_ARGUMENT, problem);
        return false;
      }
      for (size_t i = 0; i < array->size(); ++i) {
        glue::Input in((*array)[i].as_object(), "lines_json[" + std::to_string(i) + "]");
        fieldsync::client::NewLine line;
        if (!read_line(in, line)) return input_failed(in, error);
        lines.push_back(std::move(line));
      }
    }
    return result_out(use->draft_order_with_lines(account_id, currency ? currency : "EUR", lines), id_out,
                      error);
  });
}

FS_API bool fs_add_line(fs_client* c, const char* order_id, const char* line_json, char** id_out,
                        fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(order_id, "order_id", error)) return false;
    glue::Input in(line_json, "line_json");
    fieldsync::client::NewLine line;
    if (!read_line(in, line)) return input_failed(in, error);
    return result_out(use->add_line(order_id, line), id_out, error);
  });
}

FS_API bool fs_change_line(fs_client* c, const char* line_id, const char* edit_json, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(line_id, "line_id", error)) return false;
    glue::Input in(edit_json, "edit_json");
    fieldsync::client::LineEdit e;
    e.quantity = in.opt_integer("quantity");
    e.unit_price_cents = in.opt_integer("unit_price_cents");
    e.discount_bp = in.opt_integer("discount_bp");
    e.note = in.opt_text("note");
    if (!in.finish()) return input_failed(in, error);
    return status_out(use->change_line(line_id, e), error);
  });
}

FS_API bool fs_remove_line(fs_client* c, const char* line_id, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(line_id, "line_id", error)) return false;
    return status_out(use->remove_line(line_id), error);
  });
}

FS_API bool fs_submit_order(fs_client* c, const char* order_id, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(order_id, "order_id", error)) return false;
    return status_out(use->submit_order(order_id), error);
  });
}

FS_API bool fs_create_event(fs_client* c, const char* event_json, char** result_json, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use) return false;
    glue::Input in(event_json, "event_json");
    fieldsync::client::NewEvent e;
    e.title = in.text("title");
    e.start_at_ms = in.integer("start_at_ms");
    e.end_at_ms = in.integer("end_at_ms");
    e.account_id = in.opt_text("account_id");
    e.location = in.opt_text("location");
    e.opportunity_id = in.opt_text("opportunity_id");
    if (!in.finish()) return input_failed(in, error);
    return result_out(use->create_event(e), result_json, error);
  });
}

FS_API bool fs_move_event(fs_client* c, const char* event_id, int64_t start_at_ms, int64_t end_at_ms,
                          char** result_json, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(event_id, "event_id", error)) return false;
    return result_out(use->move_event(event_id, start_at_ms, end_at_ms), result_json, error);
  });
}

FS_API bool fs_cancel_event(fs_client* c, const char* event_id, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(event_id, "event_id", error)) return false;
    return status_out(use->cancel_event(event_id), error);
  });
}

FS_API bool fs_create_opportunity(fs_client* c, const char* opportunity_json, char** id_out,
                                  fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use) return false;
    glue::Input in(opportunity_json, "opportunity_json");
    fieldsync::client::NewOpportunity o;
    o.account_id = in.text("account_id");
    o.name = in.text("name");
    o.amount_cents = in.integer("amount_cents");
    if (auto v = in.opt_text("currency")) o.currency = *v;
    if (auto v = in.opt_text("stage")) o.stage = *v;
    o.expected_close_ms = in.opt_integer("expected_close_ms");
    if (!in.finish()) return input_failed(in, error);
    return result_out(use->create_opportunity(o), id_out, error);
  });
}

FS_API bool fs_move_opportunity(fs_client* c, const char* opportunity_id, const char* stage,
                                fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(opportunity_id, "opportunity_id", error) || !need(stage, "stage", error)) return false;
    return status_out(use->move_opportunity(opportunity_id, stage), error);
  });
}

// ---- Leads, service cases, assets, tasks

FS_API bool fs_create_lead(fs_client* c, const char* lead_json, char** id_out, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use) return false;
    glue::Input in(lead_json, "lead_json");
    fieldsync::client::NewLead l;
    l.person_name = in.text("person_name");
    l.source = in.text("source");
    l.territory_id = in.text("territory_id");
    l.company_name = in.opt_text("company_name");
    l.email = in.opt_text("email");
    l.phone = in.opt_text("phone");
    l.notes = in.opt_text("notes");
    if (!in.finish()) return input_failed(in, error);
    return result_out(use->create_lead(l), id_out, error);
  });
}

FS_API bool fs_lead_action(fs_client* c, const char* lead_id, fs_lead_op action, const char* text,
                           fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(lead_id, "lead_id", error)) return false;
    switch (action) {
      case FS_LEAD_CONTACTED:
        return status_out(use->mark_lead_contacted(lead_id), error);
      case FS_LEAD_QUALIFY:
        return status_out(use->qualify_lead(lead_id), error);
      case FS_LEAD_DISQUALIFY:
        return status_out(use->disqualify_lead(lead_id, text ? text : ""), error);
      case FS_LEAD_NOTE:
        if (!need(text, "text", error)) return false;
        return status_out(use->add_lead_note(lead_id, text), error);
      default:
        api_error(error, FS_API_UNKNOWN_ENUM, "unknown lead action " + std::to_string(action));
        return false;
    }
  });
}

FS_API bool fs_convert_lead(fs_client* c, const char* lead_id, const char* conversion_json,
                            char** result_json, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(lead_id, "lead_id", error)) return false;
    fieldsync::client::LeadConversion conv;
    if (conversion_json != nullptr) {
      glue::Input in(conversion_json, "conversion_json");
      conv.existing_account_id = in.opt_text("existing_account_id");
      conv.account_name = in.opt_text("account_name");
      if (auto v = in.opt_text("opportunity_name")) conv.opportunity_name = *v;
      if (auto v = in.opt_integer("amount_cents")) conv.amount_cents = *v;
      if (auto v = in.opt_text("currency")) conv.currency = *v;
      conv.expected_close_ms = in.opt_integer("expected_close_ms");
      if (!in.finish()) return input_failed(in, error);
    }
    return result_out(use->convert_lead(lead_id, conv), result_json, error);
  });
}

FS_API bool fs_open_case(fs_client* c, const char* case_json, char** id_out, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use) return false;
    glue::Input in(case_json, "case_json");
    fieldsync::client::NewServiceCase n;
    n.account_id = in.text("account_id");
    n.subject = in.text("subject");
    if (auto v = in.opt_text("priority")) n.priority = *v;
    n.contact_id = in.opt_text("contact_id");
    n.asset_id = in.opt_text("asset_id");
    n.take = in.opt_boolean("take").value_or(false);
    if (!in.finish()) return input_failed(in, error);
    return result_out(use->open_case(n), id_out, error);
  });
}

FS_API bool fs_case_action(fs_client* c, const char* case_id, fs_case_op action, const char* text,
                           fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(case_id, "case_id", error)) return false;
    switch (action) {
      case FS_CASE_TAKE:
        return status_out(use->take_case(case_id), error);
      case FS_CASE_START:
        return status_out(use->start_case(case_id), error);
      case FS_CASE_RESOLVE:
        return status_out(use->resolve_case(case_id, text ? text : ""), error);
      case FS_CASE_CLOSE:
        return status_out(use->close_case(case_id), error);
      case FS_CASE_REOPEN:
        return status_out(use->reopen_case(case_id), error);
      case FS_CASE_DISPATCH:
        if (!need(text, "text (the rep)", error)) return false;
        return status_out(use->dispatch_case(case_id, text), error);
      case FS_CASE_NOTE:
        if (!need(text, "text", error)) return false;
        return status_out(use->add_case_note(case_id, text), error);
      default:
        api_error(error, FS_API_UNKNOWN_ENUM, "unknown case action " + std::to_string(action));
        return false;
    }
  });
}

FS_API bool fs_register_asset(fs_client* c, const char* asset_json, char** id_out, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use) return false;
    glue::Input in(asset_json, "asset_json");
    fieldsync::client::NewAsset a;
    a.account_id = in.text("account_id");
    a.serial_number = in.text("serial_number");
    a.product_id = in.opt_text("product_id");
    a.installed_at_ms = in.opt_integer("installed_at_ms");
    a.warranty_end_at_ms = in.opt_integer("warranty_end_at_ms");
    a.notes = in.opt_text("notes");
    if (!in.finish()) return input_failed(in, error);
    return result_out(use->register_asset(a), id_out, error);
  });
}

FS_API bool fs_create_task(fs_client* c, const char* task_json, char** id_out, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use) return false;
    glue::Input in(task_json, "task_json");
    fieldsync::client::NewTask t;
    t.title = in.text("title");
    t.due_at_ms = in.opt_integer("due_at_ms");
    t.remind_at_ms = in.opt_integer("remind_at_ms");
    t.account_id = in.opt_text("account_id");
    t.opportunity_id = in.opt_text("opportunity_id");
    t.lead_id = in.opt_text("lead_id");
    t.service_case_id = in.opt_text("service_case_id");
    t.notes = in.opt_text("notes");
    if (!in.finish()) return input_failed(in, error);
    return result_out(use->create_task(t), id_out, error);
  });
}

FS_API bool fs_task_action(fs_client* c, const char* task_id, fs_task_op action, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(task_id, "task_id", error)) return false;
    switch (action) {
      case FS_TASK_COMPLETE:
        return status_out(use->complete_task(task_id), error);
      case FS_TASK_CANCEL:
        return status_out(use->cancel_task(task_id), error);
      case FS_TASK_REOPEN:
        return status_out(use->reopen_task(task_id), error);
      default:
        api_error(error, FS_API_UNKNOWN_ENUM, "unknown task action " + std::to_string(action));
        return false;
    }
  });
}

// ---- Reads

FS_API bool fs_get(fs_client* c, fs_record_kind kind, const char* id, char** json_out, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(id, "id", error) || !need(json_out, "json_out", error)) return false;
    switch (kind) {
      case FS_RECORD_ACCOUNT:
        return result_out(use->account(id), json_out, error);
      case FS_RECORD_VISIT:
        return result_out(use->visit(id), json_out, error);
      case FS_RECORD_ORDER:
        return result_out(use->order(id), json_out, error);
      case FS_RECORD_EVENT:
        return result_out(use->event(id), json_out, error);
      case FS_RECORD_OPPORTUNITY:
        return result_out(use->opportunity(id), json_out, error);
      case FS_RECORD_LEAD:
        return result_out(use->lead(id), json_out, error);
      case FS_RECORD_SERVICE_CASE:
        return result_out(use->service_case(id), json_out, error);
      case FS_RECORD_ASSET:
        return result_out(use->asset(id), json_out, error);
      case FS_RECORD_TASK:
        return result_out(use->task(id), json_out, error);
      default:
        api_error(error, FS_API_UNKNOWN_ENUM, "unknown record kind " + std::to_string(kind));
        return false;
    }
  });
}

FS_API bool fs_list(fs_client* c, fs_listing listing, const char* arg, char** json_out, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(json_out, "json_out", error)) return false;
    auto unread = [&]() -> std::optional<bool> {
      if (arg == nullptr) return false;
      if (std::string_view(arg) == "unread") return true;
      api_error(error, FS_API_INVALID_ARGUMENT, "arg must be \"unread\" or NULL");
      return std::nullopt;
    };
    switch (listing) {
      case FS_LIST_ACCOUNTS_BY_PREFIX:
        return result_out(use->accounts_by_prefix(arg ? arg : ""), json_out, error);
      case FS_LIST_ACCOUNTS_IN_TERRITORY:
        if (!need(arg, "arg (territory id)", error)) return false;
        return result_out(use->accounts_in_territory(arg), json_out, error);
      case FS_LIST_VISITS_OF_ACCOUNT:
        if (!need(arg, "arg (account id)", error)) return false;
        return result_out(use->visits_of_account(arg), json_out, error);
      case FS_LIST_TODAYS_VISITS:
        return result_out(use->todays_visits(), json_out, error);
      case FS_LIST_OPEN_ORDERS:
        return result_out(use->open_orders(), json_out, error);
      case FS_LIST_AGENDA_TODAY:
        return result_out(use->agenda_today(), json_out, error);
      case FS_LIST_AGENDA_WEEK:
        return result_out(use->agenda_week(), json_out, error);
      case FS_LIST_PIPELINE:
        return result_out(use->pipeline(), json_out, error);
      case FS_LIST_CONFLICTS:
        return result_out(use->conflicts(), json_out, error);
      case FS_LIST_REJECTIONS:
        return result_out(use->rejections(), json_out, error);
      case FS_LIST_CONFLICT_INBOX: {
        auto u = unread();
        return u && result_out(use->conflict_inbox(*u), json_out, error);
      }
      case FS_LIST_REJECTION_INBOX: {
        auto u = unread();
        return u && result_out(use->rejection_inbox(*u), json_out, error);
      }
      case FS_LIST_MY_LEADS:
        return result_out(use->my_leads(), json_out, error);
      case FS_LIST_MY_CASES:
        return result_out(use->my_cases(), json_out, error);
      case FS_LIST_OPEN_CASES_OF_ACCOUNT:
        if (!need(arg, "arg (account id)", error)) return false;
        return result_out(use->open_cases_of_account(arg), json_out, error);
      case FS_LIST_ASSETS_OF_ACCOUNT:
        if (!need(arg, "arg (account id)", error)) return false;
        return result_out(use->assets_of_account(arg), json_out, error);
      case FS_LIST_OPEN_TASKS:
        return result_out(use->open_tasks(), json_out, error);
      case FS_LIST_OVERDUE_TASKS:
        return result_out(use->overdue_tasks(), json_out, error);
      default:
        api_error(error, FS_API_UNKNOWN_ENUM, "unknown listing " + std::to_string(listing));
        return false;
    }
  });
}

FS_API bool fs_agenda(fs_client* c, int64_t from_ms, int64_t to_ms, char** json_out, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(json_out, "json_out", error)) return false;
    return result_out(use->agenda(from_ms, to_ms), json_out, error);
  });
}

FS_API bool fs_export_json(fs_client* c, char** json_out, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(json_out, "json_out", error)) return false;
    return result_out(use->export_json(), json_out, error);
  });
}

FS_API bool fs_unread_counts(fs_client* c, uint32_t* conflicts, uint32_t* rejections, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use) return false;
    auto counts = use->unread_counts();
    if (!counts.is_ok()) return status_out(counts.status(), error);
    auto clamp = [](size_t n) { return static_cast<uint32_t>(std::min<size_t>(n, UINT32_MAX)); };
    if (conflicts) *conflicts = clamp(counts->unread_conflicts);
    if (rejections) *rejections = clamp(counts->unread_rejections);
    return true;
  });
}

FS_API bool fs_mark_conflicts_seen(fs_client* c, int64_t up_to_inbox_id, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    return use && status_out(use->mark_conflicts_seen(up_to_inbox_id), error);
  });
}

FS_API bool fs_mark_rejections_seen(fs_client* c, int64_t up_to_inbox_id, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    return use && status_out(use->mark_rejections_seen(up_to_inbox_id), error);
  });
}

// ---- Sync

FS_API bool fs_sync_start(fs_client* c, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !not_in_callback("fs_sync_start", error)) return false;
    if (c->config.server_url.empty() || c->config.token.empty()) {
      api_error(error, FS_API_BAD_STATE, "fs_sync_start needs FS_OPT_SERVER_URL and FS_OPT_TOKEN");
      return false;
    }
    std::lock_guard lock(c->transport_mu);
    if (c->closed.load()) {
      api_error(error, FS_API_CLOSED, "the client is closed");
      return false;
    }
    if (c->ws || c->one_shot) {
      api_error(error, FS_API_BAD_STATE, c->ws ? "sync is already running" : "fs_sync_now is in progress");
      return false;
    }
    FieldClient* client = &*use;
    WsClientOptions o = c->transport_options();
    o.after_frame = [client] { dispatch(*client); };
    o.on_connection = [client](bool) { dispatch(*client); };
    auto ws = std::make_shared<WsClient>(client->engine(), std::move(o));
    WsStatus s = ws->start();
    if (!s.ok()) {
      transport_error(error, s);
      return false;
    }
    c->ws = std::move(ws);
    return true;
  });
}

FS_API bool fs_sync_stop(fs_client* c, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !not_in_callback("fs_sync_stop", error)) return false;
    std::shared_ptr<WsClient> ws;
    {
      std::lock_guard lock(c->transport_mu);
      ws = std::move(c->ws);
    }
    if (ws) ws->stop();
    dispatch(*use);
    return true;
  });
}

FS_API bool fs_sync_now(fs_client* c, int64_t timeout_ms, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !not_in_callback("fs_sync_now", error)) return false;
    if (timeout_ms <= 0) {
      api_error(error, FS_API_INVALID_ARGUMENT, "timeout_ms must be positive");
      return false;
    }
    if (c->config.server_url.empty() || c->config.token.empty()) {
      api_error(error, FS_API_BAD_STATE, "fs_sync_now needs FS_OPT_SERVER_URL and FS_OPT_TOKEN");
      return false;
    }
    FieldClient& client = *use;
    const auto timeout = std::chrono::milliseconds(timeout_ms);
    std::shared_ptr<WsClient> running;
    {
      std::lock_guard lock(c->transport_mu);
      if (c->one_shot) {
        api_error(error, FS_API_BAD_STATE, "fs_sync_now is already in progress");
        return false;
      }
      running = c->ws;
      if (!running) c->one_shot = true;
    }
    WsStatus s;
    if (running) {
      const bool idle = running->wait_until(
          [&client] { return client.engine().idle() || client.engine().stopped(); }, timeout);
      if (!idle) s = {WsError::kTimeout, "not idle after " + std::to_string(timeout_ms) + " ms"};
    } else {
      struct Reset {
        fs_client* c;
        ~Reset() {
          std::lock_guard lock(c->transport_mu);
          c->one_shot = false;
        }
      } reset{c};
      WsClientOptions o = c->transport_options();
      o.after_frame = [&client] { dispatch(client); };
      o.on_connection = [&client](bool) { dispatch(client); };
      WsClient ws(client.engine(), std::move(o));
      s = ws.sync_once(timeout);
    }
    dispatch(client);
    if (client.engine().stopped()) return status_out(client.engine().stop_reason(), error);
    if (!s.ok()) {
      transport_error(error, s);
      return false;
    }
    return true;
  });
}

FS_API bool fs_sync_status_get(fs_client* c, fs_sync_status* status_out_, fs_error* error) {
  return shim(error, [&] {
    Use use(c, error);
    if (!use || !need(status_out_, "status_out", error)) return false;
    auto s = use->sync_status();
    if (!s.is_ok()) return status_out(s.status(), error);
    fs_sync_status out{};
    out.state = static_cast<fs_sync_state>(s->state);
    out.connected = s->connected ? 1 : 0;
    {
      std::lock_guard lock(c->transport_mu);
      out.running = c->ws && c->ws->running() ? 1 : 0;
    }
    out.has_last_synced = s->last_synced_at_ms ? 1 : 0;
    out.last_synced_at_ms = s->last_synced_at_ms.value_or(0);
    out.pending_count = s->pending_txns;
    out.bootstrap_done = c->bootstrap_done.load();
    out.bootstrap_total = c->bootstrap_total.load();
    *status_out_ = out;
    return true;
  });
}

// ---- Callbacks

FS_API bool fs_on_records_changed(fs_client* c, fs_records_changed_fn fn, void* user_data, fs_error* error) {
  return set_callback(c, error, [&](Callbacks& cb) {
    cb.records_changed = fn;
    cb.records_changed_data = user_data;
  });
}

FS_API bool fs_on_progress(fs_client* c, fs_progress_fn fn, void* user_data, fs_error* error) {
  return set_callback(c, error, [&](Callbacks& cb) {
    cb.progress = fn;
    cb.progress_data = user_data;
  });
}

FS_API bool fs_on_conflict(fs_client* c, fs_conflict_fn fn, void* user_data, fs_error* error) {
  return set_callback(c, error, [&](Callbacks& cb) {
    cb.conflict = fn;
    cb.conflict_data = user_data;
  });
}

FS_API bool fs_on_rejection(fs_client* c, fs_rejection_fn fn, void* user_data, fs_error* error) {
  return set_callback(c, error, [&](Callbacks& cb) {
    cb.rejection = fn;
    cb.rejection_data = user_data;
  });
}

FS_API bool fs_on_synced(fs_client* c, fs_synced_fn fn, void* user_data, fs_error* error) {
  return set_callback(c, error, [&](Callbacks& cb) {
    cb.synced = fn;
    cb.synced_data = user_data;
  });
}

FS_API bool fs_on_error(fs_client* c, fs_error_fn fn, void* user_data, fs_error* error) {
  return set_callback(c, error, [&](Callbacks& cb) {
    cb.error = fn;
    cb.error_data = user_data;
  });
}

FS_API bool fs_on_erased(fs_client* c, fs_erased_fn fn, void* user_data, fs_error* error) {
  return set_callback(c, error, [&](Callbacks& cb) {
    cb.erased = fn;
    cb.erased_data = user_data;
  });
}

}  // extern "C"
