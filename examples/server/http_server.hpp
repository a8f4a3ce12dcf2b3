// The HTTP/1.1 front end: Boost.Beast on one event-loop thread. Ingests go
// to the library from that thread and come back by callback once committed;
// reads run on a pool of worker threads.
#pragma once

#include "config.hpp"
#include "loopgain/receiver.h"

namespace lgr_server {

// Listens on config.listen_host:listen_port and serves every request through
// lgr_handle_request() until SIGINT or SIGTERM. Then it stops accepting,
// answers the requests already in flight (closing idle connections at once
// and every connection after 20 seconds at the latest) and returns 0. It
// never closes `receiver`; the caller does, after this returns.
//
// Returns 1, after logging why, when the listening socket cannot be opened.
int RunHttpServer(lgr_receiver* receiver, const ServerConfig& config);

}  // namespace lgr_server
