/* The C ABI tested from C (C99, only the public header): a rep's phone bootstraps, records a visit and an
 * order offline, syncs with a real fieldsync-server, and the data is checked on the server with
 * `fieldsync-admin export --user`; a second device's change arrives live through the callback; bad arguments
 * (NULL handles, malformed ids and JSON, unknown enum values, use after close) come back as errors.
 *
 * Run by fieldsync_with_server (mobile-glue/tests/with_server.cc), which starts the server and sets the
 * FS_TEST_* environment; alone it fails, it never skips. */
#define _POSIX_C_SOURCE 200809L

#include <fieldsync/fieldsync.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

/* A call that must succeed; prints the error otherwise. */
#define CHECK_OK(call, err)                                                                   \
  do {                                                                                        \
    if (!(call)) {                                                                            \
      fprintf(stderr, "%s:%d: %s failed: domain %d code %d: %s\n", __FILE__, __LINE__, #call, \
              (int)(err).domain, (int)(err).code, (err).message);                             \
      ++failures;                                                                             \
    }                                                                                         \
  } while (0)

/* A call that must fail with (domain, code). */
#define CHECK_ERR(call, err, want_domain, want_code)                                                        \
  do {                                                                                                      \
    memset(&(err), 0, sizeof(err));                                                                         \
    if (call) {                                                                                             \
      fprintf(stderr, "%s:%d: %s succeeded, expected an error\n", __FILE__, __LINE__, #call);               \
      ++failures;                                                                                           \
    } else if ((err).domain != (want_domain) || (err).code != (want_code) || (err).message[0] == '\0') {    \
      fprintf(stderr, "%s:%d: %s: got domain %d code %d (%s), expected %d/%d\n", __FILE__, __LINE__, #call, \
              (int)(err).domain, (int)(err).code, (err).message, (int)(want_domain), (int)(want_code));     \
      ++failures;                                                                                           \
    }                                                                                                       \
  } while (0)

static const char* env(const char* name) {
  const char* v = getenv(name);
  if (v == NULL || v[0] == '\0') {
    fprintf(stderr, "%s is not set: run this test through fieldsync_with_server\n", name);
    exit(1);
  }
  return v;
}

static void sleep_ms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

static char* format(const char* fmt, ...) {
  static char buffers[8][1024];
  static int next = 0;
  char* b = buffers[next++ % 8];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b, sizeof buffers[0], fmt, ap);
  va_end(ap);
  return b;
}

/* ---- What the callbacks heard (they run on the sync thread: every field under the mutex). */

typedef struct {
  pthread_mutex_t mu;
  fs_client* client;
  int records_changed;
  int bootstrap_progress;
  int push_progress;
  int synced;
  int errors;
  char watched_id[64]; /* a record whose change the test waits for */
  int watched_seen;
  int conflicts;
  int rejections;
  int erased;
  int erased_code;
  char last_rejection[1024];
  int reentry_refused;  /* fs_sync_now from a callback failed with FS_API_IN_CALLBACK */
  int read_in_callback; /* fs_get from a callback worked */
} Heard;

static void on_records_changed(void* user_data, const char* records_json) {
  Heard* h = (Heard*)user_data;
  int watched = 0;
  pthread_mutex_lock(&h->mu);
  ++h->records_changed;
  if (h->watched_id[0] != '\0' && strstr(records_json, h->watched_id) != NULL) watched = 1;
  pthread_mutex_unlock(&h->mu);
  if (watched) {
    /* The header's rule: reads work inside a callback, waiting for the sync thread does not. */
    fs_error err;
    char* json = NULL;
    const int read_ok = fs_get(h->client, FS_RECORD_ACCOUNT, h->watched_id, &json, &err) && json != NULL &&
                        strstr(json, "from bob") != NULL;
    fs_string_free(json);
    memset(&err, 0, sizeof err);
    const int refused =
        !fs_sync_now(h->client, 1000, &err) && err.domain == FS_DOMAIN_API && err.code == FS_API_IN_CALLBACK;
    pthread_mutex_lock(&h->mu);
    h->watched_seen = 1;
    h->read_in_callback = read_ok;
    h->reentry_refused = refused;
    pthread_mutex_unlock(&h->mu);
  }
}

static void on_progress(void* user_data, fs_progress_kind kind, uint64_t done, uint64_t total) {
  Heard* h = (Heard*)user_data;
  pthread_mutex_lock(&h->mu);
  if (kind == FS_PROGRESS_BOOTSTRAP && done <= total) ++h->bootstrap_progress;
  if (kind == FS_PROGRESS_PUSH && done <= total) ++h->push_progress;
  pthread_mutex_unlock(&h->mu);
}

static void on_conflict(void* user_data, const char* conflict_json) {
  Heard* h = (Heard*)user_data;
  pthread_mutex_lock(&h->mu);
  if (strstr(conflict_json, "\"kind\":\"concurrent_write\"") != NULL) ++h->conflicts;
  pthread_mutex_unlock(&h->mu);
}

static void on_rejection(void* user_data, const char* rejection_json) {
  Heard* h = (Heard*)user_data;
  pthread_mutex_lock(&h->mu);
  ++h->rejections;
  snprintf(h->last_rejection, sizeof h->last_rejection, "%s", rejection_json);
  pthread_mutex_unlock(&h->mu);
}

static void on_erased(void* user_data, const fs_error* result) {
  Heard* h = (Heard*)user_data;
  pthread_mutex_lock(&h->mu);
  ++h->erased;
  h->erased_code = result->code;
  pthread_mutex_unlock(&h->mu);
}

/* Reads in a loop until the client is closed under it: every call either works or fails cleanly. */
typedef struct {
  fs_client* client;
  int reads_ok;
  int other_errors;
  int ended_closed;
} Reader;

static void* read_until_closed(void* arg) {
  Reader* r = (Reader*)arg;
  int i;
  for (i = 0; i < 1000000; ++i) {
    fs_error err;
    char* json = NULL;
    memset(&err, 0, sizeof err);
    if (fs_list(r->client, FS_LIST_ACCOUNTS_BY_PREFIX, NULL, &json, &err)) {
      ++r->reads_ok;
      fs_string_free(json);
    } else if (err.domain == FS_DOMAIN_API && err.code == FS_API_CLOSED) {
      r->ended_closed = 1;
      break;
    } else {
      ++r->other_errors;
    }
  }
  return NULL;
}

/* The largest "inbox_id" in an inbox listing (0 if none). */
static int64_t newest_inbox_id(const char* json) {
  int64_t newest = 0;
  const char* p = json;
  while (p != NULL && (p = strstr(p, "\"inbox_id\":")) != NULL) {
    const int64_t id = strtoll(p + strlen("\"inbox_id\":"), NULL, 10);
    if (id > newest) newest = id;
    ++p;
  }
  return newest;
}

static void on_synced(void* user_data) {
  Heard* h = (Heard*)user_data;
  pthread_mutex_lock(&h->mu);
  ++h->synced;
  pthread_mutex_unlock(&h->mu);
}

static void on_error(void* user_data, const fs_error* error) {
  Heard* h = (Heard*)user_data;
  fprintf(stderr, "(error callback: domain %d code %d: %s)\n", (int)error->domain, (int)error->code,
          error->message);
  pthread_mutex_lock(&h->mu);
  ++h->errors;
  pthread_mutex_unlock(&h->mu);
}

static int heard(Heard* h, const int* field) {
  int v;
  pthread_mutex_lock(&h->mu);
  v = *field;
  pthread_mutex_unlock(&h->mu);
  return v;
}

/* ---- Helpers */

static fs_config* device_config(const char* user, int64_t node, const char* path) {
  fs_error err;
  fs_config* cfg = fs_config_new(&err);
  CHECK(cfg != NULL);
  CHECK_OK(fs_config_set_text(cfg, FS_OPT_PATH, path, &err), err);
  CHECK_OK(fs_config_set_text(cfg, FS_OPT_USER, user, &err), err);
  CHECK_OK(fs_config_set_text(cfg, FS_OPT_SERVER_URL, env("FS_TEST_URL"), &err), err);
  CHECK_OK(fs_config_set_text(cfg, FS_OPT_CA_FILE, env("FS_TEST_CA"), &err), err);
  CHECK_OK(fs_config_set_text(cfg, FS_OPT_PRICE_LIST, "retail", &err), err);
  CHECK_OK(fs_config_set_text(cfg, FS_OPT_APP_VERSION, "c-test 1.0 (1)", &err),
           err); /* sent in every Hello */
  CHECK_OK(fs_config_set_int(cfg, FS_OPT_NODE, node, &err), err);
  CHECK_OK(fs_config_set_int(cfg, FS_OPT_RECONNECT_CAP_MS, 500, &err), err);
  return cfg;
}

/* Logs in with the password and keeps the token in the config. */
static void log_in(fs_config* cfg, const char* password) {
  fs_error err;
  char* token = NULL;
  int64_t expires = 0;
  CHECK_OK(fs_login(cfg, password, &token, &expires, &err), err);
  CHECK(token != NULL && strlen(token) > 10);
  CHECK(expires > 0);
  CHECK_OK(fs_config_set_text(cfg, FS_OPT_TOKEN, token, &err), err);
  fs_string_free(token);
}

/* The server's view of what `user` can see, as canonical JSON (fieldsync-admin export --user). */
static char* server_export(const char* user) {
  const char* cmd =
      format("'%s' --data-dir '%s' export --user %s", env("FS_TEST_ADMIN"), env("FS_TEST_DATA_DIR"), user);
  FILE* p = popen(cmd, "r");
  size_t size = 0, cap = 1 << 16;
  char* text = malloc(cap);
  CHECK(p != NULL && text != NULL);
  if (p == NULL || text == NULL) {
    free(text);
    return NULL;
  }
  for (;;) {
    size_t n;
    if (cap - size < 4096) {
      char* bigger = realloc(text, cap *= 2);
      if (bigger == NULL) break;
      text = bigger;
    }
    n = fread(text + size, 1, cap - size - 1, p);
    if (n == 0) break;
    size += n;
  }
  text[size] = '\0';
  CHECK(pclose(p) == 0);
  return text;
}

/* ---- The test */

static void bad_arguments_without_a_client(void) {
  fs_error err;
  fs_config* cfg = fs_config_new(&err);
  char* token = NULL;
  CHECK_ERR(fs_config_set_text(NULL, FS_OPT_USER, "alice", &err), err, FS_DOMAIN_API, FS_API_NULL_ARGUMENT);
  CHECK_ERR(fs_config_set_text(cfg, 999, "x", &err), err, FS_DOMAIN_API, FS_API_UNKNOWN_ENUM);
  CHECK_ERR(fs_config_set_int(cfg, FS_OPT_PATH, 1, &err), err, FS_DOMAIN_API, FS_API_UNKNOWN_ENUM);
  CHECK_ERR(fs_config_set_int(cfg, -1, 1, &err), err, FS_DOMAIN_API, FS_API_UNKNOWN_ENUM);
  CHECK_ERR(fs_config_set_text(cfg, FS_OPT_ROLE, "boss", &err), err, FS_DOMAIN_API, FS_API_INVALID_ARGUMENT);
  CHECK_ERR(fs_config_set_text(cfg, FS_OPT_APP_VERSION, "2.4\n1", &err), err, FS_DOMAIN_API,
            FS_API_INVALID_ARGUMENT);
  CHECK_ERR(fs_config_set_text(cfg, FS_OPT_APP_VERSION,
                               "0123456789012345678901234567890123456789012345678901234567890123+", &err),
            err, FS_DOMAIN_API, FS_API_INVALID_ARGUMENT);                 /* 65 bytes */
  CHECK_OK(fs_config_set_text(cfg, FS_OPT_APP_VERSION, NULL, &err), err); /* NULL clears it */
  CHECK_ERR(fs_config_set_int(cfg, FS_OPT_UTC_OFFSET_MINUTES, 100000, &err), err, FS_DOMAIN_API,
            FS_API_INVALID_ARGUMENT);
  CHECK_ERR(fs_client_open(NULL, &err) != NULL, err, FS_DOMAIN_API, FS_API_NULL_ARGUMENT);
  CHECK_ERR(fs_client_open(cfg, &err) != NULL, err, FS_DOMAIN_API, FS_API_INVALID_ARGUMENT); /* no path */
  CHECK_ERR(fs_login(cfg, "pw", &token, NULL, &err), err, FS_DOMAIN_API, FS_API_BAD_STATE);
  CHECK_ERR(fs_login(cfg, NULL, &token, NULL, &err), err, FS_DOMAIN_API, FS_API_NULL_ARGUMENT);
  /* Every function takes a NULL error and a NULL handle without crashing. */
  CHECK(!fs_check_in(NULL, "{}", NULL, NULL));
  CHECK(!fs_sync_now(NULL, 1000, NULL));
  CHECK(!fs_client_close(NULL, NULL));
  fs_client_free(NULL);
  fs_config_free(NULL);
  fs_string_free(NULL);
  fs_config_free(cfg);

  /* A wrong password is the server's auth_failed, in the fieldsync domain. */
  cfg = device_config("alice", 0x2001, format("%s/never-opened.db", env("FS_TEST_SCRATCH")));
  CHECK_ERR(fs_login(cfg, "wrong-password", &token, NULL, &err), err, FS_DOMAIN_FIELDSYNC,
            FS_CODE_AUTH_FAILED);
  CHECK(token == NULL);
  fs_config_free(cfg);
}

/* ABI 1.2: a lead converted offline in one transaction, a service case opened on an out-of-warranty asset and
 * taken, a task; typed errors; then synced and checked on the server. */
static void leads_cases_and_tasks(fs_client* alice, const char* account) {
  fs_error err;
  fs_sync_status status;
  char *lead = NULL, *conv = NULL, *asset = NULL, *sc = NULL, *task = NULL, *json = NULL, *exported = NULL;
  uint64_t before = 0;

  CHECK_OK(fs_sync_status_get(alice, &status, &err), err);
  before = status.pending_count;
  CHECK_OK(fs_create_lead(alice,
                          "{\"person_name\": \"Dana Diaz\", \"company_name\": \"Diaz Bakery\", \"source\": "
                          "\"field_prospecting\", \"territory_id\": \"north\"}",
                          &lead, &err),
           err);
  if (lead == NULL) return;
  CHECK_OK(fs_lead_action(alice, lead, FS_LEAD_QUALIFY, NULL, &err), err);
  CHECK_ERR(fs_lead_action(alice, lead, FS_LEAD_DISQUALIFY, "", &err), err, FS_DOMAIN_FIELDSYNC,
            FS_CODE_MISSING_FIELD);
  CHECK_ERR(fs_lead_action(alice, lead, 42, NULL, &err), err, FS_DOMAIN_API, FS_API_UNKNOWN_ENUM);
  CHECK_ERR(fs_convert_lead(alice, lead, "{\"amount\": 1}", &conv, &err), err, FS_DOMAIN_API,
            FS_API_INVALID_ARGUMENT);
  CHECK_OK(fs_convert_lead(alice, lead, "{\"opportunity_name\": \"Ovens\", \"amount_cents\": 250000}", &conv,
                           &err),
           err);
  CHECK(conv != NULL && strstr(conv, "\"account_id\"") != NULL && strstr(conv, "\"opportunity_id\"") != NULL);
  CHECK_OK(fs_get(alice, FS_RECORD_LEAD, lead, &json, &err), err);
  CHECK(json != NULL && strstr(json, "\"status\":\"converted\"") != NULL);
  fs_string_free(json);
  json = NULL;
  CHECK_ERR(fs_lead_action(alice, lead, FS_LEAD_NOTE, "late", &err), err, FS_DOMAIN_FIELDSYNC,
            FS_CODE_ORDER_LOCKED);

  CHECK_OK(fs_register_asset(alice,
                             format("{\"account_id\": \"%s\", \"serial_number\": \"OV-1\", "
                                    "\"warranty_end_at_ms\": 1000}",
                                    account),
                             &asset, &err),
           err);
  if (asset == NULL) return;
  CHECK_OK(
      fs_open_case(alice,
                   format("{\"account_id\": \"%s\", \"subject\": \"Oven cold\", \"priority\": \"urgent\", "
                          "\"asset_id\": \"%s\"}",
                          account, asset),
                   &sc, &err),
      err);
  if (sc == NULL) return;
  CHECK_OK(fs_case_action(alice, sc, FS_CASE_TAKE, NULL, &err), err);
  CHECK_ERR(fs_case_action(alice, sc, FS_CASE_TAKE, NULL, &err), err, FS_DOMAIN_FIELDSYNC,
            FS_CODE_PERMISSION_DENIED);
  CHECK_ERR(fs_case_action(alice, sc, FS_CASE_DISPATCH, NULL, &err), err, FS_DOMAIN_API,
            FS_API_NULL_ARGUMENT);
  CHECK_OK(fs_get(alice, FS_RECORD_SERVICE_CASE, sc, &json, &err), err);
  CHECK(json != NULL && strstr(json, "\"billable\":true") != NULL &&
        strstr(json, "\"status\":\"assigned\"") != NULL);
  fs_string_free(json);
  json = NULL;
  CHECK_OK(fs_get(alice, FS_RECORD_ACCOUNT, account, &json, &err), err);
  CHECK(json != NULL && strstr(json, "\"open_cases\":[{") != NULL && strstr(json, sc) != NULL);
  fs_string_free(json);
  json = NULL;
  CHECK_OK(fs_list(alice, FS_LIST_MY_CASES, NULL, &json, &err), err);
  CHECK(json != NULL && strstr(json, sc) != NULL);
  fs_string_free(json);
  json = NULL;

  CHECK_OK(fs_create_task(
               alice, format("{\"title\": \"Call Dana\", \"due_at_ms\": 1000, \"lead_id\": \"%s\"}", lead),
               &task, &err),
           err);
  if (task == NULL) return;
  CHECK_OK(fs_list(alice, FS_LIST_OVERDUE_TASKS, NULL, &json, &err), err);
  CHECK(json != NULL && strstr(json, task) != NULL);
  fs_string_free(json);
  json = NULL;
  CHECK_OK(fs_task_action(alice, task, FS_TASK_COMPLETE, &err), err);
  CHECK_OK(fs_list(alice, FS_LIST_OVERDUE_TASKS, NULL, &json, &err), err);
  CHECK(json != NULL && strcmp(json, "[]") == 0);
  fs_string_free(json);
  json = NULL;
  CHECK_ERR(fs_task_action(alice, task, 0, &err), err, FS_DOMAIN_API, FS_API_UNKNOWN_ENUM);

  /* create, qualify, convert, asset, case, take, task, complete: the refused calls wrote nothing. */
  CHECK_OK(fs_sync_status_get(alice, &status, &err), err);
  CHECK(status.pending_count == before + 8);
  CHECK_OK(fs_sync_now(alice, 30000, &err), err);
  CHECK_OK(fs_sync_status_get(alice, &status, &err), err);
  CHECK(status.pending_count == 0);
  exported = server_export("alice");
  CHECK(exported != NULL);
  if (exported != NULL) {
    CHECK(strstr(exported, lead) != NULL && strstr(exported, "\"converted\"") != NULL);
    CHECK(strstr(exported, sc) != NULL && strstr(exported, task) != NULL);
    free(exported);
  }
  fs_string_free(lead);
  fs_string_free(conv);
  fs_string_free(asset);
  fs_string_free(sc);
  fs_string_free(task);
}

int main(void) {
  fs_error err;
  const char* product = env("FS_TEST_PRODUCT");
  char *account = NULL, *visit = NULL, *order = NULL, *json = NULL, *exported = NULL, *event = NULL;
  fs_config *alice_cfg, *bob_cfg;
  fs_client *alice, *bob;
  fs_sync_status status;
  Heard h;
  int i;

  setvbuf(stdout, NULL, _IONBF, 0);
  CHECK((fs_abi_version() >> 16) == FS_ABI_VERSION_MAJOR);
  memset(&h, 0, sizeof h);
  pthread_mutex_init(&h.mu, NULL);

  bad_arguments_without_a_client();

  /* ---- Alice's phone: log in, open, bootstrap the catalogue. */
  alice_cfg = device_config("alice", 0x2001, format("%s/alice.db", env("FS_TEST_SCRATCH")));
  log_in(alice_cfg, "alice-password");
  alice = fs_client_open(alice_cfg, &err);
  CHECK_OK(alice != NULL, err);
  if (alice == NULL) return 1;
  h.client = alice;
  CHECK_OK(fs_on_records_changed(alice, on_records_changed, &h, &err), err);
  CHECK_OK(fs_on_progress(alice, on_progress, &h, &err), err);
  CHECK_OK(fs_on_synced(alice, on_synced, &h, &err), err);
  CHECK_OK(fs_on_error(alice, on_error, &h, &err), err);
  CHECK_OK(fs_on_conflict(alice, on_conflict, &h, &err), err);
  CHECK_OK(fs_on_rejection(alice, on_rejection, &h, &err), err);
  {
    uint64_t node = 0;
    CHECK_OK(fs_client_node(alice, &node, &err), err);
    CHECK(node == 0x2001);
  }
  CHECK_OK(fs_sync_now(alice, 30000, &err), err);
  CHECK(heard(&h, &h.bootstrap_progress) > 0);
  CHECK(heard(&h, &h.synced) > 0);
  CHECK_OK(fs_sync_status_get(alice, &status, &err), err);
  CHECK(status.pending_count == 0 && status.has_last_synced && status.last_synced_at_ms > 0);
  CHECK(status.bootstrap_total >= 2 && status.bootstrap_done == status.bootstrap_total); /* product + price */
  CHECK(status.state == FS_STATE_DISCONNECTED && !status.connected && !status.running);

  /* ---- Offline: an account, a visit with a note and a check-out, an order with a line, submitted. */
  {
    const int before = heard(&h, &h.records_changed);
    CHECK_OK(fs_create_account(
                 alice, "{\"name\": \"Bakery Nord\", \"territory_id\": \"north\", \"city\": \"Hamburg\"}",
                 &account, &err),
             err);
    CHECK(account != NULL && strlen(account) == 36);
    CHECK(heard(&h, &h.records_changed) == before + 1); /* the app's own write, on this thread */
  }
  if (account == NULL) return 1;
  CHECK_OK(fs_check_in(alice,
                       format("{\"account_id\": \"%s\", \"latitude\": 53.55, \"longitude\": 9.99}", account),
                       &visit, &err),
           err);
  CHECK(visit != NULL);
  if (visit == NULL) return 1;
  CHECK_OK(fs_add_visit_note(alice, visit, "Asked for the spring catalogue", &err), err);
  CHECK_OK(fs_check_out(alice, visit, "order_taken", NULL, &err), err);
  CHECK_OK(fs_draft_order(alice, account, "EUR",
                          format("[{\"product_id\": \"%s\", \"quantity\": 4}]", product), &order, &err),
           err);
  CHECK(order != NULL);
  if (order == NULL) return 1;
  CHECK_OK(fs_submit_order(alice, order, &err), err);
  CHECK_OK(fs_create_event(alice,
                           "{\"title\": \"Tasting\", \"start_at_ms\": 1900000000000, \"end_at_ms\": "
                           "1900003600000}",
                           &event, &err),
           err);
  CHECK(event != NULL && strstr(event, "\"overlaps\":[]") != NULL);

  CHECK_OK(fs_sync_status_get(alice, &status, &err), err);
  CHECK(status.pending_count == 7); /* account, visit, note, check-out, order+line (one txn), submit, event */
  CHECK_OK(fs_get(alice, FS_RECORD_ORDER, order, &json, &err), err);
  CHECK(json != NULL && strstr(json, "\"status\":\"submitted\"") && strstr(json, "\"total_cents\":1000"));
  fs_string_free(json);
  json = NULL;
  CHECK_OK(fs_get(alice, FS_RECORD_VISIT, visit, &json, &err), err);
  CHECK(json != NULL && strstr(json, "\"outcome\":\"order_taken\"") && strstr(json, "spring catalogue"));
  fs_string_free(json);
  json = NULL;
  CHECK_OK(fs_list(alice, FS_LIST_OPEN_ORDERS, NULL, &json, &err), err);
  CHECK(json != NULL && strstr(json, order) != NULL);
  fs_string_free(json);
  json = NULL;
  CHECK_OK(fs_list(alice, FS_LIST_ACCOUNTS_BY_PREFIX, "Bak", &json, &err), err);
  CHECK(json != NULL && json[0] == '[' && strstr(json, account) != NULL);
  fs_string_free(json);
  json = NULL;

  /* ---- Bad arguments on an open client: errors, nothing written. */
  CHECK_ERR(fs_get(alice, 99, visit, &json, &err), err, FS_DOMAIN_API, FS_API_UNKNOWN_ENUM);
  CHECK_ERR(fs_list(alice, 0, NULL, &json, &err), err, FS_DOMAIN_API, FS_API_UNKNOWN_ENUM);
  CHECK_ERR(fs_list(alice, FS_LIST_VISITS_OF_ACCOUNT, NULL, &json, &err), err, FS_DOMAIN_API,
            FS_API_NULL_ARGUMENT);
  CHECK_ERR(fs_get(alice, FS_RECORD_VISIT, "not-an-id", &json, &err), err, FS_DOMAIN_FIELDSYNC,
            FS_CODE_INVALID_ARGUMENT);
  CHECK_ERR(fs_get(alice, FS_RECORD_VISIT, "01890a5d-ac96-774b-bcce-b302099a8057", &json, &err), err,
            FS_DOMAIN_FIELDSYNC, FS_CODE_RECORD_NOT_FOUND);
  CHECK(json == NULL);
  CHECK_ERR(fs_check_in(alice, "{\"account_id\": \"nope\"}", NULL, &err), err, FS_DOMAIN_FIELDSYNC,
            FS_CODE_INVALID_ARGUMENT);
  CHECK_ERR(fs_check_in(alice, format("{\"account_id\": \"%s\", \"colour\": 1}", account), NULL, &err), err,
            FS_DOMAIN_API, FS_API_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "colour") != NULL);
  CHECK_ERR(fs_check_in(alice, format("{\"account_id\": \"%s\", \"at_ms\": \"noon\"}", account), NULL, &err),
            err, FS_DOMAIN_API, FS_API_INVALID_ARGUMENT);
  CHECK_ERR(fs_create_account(alice, "not json", NULL, &err), err, FS_DOMAIN_API, FS_API_INVALID_ARGUMENT);
  CHECK_ERR(fs_create_account(alice, "[]", NULL, &err), err, FS_DOMAIN_API, FS_API_INVALID_ARGUMENT);
  CHECK_ERR(fs_create_account(alice, NULL, NULL, &err), err, FS_DOMAIN_API, FS_API_INVALID_ARGUMENT);
  CHECK_ERR(fs_check_out(alice, visit, "great", NULL, &err), err, FS_DOMAIN_FIELDSYNC, FS_CODE_VALUE_INVALID);
  CHECK_ERR(fs_add_visit_note(alice, NULL, "x", &err), err, FS_DOMAIN_API, FS_API_NULL_ARGUMENT);
  CHECK_ERR(fs_draft_order(alice, account, "EUR", "{\"product_id\": 1}", NULL, &err), err, FS_DOMAIN_API,
            FS_API_INVALID_ARGUMENT);
  CHECK_ERR(fs_check_in(NULL, "{}", NULL, &err), err, FS_DOMAIN_API, FS_API_NULL_ARGUMENT);
  CHECK_ERR(fs_sync_now(alice, 0, &err), err, FS_DOMAIN_API, FS_API_INVALID_ARGUMENT);
  CHECK_ERR(fs_on_progress(NULL, on_progress, &h, &err), err, FS_DOMAIN_API, FS_API_NULL_ARGUMENT);
  CHECK_OK(fs_sync_status_get(alice, &status, &err), err);
  CHECK(status.pending_count == 7);

  /* ---- Sync: the server now has all of it. */
  CHECK_OK(fs_sync_now(alice, 30000, &err), err);
  CHECK(heard(&h, &h.push_progress) > 0);
  CHECK_OK(fs_sync_status_get(alice, &status, &err), err);
  CHECK(status.pending_count == 0);
  exported = server_export("alice");
  CHECK(exported != NULL);
  if (exported != NULL) {
    CHECK(strstr(exported, account) != NULL);
    CHECK(strstr(exported, visit) != NULL);
    CHECK(strstr(exported, order) != NULL);
    CHECK(strstr(exported, "Asked for the spring catalogue") != NULL);
    CHECK(strstr(exported, "\"order_taken\"") != NULL);
    CHECK(strstr(exported, "\"submitted\"") != NULL);
  }
  /* And the replica holds exactly what the server shows alice. */
  CHECK_OK(fs_export_json(alice, &json, &err), err);
  CHECK(json != NULL && exported != NULL && strcmp(json, exported) == 0);
  fs_string_free(json);
  json = NULL;
  free(exported);

  /* ---- Live: alice stays connected; bob (same territory, another device) notes on the account. */
  memcpy(h.watched_id, account, strlen(account) + 1);
  CHECK_OK(fs_sync_start(alice, &err), err);
  CHECK_ERR(fs_sync_start(alice, &err), err, FS_DOMAIN_API, FS_API_BAD_STATE);
  bob_cfg = device_config("bob", 0x2002, format("%s/bob.db", env("FS_TEST_SCRATCH")));
  log_in(bob_cfg, "bob-password");
  bob = fs_client_open(bob_cfg, &err);
  CHECK_OK(bob != NULL, err);
  if (bob == NULL) return 1;
  CHECK_OK(fs_sync_now(bob, 30000, &err), err);
  CHECK_OK(fs_list(bob, FS_LIST_ACCOUNTS_IN_TERRITORY, "north", &json, &err), err);
  CHECK(json != NULL && strstr(json, account) != NULL);
  fs_string_free(json);
  json = NULL;
  CHECK_OK(fs_edit_account(bob, account, "{\"add_note\": \"from bob: closed on Mondays\"}", &err), err);
  CHECK_OK(fs_sync_now(bob, 30000, &err), err);
  for (i = 0; i < 3000 && !heard(&h, &h.watched_seen); ++i) sleep_ms(10);
  CHECK(heard(&h, &h.watched_seen));
  CHECK(heard(&h, &h.read_in_callback));
  CHECK(heard(&h, &h.reentry_refused));
  CHECK_OK(fs_sync_status_get(alice, &status, &err), err);
  CHECK(status.running == 1);
  CHECK_OK(fs_sync_now(alice, 30000, &err), err); /* waits for the running transport */
  CHECK_OK(fs_sync_stop(alice, &err), err);
  CHECK(heard(&h, &h.errors) == 0);

  /* ---- Conflict: bob and alice set the account's phone without seeing each other's write. Alice writes
   * last, so hers wins (last writer wins) and the overwritten value is a conflict both hear about. */
  {
    Heard hb;
    uint32_t unread_conflicts = 0, unread_rejections = 0;
    memset(&hb, 0, sizeof hb);
    pthread_mutex_init(&hb.mu, NULL);
    hb.client = bob;
    CHECK_OK(fs_on_conflict(bob, on_conflict, &hb, &err), err);
    CHECK_OK(fs_edit_account(bob, account, "{\"phone\": \"+49 40 222\"}", &err), err);
    CHECK_OK(fs_sync_now(bob, 30000, &err), err);
    sleep_ms(5); /* a later wall-clock millisecond for alice's write */
    CHECK_OK(fs_edit_account(alice, account, "{\"phone\": \"+49 40 111\"}", &err), err);
    CHECK_OK(fs_sync_now(alice, 30000, &err), err);
    CHECK_OK(fs_sync_now(bob, 30000, &err), err);
    CHECK(heard(&h, &h.conflicts) + heard(&hb, &hb.conflicts) >= 1);
    CHECK_OK(fs_get(bob, FS_RECORD_ACCOUNT, account, &json, &err), err);
    CHECK(json != NULL && strstr(json, "+49 40 111") != NULL);
    fs_string_free(json);
    json = NULL;
    /* The inbox of whoever heard it: listed, counted unread, then marked seen. */
    {
      fs_client* who = heard(&h, &h.conflicts) > 0 ? alice : bob;
      CHECK_OK(fs_list(who, FS_LIST_CONFLICT_INBOX, "unread", &json, &err), err);
      CHECK(json != NULL && strstr(json, "\"concurrent_write\"") != NULL && strstr(json, account) != NULL);
      CHECK_OK(fs_unread_counts(who, &unread_conflicts, &unread_rejections, &err), err);
      CHECK(unread_conflicts >= 1 && unread_rejections == 0);
      CHECK_OK(fs_mark_conflicts_seen(who, json != NULL ? newest_inbox_id(json) : 0, &err), err);
      CHECK_OK(fs_unread_counts(who, &unread_conflicts, NULL, &err), err);
      CHECK(unread_conflicts == 0);
      fs_string_free(json);
      json = NULL;
    }
    CHECK_OK(fs_on_conflict(bob, NULL, NULL, &err), err); /* hb goes out of scope */
    pthread_mutex_destroy(&hb.mu);
  }

  /* ---- Rejection: a rep may not move an account to another territory. Written locally, refused by the
   * server: the rejection callback and inbox say so and the account is back in north. */
  CHECK_OK(fs_edit_account(alice, account, "{\"territory_id\": \"south\"}", &err), err);
  CHECK_OK(fs_sync_now(alice, 30000, &err), err);
  CHECK(heard(&h, &h.rejections) == 1);
  pthread_mutex_lock(&h.mu);
  CHECK(strstr(h.last_rejection, account) != NULL && strstr(h.last_rejection, "\"reason\"") != NULL);
  pthread_mutex_unlock(&h.mu);
  CHECK_OK(fs_list(alice, FS_LIST_REJECTION_INBOX, NULL, &json, &err), err);
  CHECK(json != NULL && strstr(json, account) != NULL);
  fs_string_free(json);
  json = NULL;
  CHECK_ERR(fs_list(alice, FS_LIST_REJECTION_INBOX, "everything", &json, &err), err, FS_DOMAIN_API,
            FS_API_INVALID_ARGUMENT);
  CHECK_OK(fs_get(alice, FS_RECORD_ACCOUNT, account, &json, &err), err);
  CHECK(json != NULL && strstr(json, "\"territory_id\":\"north\"") != NULL);
  fs_string_free(json);
  json = NULL;

  leads_cases_and_tasks(alice, account);

  /* ---- Use after close: errors, the handle stays valid until freed. */
  {
    /* Closed while another thread reads: the close waits for the read in progress, later reads fail. */
    Reader r;
    pthread_t reader;
    memset(&r, 0, sizeof r);
    r.client = alice;
    CHECK(pthread_create(&reader, NULL, read_until_closed, &r) == 0);
    sleep_ms(30);
    CHECK_OK(fs_client_close(alice, &err), err);
    pthread_join(reader, NULL);
    CHECK(r.reads_ok > 0 && r.other_errors == 0 && r.ended_closed == 1);
  }
  CHECK_OK(fs_client_close(alice, &err), err); /* idempotent */
  CHECK_ERR(fs_get(alice, FS_RECORD_ACCOUNT, account, &json, &err), err, FS_DOMAIN_API, FS_API_CLOSED);
  CHECK_ERR(fs_check_in(alice, "{}", NULL, &err), err, FS_DOMAIN_API, FS_API_CLOSED);
  CHECK_ERR(fs_sync_start(alice, &err), err, FS_DOMAIN_API, FS_API_CLOSED);
  CHECK_ERR(fs_on_synced(alice, NULL, NULL, &err), err, FS_DOMAIN_API, FS_API_CLOSED);
  fs_client_free(alice);

  /* The replica survives: reopened, it still has the account with bob's note, nothing pending. */
  alice = fs_client_open(alice_cfg, &err);
  CHECK_OK(alice != NULL, err);
  if (alice != NULL) {
    CHECK_OK(fs_get(alice, FS_RECORD_ACCOUNT, account, &json, &err), err);
    CHECK(json != NULL && strstr(json, "closed on Mondays") != NULL);
    fs_string_free(json);
    CHECK_OK(fs_sync_status_get(alice, &status, &err), err);
    CHECK(status.pending_count == 0);
    fs_client_free(alice);
  }

  /* ---- Erase on revoke: head office revokes bob's device; its next sync is refused, the replica is erased
   * and the erased callback fires; every call then fails with device_revoked, and so does opening the path
   * until the revocation is cleared (a fresh, empty replica). */
  {
    Heard hb;
    const char* bob_path = format("%s/bob.db", env("FS_TEST_SCRATCH"));
    FILE* f;
    memset(&hb, 0, sizeof hb);
    pthread_mutex_init(&hb.mu, NULL);
    CHECK_OK(fs_on_erased(bob, on_erased, &hb, &err), err);
    CHECK(system(format("'%s' --data-dir '%s' device revoke --node 0x2002", env("FS_TEST_ADMIN"),
                        env("FS_TEST_DATA_DIR"))) == 0);
    CHECK_ERR(fs_sync_now(bob, 30000, &err), err, FS_DOMAIN_FIELDSYNC, FS_CODE_DEVICE_REVOKED);
    CHECK(heard(&hb, &hb.erased) == 1 && heard(&hb, &hb.erased_code) == FS_CODE_DEVICE_REVOKED);
    CHECK_ERR(fs_list(bob, FS_LIST_ACCOUNTS_BY_PREFIX, NULL, &json, &err), err, FS_DOMAIN_FIELDSYNC,
              FS_CODE_DEVICE_REVOKED);
    f = fopen(bob_path, "rb");
    CHECK(f == NULL); /* the replica file is gone */
    if (f != NULL) fclose(f);
    fs_client_free(bob);
    pthread_mutex_destroy(&hb.mu);
    CHECK_ERR(fs_client_open(bob_cfg, &err) != NULL, err, FS_DOMAIN_FIELDSYNC, FS_CODE_DEVICE_REVOKED);
    CHECK_OK(fs_clear_revocation(bob_path, &err), err);
    bob = fs_client_open(bob_cfg, &err);
    CHECK_OK(bob != NULL, err);
    if (bob != NULL) {
      CHECK_OK(fs_list(bob, FS_LIST_ACCOUNTS_BY_PREFIX, NULL, &json, &err), err);
      CHECK(json != NULL && strcmp(json, "[]") == 0);
      fs_string_free(json);
      json = NULL;
    }
  }
  fs_client_free(bob);
  fs_config_free(alice_cfg);
  fs_config_free(bob_cfg);
  fs_string_free(account);
  fs_string_free(visit);
  fs_string_free(order);
  fs_string_free(event);
  pthread_mutex_destroy(&h.mu);

  if (failures > 0) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("fieldsync_c_test: all checks passed\n");
  return 0;
}
