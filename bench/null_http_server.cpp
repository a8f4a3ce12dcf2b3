// null_http_server: the ceiling for bench/http_bench.py. An HTTP/1.1
// responder that answers every request with 202 and a fixed JSON body and
// does nothing else: no routing, no parsing beyond the framing, no storage.
// Its requests/s under wrk, on the same machine in the same run, is what
// the receiver's server is compared with.
//
//   null_http_server [--port P] [--threads N]
//
// Prints "listening PORT" on stdout once it accepts connections (port 0
// picks a free one). Keep-alive and pipelining; Content-Length bodies only
// (no chunked encoding: wrk never sends it). Runs until killed.
//
// Epoll, edge-triggered, one event loop per thread sharing the listening
// socket (EPOLLEXCLUSIVE wakes one loop per connection).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

constexpr std::string_view kResponse =
    "HTTP/1.1 202 Accepted\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 21\r\n"
    "\r\n"
    "{\"status\":\"accepted\"}";
constexpr std::size_t kMaxHeader = 16 * 1024;

struct Connection {
  std::string in;
  std::string out;
};

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

// Content-Length of the header block `head` (0 when absent).
std::size_t content_length(std::string_view head) {
  constexpr std::string_view kName = "\r\ncontent-length:";
  for (std::size_t i = 0; i + kName.size() <= head.size(); ++i) {
    std::size_t k = 0;
    while (k < kName.size() && lower(head[i + k]) == kName[k]) ++k;
    if (k == kName.size()) {
      return std::strtoull(head.data() + i + k, nullptr, 10);
    }
  }
  return 0;
}

// Answers every complete request in c.in; false on a malformed one.
bool serve(Connection& c) {
  std::size_t at = 0;
  for (;;) {
    const std::string_view rest(c.in.data() + at, c.in.size() - at);
    const std::size_t end = rest.find("\r\n\r\n");
    if (end == std::string_view::npos) {
      if (rest.size() > kMaxHeader) return false;
      break;
    }
    const std::size_t total = end + 4 + content_length(rest.substr(0, end + 2));
    if (rest.size() < total) break;
    c.out.append(kResponse);
    at += total;
  }
  c.in.erase(0, at);
  return true;
}

bool flush(int fd, Connection& c) {
  while (!c.out.empty()) {
    const ssize_t n = ::send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    c.out.erase(0, static_cast<std::size_t>(n));
  }
  return true;
}

void event_loop(int listener) {
  const int ep = ::epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLEXCLUSIVE;
  ev.data.fd = listener;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);

  std::unordered_map<int, Connection> connections;
  std::vector<epoll_event> events(256);
  char buf[65536];
  for (;;) {
    const int n =
        ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), -1);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == listener) {
        for (;;) {
          const int client = ::accept4(listener, nullptr, nullptr,
                                       SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (client < 0) break;
          const int one = 1;
          ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event cev{};
          cev.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP;
          cev.data.fd = client;
          ::epoll_ctl(ep, EPOLL_CTL_ADD, client, &cev);
          connections[client];
        }
        continue;
      }
      Connection& c = connections[fd];
      bool open = true;
      for (;;) {
        const ssize_t got = ::recv(fd, buf, sizeof buf, 0);
        if (got > 0) {
          c.in.append(buf, static_cast<std::size_t>(got));
          continue;
        }
        if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) open = false;
        break;
      }
      if (open) open = serve(c) && flush(fd, c);
      if (!open) {
        ::close(fd);
        connections.erase(fd);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  int threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--port") == 0) port = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--threads") == 0) {
      threads = std::atoi(argv[i + 1]);
    }
  }
  if (threads < 1) threads = 1;

  const int listener =
      ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 1024) != 0) {
    std::perror("null_http_server: bind/listen");
    return 1;
  }
  socklen_t len = sizeof addr;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  std::printf("listening %d\n", ntohs(addr.sin_port));
  std::fflush(stdout);

  std::vector<std::thread> loops;
  for (int i = 0; i < threads; ++i) loops.emplace_back(event_loop, listener);
  for (auto& t : loops) t.join();
  return 0;
}
