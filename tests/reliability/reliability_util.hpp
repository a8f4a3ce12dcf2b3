// Shared by the reliability tests (issue #7): checks that count instead of
// aborting, RAII owners for the C API's objects, a temporary directory that
// cleans itself up, and one-line helpers over lgr_handle_request().
//
// The tests drive the library only through its C API, as a host would;
// SQLite is linked directly only to inspect a database the receiver has
// already closed (integrity_check, row counts).
#pragma once

#include <loopgain/receiver.h>
#include <sqlite3.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <dirent.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define REL_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REL_SANITIZED 1
#endif
#endif

namespace rel {

// Built with the sanitizers (LGR_SANITIZE): RSS bounds mean nothing under
// ASan's quarantine, and the sanitizers need free descriptors of their own.
#ifdef REL_SANITIZED
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// 2026-12-01T00:00:00Z. The recorded payloads are stamped
// 2026-11-30T14:00:00Z: ten hours earlier, inside every 30-day window and
// not in the future.
constexpr std::int64_t kFixedNow = 1796083200;

inline std::atomic<int> g_checks{0};
inline std::atomic<int> g_failures{0};

inline bool check(bool ok, const char* file, int line,
                  const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", file, line, what.c_str());
  }
  return ok;
}

inline std::string show(const std::string& v) {
  return "\"" + v + "\"";
}
inline std::string show(const char* v) {
  return v ? "\"" + std::string(v) + "\"" : std::string("(null)");
}
template <class T>
std::string show(T v) {
  return std::to_string(static_cast<long long>(v));
}

// Evaluates each side once.
template <class A, class B>
bool check_eq(const A& a, const B& b, const char* file, int line,
              const char* what) {
  if (a == b) return check(true, file, line, what);
  return check(false, file, line,
               std::string(what) + ": " + show(a) + " != " + show(b));
}

#define REL_CHECK(cond) ::rel::check((cond), __FILE__, __LINE__, #cond)
#define REL_CHECK_MSG(cond, msg) ::rel::check((cond), __FILE__, __LINE__, (msg))
#define REL_CHECK_EQ(a, b) \
  ::rel::check_eq((a), (b), __FILE__, __LINE__, #a " == " #b)

// Prints the summary line and gives the process exit status.
inline int finish(const char* name) {
  std::printf("%s: %d checks, %d failures\n", name, g_checks.load(),
              g_failures.load());
  return g_failures.load() == 0 ? 0 : 1;
}

// ---- Owners -------------------------------------------------------------

struct ErrorFree {
  void operator()(lgr_error* e) const { lgr_error_free(e); }
};
struct ReceiverFree {
  void operator()(lgr_receiver* r) const { lgr_receiver_free(r); }
};
struct ResponseFree {
  void operator()(lgr_http_response* r) const { lgr_http_response_free(r); }
};
using ErrorPtr = std::unique_ptr<lgr_error, ErrorFree>;
using ReceiverPtr = std::unique_ptr<lgr_receiver, ReceiverFree>;
using ResponsePtr = std::unique_ptr<lgr_http_response, ResponseFree>;

// A library string, copied and freed.
inline std::string take_string(char* s) {
  std::string out = s ? s : "";
  lgr_string_free(s);
  return out;
}

// ---- Files --------------------------------------------------------------

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

inline bool write_file(const std::string& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  return static_cast<bool>(out);
}

// -1 when the file does not exist.
inline long long file_size(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<long long>(st.st_size);
}

// A fresh directory under $TMPDIR, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern =
        std::string(base && *base ? base : "/tmp") + "/lgr-rel-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) != nullptr) path_ = buf.data();
  }
  ~TempDir() {
    if (path_.empty()) return;
    ::nftw(
        path_.c_str(),
        [](const char* p, const struct stat*, int, struct FTW*) {
          ::chmod(p, 0700);
          return ::remove(p);
        },
        16, FTW_DEPTH | FTW_PHYS);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  bool ok() const { return !path_.empty(); }
  std::string file(std::string_view name) const {
    return path_ + "/" + std::string(name);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The real client's payload (loopgain 0.6.4, schema v4) with its
// workload_id replaced, so that each stored event can be told apart.
inline std::string payload_with_workload(const std::string& fixture,
                                         std::string_view workload) {
  const std::string key = "\"workload_id\": \"";
  std::string out = fixture;
  const auto start = out.find(key);
  if (start == std::string::npos) return out;
  const auto value = start + key.size();
  const auto end = out.find('"', value);
  out.replace(value, end - value, workload);
  return out;
}

// ---- Receivers and requests ---------------------------------------------

// The library's warnings and errors, kept for a failed check's message:
// the library never prints, and a timed test's failure is worth explaining.
struct Warnings {
  std::mutex mutex;
  std::vector<std::string> lines;  // the first kMax only
  static constexpr std::size_t kMax = 40;

  static void record(void* self, lgr_log_level, const char* message) {
    auto* w = static_cast<Warnings*>(self);
    std::lock_guard lock(w->mutex);
    if (w->lines.size() < kMax) w->lines.emplace_back(message);
  }
  std::string text() {
    std::lock_guard lock(mutex);
    std::string out;
    for (const auto& line : lines) out += "\n  library: " + line;
    return out;
  }
};

inline Warnings& warnings() {
  static Warnings all;
  return all;
}

// Opens a receiver on `db` with the fixed clock; on failure returns null and
// sets *status and *message.
inline ReceiverPtr open_receiver(const std::string& db, lgr_status* status,
                                 std::string* message) {
  lgr_options* options = lgr_options_create();
  if (!options) {
    if (status) *status = LGR_ERR_NO_MEMORY;
    return nullptr;
  }
  lgr_options_set_db_path(options, db.c_str(), nullptr);
  lgr_options_set_fixed_time(options, kFixedNow, nullptr);
  lgr_options_set_logger(options, LGR_LOG_WARN, &Warnings::record, &warnings(),
                         nullptr);
  lgr_receiver* r = nullptr;
  lgr_error* raw = nullptr;
  const lgr_status s = lgr_receiver_open(options, &r, &raw);
  lgr_options_free(options);
  ErrorPtr error(raw);
  if (status) *status = s;
  if (message) *message = error ? lgr_error_message(error.get()) : "";
  return ReceiverPtr(r);
}

// The set-up the timed tests (concurrency, soak) share: arguments
// "FIXTURE [--seconds S]", a temporary directory, the fixture's bytes and a
// receiver opened on NAME.db in it. `ok` is false after a usage error or a
// failed check (already counted).
struct TimedRun {
  TimedRun(int argc, char** argv, const char* name, double default_seconds)
      : seconds(default_seconds) {
    if (argc < 2) {
      std::fprintf(stderr, "usage: %s_test FIXTURE [--seconds S]\n", name);
      usage_error = true;
      return;
    }
    if (argc == 4 && std::strcmp(argv[2], "--seconds") == 0) {
      seconds = std::atof(argv[3]);
    }
    fixture = read_file(argv[1]);
    if (!REL_CHECK(tmp.ok()) || !REL_CHECK(!fixture.empty())) return;
    db = tmp.file(std::string(name) + ".db");
    std::string message;
    receiver = open_receiver(db, nullptr, &message);
    ok = REL_CHECK_MSG(receiver != nullptr, "open: " + message);
  }

  double seconds;
  TempDir tmp;
  std::string fixture;
  std::string db;
  ReceiverPtr receiver;
  bool usage_error = false;
  bool ok = false;
};

struct Customer {
  std::string id;
  std::string authorization;  // "Bearer lgk_..."
};

inline Customer create_customer(lgr_receiver* r, const std::string& name) {
  char* id = nullptr;
  char* token = nullptr;
  const lgr_status s =
      lgr_customer_create(r, name.c_str(), nullptr, &id, &token, nullptr);
  Customer c;
  if (s == LGR_OK) {
    c.id = take_string(id);
    c.authorization = "Bearer " + take_string(token);
  }
  return c;
}

struct Reply {
  lgr_status status = LGR_ERR_INTERNAL;  // of lgr_handle_request itself
  int http = 0;
  std::string body;
  std::string retry_after;  // "" when absent
};

inline Reply request(lgr_receiver* r, const char* method, const char* path,
                     const char* query, const std::string& authorization,
                     std::string_view body = {}) {
  lgr_http_request req;
  lgr_http_request_init(&req);
  req.method = method;
  req.path = path;
  req.query = query;
  req.authorization = authorization.c_str();
  if (!body.empty()) {
    req.body = body.data();
    req.body_len = body.size();
    req.content_type = "application/json";
  }
  lgr_http_response* raw = nullptr;
  Reply reply;
  reply.status = lgr_handle_request(r, &req, &raw);
  ResponsePtr res(raw);
  if (!res) return reply;
  reply.http = lgr_http_response_status(res.get());
  size_t len = 0;
  const char* b = lgr_http_response_body(res.get(), &len);
  reply.body.assign(b ? b : "", b ? len : 0);
  const size_t n = lgr_http_response_header_count(res.get());
  for (size_t i = 0; i < n; ++i) {
    const char* name = nullptr;
    const char* value = nullptr;
    if (lgr_http_response_header(res.get(), i, &name, &value) == LGR_OK &&
        std::string_view(name) == "Retry-After") {
      reply.retry_after = value;
    }
  }
  return reply;
}

// The integer after `"key":` in `json` (the library writes compact JSON);
// -1 when absent.
inline long long json_int(std::string_view json, std::string_view key) {
  const std::string needle = "\"" + std::string(key) + "\":";
  const auto at = json.find(needle);
  if (at == std::string_view::npos) return -1;
  return std::strtoll(std::string(json.substr(at + needle.size(), 24)).c_str(),
                      nullptr, 10);
}

// Every value of `"workload_id":"..."` in `json`.
inline std::vector<std::string> workload_ids(std::string_view json) {
  std::vector<std::string> out;
  const std::string_view needle = "\"workload_id\":\"";
  for (auto at = json.find(needle); at != std::string_view::npos;
       at = json.find(needle, at + 1)) {
    const auto start = at + needle.size();
    out.emplace_back(json.substr(start, json.find('"', start) - start));
  }
  return out;
}

// ---- Looking at a closed database ---------------------------------------

// Runs `sql` (one row, one column) on `db` opened read-write without
// creating it; the text of the first column, or "error: ..." on failure.
inline std::string sql_scalar(const std::string& db, const char* sql) {
  sqlite3* handle = nullptr;
  std::string out;
  if (sqlite3_open_v2(db.c_str(), &handle, SQLITE_OPEN_READWRITE, nullptr) !=
      SQLITE_OK) {
    out = std::string("error: ") + sqlite3_errmsg(handle);
    sqlite3_close(handle);
    return out;
  }
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(handle, sql, -1, &stmt, nullptr) != SQLITE_OK) {
    out = std::string("error: ") + sqlite3_errmsg(handle);
  } else if (sqlite3_step(stmt) == SQLITE_ROW) {
    const unsigned char* text = sqlite3_column_text(stmt, 0);
    out = text ? reinterpret_cast<const char*>(text) : "";
  } else {
    out = std::string("error: ") + sqlite3_errmsg(handle);
  }
  sqlite3_finalize(stmt);
  sqlite3_close(handle);
  return out;
}

inline long long count_rows(const std::string& db, const char* sql) {
  const std::string text = sql_scalar(db, sql);
  if (text.rfind("error:", 0) == 0) return -1;
  return std::atoll(text.c_str());
}

// VmRSS of this process in KiB (-1 if /proc is unavailable).
inline long long rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

inline int open_fd_count() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (struct dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') ++n;
    }
    ::closedir(d);
    --n;  // the directory stream itself
  }
  return n;
}

}  // namespace rel
