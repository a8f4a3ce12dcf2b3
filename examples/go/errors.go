package receiver

// #include "loopgain/receiver.h"
import "C"

import "fmt"

// Status is an lgr_status code. Codes are only ever added.
type Status int

// The lgr_status values of receiver.h.
const (
	StatusOK              Status = 0
	StatusInvalidArgument Status = 1
	StatusClosed          Status = 2
	StatusUnauthorized    Status = 3
	StatusInvalidPayload  Status = 4
	StatusInvalidQuery    Status = 5
	StatusNotFound        Status = 6
	StatusStorage         Status = 7
	StatusBusy            Status = 8
	StatusSchemaTooNew    Status = 9
	StatusNoMemory        Status = 10
	StatusInternal        Status = 11
)

// String is the library's name for the status, e.g. "LGR_ERR_STORAGE".
func (s Status) String() string {
	return C.GoString(C.lgr_status_name(C.lgr_status(s)))
}

// Error is a failed call.
type Error struct {
	// Status is the lgr_status of the call.
	Status Status
	// Code is the machine-readable code of the HTTP API ("invalid_payload",
	// "privacy_violation", "unauthorized", "closed", ...).
	Code string
	// Pointer is the JSON Pointer of the offending field
	// ("/loop/iterations_used"), the query parameter for invalid_query,
	// or "".
	Pointer string
	// Message is one line for humans.
	Message string
	// HTTPStatus is the status a host should answer with.
	HTTPStatus int
}

func (e *Error) Error() string {
	if e.Pointer != "" {
		return fmt.Sprintf("loopgain-receiver: %s at %s: %s", e.Code,
			e.Pointer, e.Message)
	}
	return fmt.Sprintf("loopgain-receiver: %s: %s", e.Code, e.Message)
}

// Is makes errors.Is(err, ErrClosed) and the other sentinels match every
// error with the same Code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinels for errors.Is; compare by Code.
var (
	ErrClosed           = &Error{Status: StatusClosed, Code: "closed"}
	ErrUnauthorized     = &Error{Status: StatusUnauthorized, Code: "unauthorized"}
	ErrCustomerNotFound = &Error{Status: StatusNotFound, Code: "customer_not_found"}
)

// takeError converts and frees an lgr_error.
func takeError(st C.lgr_status, cerr *C.lgr_error) error {
	if cerr == nil {
		return &Error{Status: Status(st), Code: "internal_error",
			Message:    Status(st).String() + " without error details",
			HTTPStatus: 500}
	}
	defer C.lgr_error_free(cerr)
	return &Error{
		Status:     Status(C.lgr_error_status(cerr)),
		Code:       C.GoString(C.lgr_error_code_name(cerr)),
		Pointer:    C.GoString(C.lgr_error_pointer(cerr)),
		Message:    C.GoString(C.lgr_error_message(cerr)),
		HTTPStatus: int(C.lgr_error_http_status(cerr)),
	}
}

func invalidArgument(message string) error {
	return &Error{Status: StatusInvalidArgument, Code: "invalid_argument",
		Message: message, HTTPStatus: 400}
}
