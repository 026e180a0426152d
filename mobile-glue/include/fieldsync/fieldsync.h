/* fieldsync: the C ABI of the device library, for apps in any language (the JNI and Swift wrappers in
 * mobile-glue/ stand on it). Valid C99; every symbol starts with fs_ (types, functions) or FS_ (macros, enum
 * constants). See docs/EMBEDDING.md for a walk-through.
 *
 * Shape.
 * - Opaque handles: fs_config (what to open) and fs_client (an open replica with its sync transport). Each
 * has one release function (fs_config_free, fs_client_free). fs_client_close ends a client's use but keeps
 * the handle valid, so that a late call on it is an error (FS_API_CLOSED) instead of a crash.
 * - Every function that can fail returns bool (true: done) and takes an fs_error* last, which may be NULL.
 *   On failure the error says why; on success it is left untouched. A NULL handle, a NULL required argument,
 *   an unknown enum value or a malformed JSON argument is an error, never a crash. No C++ exception crosses
 *   this boundary.
 * - Results: listings and records come back as UTF-8 JSON text (documented per function and in
 *   docs/EMBEDDING.md), allocated by the library and released with fs_string_free. JSON keeps this header
 *   small and every binding mechanical; new keys may appear in a minor version (parse leniently).
 * - Inputs with optional fields (a new account, an edit) are JSON objects whose keys are documented at each
 *   function; an unknown key is an FS_API_INVALID_ARGUMENT error naming it, so a typo is never ignored.
 * - Times are UTC milliseconds since the epoch (int64_t), money is integer cents (int64_t), record ids are
 *   UUIDv7 text, node ids are uint64_t: the same on 32- and 64-bit targets.
 *
 * Threading. Every function may be called from any thread, concurrently. Callbacks are called:
 * - records_changed: on the thread that made an app write (inside that fs_ call, after its transaction
 *   committed and with no lock held), and on the sync thread for changes that sync brought;
 * - progress, conflict, rejection, synced, error, erased: on the sync thread (the transport thread started by
 *   fs_sync_start, or the thread calling fs_sync_now).
 * Inside a callback an app may call any fs_client function (reads, writes) except fs_sync_start,
 * fs_sync_stop, fs_sync_now, fs_client_close and fs_client_free, which fail there with FS_API_IN_CALLBACK
 * (they wait for the sync thread, which is the one calling). A callback should return quickly: the sync
 * thread does no network work while it runs. Pointers passed to a callback are valid only during the call.
 * Android and iOS apps hop to their main thread themselves (the JNI and Swift wrappers document theirs).
 *
 * ABI stability (fs_abi_version): the major version changes only when existing code could break. Within
 * one major version: functions, enum constants, error codes and JSON keys are only added, never removed,
 * renamed or given another meaning; struct layouts (fs_error, fs_sync_status) never change; an app built
 * against an older minor version keeps working with a newer library. A new field for a struct is a new
 * function. A change of major version is announced in docs/EMBEDDING.md with the list of what changed.
 */
#ifndef FIELDSYNC_FIELDSYNC_H
#define FIELDSYNC_FIELDSYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Nullability for Swift and clang's checks; nothing elsewhere. Clang calls them an extension under -pedantic:
 * quiet inside this header only. */
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wnullability-extension"
#define FS_NONNULL _Nonnull
#define FS_NULLABLE _Nullable
#else
#define FS_NONNULL
#define FS_NULLABLE
#endif

#if defined(FS_BUILDING_LIBRARY) && defined(__GNUC__)
#define FS_API __attribute__((visibility("default")))
#else
#define FS_API
#endif

/* ABI version: major * 65536 + minor. */
#define FS_ABI_VERSION_MAJOR 1
#define FS_ABI_VERSION_MINOR 2 /* 1.1: FS_OPT_APP_VERSION; 1.2: leads, service cases, assets, tasks */
#define FS_ABI_VERSION ((FS_ABI_VERSION_MAJOR << 16) | FS_ABI_VERSION_MINOR)

/* The library's ABI version; an app checks (fs_abi_version() >> 16) == FS_ABI_VERSION_MAJOR at start-up. */
FS_API uint32_t fs_abi_version(void);

/* ---- Errors */

/* Where an error code comes from. Enums are int32_t on the ABI: enum sizes vary between compilers. */
typedef int32_t fs_error_domain;
enum {
  FS_DOMAIN_NONE = 0,
  /* The sync engine, the replica and the server: fieldsync::ErrorCode (sync/status.h), e.g.
   * FS_CODE_VALUE_INVALID, FS_CODE_AUTH_FAILED, FS_CODE_DEVICE_REVOKED, FS_CODE_STORAGE_FULL. */
  FS_DOMAIN_FIELDSYNC = 1,
  /* The network transport: FS_TRANSPORT_* below. */
  FS_DOMAIN_TRANSPORT = 2,
  /* This C API itself: FS_API_* below. */
  FS_DOMAIN_API = 3
};

/* FS_DOMAIN_FIELDSYNC codes an app typically handles (the full list: fieldsync::ErrorCode). */
enum {
  FS_CODE_IMMUTABLE_FIELD = 45, /* ABI 1.2: e.g. a lead's conversion links outside its conversion */
  FS_CODE_MISSING_FIELD = 55,   /* ABI 1.2: e.g. a disqualification without a reason */
  FS_CODE_RATE_LIMITED = 8,
  FS_CODE_AUTH_FAILED = 20,
  FS_CODE_TOKEN_EXPIRED = 21,
  FS_CODE_DEVICE_REVOKED = 22,
  FS_CODE_CLOCK_SKEW = 23,
  FS_CODE_VALUE_INVALID = 44,
  FS_CODE_INVALID_TRANSITION = 47,
  FS_CODE_ORDER_LOCKED = 48,
  FS_CODE_RECORD_NOT_FOUND = 50,
  FS_CODE_OUT_OF_SCOPE = 52,
  FS_CODE_PERMISSION_DENIED = 54,
  FS_CODE_STORAGE_FULL = 70,
  FS_CODE_STORAGE_CORRUPT = 71,
  FS_CODE_SCHEMA_TOO_NEW = 75,
  FS_CODE_INVALID_ARGUMENT = 90,
  FS_CODE_INTERNAL = 99
};

/* FS_DOMAIN_TRANSPORT codes (fieldsync::client::WsError). */
enum {
  FS_TRANSPORT_BAD_URL = 1,
  FS_TRANSPORT_RESOLVE = 2,
  FS_TRANSPORT_CONNECT = 3,
  FS_TRANSPORT_TLS_HANDSHAKE = 4,
  FS_TRANSPORT_CERTIFICATE = 5,
  FS_TRANSPORT_PIN_MISMATCH = 6,
  FS_TRANSPORT_UPGRADE = 7,
  FS_TRANSPORT_TIMEOUT = 8,
  FS_TRANSPORT_CLOSED = 9,
  FS_TRANSPORT_STOPPED = 10,
  FS_TRANSPORT_INVALID_ARGUMENT = 11
};

/* FS_DOMAIN_API codes. */
enum {
  FS_API_NULL_ARGUMENT = 1,    /* a required pointer or handle was NULL */
  FS_API_INVALID_ARGUMENT = 2, /* malformed JSON, unknown or mistyped key, out-of-range number */
  FS_API_UNKNOWN_ENUM = 3,     /* an enum argument outside its documented values */
  FS_API_CLOSED = 4,           /* the client was closed (fs_client_close) or never opened */
  FS_API_IN_CALLBACK = 5,      /* a function a callback may not call (see Threading) */
  FS_API_BAD_STATE = 6,        /* e.g. fs_sync_start without a server URL, or while already running */
  FS_API_OUT_OF_MEMORY = 7,
  FS_API_INTERNAL = 8 /* an unexpected failure inside the library: a bug, please report */
};

#define FS_ERROR_MESSAGE_MAX 512

/* An error: plain data, no release function. `retryable` is 1 when the same call may succeed later
 * (storage locked, rate limited, network). The message is UTF-8, NUL-terminated, for logs (not for parsing).
 */
typedef struct fs_error {
  fs_error_domain domain;
  int32_t code;
  int32_t retryable;
  char message[FS_ERROR_MESSAGE_MAX];
} fs_error;

/* Releases a string returned by this library. NULL is allowed. */
FS_API void fs_string_free(char* FS_NULLABLE s);

/* ---- Configuration */

typedef struct fs_config fs_config;

typedef int32_t fs_option;
enum {
  /* Text options. */
  FS_OPT_PATH = 1,       /* replica file path (required); created if missing */
  FS_OPT_USER = 2,       /* the signed-in user's id (required) */
  FS_OPT_TOKEN = 3,      /* device token from fs_login (or head office); needed to sync */
  FS_OPT_SERVER_URL = 4, /* wss://host[:port]/sync; needed to sync */
  FS_OPT_CA_FILE = 5,    /* PEM bundle to trust instead of the system store */
  FS_OPT_PIN_SHA256 = 6, /* hex SHA-256 of the server certificate (DER); ':' allowed */
  FS_OPT_PRICE_LIST = 7, /* preferred price list for new order lines */
  FS_OPT_ROLE = 8, /* "rep" (default), "manager" or "head_office": local checks only, the server decides */
  FS_OPT_APP_VERSION = 9, /* ABI 1.1, optional: the app's build ("2.4.1 (317)"), sent at every connection so
                             head office's sync health shows it; at most 64 bytes of printable ASCII */
  /* Integer options. */
  FS_OPT_NODE = 20,               /* this device's registered node id (uint64 as int64) for a new replica */
  FS_OPT_UTC_OFFSET_MINUTES = 21, /* the rep's zone for "today" and "this week"; -1440..1440 */
  FS_OPT_RECONNECT_CAP_MS = 22,   /* caps the reconnect backoff; 0: the library's default */
  FS_OPT_CONNECT_TIMEOUT_MS = 23, /* per connection attempt; default 15000 */
  FS_OPT_IDLE_TIMEOUT_MS = 24,    /* silence before reconnecting; default 60000 */
  FS_OPT_SYNCHRONOUS_FULL = 25    /* 1 (default): fsync every commit; 0: WAL + NORMAL (faster, may lose
                                     the last writes on power loss, never corrupts) */
};

FS_API fs_config* FS_NULLABLE fs_config_new(fs_error* FS_NULLABLE error);
FS_API void fs_config_free(fs_config* FS_NULLABLE config);
/* Errors: FS_API_UNKNOWN_ENUM for an option that is not a text option, FS_API_INVALID_ARGUMENT for a bad
 * value (FS_OPT_ROLE). A NULL value clears the option. */
FS_API bool fs_config_set_text(fs_config* FS_NULLABLE config, fs_option option, const char* FS_NULLABLE value,
                               fs_error* FS_NULLABLE error);
/* Errors: FS_API_UNKNOWN_ENUM for an option that is not an integer option, FS_API_INVALID_ARGUMENT out of
 * range. */
FS_API bool fs_config_set_int(fs_config* FS_NULLABLE config, fs_option option, int64_t value,
                              fs_error* FS_NULLABLE error);

/* POST /login on the configured server (FS_OPT_SERVER_URL, CA file or pin, FS_OPT_USER, FS_OPT_NODE):
 * exchanges the user's password for a device token (*token_out, release with fs_string_free) valid until
 * *expires_at_ms (may be NULL). Blocking, bounded by the connect timeout. Errors: FS_DOMAIN_TRANSPORT (no
 * answer), FS_CODE_AUTH_FAILED (user, password or device wrong), FS_CODE_RATE_LIMITED (retryable). */
FS_API bool fs_login(const fs_config* FS_NULLABLE config, const char* FS_NULLABLE password,
                     char* FS_NULLABLE* FS_NULLABLE token_out, int64_t* FS_NULLABLE expires_at_ms,
                     fs_error* FS_NULLABLE error);

/* ---- The client */

typedef struct fs_client fs_client;

/* Opens (or creates) the replica. The config is copied: it may be freed right after. Errors: the replica's
 * (FS_CODE_STORAGE_*, FS_CODE_SCHEMA_TOO_NEW), FS_CODE_DEVICE_REVOKED (this replica was erased, see
 * fs_clear_revocation), FS_API_INVALID_ARGUMENT (no path or user). */
FS_API fs_client* FS_NULLABLE fs_client_open(const fs_config* FS_NULLABLE config,
                                             fs_error* FS_NULLABLE error);
/* Stops sync (closing the connection cleanly) and closes the replica. Every later call on the handle fails
 * with FS_API_CLOSED; the handle itself stays valid until fs_client_free. Idempotent. */
FS_API bool fs_client_close(fs_client* FS_NULLABLE client, fs_error* FS_NULLABLE error);
/* Closes if needed and releases the handle. NULL is allowed. Must not be called from a callback. */
FS_API void fs_client_free(fs_client* FS_NULLABLE client);
/* After head office registered the device again: removes the revocation marker of `path`. */
FS_API bool fs_clear_revocation(const char* FS_NULLABLE path, fs_error* FS_NULLABLE error);
/* The replica's node id. */
FS_API bool fs_client_node(fs_client* FS_NULLABLE client, uint64_t* FS_NULLABLE node_out,
                           fs_error* FS_NULLABLE error);

/* ---- Writes. Each is one local transaction, queued for sync; *id_out (may be NULL) receives the new
 * record's id, released with fs_string_free. Values are validated by the model: FS_CODE_VALUE_INVALID names
 * the field. */

/* {"name", "territory_id", "address"?, "city"?, "phone"?, "email"?, "segment"?} */
FS_API bool fs_create_account(fs_client* FS_NULLABLE client, const char* FS_NULLABLE account_json,
                              char* FS_NULLABLE* FS_NULLABLE id_out, fs_error* FS_NULLABLE error);
/* Keys given are changed, "" clears: {"name"?, "address"?, "city"?, "phone"?, "email"?, "segment"?,
 * "add_note"?, "territory_id"?} */
FS_API bool fs_edit_account(fs_client* FS_NULLABLE client, const char* FS_NULLABLE account_id,
                            const char* FS_NULLABLE edit_json, fs_error* FS_NULLABLE error);
/* {"account_id", "name", "title"?, "email"?, "phone"?, "is_primary"?} */
FS_API bool fs_create_contact(fs_client* FS_NULLABLE client, const char* FS_NULLABLE contact_json,
                              char* FS_NULLABLE* FS_NULLABLE id_out, fs_error* FS_NULLABLE error);
/* {"name"?, "title"?, "email"?, "phone"?, "is_primary"?} */
FS_API bool fs_edit_contact(fs_client* FS_NULLABLE client, const char* FS_NULLABLE contact_id,
                            const char* FS_NULLABLE edit_json, fs_error* FS_NULLABLE error);

/* {"account_id", "at_ms"? (default now), "latitude"?, "longitude"? (both or neither), "calendar_event_id"?}
 */
FS_API bool fs_check_in(fs_client* FS_NULLABLE client, const char* FS_NULLABLE check_in_json,
                        char* FS_NULLABLE* FS_NULLABLE id_out, fs_error* FS_NULLABLE error);
FS_API bool fs_add_visit_note(fs_client* FS_NULLABLE client, const char* FS_NULLABLE visit_id,
                              const char* FS_NULLABLE text, fs_error* FS_NULLABLE error);
/* `outcome`: one of the model's visit outcomes; at_ms NULL: now. */
FS_API bool fs_check_out(fs_client* FS_NULLABLE client, const char* FS_NULLABLE visit_id,
                         const char* FS_NULLABLE outcome, const int64_t* FS_NULLABLE at_ms,
                         fs_error* FS_NULLABLE error);

/* A draft order with its lines (may be NULL or "[]") in one transaction. currency NULL: "EUR". Lines:
 * [{"product_id", "quantity"? (1), "unit_price_cents"? (the price list's), "discount_bp"?, "note"?}] */
FS_API bool fs_draft_order(fs_client* FS_NULLABLE client, const char* FS_NULLABLE account_id,
                           const char* FS_NULLABLE currency, const char* FS_NULLABLE lines_json,
                           char* FS_NULLABLE* FS_NULLABLE id_out, fs_error* FS_NULLABLE error);
/* One line as above. */
FS_API bool fs_add_line(fs_client* FS_NULLABLE client, const char* FS_NULLABLE order_id,
                        const char* FS_NULLABLE line_json, char* FS_NULLABLE* FS_NULLABLE id_out,
                        fs_error* FS_NULLABLE error);
/* {"quantity"?, "unit_price_cents"?, "discount_bp"?, "note"?} */
FS_API bool fs_change_line(fs_client* FS_NULLABLE client, const char* FS_NULLABLE line_id,
                           const char* FS_NULLABLE edit_json, fs_error* FS_NULLABLE error);
FS_API bool fs_remove_line(fs_client* FS_NULLABLE client, const char* FS_NULLABLE line_id,
                           fs_error* FS_NULLABLE error);
FS_API bool fs_submit_order(fs_client* FS_NULLABLE client, const char* FS_NULLABLE order_id,
                            fs_error* FS_NULLABLE error);

/* Calendar writes return {"id", "overlaps": [event...]} in *result_json: the owner's other scheduled events
 * that overlap the written one (a warning, the write is done). Event input: {"title", "start_at_ms",
 * "end_at_ms", "account_id"?, "location"?, "opportunity_id"? (ABI 1.2)} */
FS_API bool fs_create_event(fs_client* FS_NULLABLE client, const char* FS_NULLABLE event_json,
                            char* FS_NULLABLE* FS_NULLABLE result_json, fs_error* FS_NULLABLE error);
FS_API bool fs_move_event(fs_client* FS_NULLABLE client, const char* FS_NULLABLE event_id,
                          int64_t start_at_ms, int64_t end_at_ms, char* FS_NULLABLE* FS_NULLABLE result_json,
                          fs_error* FS_NULLABLE error);
FS_API bool fs_cancel_event(fs_client* FS_NULLABLE client, const char* FS_NULLABLE event_id,
                            fs_error* FS_NULLABLE error);

/* {"account_id", "name", "amount_cents", "currency"? ("EUR"), "stage"? ("prospect"), "expected_close_ms"?} */
FS_API bool fs_create_opportunity(fs_client* FS_NULLABLE client, const char* FS_NULLABLE opportunity_json,
                                  char* FS_NULLABLE* FS_NULLABLE id_out, fs_error* FS_NULLABLE error);
FS_API bool fs_move_opportunity(fs_client* FS_NULLABLE client, const char* FS_NULLABLE opportunity_id,
                                const char* FS_NULLABLE stage, fs_error* FS_NULLABLE error);

/* ---- Leads, service cases, installed assets and tasks (ABI 1.2; schema 3). The server checks every rule
 * again (sync/rules.h check_domain_rules); a write it refuses comes back as a rejection. */

/* {"person_name", "source" (campaign, web_form, email_enquiry, phone_enquiry, field_prospecting, referral,
 * other), "territory_id", "company_name"?, "email"?, "phone"?, "notes"?}: owned by the user, status new. */
FS_API bool fs_create_lead(fs_client* FS_NULLABLE client, const char* FS_NULLABLE lead_json,
                           char* FS_NULLABLE* FS_NULLABLE id_out, fs_error* FS_NULLABLE error);
typedef int32_t fs_lead_op;
enum {
  FS_LEAD_CONTACTED = 1,  /* new -> contacted */
  FS_LEAD_QUALIFY = 2,    /* new or contacted -> qualified */
  FS_LEAD_DISQUALIFY = 3, /* -> disqualified; `text`: the reason (required: FS_CODE_MISSING_FIELD) */
  FS_LEAD_NOTE = 4        /* appends `text` to the lead's notes */
};
FS_API bool fs_lead_action(fs_client* FS_NULLABLE client, const char* FS_NULLABLE lead_id, fs_lead_op action,
                           const char* FS_NULLABLE text, fs_error* FS_NULLABLE error);
/* Converts the lead in one local transaction (works offline): a new account (or "existing_account_id"), a
 * contact for the person and an opportunity, and the lead moved to converted with links to them; it is frozen
 * from then on. conversion_json (NULL: all defaults): {"existing_account_id"?, "account_name"?,
 * "opportunity_name"?, "amount_cents"? (0), "currency"? ("EUR"), "expected_close_ms"?}. *result_json:
 * {"lead_id", "account_id", "contact_id", "opportunity_id"}. */
FS_API bool fs_convert_lead(fs_client* FS_NULLABLE client, const char* FS_NULLABLE lead_id,
                            const char* FS_NULLABLE conversion_json,
                            char* FS_NULLABLE* FS_NULLABLE result_json, fs_error* FS_NULLABLE error);

/* {"account_id", "subject", "priority"? ("normal": low, normal, high, urgent), "contact_id"?, "asset_id"?,
 * "take"? (false: true assigns it to the user at once)} */
FS_API bool fs_open_case(fs_client* FS_NULLABLE client, const char* FS_NULLABLE case_json,
                         char* FS_NULLABLE* FS_NULLABLE id_out, fs_error* FS_NULLABLE error);
typedef int32_t fs_case_op;
enum {
  FS_CASE_TAKE = 1,  /* an unassigned open case for the user: assigned (FS_CODE_PERMISSION_DENIED if taken) */
  FS_CASE_START = 2, /* -> in_progress */
  FS_CASE_RESOLVE = 3,  /* -> resolved; `text`: the resolution note (required) */
  FS_CASE_CLOSE = 4,    /* resolved -> closed */
  FS_CASE_REOPEN = 5,   /* resolved or closed -> in_progress (managers) */
  FS_CASE_DISPATCH = 6, /* `text`: the rep to assign (managers within their team, head office anyone) */
  FS_CASE_NOTE = 7      /* appends `text` to the resolution notes */
};
FS_API bool fs_case_action(fs_client* FS_NULLABLE client, const char* FS_NULLABLE case_id, fs_case_op action,
                           const char* FS_NULLABLE text, fs_error* FS_NULLABLE error);

/* {"account_id", "serial_number", "product_id"?, "installed_at_ms"?, "warranty_end_at_ms"?, "notes"?} */
FS_API bool fs_register_asset(fs_client* FS_NULLABLE client, const char* FS_NULLABLE asset_json,
                              char* FS_NULLABLE* FS_NULLABLE id_out, fs_error* FS_NULLABLE error);

/* {"title", "due_at_ms"?, "remind_at_ms"?, "account_id"?, "opportunity_id"?, "lead_id"?, "service_case_id"?,
 * "notes"?}: the user's, open. */
FS_API bool fs_create_task(fs_client* FS_NULLABLE client, const char* FS_NULLABLE task_json,
                           char* FS_NULLABLE* FS_NULLABLE id_out, fs_error* FS_NULLABLE error);
typedef int32_t fs_task_op;
enum { FS_TASK_COMPLETE = 1, FS_TASK_CANCEL = 2, FS_TASK_REOPEN = 3 };
FS_API bool fs_task_action(fs_client* FS_NULLABLE client, const char* FS_NULLABLE task_id, fs_task_op action,
                           fs_error* FS_NULLABLE error);

/* ---- Reads. JSON in *json_out (release with fs_string_free); keys are the C++ read models' field names
 * (fieldsync/client/field_client.h), absent optionals are null. Tombstoned records are never returned. */

typedef int32_t fs_record_kind;
enum {
  FS_RECORD_ACCOUNT = 1,     /* {"account": {...}, "contacts": [...], "open_cases": [case...] (ABI 1.2)} */
  FS_RECORD_VISIT = 2,       /* {"id", "account_id", "rep_id", "check_in_at_ms", "check_out_at_ms", ...} */
  FS_RECORD_ORDER = 3,       /* {"id", ..., "lines": [...], "gross_cents", "discount_cents", "total_cents"} */
  FS_RECORD_EVENT = 4,       /* {"id", "owner_id", "title", "start_at_ms", "end_at_ms", "status", ...} */
  FS_RECORD_OPPORTUNITY = 5, /* {"id", "account_id", "name", "stage", "amount_cents", ...} */
  /* ABI 1.2 */
  FS_RECORD_LEAD = 6,         /* {"id", "person_name", "source", "status", "converted_account_id", ...} */
  FS_RECORD_SERVICE_CASE = 7, /* {"id", "account_id", "subject", "priority", "status", "assignee_id",
                                 "due_at_ms", "escalation_level", "resolution_notes", "billable", ...} */
  FS_RECORD_ASSET = 8,        /* {"id", "account_id", "serial_number", "warranty_end_at_ms", ...} */
  FS_RECORD_TASK = 9          /* {"id", "title", "due_at_ms", "status", "completed_at_ms", ...} */
};
/* Errors: FS_CODE_RECORD_NOT_FOUND, FS_CODE_INVALID_ARGUMENT (not an id), FS_API_UNKNOWN_ENUM. */
FS_API bool fs_get(fs_client* FS_NULLABLE client, fs_record_kind kind, const char* FS_NULLABLE id,
                   char* FS_NULLABLE* FS_NULLABLE json_out, fs_error* FS_NULLABLE error);

typedef int32_t fs_listing;
enum {
  FS_LIST_ACCOUNTS_BY_PREFIX = 1,    /* arg: name prefix ("" or NULL: all); [account...] by name */
  FS_LIST_ACCOUNTS_IN_TERRITORY = 2, /* arg: territory id */
  FS_LIST_VISITS_OF_ACCOUNT = 3,     /* arg: account id; newest first */
  FS_LIST_TODAYS_VISITS = 4,         /* mine, oldest first */
  FS_LIST_OPEN_ORDERS = 5,           /* mine, draft or submitted, oldest first, with lines */
  FS_LIST_AGENDA_TODAY = 6,          /* mine, scheduled */
  FS_LIST_AGENDA_WEEK = 7,           /* Monday to Sunday in the rep's zone */
  FS_LIST_PIPELINE = 8,              /* [{"stage", "currency", "count", "amount_cents"}] in funnel order */
  FS_LIST_CONFLICTS = 9,             /* [conflict...] oldest first (see fs_on_conflict for the form) */
  FS_LIST_REJECTIONS = 10,           /* [rejection...] oldest first */
  FS_LIST_CONFLICT_INBOX = 11,  /* arg: "unread" or NULL; [{"inbox_id", "seen", "conflict"}] newest first */
  FS_LIST_REJECTION_INBOX = 12, /* arg: "unread" or NULL; [{"inbox_id", "seen", "rejection"}] */
  /* ABI 1.2 */
  FS_LIST_MY_LEADS = 13,              /* mine, not converted or disqualified, oldest first */
  FS_LIST_MY_CASES = 14,              /* assigned to me, not resolved or closed, by due time */
  FS_LIST_OPEN_CASES_OF_ACCOUNT = 15, /* arg: account id; not resolved or closed, oldest first */
  FS_LIST_ASSETS_OF_ACCOUNT = 16,     /* arg: account id; by serial number */
  FS_LIST_OPEN_TASKS = 17,            /* mine, open, by due time */
  FS_LIST_OVERDUE_TASKS = 18          /* mine, open, due before now */
};
/* A JSON array. Errors: FS_API_UNKNOWN_ENUM, FS_API_NULL_ARGUMENT (a listing that needs arg). */
FS_API bool fs_list(fs_client* FS_NULLABLE client, fs_listing listing, const char* FS_NULLABLE arg,
                    char* FS_NULLABLE* FS_NULLABLE json_out, fs_error* FS_NULLABLE error);
/* Mine, scheduled, overlapping [from_ms, to_ms). */
FS_API bool fs_agenda(fs_client* FS_NULLABLE client, int64_t from_ms, int64_t to_ms,
                      char* FS_NULLABLE* FS_NULLABLE json_out, fs_error* FS_NULLABLE error);
/* Every live record as canonical JSON (the bytes `fieldsync-admin export --user` prints for this user). */
FS_API bool fs_export_json(fs_client* FS_NULLABLE client, char* FS_NULLABLE* FS_NULLABLE json_out,
                           fs_error* FS_NULLABLE error);

FS_API bool fs_unread_counts(fs_client* FS_NULLABLE client, uint32_t* FS_NULLABLE conflicts,
                             uint32_t* FS_NULLABLE rejections, fs_error* FS_NULLABLE error);
/* Marks inbox entries up to and including `up_to_inbox_id` (the newest one the app showed) as seen. */
FS_API bool fs_mark_conflicts_seen(fs_client* FS_NULLABLE client, int64_t up_to_inbox_id,
                                   fs_error* FS_NULLABLE error);
FS_API bool fs_mark_rejections_seen(fs_client* FS_NULLABLE client, int64_t up_to_inbox_id,
                                    fs_error* FS_NULLABLE error);

/* ---- Sync */

typedef int32_t fs_sync_state;
enum {
  FS_STATE_DISCONNECTED = 0,
  FS_STATE_HANDSHAKING = 1,
  FS_STATE_BOOTSTRAPPING = 2,
  FS_STATE_SYNCING = 3,
  FS_STATE_STOPPED = 4 /* a non-retryable error (auth, revoked, protocol): see the error callback */
};

typedef struct fs_sync_status {
  fs_sync_state state;
  int32_t connected;         /* 1: the connection is open */
  int32_t running;           /* 1: fs_sync_start's transport is running */
  int32_t has_last_synced;   /* 1: last_synced_at_ms is set */
  uint64_t pending_count;    /* local transactions not yet acknowledged by the server */
  int64_t last_synced_at_ms; /* when the replica was last fully synced (outbox empty, caught up) */
  uint64_t bootstrap_done;   /* records received of bootstrap_total (latest bootstrap) */
  uint64_t bootstrap_total;
} fs_sync_status;

/* Starts the transport thread: connects, syncs, stays connected for live changes, reconnects with backoff
 * until fs_sync_stop or a non-retryable error. Errors: FS_API_BAD_STATE (no server URL or token, already
 * running, or an fs_sync_now connection in progress), FS_DOMAIN_TRANSPORT (bad URL, unreadable CA file, bad
 * pin: nothing started). */
FS_API bool fs_sync_start(fs_client* FS_NULLABLE client, fs_error* FS_NULLABLE error);
/* Closes the connection cleanly and joins the transport thread. Not running: does nothing. */
FS_API bool fs_sync_stop(fs_client* FS_NULLABLE client, fs_error* FS_NULLABLE error);
/* Pushes and pulls until idle (outbox empty, caught up) or timeout_ms. While fs_sync_start's transport runs,
 * waits for it instead of opening a second connection. Errors: FS_TRANSPORT_TIMEOUT, the connection's error,
 * the engine's stop reason (e.g. FS_CODE_AUTH_FAILED). */
FS_API bool fs_sync_now(fs_client* FS_NULLABLE client, int64_t timeout_ms, fs_error* FS_NULLABLE error);
FS_API bool fs_sync_status_get(fs_client* FS_NULLABLE client, fs_sync_status* FS_NULLABLE status_out,
                               fs_error* FS_NULLABLE error);

/* ---- Callbacks. One of each kind per client: setting one replaces the previous, a NULL function removes
 * it. user_data is passed back untouched. See Threading above for the calling thread. */

/* Records changed by sync or by the app: [{"entity": "account", "id": "..."}...]. */
typedef void (*fs_records_changed_fn)(void* FS_NULLABLE user_data, const char* FS_NONNULL records_json);
typedef int32_t fs_progress_kind;
enum { FS_PROGRESS_BOOTSTRAP = 1, FS_PROGRESS_PUSH = 2 };
typedef void (*fs_progress_fn)(void* FS_NULLABLE user_data, fs_progress_kind kind, uint64_t done,
                               uint64_t total);
/* {"kind": "concurrent_write"|"delete_wins"|"scheduling", "entity", "record", "field", "rule",
 *  "server_seq", "winner": {"value", "user", "hlc", "node"}, "loser": {...}, "other_record"} */
typedef void (*fs_conflict_fn)(void* FS_NULLABLE user_data, const char* FS_NONNULL conflict_json);
/* {"node_seq", "reason": "<error code name>", "code": <number>, "message", "records": [{"entity", "id"}]} */
typedef void (*fs_rejection_fn)(void* FS_NULLABLE user_data, const char* FS_NONNULL rejection_json);
typedef void (*fs_synced_fn)(void* FS_NULLABLE user_data);
typedef void (*fs_error_fn)(void* FS_NULLABLE user_data, const fs_error* FS_NONNULL error);
/* The device was revoked and the replica erased (unsynced writes are lost by design); every later call
 * fails with FS_CODE_DEVICE_REVOKED. `result` says whether deleting a file failed. */
typedef void (*fs_erased_fn)(void* FS_NULLABLE user_data, const fs_error* FS_NONNULL result);

FS_API bool fs_on_records_changed(fs_client* FS_NULLABLE client, fs_records_changed_fn FS_NULLABLE fn,
                                  void* FS_NULLABLE user_data, fs_error* FS_NULLABLE error);
FS_API bool fs_on_progress(fs_client* FS_NULLABLE client, fs_progress_fn FS_NULLABLE fn,
                           void* FS_NULLABLE user_data, fs_error* FS_NULLABLE error);
FS_API bool fs_on_conflict(fs_client* FS_NULLABLE client, fs_conflict_fn FS_NULLABLE fn,
                           void* FS_NULLABLE user_data, fs_error* FS_NULLABLE error);
FS_API bool fs_on_rejection(fs_client* FS_NULLABLE client, fs_rejection_fn FS_NULLABLE fn,
                            void* FS_NULLABLE user_data, fs_error* FS_NULLABLE error);
FS_API bool fs_on_synced(fs_client* FS_NULLABLE client, fs_synced_fn FS_NULLABLE fn,
                         void* FS_NULLABLE user_data, fs_error* FS_NULLABLE error);
FS_API bool fs_on_error(fs_client* FS_NULLABLE client, fs_error_fn FS_NULLABLE fn,
                        void* FS_NULLABLE user_data, fs_error* FS_NULLABLE error);
FS_API bool fs_on_erased(fs_client* FS_NULLABLE client, fs_erased_fn FS_NULLABLE fn,
                         void* FS_NULLABLE user_data, fs_error* FS_NULLABLE error);

#ifdef __cplusplus
}
#endif

#if defined(__clang__)
#pragma clang diagnostic pop
#endif

#endif /* FIELDSYNC_FIELDSYNC_H */
