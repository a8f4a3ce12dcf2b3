package receiver

// #include <stdint.h>
import "C"

import "runtime/cgo"

// lgrGoLog receives the library's log lines (through lgr_go_log in
// receiver.go) and hands them to the Options.Logger behind the handle.
//
//export lgrGoLog
func lgrGoLog(handle C.uintptr_t, level C.int, message *C.char) {
	logger, ok := cgo.Handle(handle).Value().(func(LogLevel, string))
	if !ok || logger == nil {
		return
	}
	logger(LogLevel(level), C.GoString(message))
}
