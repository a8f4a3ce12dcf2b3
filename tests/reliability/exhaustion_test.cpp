// Resource exhaustion (issue #7), through the C API.
//
//   exhaustion_test FIXTURE CASE
//
// CASE is one of:
//   open-errors  a database in a missing directory, a file that is not a
//                database, a read-only database file: LGR_ERR_STORAGE with
//                a message, and the file is left untouched.
//   deleted      the database file is deleted underneath an open receiver:
//                every later call succeeds or fails cleanly, never crashes.
//   disk-full    RLIMIT_FSIZE stops the writes (a full disk as SQLite sees
//                it: write(2) fails): ingests fail cleanly, reads still
//                work, ingests work again once space is back, and no
//                acknowledged event is lost. (The store's unit tests cover
//                SQLITE_FULL itself with max_page_count.) The same
//                through lgr_handle_request_async(): a failed commit
//                answers each of its requests once, 500 storage_error,
//                and none of them is stored.
//   fd-limit     RLIMIT_NOFILE is lowered, then receivers are opened until
//                one fails: the failure is LGR_ERR_STORAGE, the receiver
//                opened first keeps serving, failed opens leak no
//                descriptor, and nothing committed is lost.
// Each case changes process limits, so each runs as its own ctest entry.
#include "reliability_util.hpp"

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/resource.h>

namespace {

struct Opened {
  rel::ReceiverPtr receiver;
  lgr_status status = LGR_OK;
  std::string message;
};

Opened open_db(const std::string& db) {
  Opened o;
  o.receiver = rel::open_receiver(db, &o.status, &o.message);
  return o;
}

lgr_status ingest(lgr_receiver* r, const rel::Customer& c,
                  const std::string& body, std::string* message = nullptr) {
  lgr_error* raw = nullptr;
  const lgr_status s = lgr_ingest(r, c.authorization.c_str(), body.data(),
                                  body.size(), nullptr, &raw);
  rel::ErrorPtr error(raw);
  if (message) *message = error ? lgr_error_message(error.get()) : "";
  return s;
}

// event_count of the customer's stats, or -1 when the read fails.
long long stats_count(lgr_receiver* r, const rel::Customer& c) {
  char* json = nullptr;
  if (lgr_stats_json(r, c.id.c_str(), &json, nullptr, nullptr) != LGR_OK) {
    return -1;
  }
  return rel::json_int(rel::take_string(json), "event_count");
}

void expect_storage_error(const Opened& o, const std::string& what) {
  REL_CHECK_MSG(o.receiver == nullptr, what + ": opened");
  REL_CHECK_MSG(o.status == LGR_ERR_STORAGE,
                what + ": " + lgr_status_name(o.status));
  REL_CHECK_MSG(!o.message.empty(), what + ": no message");
  std::printf("  %s -> %s: %s\n", what.c_str(), lgr_status_name(o.status),
              o.message.c_str());
}

// Makes `path` immutable (even root may not write it); false when the file
// system or the capabilities do not allow it.
bool set_immutable(const std::string& path, bool on) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return false;
  int flags = 0;
  bool ok = ::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
  if (ok) {
    flags = on ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
    ok = ::ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
  }
  ::close(fd);
  return ok;
}

// A closed database with one customer and `events` events in it.
bool make_database(const std::string& db, const std::string& fixture,
                   int events) {
  Opened o = open_db(db);
  if (!o.receiver) return false;
  const rel::Customer c = rel::create_customer(o.receiver.get(), "seed");
  for (int i = 0; i < events; ++i) {
    if (ingest(o.receiver.get(), c, fixture) != LGR_OK) return false;
  }
  return lgr_receiver_close(o.receiver.get(), nullptr) == LGR_OK;
}

void case_open_errors(const rel::TempDir& tmp, const std::string& fixture) {
  expect_storage_error(open_db(tmp.file("missing/dir/x.db")),
                       "a database in a missing directory");

  const std::string junk_path = tmp.file("junk.db");
  std::string junk(8192, '\0');
  for (std::size_t i = 0; i < junk.size(); ++i) {
    junk[i] = static_cast<char>("not a database\n"[i % 15]);
  }
  rel::write_file(junk_path, junk);
  expect_storage_error(open_db(junk_path), "a file that is not a database");
  REL_CHECK(rel::read_file(junk_path) == junk);

  const std::string ro = tmp.file("read-only.db");
  REL_CHECK(make_database(ro, fixture, 3));
  const std::string before = rel::read_file(ro);
  REL_CHECK(::chmod(ro.c_str(), 0444) == 0);
  bool immutable = false;
  if (::geteuid() == 0) {
    // Root writes through file modes; an immutable file it cannot write.
    immutable = set_immutable(ro, true);
    if (!immutable) {
      std::printf(
          "  SKIPPED the read-only file as root: cannot set the "
          "immutable flag here (the store's unit tests cover it)\n");
      return;
    }
  }
  expect_storage_error(open_db(ro), "a read-only database file");
  if (immutable) set_immutable(ro, false);
  REL_CHECK(rel::read_file(ro) == before);
  REL_CHECK_EQ(rel::file_size(ro + "-wal"), -1LL);
}

void case_deleted(const rel::TempDir& tmp, const std::string& fixture) {
  const std::string db = tmp.file("deleted.db");
  Opened o = open_db(db);
  if (!REL_CHECK_MSG(o.receiver != nullptr, "open: " + o.message)) return;
  lgr_receiver* r = o.receiver.get();
  const rel::Customer c = rel::create_customer(r, "deleted");
  for (int i = 0; i < 20; ++i) REL_CHECK_EQ(ingest(r, c, fixture), LGR_OK);
  REL_CHECK_EQ(stats_count(r, c), 20LL);

  for (const char* suffix : {"", "-wal", "-shm"}) {
    ::unlink((db + suffix).c_str());
  }
  std::map<std::string, int> outcomes;
  int acked_after_delete = 0;
  for (int i = 0; i < 20; ++i) {
    std::string message;
    const lgr_status s = ingest(r, c, fixture, &message);
    // The store checks before each commit that its file is still there:
    // an event it could never read back must not be acknowledged.
    REL_CHECK_MSG(s == LGR_ERR_STORAGE,
                  std::string("ingest after delete: ") + lgr_status_name(s));
    acked_after_delete += s == LGR_OK;
    ++outcomes[std::string(lgr_status_name(s)) + " " + message];
    const rel::Reply stats =
        rel::request(r, "GET", "/v1/stats", nullptr, c.authorization);
    REL_CHECK_MSG(stats.http == 200 || stats.http == 401 || stats.http == 500 ||
                      stats.http == 503,
                  "stats after delete: " + std::to_string(stats.http));
    ++outcomes["GET /v1/stats " + std::to_string(stats.http)];
  }
  for (const auto& [what, n] : outcomes) {
    std::printf("  after delete: %d x %s\n", n, what.c_str());
  }
  const lgr_status closed = lgr_receiver_close(r, nullptr);
  REL_CHECK_MSG(closed == LGR_OK || closed == LGR_ERR_STORAGE,
                std::string("close: ") + lgr_status_name(closed));
  o.receiver.reset();
  std::printf(
      "  after close the path %s; %d events acknowledged after the "
      "delete\n",
      rel::file_size(db) < 0 ? "does not exist" : "exists again",
      acked_after_delete);
  REL_CHECK_EQ(acked_after_delete, 0);
}

// The answers to a burst of lgr_handle_request_async() ingests, which
// arrive on the store's writer thread.
struct AsyncAnswers {
  std::mutex mutex;
  std::condition_variable answered_cv;
  int answered = 0;
  int accepted = 0;  // 202
  // Every other answer, as "STATUS BODY"; "no response" for a NULL one.
  std::map<std::string, int> refused;
};

void on_async_answer(void* user_data, lgr_http_response* raw) {
  auto* answers = static_cast<AsyncAnswers*>(user_data);
  rel::ResponsePtr res(raw);
  std::string what = "no response";
  int status = 0;
  if (res) {
    status = lgr_http_response_status(res.get());
    size_t len = 0;
    const char* body = lgr_http_response_body(res.get(), &len);
    what = std::to_string(status) + " " + std::string(body ? body : "", len);
  }
  std::lock_guard lock(answers->mutex);
  ++answers->answered;
  if (status == 202) {
    ++answers->accepted;
  } else {
    ++answers->refused[what];
  }
  answers->answered_cv.notify_all();
}

// Issues `n` ingests through lgr_handle_request_async() and waits (at most
// 60 s) for all their answers. Every call must promise an answer.
void async_burst(lgr_receiver* r, const rel::Customer& c,
                 const std::string& body, int n, AsyncAnswers& answers) {
  lgr_http_request req;
  lgr_http_request_init(&req);
  req.method = "POST";
  req.path = "/v1/aggregate";
  req.authorization = c.authorization.c_str();
  req.content_type = "application/json";
  req.body = body.data();
  req.body_len = body.size();
  int promised = 0;
  for (int i = 0; i < n; ++i) {
    const lgr_status s =
        lgr_handle_request_async(r, &req, on_async_answer, &answers);
    REL_CHECK_MSG(s == LGR_OK,
                  std::string("lgr_handle_request_async: ") +
                      lgr_status_name(s));
    promised += s == LGR_OK;
  }
  std::unique_lock lock(answers.mutex);
  const bool all = answers.answered_cv.wait_for(
      lock, std::chrono::seconds(60),
      [&] { return answers.answered == promised; });
  REL_CHECK_MSG(all, "async answers: " + std::to_string(answers.answered) +
                         " of " + std::to_string(promised));
}

void case_disk_full(const rel::TempDir& tmp, const std::string& fixture) {
  const std::string db = tmp.file("full.db");
  Opened o = open_db(db);
  if (!REL_CHECK_MSG(o.receiver != nullptr, "open: " + o.message)) return;
  lgr_receiver* r = o.receiver.get();
  const rel::Customer c = rel::create_customer(r, "full");
  long long acked = 0;
  for (int i = 0; i < 10; ++i) acked += ingest(r, c, fixture) == LGR_OK;
  REL_CHECK_EQ(acked, 10LL);

  // No file of this process may grow past 512 KiB from here on: the WAL
  // fills up. SIGXFSZ would kill the process; ignored, write(2) fails.
  std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit saved;
  ::getrlimit(RLIMIT_FSIZE, &saved);
  struct rlimit low = saved;
  low.rlim_cur = 512 * 1024;
  REL_CHECK(::setrlimit(RLIMIT_FSIZE, &low) == 0);

  int failures = 0;
  std::string first_error;
  for (int i = 0; i < 5000 && failures < 20; ++i) {
    std::string message;
    const lgr_status s = ingest(r, c, fixture, &message);
    if (s == LGR_OK) {
      ++acked;
      continue;
    }
    REL_CHECK_MSG(s == LGR_ERR_STORAGE,
                  std::string("ingest on a full disk: ") + lgr_status_name(s));
    if (failures++ == 0) first_error = message;
  }
  REL_CHECK_MSG(failures > 0, "the file size limit never stopped a write");
  std::printf("  disk full after %lld events: %s\n", acked,
              first_error.c_str());
  // Still serving reads, with every acknowledged event.
  REL_CHECK_EQ(stats_count(r, c), acked);

  // The same through the asynchronous entry point, where a failed commit
  // is reported from the writer thread: every request is answered exactly
  // once, the refusals are 500 storage_error, and stats count exactly the
  // 202s.
  {
    AsyncAnswers answers;
    async_burst(r, c, fixture, 200, answers);
    std::lock_guard lock(answers.mutex);
    REL_CHECK_EQ(answers.answered, 200);
    int storage_errors = 0;
    for (const auto& [what, n] : answers.refused) {
      std::printf("  async on a full disk: %d x %s\n", n, what.c_str());
      const bool storage_error =
          what.rfind("500 {\"error\":\"storage_error\",\"path\":\"\"", 0) ==
          0;
      REL_CHECK_MSG(storage_error, "async refusal: " + what);
      storage_errors += storage_error ? n : 0;
    }
    REL_CHECK_MSG(storage_errors > 0, "no async ingest failed on a full disk");
    REL_CHECK_EQ(answers.accepted + storage_errors, 200);
    acked += answers.accepted;
  }
  REL_CHECK_EQ(stats_count(r, c), acked);

  REL_CHECK(::setrlimit(RLIMIT_FSIZE, &saved) == 0);
  for (int i = 0; i < 10; ++i) {
    std::string message;
    const lgr_status s = ingest(r, c, fixture, &message);
    REL_CHECK_MSG(s == LGR_OK, "ingest once space is back: " + message);
    acked += s == LGR_OK;
  }
  REL_CHECK_EQ(stats_count(r, c), acked);
  REL_CHECK_EQ(lgr_receiver_close(r, nullptr), LGR_OK);
  o.receiver.reset();

  REL_CHECK_EQ(rel::sql_scalar(db, "PRAGMA integrity_check"),
               std::string("ok"));
  REL_CHECK_EQ(rel::count_rows(db, "SELECT COUNT(*) FROM stored_events"),
               acked);
}

void case_fd_limit(const rel::TempDir& tmp, const std::string& fixture) {
  if (rel::kSanitized) {
    // UBSan probes memory through a pipe(2): with no descriptor left it
    // reports a false "invalid vptr" and aborts.
    std::printf("  SKIPPED under the sanitizers\n");
    return;
  }
  const std::string db = tmp.file("first.db");
  Opened first = open_db(db);
  if (!REL_CHECK_MSG(first.receiver != nullptr, "open: " + first.message)) {
    return;
  }
  lgr_receiver* r = first.receiver.get();
  const rel::Customer c = rel::create_customer(r, "fd-limit");
  long long acked = 0;
  for (int i = 0; i < 10; ++i) acked += ingest(r, c, fixture) == LGR_OK;
  REL_CHECK_EQ(stats_count(r, c), acked);

  struct rlimit saved;
  ::getrlimit(RLIMIT_NOFILE, &saved);
  struct rlimit low = saved;
  const int in_use = rel::open_fd_count();
  low.rlim_cur = static_cast<rlim_t>(in_use + 24);
  REL_CHECK(::setrlimit(RLIMIT_NOFILE, &low) == 0);

  std::vector<rel::ReceiverPtr> more;
  Opened failed;
  for (int i = 0; i < 64; ++i) {
    Opened o = open_db(tmp.file("more-" + std::to_string(i) + ".db"));
    if (!o.receiver) {
      failed = std::move(o);
      break;
    }
    const rel::Customer other = rel::create_customer(o.receiver.get(), "x");
    REL_CHECK(!other.id.empty());
    more.push_back(std::move(o.receiver));
  }
  std::printf("  %zu more receivers opened under a limit of %d descriptors\n",
              more.size(), static_cast<int>(low.rlim_cur));
  expect_storage_error(failed, "one receiver too many");
  const int at_limit = rel::open_fd_count();

  // The receivers already open keep serving.
  for (int i = 0; i < 10; ++i) {
    std::string message;
    const lgr_status s = ingest(r, c, fixture, &message);
    REL_CHECK_MSG(s == LGR_OK, "ingest at the descriptor limit: " + message);
    acked += s == LGR_OK;
  }
  REL_CHECK_EQ(stats_count(r, c), acked);

  // A failed open leaks nothing: trying again changes no count.
  for (int i = 0; i < 5; ++i) {
    Opened again = open_db(tmp.file("again.db"));
    REL_CHECK(again.receiver == nullptr);
  }
  REL_CHECK_EQ(static_cast<long long>(rel::open_fd_count()),
               static_cast<long long>(at_limit));

  more.clear();
  REL_CHECK(::setrlimit(RLIMIT_NOFILE, &saved) == 0);
  REL_CHECK_EQ(lgr_receiver_close(r, nullptr), LGR_OK);
  first.receiver.reset();
  REL_CHECK_EQ(rel::sql_scalar(db, "PRAGMA integrity_check"),
               std::string("ok"));
  REL_CHECK_EQ(rel::count_rows(db, "SELECT COUNT(*) FROM stored_events"),
               acked);
}

}  // namespace

int main(int argc, char** argv) {
  const std::map<std::string,
                 std::function<void(const rel::TempDir&, const std::string&)>>
      cases = {{"open-errors", case_open_errors},
               {"deleted", case_deleted},
               {"disk-full", case_disk_full},
               {"fd-limit", case_fd_limit}};
  if (argc != 3 || cases.count(argv[2]) == 0) {
    std::fprintf(stderr,
                 "usage: exhaustion_test FIXTURE "
                 "open-errors|deleted|disk-full|fd-limit\n");
    return 2;
  }
  rel::TempDir tmp;
  const std::string fixture = rel::read_file(argv[1]);
  if (REL_CHECK(tmp.ok()) && REL_CHECK(!fixture.empty())) {
    cases.at(argv[2])(tmp, fixture);
  }
  return rel::finish(argv[2]);
}
