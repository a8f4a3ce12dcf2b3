// Compiles the public header as C++ with every warning as an error.
#include <loopgain/receiver.h>

static_assert(LGR_OK == 0, "LGR_OK is zero");

int lgr_header_cxx_check() { return LGR_VERSION_NUMBER; }
