/* Compiles the public header as strict C11 (see tests/c/CMakeLists.txt):
 * no C++ may leak into it. Also a compile-time check that the struct a
 * host fills in starts with its version field. */
#include <loopgain/receiver.h>

#include <stddef.h>

_Static_assert(offsetof(lgr_http_request, version) == 0,
               "lgr_http_request must start with its version");
_Static_assert(LGR_OK == 0, "LGR_OK is zero");

int lgr_header_c11_check(void) { return LGR_VERSION_NUMBER; }
