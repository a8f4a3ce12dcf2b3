// Package receiver embeds loopgain-receiver in Go programs through its C
// API (cgo, pkg-config package loopgain-receiver).
//
// The receiver keeps the anonymized loop telemetry that the loopgain client
// sends, per customer, and answers the aggregate reads. Open a Receiver,
// then either call the typed methods or hand whole HTTP requests to
// HandleRequest (NewHandler wraps that as an http.Handler).
//
// Every method is safe for concurrent use by goroutines. Failed calls
// return an *Error carrying the API's machine code, the JSON Pointer of the
// offending field and the HTTP status to answer with. Every C string the
// package creates is freed, and every object the library returns is
// released with its matching lgr_*_free before the method returns.
//
// include/loopgain/receiver.h is the specification of every call.
package receiver

/*
#cgo pkg-config: loopgain-receiver
#include <stdint.h>
#include <stdlib.h>
#include "loopgain/receiver.h"

// Defined in log.go (exported from Go).
extern void lgrGoLog(uintptr_t handle, int level, char *message);

static void lgr_go_log(void *user, lgr_log_level level, const char *message) {
	lgrGoLog((uintptr_t)user, (int)level, (char *)message);
}

static lgr_status lgr_go_set_logger(lgr_options *options, int min_level,
                                    uintptr_t handle, lgr_error **error) {
	return lgr_options_set_logger(options, (lgr_log_level)min_level,
	                              lgr_go_log, (void *)handle, error);
}
*/
import "C"

import (
	"encoding/json"
	"runtime"
	"runtime/cgo"
	"time"
	"unsafe"
)

// PrivacyPolicy says what the receiver keeps of a payload's per_iteration
// block.
type PrivacyPolicy string

const (
	// SummaryOnly (the default) stores structural statistics only.
	SummaryOnly PrivacyPolicy = "summary_only"
	// Trajectories also stores the capped numeric trajectories.
	Trajectories PrivacyPolicy = "trajectories"
	// Strict refuses payloads that carry per_iteration.
	Strict PrivacyPolicy = "strict"
)

// LogLevel is the severity of a diagnostic line.
type LogLevel int

// Log levels, as lgr_log_level.
const (
	LogDebug LogLevel = 0
	LogInfo  LogLevel = 1
	LogWarn  LogLevel = 2
	LogError LogLevel = 3
)

func (l LogLevel) String() string {
	switch l {
	case LogDebug:
		return "debug"
	case LogInfo:
		return "info"
	case LogWarn:
		return "warn"
	case LogError:
		return "error"
	}
	return "unknown"
}

// Options configure Open. The zero value gives the library's defaults.
type Options struct {
	// DBPath is the SQLite file (its directory must exist) or ":memory:".
	// Empty: "./var/telemetry.db".
	DBPath string
	// PrivacyPolicy; empty means SummaryOnly.
	PrivacyPolicy PrivacyPolicy
	// MaxBodyBytes is the largest accepted ingest body, 1 .. 16 MiB;
	// 0 means the default (256 KiB).
	MaxBodyBytes int
	// CORSOrigins are the browser origins allowed to call the read routes.
	CORSOrigins []string
	// FixedTime, when not zero, is used as "now" (tests and replays).
	FixedTime time.Time
	// Logger receives the library's diagnostics at LogLevel and above. It
	// may be called from any goroutine or library thread and must not call
	// back into the receiver.
	Logger   func(level LogLevel, message string)
	LogLevel LogLevel
}

// Receiver is an open store. Close it when done.
type Receiver struct {
	handle *C.lgr_receiver
	logger cgo.Handle // 0 when there is no logger
}

// Version is the version of the loaded library, e.g. "0.2.0".
func Version() string { return C.GoString(C.lgr_version()) }

// Open opens (creating and migrating if needed) the store named by opts.
// Errors are *Error: an invalid option (StatusInvalidArgument),
// StatusStorage or StatusSchemaTooNew.
func Open(opts Options) (*Receiver, error) {
	copts := C.lgr_options_create()
	if copts == nil {
		return nil, &Error{Status: StatusNoMemory, Code: "internal_error",
			Message: "lgr_options_create failed", HTTPStatus: 500}
	}
	defer C.lgr_options_free(copts)

	r := &Receiver{}
	if err := r.configure(copts, &opts); err != nil {
		r.deleteLogger()
		return nil, err
	}
	var cerr *C.lgr_error
	if st := C.lgr_receiver_open(copts, &r.handle, &cerr); st != C.LGR_OK {
		r.deleteLogger()
		return nil, takeError(st, cerr)
	}
	runtime.SetFinalizer(r, (*Receiver).release)
	return r, nil
}

func (r *Receiver) configure(copts *C.lgr_options, opts *Options) error {
	var strs cStrings
	defer strs.free()
	path := strs.add(opts.DBPath, false)
	policy := strs.add(string(opts.PrivacyPolicy), false)
	origins := make([]*C.char, len(opts.CORSOrigins))
	for i, origin := range opts.CORSOrigins {
		origins[i] = strs.add(origin, true)
	}
	if strs.err != nil {
		return strs.err
	}

	var cerr *C.lgr_error
	if path != nil {
		if st := C.lgr_options_set_db_path(copts, path, &cerr); st != C.LGR_OK {
			return takeError(st, cerr)
		}
	}
	if policy != nil {
		st := C.lgr_options_set_privacy_policy_name(copts, policy, &cerr)
		if st != C.LGR_OK {
			return takeError(st, cerr)
		}
	}
	if opts.MaxBodyBytes != 0 {
		if opts.MaxBodyBytes < 0 {
			return invalidArgument("MaxBodyBytes must not be negative")
		}
		st := C.lgr_options_set_max_body_bytes(copts,
			C.size_t(opts.MaxBodyBytes), &cerr)
		if st != C.LGR_OK {
			return takeError(st, cerr)
		}
	}
	for _, origin := range origins {
		if st := C.lgr_options_add_cors_origin(copts, origin, &cerr); st != C.LGR_OK {
			return takeError(st, cerr)
		}
	}
	if !opts.FixedTime.IsZero() {
		st := C.lgr_options_set_fixed_time(copts,
			C.int64_t(opts.FixedTime.Unix()), &cerr)
		if st != C.LGR_OK {
			return takeError(st, cerr)
		}
	}
	if opts.Logger != nil {
		r.logger = cgo.NewHandle(opts.Logger)
		st := C.lgr_go_set_logger(copts, C.int(opts.LogLevel),
			C.uintptr_t(r.logger), &cerr)
		if st != C.LGR_OK {
			return takeError(st, cerr)
		}
	}
	return nil
}

// Close stops accepting work, waits for calls in flight, commits every
// acknowledged event and closes the database. It is idempotent. Later
// calls fail with an *Error whose Status is StatusClosed, and
// HandleRequest answers 503. The small handle that remains is released
// when the Receiver is garbage-collected, which guarantees that no call is
// still using it.
func (r *Receiver) Close() error {
	if r == nil {
		return nil
	}
	defer runtime.KeepAlive(r)
	var cerr *C.lgr_error
	if st := C.lgr_receiver_close(r.handle, &cerr); st != C.LGR_OK {
		return takeError(st, cerr)
	}
	return nil
}

// release runs as the finalizer: no method can be running on r any more.
func (r *Receiver) release() {
	C.lgr_receiver_free(r.handle)
	r.handle = nil
	r.deleteLogger()
}

func (r *Receiver) deleteLogger() {
	if r.logger != 0 {
		r.logger.Delete()
		r.logger = 0
	}
}

// IssuedToken is a new bearer token; the plain token is returned only once.
type IssuedToken struct {
	CustomerID string
	Token      string
}

// CreateCustomer creates a customer and its first token. name is required
// (1..200 characters); an empty email is stored as none.
func (r *Receiver) CreateCustomer(name, email string) (IssuedToken, error) {
	defer runtime.KeepAlive(r)
	var strs cStrings
	defer strs.free()
	cname := strs.add(name, true)
	cemail := strs.add(email, false)
	if strs.err != nil {
		return IssuedToken{}, strs.err
	}
	var cid, token *C.char
	var cerr *C.lgr_error
	st := C.lgr_customer_create(r.handle, cname, cemail, &cid, &token, &cerr)
	if st != C.LGR_OK {
		return IssuedToken{}, takeError(st, cerr)
	}
	return IssuedToken{CustomerID: takeString(cid, -1),
		Token: takeString(token, -1)}, nil
}

// RotateToken issues a new token for the customer; its other tokens stop
// working after grace (0: at once). Unknown customers are StatusNotFound.
func (r *Receiver) RotateToken(customerID string, grace time.Duration) (string, error) {
	defer runtime.KeepAlive(r)
	var strs cStrings
	defer strs.free()
	cid := strs.add(customerID, true)
	if strs.err != nil {
		return "", strs.err
	}
	var token *C.char
	var cerr *C.lgr_error
	st := C.lgr_token_rotate(r.handle, cid, C.int64_t(grace/time.Second),
		&token, &cerr)
	if st != C.LGR_OK {
		return "", takeError(st, cerr)
	}
	return takeString(token, -1), nil
}

// RevokeCustomer revokes every token of the customer; its events are kept.
func (r *Receiver) RevokeCustomer(customerID string) error {
	return r.customerCall(customerID,
		func(cid *C.char, cerr **C.lgr_error) C.lgr_status {
			return C.lgr_customer_revoke(r.handle, cid, cerr)
		})
}

// DeleteCustomer deletes the customer, its tokens and all its events.
func (r *Receiver) DeleteCustomer(customerID string) error {
	return r.customerCall(customerID,
		func(cid *C.char, cerr **C.lgr_error) C.lgr_status {
			return C.lgr_customer_delete(r.handle, cid, cerr)
		})
}

// Customer is one row of Customers. Times are unix seconds.
type Customer struct {
	CustomerID   string  `json:"customer_id"`
	Name         string  `json:"name"`
	Email        *string `json:"email"`
	CreatedAt    int64   `json:"created_at"`
	LastSeenAt   *int64  `json:"last_seen_at"`
	ActiveTokens int64   `json:"active_tokens"`
	EventCount   int64   `json:"event_count"`
}

// CustomersJSON lists every customer as the library's JSON array.
func (r *Receiver) CustomersJSON() ([]byte, error) {
	defer runtime.KeepAlive(r)
	var out *C.char
	var n C.size_t
	var cerr *C.lgr_error
	st := C.lgr_customers_list_json(r.handle, &out, &n, &cerr)
	return jsonResult(st, out, n, cerr)
}

// Customers lists every customer.
func (r *Receiver) Customers() ([]Customer, error) {
	data, err := r.CustomersJSON()
	if err != nil {
		return nil, err
	}
	var customers []Customer
	return customers, decode(data, &customers)
}

// Authenticate resolves a raw Authorization header value ("Bearer lgk_...")
// to its customer id, or fails with StatusUnauthorized.
func (r *Receiver) Authenticate(authorization string) (string, error) {
	defer runtime.KeepAlive(r)
	var strs cStrings
	defer strs.free()
	cauth := strs.add(authorization, false)
	if strs.err != nil {
		return "", strs.err
	}
	var cid *C.char
	var cerr *C.lgr_error
	if st := C.lgr_authenticate(r.handle, cauth, &cid, &cerr); st != C.LGR_OK {
		return "", takeError(st, cerr)
	}
	return takeString(cid, -1), nil
}

// IngestResult says what was removed from a payload before storage, as
// JSON Pointers.
type IngestResult struct {
	CustomerID string
	Redacted   []string // removed by the privacy policy ("/per_iteration")
	Ignored    []string // unknown keys, dropped
}

// Ingest validates one payload (a POST /v1/aggregate body) and stores it
// for the customer that authorization (the raw header value) resolves to.
// It returns once the event is committed.
func (r *Receiver) Ingest(authorization string, body []byte) (*IngestResult, error) {
	defer runtime.KeepAlive(r)
	var strs cStrings
	defer strs.free()
	cauth := strs.add(authorization, false)
	if strs.err != nil {
		return nil, strs.err
	}
	var result *C.lgr_ingest_result
	var cerr *C.lgr_error
	st := C.lgr_ingest(r.handle, cauth, bytesPtr(body), C.size_t(len(body)),
		&result, &cerr)
	if st != C.LGR_OK {
		return nil, takeError(st, cerr)
	}
	defer C.lgr_ingest_result_free(result)
	out := &IngestResult{
		CustomerID: C.GoString(C.lgr_ingest_result_customer_id(result)),
		Redacted:   []string{},
		Ignored:    []string{},
	}
	for i := C.size_t(0); i < C.lgr_ingest_result_redacted_count(result); i++ {
		out.Redacted = append(out.Redacted,
			C.GoString(C.lgr_ingest_result_redacted(result, i)))
	}
	for i := C.size_t(0); i < C.lgr_ingest_result_ignored_count(result); i++ {
		out.Ignored = append(out.Ignored,
			C.GoString(C.lgr_ingest_result_ignored(result, i)))
	}
	return out, nil
}

// Stats is the answer of StatsJSON and GET /v1/stats.
type Stats struct {
	CustomerID string `json:"customer_id"`
	WindowDays int    `json:"window_days"`
	Since      int64  `json:"since"` // unix seconds
	Outcomes   []struct {
		Outcome string `json:"outcome"`
		Count   int64  `json:"count"`
	} `json:"outcomes"`
	Totals struct {
		EventCount      int64 `json:"event_count"`
		TotalIterations int64 `json:"total_iterations"`
		TotalSavings    int64 `json:"total_savings"`
		Rollbacks       int64 `json:"rollbacks"`
	} `json:"totals"`
	Workloads []struct {
		WorkloadID *string `json:"workload_id"`
		Count      int64   `json:"count"`
	} `json:"workloads"`
}

// StatsJSON reads the customer's last 30 days as JSON, exactly as
// GET /v1/stats answers.
func (r *Receiver) StatsJSON(customerID string) ([]byte, error) {
	return r.customerJSON(customerID, func(cid *C.char, out **C.char,
		n *C.size_t, cerr **C.lgr_error) C.lgr_status {
		return C.lgr_stats_json(r.handle, cid, out, n, cerr)
	})
}

// Stats reads the customer's last 30 days.
func (r *Receiver) Stats(customerID string) (*Stats, error) {
	data, err := r.StatsJSON(customerID)
	if err != nil {
		return nil, err
	}
	var s Stats
	return &s, decode(data, &s)
}

// ProfilesJSON reads convergence profiles, newest first, as
// GET /v1/profiles answers. workloadID "" means every workload;
// sinceHours 0 means the last 30 days, otherwise 1..8760.
func (r *Receiver) ProfilesJSON(customerID, workloadID string, sinceHours int) ([]byte, error) {
	defer runtime.KeepAlive(r)
	var strs cStrings
	defer strs.free()
	cid := strs.add(customerID, true)
	cworkload := strs.add(workloadID, false)
	if strs.err != nil {
		return nil, strs.err
	}
	var out *C.char
	var n C.size_t
	var cerr *C.lgr_error
	st := C.lgr_profiles_json(r.handle, cid, cworkload, C.int(sinceHours),
		&out, &n, &cerr)
	return jsonResult(st, out, n, cerr)
}

// EventsJSON reads the loop events of the last 30 days, newest first, as
// GET /v1/events answers.
func (r *Receiver) EventsJSON(customerID string, rollbacksOnly bool) ([]byte, error) {
	flag := C.int(0)
	if rollbacksOnly {
		flag = 1
	}
	return r.customerJSON(customerID, func(cid *C.char, out **C.char,
		n *C.size_t, cerr **C.lgr_error) C.lgr_status {
		return C.lgr_events_json(r.handle, cid, flag, out, n, cerr)
	})
}

// ---- helpers ----------------------------------------------------------------

// customerCall runs call with customerID as C text and turns its status
// into an error; the shape of every call that takes only a customer id.
func (r *Receiver) customerCall(customerID string,
	call func(cid *C.char, cerr **C.lgr_error) C.lgr_status) error {
	defer runtime.KeepAlive(r)
	var strs cStrings
	defer strs.free()
	cid := strs.add(customerID, true)
	if strs.err != nil {
		return strs.err
	}
	var cerr *C.lgr_error
	if st := call(cid, &cerr); st != C.LGR_OK {
		return takeError(st, cerr)
	}
	return nil
}

// customerJSON is customerCall for the reads that hand back a JSON
// document.
func (r *Receiver) customerJSON(customerID string, call func(cid *C.char,
	out **C.char, n *C.size_t, cerr **C.lgr_error) C.lgr_status) ([]byte, error) {
	var data []byte
	err := r.customerCall(customerID,
		func(cid *C.char, cerr **C.lgr_error) C.lgr_status {
			var out *C.char
			var n C.size_t
			st := call(cid, &out, &n, cerr)
			if st == C.LGR_OK {
				defer C.lgr_string_free(out)
				data = C.GoBytes(unsafe.Pointer(out), C.int(n))
			}
			return st
		})
	return data, err
}

// takeString copies and frees a string the library handed over; n < 0
// means NUL-terminated.
func takeString(s *C.char, n int) string {
	if s == nil {
		return ""
	}
	defer C.lgr_string_free(s)
	if n < 0 {
		return C.GoString(s)
	}
	return C.GoStringN(s, C.int(n))
}

func jsonResult(st C.lgr_status, out *C.char, n C.size_t, cerr *C.lgr_error) ([]byte, error) {
	if st != C.LGR_OK {
		C.lgr_string_free(out) // NULL on failure; harmless
		return nil, takeError(st, cerr)
	}
	defer C.lgr_string_free(out)
	return C.GoBytes(unsafe.Pointer(out), C.int(n)), nil
}

// bytesPtr points C at b's bytes for the duration of one call. The bytes
// hold no Go pointers, so cgo's pointer rules allow it.
func bytesPtr(b []byte) *C.char {
	if len(b) == 0 {
		return nil
	}
	return (*C.char)(unsafe.Pointer(&b[0]))
}

func decode(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return &Error{Status: StatusInternal, Code: "internal_error",
			Message:    "the library answered invalid JSON: " + err.Error(),
			HTTPStatus: 500}
	}
	return nil
}
