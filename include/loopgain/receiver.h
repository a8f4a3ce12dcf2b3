/*
 * loopgain-receiver: the C API.
 *
 * The receiver keeps the anonymized loop telemetry that the loopgain Python
 * client sends (one JSON payload per loop run), per customer, and answers the
 * aggregate reads a dashboard needs. It owns no network stack: a host server
 * (C++, Python, Go, anything with a C FFI) receives HTTP and hands each
 * request to lgr_handle_request(), or calls the typed functions below.
 *
 * This header is the specification. It compiles as C11 and as C++.
 *
 * ---------------------------------------------------------------------------
 * Rules that hold for every function (read these once)
 * ---------------------------------------------------------------------------
 *
 *  1. Ownership. Everything the library returns through an out-parameter
 *     belongs to the caller and is released with the matching lgr_*_free()
 *     (strings with lgr_string_free()). Every lgr_*_free() accepts NULL.
 *     Never release library memory with the host's own free().
 *  2. Borrowing. Every input (strings, buffers, option objects) is borrowed
 *     for the duration of the call only; the library copies what it keeps.
 *     Strings returned by accessors of a result object (for example
 *     lgr_error_message()) are borrowed from that object and stay valid until
 *     it is freed.
 *  3. Status codes. Every fallible function returns an lgr_status; LGR_OK (0)
 *     is success. Codes are only ever added, never renumbered. The return
 *     code decides success; messages explain it.
 *  4. Error details. Fallible functions take a last parameter
 *     `lgr_error **error`. Pass NULL if you do not want details. When it is
 *     non-NULL and the call fails, *error receives a new lgr_error (free it
 *     with lgr_error_free()); on success *error is set to NULL. Because each
 *     call returns its own error object there is no shared "last error"
 *     state, and concurrent callers never see each other's messages.
 *  5. Out-parameters are set to NULL (or 0) on failure, except where a
 *     function says otherwise.
 *  6. Threads. One lgr_receiver may be used from any number of threads at
 *     once; every function that takes a receiver is thread-safe, except
 *     lgr_receiver_free(), which must be the last call on a handle.
 *     Option objects and result objects are not synchronised: use each from
 *     one thread at a time.
 *  7. Strings are UTF-8 and NUL-terminated unless a length is passed with
 *     them. Invalid UTF-8 in any text argument is LGR_ERR_INVALID_ARGUMENT.
 *  8. No function prints, aborts or throws. Diagnostics go to the log
 *     callback set with lgr_options_set_logger(), if any.
 *  9. Compatibility. Functions and status codes are only ever added. A
 *     changed behaviour gets a new function (with a _v2 suffix); structures
 *     passed by the caller start with a `version` field so they can grow.
 */
#ifndef LOOPGAIN_RECEIVER_H
#define LOOPGAIN_RECEIVER_H

#include <stddef.h>
#include <stdint.h>

#include "loopgain/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Versions                                                                  */
/* ------------------------------------------------------------------------ */

#define LGR_VERSION_MAJOR 0
#define LGR_VERSION_MINOR 2
#define LGR_VERSION_PATCH 0
#define LGR_VERSION_STRING "0.2.0"
/* MAJOR * 10000 + MINOR * 100 + PATCH, comparable with `>=`. */
#define LGR_VERSION_NUMBER \
  (LGR_VERSION_MAJOR * 10000 + LGR_VERSION_MINOR * 100 + LGR_VERSION_PATCH)

/* The version of the library actually loaded, e.g. "0.2.0". Static string. */
LGR_EXPORT const char *lgr_version(void);
/* The LGR_VERSION_NUMBER the loaded library was built with. */
LGR_EXPORT int lgr_version_number(void);

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */

typedef enum lgr_status {
  LGR_OK = 0,
  /* The caller broke a precondition: a NULL handle or required pointer, a
   * string that is not UTF-8, an option out of range. */
  LGR_ERR_INVALID_ARGUMENT = 1,
  /* The receiver was closed with lgr_receiver_close(). */
  LGR_ERR_CLOSED = 2,
  /* No valid bearer token (missing, malformed, unknown or revoked). */
  LGR_ERR_UNAUTHORIZED = 3,
  /* The payload was refused by the validator or the privacy contract;
   * lgr_error_code_name() tells which (invalid_json, invalid_payload, ...). */
  LGR_ERR_INVALID_PAYLOAD = 4,
  /* A read's query parameter is invalid (invalid_query). */
  LGR_ERR_INVALID_QUERY = 5,
  /* The customer does not exist. */
  LGR_ERR_NOT_FOUND = 6,
  /* The database failed: disk full, read-only, corrupt, I/O error. */
  LGR_ERR_STORAGE = 7,
  /* Temporarily unable to serve (overloaded or locked); retry later. */
  LGR_ERR_BUSY = 8,
  /* The database was written by a newer version of this library and is
   * left untouched. */
  LGR_ERR_SCHEMA_TOO_NEW = 9,
  /* Out of memory. */
  LGR_ERR_NO_MEMORY = 10,
  /* A bug in the library, or a call from a completion callback that would
   * wait for its own thread (see lgr_handle_request_async()); the message
   * says which. */
  LGR_ERR_INTERNAL = 11
} lgr_status;

/* A static, human-readable name for a status ("LGR_ERR_STORAGE"). Never NULL;
 * unknown values give "LGR_ERR_UNKNOWN". */
LGR_EXPORT const char *lgr_status_name(lgr_status status);

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct lgr_error lgr_error;

/* The status of the failed call. */
LGR_EXPORT lgr_status lgr_error_status(const lgr_error *error);
/* The machine-readable code the HTTP API uses in {"error": code}, for
 * example "invalid_payload", "privacy_violation", "unauthorized",
 * "storage_error". Never NULL. */
LGR_EXPORT const char *lgr_error_code_name(const lgr_error *error);
/* The JSON Pointer of the offending field ("/loop/iterations_used"), or the
 * name of the offending query parameter for invalid_query; "" when the error
 * is not about one place. Never NULL. */
LGR_EXPORT const char *lgr_error_pointer(const lgr_error *error);
/* A one-line human explanation. Never NULL. */
LGR_EXPORT const char *lgr_error_message(const lgr_error *error);
/* The HTTP status every host should answer with (400, 401, 413, 422, 503,
 * ...). */
LGR_EXPORT int lgr_error_http_status(const lgr_error *error);
LGR_EXPORT void lgr_error_free(lgr_error *error);

/* Releases a string returned by the library. NULL is allowed. */
LGR_EXPORT void lgr_string_free(char *string);

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

/* What the receiver keeps of a payload's `per_iteration` block (the
 * per-iteration Aβ and error trajectories). Content-bearing fields (prompts,
 * completions, outputs, error text) are refused under every policy. */
typedef enum lgr_privacy_policy {
  /* Default. Only structural statistics are stored; a per_iteration block is
   * removed before storage and reported as redacted. */
  LGR_PRIVACY_SUMMARY_ONLY = 0,
  /* The capped numeric trajectories are stored too, for deployments whose
   * users opted in. */
  LGR_PRIVACY_TRAJECTORIES = 1,
  /* A payload that carries per_iteration is refused (privacy_violation). */
  LGR_PRIVACY_STRICT = 2
} lgr_privacy_policy;

typedef enum lgr_log_level {
  LGR_LOG_DEBUG = 0,
  LGR_LOG_INFO = 1,
  LGR_LOG_WARN = 2,
  LGR_LOG_ERROR = 3
} lgr_log_level;

/* Receives one diagnostic line. `message` is borrowed for the call. May be
 * called from any thread, including the library's internal writer thread;
 * it must not call back into the same receiver. */
typedef void (*lgr_log_fn)(void *user_data, lgr_log_level level,
                           const char *message);

/* Options for lgr_receiver_open(). An opaque object so that options can be
 * added without breaking the ABI. Defaults: database "./var/telemetry.db",
 * policy LGR_PRIVACY_SUMMARY_ONLY, body cap 262144 bytes, no CORS origins,
 * no logger, the system clock. */
typedef struct lgr_options lgr_options;

/* Returns NULL only when out of memory. */
LGR_EXPORT lgr_options *lgr_options_create(void);
LGR_EXPORT void lgr_options_free(lgr_options *options);

/* The SQLite database file. Created (with its parent directory absent: an
 * error) and migrated on open. ":memory:" gives a private in-memory store. */
LGR_EXPORT lgr_status lgr_options_set_db_path(lgr_options *options,
                                              const char *path,
                                              lgr_error **error);
LGR_EXPORT lgr_status lgr_options_set_privacy_policy(
    lgr_options *options, lgr_privacy_policy policy, lgr_error **error);
/* Parses "summary_only", "trajectories" or "strict". */
LGR_EXPORT lgr_status lgr_options_set_privacy_policy_name(
    lgr_options *options, const char *name, lgr_error **error);
/* The largest accepted ingest body, 1 .. 16 MiB. Larger bodies are refused
 * with payload_too_large (413) before they are parsed. */
LGR_EXPORT lgr_status lgr_options_set_max_body_bytes(lgr_options *options,
                                                     size_t max_body_bytes,
                                                     lgr_error **error);
/* Adds a browser origin (e.g. "https://dashboard.example.com") allowed to
 * call the read routes through lgr_handle_request(). Exact match, so the
 * origin must look as browsers send it: "http(s)://HOST[:PORT]", port
 * 1..65535, nothing after; anything else is LGR_ERR_INVALID_ARGUMENT. The
 * ingest route never accepts browser requests. */
LGR_EXPORT lgr_status lgr_options_add_cors_origin(lgr_options *options,
                                                  const char *origin,
                                                  lgr_error **error);
/* Messages at `min_level` and above go to `fn`. NULL `fn` turns logging
 * off. */
LGR_EXPORT lgr_status lgr_options_set_logger(lgr_options *options,
                                             lgr_log_level min_level,
                                             lgr_log_fn fn, void *user_data,
                                             lgr_error **error);
/* For tests and replays: use `unix_seconds` as "now" for every time window,
 * for the future-timestamp check and for token expiry. 0 restores the
 * system clock. Note that a token revoked by another process that runs on
 * the system clock stays valid here until the fixed time passes the
 * revocation time. */
LGR_EXPORT lgr_status lgr_options_set_fixed_time(lgr_options *options,
                                                 int64_t unix_seconds,
                                                 lgr_error **error);

/* ------------------------------------------------------------------------ */
/* Receiver lifetime                                                         */
/* ------------------------------------------------------------------------ */

typedef struct lgr_receiver lgr_receiver;

/* Opens (creating and migrating if needed) the store named by `options`
 * (NULL: all defaults). On success *out is a new receiver.
 * Errors: LGR_ERR_INVALID_ARGUMENT (out is NULL), LGR_ERR_STORAGE (cannot
 * open, read-only or corrupt file), LGR_ERR_SCHEMA_TOO_NEW. */
LGR_EXPORT lgr_status lgr_receiver_open(const lgr_options *options,
                                        lgr_receiver **out,
                                        lgr_error **error);

/* Stops accepting work, waits for in-flight calls, commits every event
 * already acknowledged and closes the database. Idempotent. The handle stays
 * valid: later calls fail with LGR_ERR_CLOSED instead of crashing. Returns
 * LGR_ERR_STORAGE if the final flush failed, and LGR_ERR_INTERNAL, changing
 * nothing, when called from a callback on the writer thread (see
 * lgr_handle_request_async()). */
LGR_EXPORT lgr_status lgr_receiver_close(lgr_receiver *receiver,
                                         lgr_error **error);

/* Closes the receiver if needed and releases the handle. NULL is allowed.
 * No call may use the handle afterwards, and none may be running. */
LGR_EXPORT void lgr_receiver_free(lgr_receiver *receiver);

/* ------------------------------------------------------------------------ */
/* Customers and tokens                                                      */
/* ------------------------------------------------------------------------ */
/*
 * Customer ids look like "cust_" + 16 lowercase hex digits; bearer tokens
 * like "lgk_" + 32 base64url characters. Only the SHA-256 of a token is
 * stored: a plain token is returned exactly once, by the call that made it.
 */

/* Creates a customer and its first token. `name` is required, `email` may
 * be NULL; each 1..200 printable characters on one line. On success *out_customer_id and
 * *out_token are new strings (lgr_string_free). */
LGR_EXPORT lgr_status lgr_customer_create(lgr_receiver *receiver,
                                          const char *name, const char *email,
                                          char **out_customer_id,
                                          char **out_token, lgr_error **error);

/* Issues a new token for an existing customer. The customer's other tokens
 * stop working after `grace_seconds` (0: at once), so a rotation can
 * overlap. LGR_ERR_NOT_FOUND for an unknown customer. */
LGR_EXPORT lgr_status lgr_token_rotate(lgr_receiver *receiver,
                                       const char *customer_id,
                                       int64_t grace_seconds, char **out_token,
                                       lgr_error **error);

/* Revokes every token of the customer at once. Its events are kept. */
LGR_EXPORT lgr_status lgr_customer_revoke(lgr_receiver *receiver,
                                          const char *customer_id,
                                          lgr_error **error);

/* Deletes the customer, its tokens and all its events. Irreversible. */
LGR_EXPORT lgr_status lgr_customer_delete(lgr_receiver *receiver,
                                          const char *customer_id,
                                          lgr_error **error);

/* All customers as a JSON array of objects: customer_id, name, email (or
 * null), created_at, last_seen_at (or null), active_tokens, event_count.
 * *out_json is a new NUL-terminated string; *out_len (may be NULL) its
 * length. */
LGR_EXPORT lgr_status lgr_customers_list_json(lgr_receiver *receiver,
                                              char **out_json, size_t *out_len,
                                              lgr_error **error);

/* Resolves a bearer token to its customer. `authorization` is the raw value
 * of an HTTP Authorization header ("Bearer lgk_..."; the scheme is matched
 * case-insensitively). Takes the same time whether the header is missing,
 * malformed or unknown. LGR_ERR_UNAUTHORIZED when it does not resolve. */
LGR_EXPORT lgr_status lgr_authenticate(lgr_receiver *receiver,
                                       const char *authorization,
                                       char **out_customer_id,
                                       lgr_error **error);

/* ------------------------------------------------------------------------ */
/* Ingest                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct lgr_ingest_result lgr_ingest_result;

/* Validates one payload, enforces the privacy policy and stores the event.
 * `authorization` is the raw Authorization header value (as for
 * lgr_authenticate); `body`/`body_len` the request body (need not be
 * NUL-terminated). Returns LGR_OK only after the event is committed to the
 * database. On success *out_result (may be NULL if not wanted) describes what
 * was removed before storage. Errors: LGR_ERR_UNAUTHORIZED,
 * LGR_ERR_INVALID_PAYLOAD (see lgr_error_code_name/pointer), LGR_ERR_STORAGE,
 * LGR_ERR_BUSY, LGR_ERR_CLOSED. */
LGR_EXPORT lgr_status lgr_ingest(lgr_receiver *receiver,
                                 const char *authorization, const char *body,
                                 size_t body_len,
                                 lgr_ingest_result **out_result,
                                 lgr_error **error);

/* The customer the event was stored for. */
LGR_EXPORT const char *lgr_ingest_result_customer_id(
    const lgr_ingest_result *result);
/* JSON Pointers of the parts removed by the privacy policy
 * (e.g. "/per_iteration"). */
LGR_EXPORT size_t lgr_ingest_result_redacted_count(
    const lgr_ingest_result *result);
LGR_EXPORT const char *lgr_ingest_result_redacted(
    const lgr_ingest_result *result, size_t index);
/* JSON Pointers of unknown keys that were dropped, never stored. */
LGR_EXPORT size_t lgr_ingest_result_ignored_count(
    const lgr_ingest_result *result);
LGR_EXPORT const char *lgr_ingest_result_ignored(
    const lgr_ingest_result *result, size_t index);
LGR_EXPORT void lgr_ingest_result_free(lgr_ingest_result *result);

/* ------------------------------------------------------------------------ */
/* Reads                                                                     */
/* ------------------------------------------------------------------------ */
/*
 * Each read is for one customer and never sees another customer's rows. The
 * JSON is exactly what the HTTP routes answer. *out_json is a new
 * NUL-terminated string (lgr_string_free); *out_len may be NULL.
 */

/* The last 30 days: {"customer_id", "window_days": 30, "since", "outcomes":
 * [{"outcome","count"}], "totals": {"event_count", "total_iterations",
 * "total_savings", "rollbacks"}, "workloads": [{"workload_id","count"}]
 * (top 50 by count)}. */
LGR_EXPORT lgr_status lgr_stats_json(lgr_receiver *receiver,
                                     const char *customer_id, char **out_json,
                                     size_t *out_len, lgr_error **error);

/* Convergence profiles, newest first, at most 1000: {"customer_id",
 * "workload_id", "events": [...]}. `workload_id` NULL: every workload.
 * `since_hours` 0: the last 30 days; otherwise 1..8760. */
LGR_EXPORT lgr_status lgr_profiles_json(lgr_receiver *receiver,
                                        const char *customer_id,
                                        const char *workload_id,
                                        int since_hours, char **out_json,
                                        size_t *out_len, lgr_error **error);

/* Loop events of the last 30 days, newest first, at most 500:
 * {"customer_id", "events": [...]}. `rollbacks_only` non-zero keeps only
 * events whose rollback was triggered. */
LGR_EXPORT lgr_status lgr_events_json(lgr_receiver *receiver,
                                      const char *customer_id,
                                      int rollbacks_only, char **out_json,
                                      size_t *out_len, lgr_error **error);

/* ------------------------------------------------------------------------ */
/* HTTP-shaped requests                                                      */
/* ------------------------------------------------------------------------ */

/* One HTTP request as a host received it. Initialise with
 * lgr_http_request_init() and fill in what you have; NULL means "absent".
 * New fields are only ever appended, with a new version number. */
typedef struct lgr_http_request {
  unsigned int version; /* LGR_HTTP_REQUEST_VERSION */
  const char *method;   /* "GET", "POST", ... (required) */
  const char *path;     /* "/v1/stats", without the query (required) */
  const char *query;    /* raw query string without '?', or NULL */
  const char *authorization;  /* Authorization header value */
  const char *origin;         /* Origin header value */
  const char *content_type;   /* Content-Type header value */
  const char *content_length; /* Content-Length header value, as sent */
  const char *body;           /* request body bytes, or NULL */
  size_t body_len;
  /* Access-Control-Request-Method of a CORS preflight (OPTIONS). */
  const char *access_control_request_method;
} lgr_http_request;

#define LGR_HTTP_REQUEST_VERSION 1u

/* Zeroes `request` and sets its version. */
LGR_EXPORT void lgr_http_request_init(lgr_http_request *request);

typedef struct lgr_http_response lgr_http_response;

/* Runs one request through the route table: POST /v1/aggregate (202),
 * GET /v1/stats, GET /v1/profiles, GET /v1/events, GET /health, OPTIONS
 * preflights; 404 not_found, 405 method_not_allowed, 401 unauthorized, 403
 * browser_requests_not_allowed, and the validator's 400/413/422. Every error
 * body is {"error": code, "path": pointer, "message": text}. HEAD on a GET
 * route is answered as GET, body included: the host sends the headers,
 * Content-Length among them, and not the body.
 *
 * Returns LGR_OK whenever *out holds a response to send, whatever its HTTP
 * status. LGR_ERR_INVALID_ARGUMENT (NULL receiver, request or out, or an
 * unknown request version) leaves *out NULL. After lgr_receiver_close() the
 * call returns LGR_ERR_CLOSED and *out still holds a 503 response, so a host
 * can always answer. */
LGR_EXPORT lgr_status lgr_handle_request(lgr_receiver *receiver,
                                         const lgr_http_request *request,
                                         lgr_http_response **out);

LGR_EXPORT int lgr_http_response_status(const lgr_http_response *response);
/* "application/json" for every route. */
LGR_EXPORT const char *lgr_http_response_content_type(
    const lgr_http_response *response);
/* The body bytes; *out_len receives the length (required). */
LGR_EXPORT const char *lgr_http_response_body(
    const lgr_http_response *response, size_t *out_len);
/* Headers to send besides Content-Type and Content-Length: security headers
 * on every response, CORS headers for allowed origins, Retry-After on 503. */
LGR_EXPORT size_t lgr_http_response_header_count(
    const lgr_http_response *response);
/* Borrows the name and value of header `index`; LGR_ERR_INVALID_ARGUMENT if
 * out of range. */
LGR_EXPORT lgr_status lgr_http_response_header(
    const lgr_http_response *response, size_t index, const char **out_name,
    const char **out_value);
/* The authenticated customer, for access logs; "" when none. Never the
 * token. */
LGR_EXPORT const char *lgr_http_response_customer_id(
    const lgr_http_response *response);
LGR_EXPORT void lgr_http_response_free(lgr_http_response *response);

/* ------------------------------------------------------------------------ */
/* HTTP-shaped requests, completed by callback                               */
/* ------------------------------------------------------------------------ */

/* Receives the answer to one lgr_handle_request_async() call. `response`
 * now belongs to the callee (free it with lgr_http_response_free()); it is
 * NULL only if the library ran out of memory while building it, and the
 * host then answers 500 itself. */
typedef void (*lgr_http_response_fn)(void *user_data,
                                     lgr_http_response *response);

/* The same routes, statuses and bodies as lgr_handle_request(), for hosts
 * with an event loop: an ingest does not hold the calling thread while its
 * event waits for the commit.
 *
 * Returns LGR_OK when `on_response` will be called exactly once, with the
 * same response lgr_handle_request() would have given (a call racing
 * lgr_receiver_close() may get LGR_OK and the 503 of a closed receiver);
 * LGR_ERR_CLOSED when the receiver was already closed, and then
 * `on_response` has already been called with the 503. Any other status
 * means it will never be called: LGR_ERR_INVALID_ARGUMENT (NULL receiver,
 * request, on_response, method or path, a NULL body with a non-zero
 * body_len, an unknown request version), LGR_ERR_NO_MEMORY. Invalid UTF-8
 * in the request's text is answered 400, as by lgr_handle_request().
 *
 * Where the callback runs:
 *  - POST /v1/aggregate whose payload was accepted: on the store's writer
 *    thread, after the commit (or the failed commit) of the batch holding
 *    the event, possibly before this function has returned.
 *  - Every other request, including every refused ingest: on the calling
 *    thread, before this function returns. Reads query the database on the
 *    calling thread as lgr_handle_request() does, so an event loop should
 *    still hand GET requests to a worker thread.
 * So a host must not hold a lock around this call that its callback takes,
 * nor around lgr_receiver_close(), which waits for writer-thread callbacks.
 * `on_response` must not throw (or longjmp); an exception is dropped.
 *
 * At most 65,536 accepted events wait for the writer, each holding its
 * stored fields (with the trajectories policy, its per-iteration values);
 * beyond that an ingest is answered 503 busy with Retry-After, as by
 * lgr_handle_request().
 *
 * The request is borrowed for the duration of the call only, like every
 * input. The callbacks of one commit run one after another on the writer
 * thread, and the next commit waits for them: hand the response to the
 * host's own loop and return. A callback there may call
 * lgr_handle_request_async() and the read functions. A call that would wait
 * for the writer fails there with LGR_ERR_INTERNAL instead of waiting for
 * itself: lgr_ingest(), the customer functions that write (create, rotate,
 * revoke, delete), lgr_receiver_close() (which then changes nothing), and
 * with an in-memory database, whose reads run on the writer, every read;
 * through lgr_handle_request() and lgr_handle_request_async() those answer
 * 500 internal_error. lgr_receiver_free() there aborts the process: it
 * would destroy the thread it runs on. Calls made while
 * lgr_receiver_close() runs fail with LGR_ERR_CLOSED.
 * lgr_receiver_close() returns only after every writer-thread callback has
 * returned; an answer given on a calling thread runs in that thread, and
 * may still be running there when close returns. */
LGR_EXPORT lgr_status lgr_handle_request_async(
    lgr_receiver *receiver, const lgr_http_request *request,
    lgr_http_response_fn on_response, void *user_data);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* LOOPGAIN_RECEIVER_H */
