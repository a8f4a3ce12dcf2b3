package receiver

/*
#include <stdlib.h>
#include "loopgain/receiver.h"

// Builds the request on the C stack so that no Go memory holds a pointer
// to other Go memory across the call (the body is passed directly).
static lgr_status lgr_go_handle_request(
    lgr_receiver *receiver, const char *method, const char *path,
    const char *query, const char *authorization, const char *origin,
    const char *content_type, const char *content_length,
    const char *preflight_method, const char *body, size_t body_len,
    lgr_http_response **out) {
	lgr_http_request request;
	lgr_http_request_init(&request);
	request.method = method;
	request.path = path;
	request.query = query;
	request.authorization = authorization;
	request.origin = origin;
	request.content_type = content_type;
	request.content_length = content_length;
	request.access_control_request_method = preflight_method;
	request.body = body;
	request.body_len = body_len;
	return lgr_handle_request(receiver, &request, out);
}
*/
import "C"

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// Request is one HTTP request as a host received it. Empty strings and a
// nil Body mean "absent".
type Request struct {
	Method        string // required
	Path          string // required, without the query
	Query         string // raw, without '?'
	HasQuery      bool   // the target had a '?' (Query may still be "")
	Authorization string
	Origin        string
	ContentType   string
	ContentLength string // as sent
	// AccessControlRequestMethod of a CORS preflight.
	AccessControlRequestMethod string
	Body                       []byte
}

// Header is one response header.
type Header struct {
	Name, Value string
}

// Response is the library's answer to a Request: write it as it is.
type Response struct {
	Status      int
	ContentType string
	// Headers to send besides Content-Type and Content-Length: security
	// headers, CORS, Retry-After, WWW-Authenticate.
	Headers []Header
	Body    []byte
	// CustomerID is the authenticated customer, for access logs; "" when
	// none. Never the token.
	CustomerID string
}

// RequestFromHTTP copies what the route table needs from r; body is the
// request body already read (nil when there was none). The path is the
// target as sent (not percent-decoded), as every host passes it.
func RequestFromHTTP(r *http.Request, body []byte) Request {
	path, query, hasQuery := strings.Cut(r.RequestURI, "?")
	if r.RequestURI == "" { // a client-side request, e.g. in tests
		path = r.URL.EscapedPath()
		query = r.URL.RawQuery
		hasQuery = query != "" || r.URL.ForceQuery
	}
	return Request{
		Method:                     r.Method,
		Path:                       path,
		Query:                      query,
		HasQuery:                   hasQuery,
		Authorization:              r.Header.Get("Authorization"),
		Origin:                     r.Header.Get("Origin"),
		ContentType:                r.Header.Get("Content-Type"),
		ContentLength:              r.Header.Get("Content-Length"),
		AccessControlRequestMethod: r.Header.Get("Access-Control-Request-Method"),
		Body:                       body,
	}
}

// HandleRequest runs one request through the library's route table:
// POST /v1/aggregate, GET /v1/stats, /v1/profiles, /v1/events, /health and
// CORS preflights. Whenever the library produced an answer — any HTTP
// status, including the 503 after Close — it is returned with a nil error;
// an error means there is nothing to send (a malformed Request).
func (r *Receiver) HandleRequest(req Request) (*Response, error) {
	defer runtime.KeepAlive(r)
	if req.Method == "" || req.Path == "" {
		return nil, invalidArgument("Method and Path are required")
	}
	var strs cStrings
	defer strs.free()
	method := strs.add(req.Method, true)
	path := strs.add(req.Path, true)
	query := strs.add(req.Query, req.HasQuery)
	auth := strs.add(req.Authorization, false)
	origin := strs.add(req.Origin, false)
	ctype := strs.add(req.ContentType, false)
	clen := strs.add(req.ContentLength, false)
	preflight := strs.add(req.AccessControlRequestMethod, false)
	if strs.err != nil {
		return nil, strs.err
	}
	var body *C.char
	if req.Body != nil {
		// An empty but present body still needs a non-NULL pointer.
		body = bytesPtr(req.Body)
		if body == nil {
			body = strs.add("", true)
		}
	}

	var out *C.lgr_http_response
	st := C.lgr_go_handle_request(r.handle, method, path, query, auth, origin,
		ctype, clen, preflight, body, C.size_t(len(req.Body)), &out)
	if out == nil {
		return nil, &Error{Status: Status(st), Code: "internal_error",
			Message:    "lgr_handle_request: " + Status(st).String(),
			HTTPStatus: 500}
	}
	defer C.lgr_http_response_free(out)

	var n C.size_t
	data := C.lgr_http_response_body(out, &n)
	resp := &Response{
		Status:      int(C.lgr_http_response_status(out)),
		ContentType: C.GoString(C.lgr_http_response_content_type(out)),
		Body:        C.GoBytes(unsafe.Pointer(data), C.int(n)),
		CustomerID:  C.GoString(C.lgr_http_response_customer_id(out)),
	}
	count := C.lgr_http_response_header_count(out)
	resp.Headers = make([]Header, 0, int(count))
	for i := C.size_t(0); i < count; i++ {
		var name, value *C.char
		if C.lgr_http_response_header(out, i, &name, &value) == C.LGR_OK {
			resp.Headers = append(resp.Headers,
				Header{C.GoString(name), C.GoString(value)})
		}
	}
	return resp, nil
}

// cStrings collects C copies of Go strings and frees them together.
type cStrings struct {
	ptrs []*C.char
	err  error
}

// add returns a C copy of s, or NULL when !present. A string containing
// NUL cannot cross as C text; it is refused rather than truncated.
func (c *cStrings) add(s string, present bool) *C.char {
	if !present && s == "" {
		return nil
	}
	if strings.IndexByte(s, 0) >= 0 {
		if c.err == nil {
			c.err = invalidArgument("text contains a NUL byte")
		}
		return nil
	}
	p := C.CString(s)
	c.ptrs = append(c.ptrs, p)
	return p
}

func (c *cStrings) free() {
	for _, p := range c.ptrs {
		C.free(unsafe.Pointer(p))
	}
	c.ptrs = nil
}

// ---- net/http ---------------------------------------------------------------

// DefaultMaxBodyBytes is the library's default ingest body cap.
const DefaultMaxBodyBytes = 256 * 1024

// framingHeaders are written by the host itself, never copied from the
// library's answer.
var framingHeaders = map[string]bool{
	"Content-Type": true, "Content-Length": true,
	"Transfer-Encoding": true, "Connection": true,
}

// Handler serves every request through the receiver's route table, so that
// it answers exactly like the C++ example server. Mount it at the root of a
// server or mux (the library routes by path).
//
// TODO(#6): requests net/http refuses before any handler runs (a malformed
// request line or Content-Length, a Transfer-Encoding other than chunked)
// get its plain-text 400/501 rather than the JSON error shape; and a
// request with both Content-Length and chunked Transfer-Encoding is read as
// chunked (net/http drops the length) where the C++ server refuses it.
type Handler struct {
	Receiver *Receiver
	// MaxBodyBytes caps every request body; a declared Content-Length above
	// it is answered 413 without reading the body. 0: DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// AccessLog, if set, is called after each request is answered with the
	// number of body bytes written and the time taken.
	AccessLog func(r *http.Request, resp *Response, bytes int, elapsed time.Duration)
}

// NewHandler returns a Handler for rcv with the given body cap.
func NewHandler(rcv *Receiver, maxBodyBytes int64) *Handler {
	return &Handler{Receiver: rcv, MaxBodyBytes: maxBodyBytes}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	started := time.Now()
	resp := h.respond(w, r)
	written := h.write(w, r, resp)
	if h.AccessLog != nil {
		h.AccessLog(r, resp, written, time.Since(started))
	}
}

func (h *Handler) respond(w http.ResponseWriter, r *http.Request) *Response {
	limit := h.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	for _, name := range []string{"Authorization", "Origin", "Content-Type"} {
		if len(r.Header.Values(name)) > 1 {
			return ServerError(http.StatusBadRequest, "bad_request",
				"duplicate "+strings.ToLower(name)+" header")
		}
	}
	if r.ContentLength > limit {
		closeAfter(w)
		return tooLarge(limit)
	}
	var body []byte
	if r.Method == http.MethodPost && expectsContinue(r) && !h.tokenAccepted(r) {
		// net/http sends 100 Continue only once the body is read, so this
		// answer goes out without it, and the body is never asked for. The
		// library answers the same with or without the body (401, or 403,
		// 404 or 405 where those come first).
		closeAfter(w)
		if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
			body = []byte{} // announced, not read
		}
	} else {
		var err error
		if body, err = readBody(w, r, limit); err != nil {
			closeAfter(w)
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return tooLarge(limit)
			}
			return ServerError(http.StatusBadRequest, "bad_request",
				"the connection ended before the request was complete")
		}
	}
	resp, err := h.Receiver.HandleRequest(RequestFromHTTP(r, body))
	if err != nil {
		return ServerError(http.StatusInternalServerError, "internal_error",
			"the receiver could not handle the request: "+err.Error())
	}
	return resp
}

func expectsContinue(r *http.Request) bool {
	return strings.EqualFold(strings.TrimSpace(r.Header.Get("Expect")),
		"100-continue")
}

// tokenAccepted is false only when the library refuses the request's bearer
// token; any other failure leaves the request to the normal path.
func (h *Handler) tokenAccepted(r *http.Request) bool {
	_, err := h.Receiver.Authenticate(r.Header.Get("Authorization"))
	var refused *Error
	return !(errors.As(err, &refused) && refused.Code == "unauthorized")
}

// readBody reads the whole body through http.MaxBytesReader; nil when the
// request has none.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	hasBody := r.ContentLength > 0 || len(r.TransferEncoding) > 0 ||
		r.Header.Get("Content-Length") != ""
	if !hasBody || r.Body == nil || r.Body == http.NoBody {
		if hasBody {
			return []byte{}, nil
		}
		return nil, nil
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
}

func closeAfter(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
}

func tooLarge(limit int64) *Response {
	return ServerError(http.StatusRequestEntityTooLarge, "payload_too_large",
		"the request body exceeds "+strconv.FormatInt(limit, 10)+" bytes")
}

// ServerError is a host's own answer (framing, limits) in the library's
// shape: {"error", "path", "message"} with the same security headers.
func ServerError(status int, code, message string) *Response {
	body, _ := json.Marshal(struct {
		Error   string `json:"error"`
		Path    string `json:"path"`
		Message string `json:"message"`
	}{code, "", message})
	return &Response{
		Status:      status,
		ContentType: "application/json",
		Headers: []Header{
			{"X-Content-Type-Options", "nosniff"},
			{"Cache-Control", "no-store"},
			{"Referrer-Policy", "no-referrer"},
		},
		Body: body,
	}
}

// write sends resp and returns the number of body bytes written.
func (h *Handler) write(w http.ResponseWriter, r *http.Request, resp *Response) int {
	header := w.Header()
	for _, hd := range resp.Headers {
		if !framingHeaders[http.CanonicalHeaderKey(hd.Name)] {
			header.Add(hd.Name, hd.Value)
		}
	}
	header.Set("Content-Type", resp.ContentType)
	noBody := resp.Status == http.StatusNoContent ||
		resp.Status == http.StatusNotModified || resp.Status < 200
	if !noBody {
		header.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	}
	w.WriteHeader(resp.Status)
	if noBody || r.Method == http.MethodHead {
		return 0
	}
	n, _ := w.Write(resp.Body)
	return n
}
