#include "sqlite_store.hpp"

#include "sqlite_schema.hpp"
#include "tokens.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <span>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace lgr {
namespace {

namespace sql = sqlite::sql;

constexpr int kLogDebug = 0;
constexpr int kLogInfo = 1;
constexpr int kLogWarn = 2;
constexpr std::int64_t kLastSeenInterval = 60;  // seconds
// How long pending last_seen_at updates wait for a write to join before the
// writer commits them on their own.
constexpr auto kTouchDelay = std::chrono::seconds(1);
constexpr int kCustomerIdAttempts = 4;
// Tokens kept by authenticate_ingest(); the cache starts over when full.
constexpr std::size_t kTokenCacheEntries = 4096;
constexpr std::size_t kMaxBatchLimit = 65536;
// The writer restarts the WAL once it holds this many pages (4 MiB at the
// default page size) and the file is truncated back to this many bytes.
constexpr int kWalCheckpointPages = 1000;
constexpr std::int64_t kWalSizeLimitBytes = 4 * 1024 * 1024;

// Installed on the writer connection in place of SQLite's automatic
// checkpoint: records the WAL's size after every commit.
int record_wal_pages(void* wal_pages, sqlite3*, const char*, int pages) {
  *static_cast<int*>(wal_pages) = pages;
  return SQLITE_OK;
}


// ---- Writes that only the store issues --------------------------------------

// The writer's page cache: bounded so that the server stays well under its
// memory target (bench/README.md). tests/reliability/soak_test.cpp allows
// for this ceiling and kReaderCacheKiB's in its RSS bound.
constexpr int kWriterCacheKiB = 16 * 1024;
// Each read connection's page cache. A commit empties it anyway (SQLite
// drops a WAL reader's cache when the database changed), and one read
// touches well under this; bounded so that 16 pooled readers stay small.
constexpr int kReaderCacheKiB = 1024;
constexpr const char* kBegin = "BEGIN";
constexpr const char* kBeginImmediate = "BEGIN IMMEDIATE";
constexpr const char* kCommit = "COMMIT";
constexpr const char* kDataVersion = "PRAGMA data_version";

constexpr const char* kInsertCustomer =
    "INSERT INTO customers (customer_id, name, email, created_at)"
    " VALUES (?1, ?2, ?3, ?4)";
constexpr const char* kInsertToken =
    "INSERT INTO tokens (token_hash, customer_id, created_at)"
    " VALUES (?1, ?2, ?3)";
// Never extends an expiry that is already earlier.
constexpr const char* kExpireTokens =
    "UPDATE tokens SET revoked_at = ?2"
    " WHERE customer_id = ?1 AND (revoked_at IS NULL OR revoked_at > ?2)";
constexpr const char* kTouchCustomer =
    "UPDATE customers SET last_seen_at = ?2"
    " WHERE customer_id = ?1 AND (last_seen_at IS NULL OR last_seen_at < ?2)";
constexpr const char* kDeleteCustomer[] = {
    "DELETE FROM tokens WHERE customer_id = ?1",
    "DELETE FROM loop_events WHERE customer_id = ?1",
    "DELETE FROM hourly_outcomes WHERE customer_id = ?1",
    "DELETE FROM daily_outcomes WHERE customer_id = ?1",
    "DELETE FROM hourly_workloads WHERE customer_id = ?1",
    "DELETE FROM daily_workloads WHERE customer_id = ?1",
    "DELETE FROM customers WHERE customer_id = ?1",
};

// ---- Errors -----------------------------------------------------------------

int primary_code(const SQLite::Exception& e) {
  const int code = e.getErrorCode();
  return code < 0 ? code : (code & 0xff);
}

Error storage_failure(const SQLite::Exception& e, std::string_view operation) {
  std::string message(operation);
  message += ": ";
  switch (primary_code(e)) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return make_error(ErrorCode::busy, "",
                        message + "the database is locked; retry later");
    case SQLITE_FULL:
      return make_error(ErrorCode::storage_error, "", message + "disk full");
    case SQLITE_READONLY:
      return make_error(ErrorCode::storage_error, "",
                        message + "the database is read-only");
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return make_error(
          ErrorCode::storage_error, "",
          message + "not a loopgain-receiver database or corrupt");
    case SQLITE_CANTOPEN:
      return make_error(
          ErrorCode::storage_error, "",
          message + "cannot open the database file (" + e.what() + ")");
    case SQLITE_IOERR:
      return make_error(ErrorCode::storage_error, "",
                        message + "I/O error (" + e.what() + ")");
    case SQLITE_NOMEM:
      return make_error(ErrorCode::internal_error, "",
                        message + "out of memory");
    default:
      return make_error(ErrorCode::storage_error, "", message + e.what());
  }
}

// Classifies the exception being handled; call only inside a catch block.
Error current_error(std::string_view operation) {
  try {
    throw;
  } catch (const SQLite::Exception& e) {
    return storage_failure(e, operation);
  } catch (const std::bad_alloc&) {
    return make_error(ErrorCode::internal_error, "",
                      std::string(operation) + ": out of memory");
  } catch (const std::exception& e) {
    return make_error(ErrorCode::internal_error, "",
                      std::string(operation) + ": " + e.what());
  } catch (...) {
    return make_error(ErrorCode::internal_error, "",
                      std::string(operation) + ": unknown exception");
  }
}

Error closed_error(std::string_view operation) {
  return make_error(ErrorCode::closed, "",
                    std::string(operation) + ": the store is closed");
}

Error customer_not_found(std::string_view operation,
                         std::string_view customer_id) {
  // Bounded: the id is an argument and ends up in messages and logs.
  constexpr std::size_t kShown = 64;
  std::string shown(customer_id.substr(0, kShown));
  if (customer_id.size() > kShown) shown += "...";
  return make_error(ErrorCode::customer_not_found, "",
                    std::string(operation) + ": no customer '" + shown + "'");
}

// An ingest whose token was revoked between its check and its commit.
Error token_stopped_working() {
  return make_error(ErrorCode::unauthorized, "",
                    "append: the bearer token stopped working before the "
                    "event was committed");
}

Error negative_argument(std::string_view operation, std::string pointer) {
  std::string message =
      std::string(operation) + ": " + pointer + " must not be negative";
  return make_error(ErrorCode::invalid_argument, std::move(pointer),
                    std::move(message));
}

// ---- Connections and statements ---------------------------------------------

// A connection with its prepared statements, keyed by the address of the
// SQL constant. Used by one thread at a time.
class Connection {
 public:
  Connection(const std::string& path, int flags, int busy_timeout_ms)
      : db_(path, flags, busy_timeout_ms) {}

  SQLite::Database& db() { return db_; }

  SQLite::Statement& statement(const char* sql_text) {
    auto& slot = cache_[sql_text];
    if (!slot) slot = std::make_unique<SQLite::Statement>(db_, sql_text);
    return *slot;
  }

  // Executes a cached statement that takes no parameters.
  void run(const char* sql_text);

  // Ends whatever transaction is open; for error paths, never throws.
  void rollback_quietly() noexcept {
    if (sqlite3_get_autocommit(db_.getHandle()) != 0) return;
    sqlite3_exec(db_.getHandle(), "ROLLBACK", nullptr, nullptr, nullptr);
  }

 private:
  SQLite::Database db_;  // destroyed after the statements
  std::unordered_map<const char*, std::unique_ptr<SQLite::Statement>> cache_;
};

// A cached statement in use: reset and unbound when the scope ends, even
// when a step threw (tryReset, since reset() would throw the error again).
class Use {
 public:
  explicit Use(SQLite::Statement& statement) : statement_(statement) {}
  ~Use() {
    statement_.tryReset();
    try {
      statement_.clearBindings();
    } catch (...) {
      // sqlite3_clear_bindings cannot fail.
    }
  }
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;

  SQLite::Statement* operator->() { return &statement_; }
  SQLite::Statement& operator*() { return statement_; }

 private:
  SQLite::Statement& statement_;
};

void Connection::run(const char* sql_text) {
  Use use(statement(sql_text));
  use->exec();
}

void bind_text(SQLite::Statement& s, int index,
               const std::optional<std::string>& value) {
  if (value) {
    s.bindNoCopy(index, *value);
  } else {
    s.bind(index);
  }
}

void bind_real(SQLite::Statement& s, int index,
               const std::optional<double>& value) {
  if (value) {
    s.bind(index, *value);
  } else {
    s.bind(index);
  }
}

void bind_int(SQLite::Statement& s, int index,
              const std::optional<std::int64_t>& value) {
  if (value) {
    s.bind(index, *value);
  } else {
    s.bind(index);
  }
}

std::optional<std::string> text_or_null(SQLite::Statement& s, int index) {
  const SQLite::Column column = s.getColumn(index);
  if (column.isNull()) return std::nullopt;
  return column.getString();
}

std::optional<double> real_or_null(SQLite::Statement& s, int index) {
  const SQLite::Column column = s.getColumn(index);
  if (column.isNull()) return std::nullopt;
  return column.getDouble();
}

std::optional<std::int64_t> int_or_null(SQLite::Statement& s, int index) {
  const SQLite::Column column = s.getColumn(index);
  if (column.isNull()) return std::nullopt;
  return column.getInt64();
}


bool customer_exists(Connection& c, const std::string& customer_id) {
  Use query(c.statement(sql::kCustomerExists));
  query->bind(1, customer_id);
  return query->executeStep();
}

// ---- Rollups ----------------------------------------------------------------

// One batch's contribution to the rollup tables, summed in memory so that
// each (customer, hour or day, key) is upserted once per transaction. Keys
// borrow from the batch's jobs, which outlive it.
//
// TODO(#7-throughput): with many customers interleaved, every row of a
// batch dirties a page of its own in each of the four rollup tables (keys
// start with the customer), which with the two event indexes makes about
// six 4 KiB WAL frames per row: a commit of 8 such rows measured 1.3 ms,
// against 0.3 ms for 8 rows of one customer. Time-major rollup keys
// (hour or day first) folded from the raw rows in large deferred steps,
// with stats() adding the not yet folded tail of loop_events, would cut
// that to about two frames per row; stats() then seeks per day instead of
// reading one customer range. Its ceiling, measured by leaving out the
// rollup writes and two of the event indexes: 10,000-12,000 req/s over
// HTTP for 1,000 customers instead of 7,500-7,900, and nothing for one
// customer. See bench/README.md.
class BatchRollups {
 public:
  void add(const std::string& customer_id, const LoopEvent& e) {
    const std::int64_t day = sqlite::day_of(e.timestamp_hour);
    for (auto* sums :
         {&hourly_outcomes_[{customer_id, e.timestamp_hour, e.outcome}],
          &daily_outcomes_[{customer_id, day, e.outcome}]}) {
      sums->events += 1;
      sums->iterations += e.iterations_used;
      sums->savings += e.savings_vs_fixed_cap.value_or(0);
      sums->rollbacks += e.rollback_triggered ? 1 : 0;
    }

    const std::string_view workload =
        e.workload_id ? std::string_view(*e.workload_id) : std::string_view();
    hourly_workloads_[{customer_id, e.timestamp_hour, !e.workload_id,
                       workload}] += 1;
    daily_workloads_[{customer_id, day, !e.workload_id, workload}] += 1;
  }

  void write(Connection& c) const {
    write_outcomes(c, sql::kUpsertHourlyOutcome, hourly_outcomes_);
    write_outcomes(c, sql::kUpsertDailyOutcome, daily_outcomes_);
    write_workloads(c, sql::kUpsertHourlyWorkload, hourly_workloads_);
    write_workloads(c, sql::kUpsertDailyWorkload, daily_workloads_);
  }

 private:
  struct Sums {
    std::int64_t events = 0;
    std::int64_t iterations = 0;
    std::int64_t savings = 0;
    std::int64_t rollbacks = 0;
  };
  // (customer, hour or day, outcome) and (customer, hour or day, null, id).
  using OutcomeKey =
      std::tuple<std::string_view, std::int64_t, std::string_view>;
  using WorkloadKey =
      std::tuple<std::string_view, std::int64_t, bool, std::string_view>;
  using OutcomeSums = std::map<OutcomeKey, Sums>;
  using WorkloadSums = std::map<WorkloadKey, std::int64_t>;

  // SQLiteCpp binds a (pointer, size) pair as a blob, so the borrowed keys
  // are copied into text here; one copy per distinct key and batch.
  static void write_outcomes(Connection& c, const char* upsert_sql,
                             const OutcomeSums& all) {
    for (const auto& [key, sums] : all) {
      Use upsert(c.statement(upsert_sql));
      upsert->bind(1, std::string(std::get<0>(key)));
      upsert->bind(2, std::get<1>(key));
      upsert->bind(3, std::string(std::get<2>(key)));
      upsert->bind(4, sums.events);
      upsert->bind(5, sums.iterations);
      upsert->bind(6, sums.savings);
      upsert->bind(7, sums.rollbacks);
      upsert->exec();
    }
  }

  static void write_workloads(Connection& c, const char* upsert_sql,
                              const WorkloadSums& all) {
    for (const auto& [key, events] : all) {
      Use upsert(c.statement(upsert_sql));
      upsert->bind(1, std::string(std::get<0>(key)));
      upsert->bind(2, std::get<1>(key));
      upsert->bind(3, std::get<2>(key) ? 1 : 0);
      upsert->bind(4, std::string(std::get<3>(key)));
      upsert->bind(5, events);
      upsert->exec();
    }
  }

  OutcomeSums hourly_outcomes_;
  OutcomeSums daily_outcomes_;  // by UTC day
  WorkloadSums hourly_workloads_;
  WorkloadSums daily_workloads_;
};

// ---- Readers ----------------------------------------------------------------

class ReaderPool {
 public:
  ReaderPool(std::string path, const SqliteTuning& tuning)
      : path_(std::move(path)),
        max_idle_(tuning.max_idle_readers),
        busy_timeout_ms_(tuning.busy_timeout_ms) {}

  // Throws SQLite::Exception when a new connection cannot be opened.
  std::unique_ptr<Connection> acquire() {
    {
      std::lock_guard lock(mutex_);
      if (!idle_.empty()) {
        auto connection = std::move(idle_.back());
        idle_.pop_back();
        return connection;
      }
    }
    // NOMUTEX: a pooled connection is used by one thread at a time, so
    // SQLite's per-call connection mutex is pure overhead.
    auto connection = std::make_unique<Connection>(
        path_, SQLite::OPEN_READWRITE | SQLite::OPEN_NOMUTEX, busy_timeout_ms_);
    connection->db().exec("PRAGMA query_only = ON");
    connection->db().exec("PRAGMA cache_size = -" +
                          std::to_string(kReaderCacheKiB));
    return connection;
  }

  // TODO(#4): past max_idle concurrent reads, each opens and closes its own
  // connection; a bounded pool with waiting would cap that under load (but
  // must not make an event loop that authenticates wait behind long reads).
  void release(std::unique_ptr<Connection> connection) {
    std::lock_guard lock(mutex_);
    if (idle_.size() < max_idle_) idle_.push_back(std::move(connection));
  }

  void clear() {
    std::lock_guard lock(mutex_);
    idle_.clear();
  }

 private:
  std::string path_;
  std::size_t max_idle_;
  int busy_timeout_ms_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<Connection>> idle_;
};

// ---- Stats from the rollups ---------------------------------------------

struct OutcomeSums {
  std::int64_t events = 0;
  std::int64_t iterations = 0;
  std::int64_t savings = 0;
  std::int64_t rollbacks = 0;
};

// Sums the window's hourly and daily rows per outcome; orders by count
// desc, then outcome. `key` is reused so that short outcomes never allocate.
void read_outcomes(Connection& c, const StatsQuery& q, Stats& stats) {
  std::unordered_map<std::string, OutcomeSums> sums;
  std::string key;
  Use rows(c.statement(sql::kStatsOutcomes));
  rows->bind(1, q.customer_id);
  rows->bind(2, q.since);
  rows->bind(3, sqlite::first_day_at_or_after(q.since));
  while (rows->executeStep()) {
    const SQLite::Column outcome = rows->getColumn(0);
    key.assign(outcome.getText(), static_cast<std::size_t>(outcome.getBytes()));
    OutcomeSums& s = sums[key];
    s.events += rows->getColumn(1).getInt64();
    s.iterations += rows->getColumn(2).getInt64();
    s.savings += rows->getColumn(3).getInt64();
    s.rollbacks += rows->getColumn(4).getInt64();
  }

  for (auto& [outcome, s] : sums) {
    stats.totals.event_count += s.events;
    stats.totals.total_iterations += s.iterations;
    stats.totals.total_savings += s.savings;
    stats.totals.rollbacks += s.rollbacks;
    stats.outcomes.push_back({outcome, s.events});
  }
  std::sort(stats.outcomes.begin(), stats.outcomes.end(),
            [](const OutcomeCount& a, const OutcomeCount& b) {
              if (a.count != b.count) return a.count > b.count;
              return a.outcome < b.outcome;
            });
}

// Sums the window's hourly and daily rows per workload and keeps the top
// `workload_limit`: count desc, the null workload first, then by id.
// TODO(#7): linear in the (day, workload) pairs of the window, ~4 ms for
// 200 workloads a day here; interning workload ids as integers in the
// rollups would roughly halve that.
void read_workloads(Connection& c, const StatsQuery& q, Stats& stats) {
  std::unordered_map<std::string, std::int64_t> named;
  std::int64_t unnamed = 0;
  bool has_unnamed = false;
  std::string key;
  Use rows(c.statement(sql::kStatsWorkloads));
  rows->bind(1, q.customer_id);
  rows->bind(2, q.since);
  rows->bind(3, sqlite::first_day_at_or_after(q.since));
  while (rows->executeStep()) {
    const std::int64_t events = rows->getColumn(2).getInt64();
    if (rows->getColumn(0).getInt() != 0) {
      unnamed += events;
      has_unnamed = true;
      continue;
    }
    const SQLite::Column id = rows->getColumn(1);
    key.assign(id.getText(), static_cast<std::size_t>(id.getBytes()));
    named[key] += events;
  }

  std::vector<WorkloadCount> all;
  all.reserve(named.size() + 1);
  if (has_unnamed) all.push_back({std::nullopt, unnamed});
  for (auto& [id, events] : named) all.push_back({id, events});
  const auto first_ranked = [](const WorkloadCount& a, const WorkloadCount& b) {
    if (a.count != b.count) return a.count > b.count;
    return a.workload_id < b.workload_id;  // nullopt sorts first
  };
  const std::size_t keep =
      std::min(all.size(), static_cast<std::size_t>(q.workload_limit));
  std::partial_sort(all.begin(),
                    all.begin() + static_cast<std::ptrdiff_t>(keep), all.end(),
                    first_ranked);
  all.resize(keep);
  stats.workloads = std::move(all);
}

// ---- The store --------------------------------------------------------------

class SqliteStore final : public Store {
 public:
  SqliteStore(SqliteStoreOptions options, const SqliteTuning& tuning,
              std::unique_ptr<Connection> writer, bool in_memory)
      : options_(std::move(options)),
        tuning_(tuning),
        in_memory_(in_memory),
        readers_(options_.path, tuning),
        writer_(std::move(writer)) {
    // Before any thread can commit: an inline append may come first.
    if (!in_memory_) {
      sqlite3_wal_hook(writer_->db().getHandle(), record_wal_pages,
                       &wal_pages_);
    }
    writer_thread_ = std::thread([this] { writer_main(); });
    writer_id_ = writer_thread_.get_id();
  }

  ~SqliteStore() override { (void)close(); }

  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  Result<IssuedToken> create_customer(
      std::string_view name, std::optional<std::string_view> email) override;
  Result<std::string> rotate_token(std::string_view customer_id,
                                   std::int64_t grace_seconds) override;
  Status revoke_customer(std::string_view customer_id) override;
  Status delete_customer(std::string_view customer_id) override;
  Result<std::vector<CustomerInfo>> list_customers() override;
  Result<std::optional<std::string>> authenticate(
      std::string_view token) override;
  Result<std::optional<IngestCredential>> authenticate_ingest(
      std::string_view token) override;
  Status append(std::string_view customer_id, const LoopEvent& event) override;
  Status append_async(std::string_view customer_id, LoopEvent event,
                      AppendDone&& done) override;
  Status append_for(const IngestCredential& who,
                    const LoopEvent& event) override;
  Status append_for_async(const IngestCredential& who, LoopEvent event,
                          AppendDone&& done) override;
  bool on_commit_thread() const override {
    return std::this_thread::get_id() == writer_id_.load();
  }
  Result<Stats> stats(const StatsQuery& query) override;
  Result<std::vector<ProfileRow>> profiles(const ProfilesQuery& query) override;
  Result<std::vector<EventRow>> events(const EventsQuery& query) override;
  Status close() override;

 private:
  enum class JobKind { append, write, read };
  using Work = std::function<Status(Connection&)>;

  // One unit of work for the writer. The writer never touches a job after
  // finish(), which hands the result over.
  struct Job {
    JobKind kind = JobKind::append;
    const char* operation = "";
    std::string customer_id;
    const LoopEvent* event = nullptr;
    // The credential's token hash, generation and expiry
    // (IngestCredential); an empty hash means nothing to re-check.
    std::string token_hash;
    std::uint64_t token_generation = 0;
    std::optional<std::int64_t> token_expires_at;
    Work work;

    virtual ~Job() = default;
    virtual void finish(Status status) noexcept = 0;
  };

  // Lives on the caller's stack: the caller blocks in wait(). finish()
  // notifies while holding the mutex, so the caller cannot destroy the job
  // under it (a std::promise gives no such guarantee for its shared state).
  struct WaitedJob final : Job {
    void finish(Status status) noexcept override {
      std::lock_guard lock(mutex);
      result = std::move(status);
      done = true;
      finished.notify_one();
    }
    Status wait() {
      std::unique_lock lock(mutex);
      finished.wait(lock, [this] { return done; });
      return std::move(result);
    }

    std::mutex mutex;
    std::condition_variable finished;
    bool done = false;
    Status result;
  };

  // An append_async(): owns its event, lives on the heap from the moment
  // it is queued, and deletes itself once its callback has returned.
  struct CallbackJob final : Job {
    CallbackJob(std::string customer, LoopEvent owned, AppendDone callback)
        : owned_event(std::move(owned)), on_done(std::move(callback)) {
      kind = JobKind::append;
      operation = "append";
      customer_id = std::move(customer);
      event = &owned_event;
    }
    void finish(Status status) noexcept override {
      try {
        on_done(std::move(status));
      } catch (...) {
        // AppendDone must not throw; the writer thread goes on regardless.
      }
      delete this;
    }

    LoopEvent owned_event;
    AppendDone on_done;
  };

  using Touches = std::unordered_map<std::string, std::int64_t>;

  // Counts a call in, unless the store is closed.
  class CallScope {
   public:
    explicit CallScope(SqliteStore& store) : store_(store) {
      std::lock_guard lock(store_.mutex_);
      entered_ = !store_.closed_;
      if (entered_) ++store_.active_calls_;
    }
    ~CallScope() {
      if (!entered_) return;
      std::lock_guard lock(store_.mutex_);
      if (--store_.active_calls_ == 0) store_.idle_.notify_all();
    }
    CallScope(const CallScope&) = delete;
    CallScope& operator=(const CallScope&) = delete;

    explicit operator bool() const { return entered_; }

   private:
    SqliteStore& store_;
    bool entered_ = false;
  };

  std::int64_t now() const { return options_.now(); }

  void log(int level, const std::string& message) const noexcept {
    if (!options_.log) return;
    try {
      options_.log(level, message);
    } catch (...) {
      // A throwing log sink must not take the store down.
    }
  }

  Status enqueue(Job& job);
  Status submit(WaitedJob& job);
  Status run_write(const char* operation, Work work);
  Status run_read(const char* operation, bool snapshot, const Work& work);
  template <class T, class Fill>
  Result<T> customer_read(const char* op, const std::string& customer_id,
                          int limit, const char* limit_name, Fill fill);
  void note_seen(const std::string& customer_id, std::int64_t at);
  // The appends behind append() and append_for(): `who` (null for a
  // customer the host authenticated) carries the token to re-check.
  Status append_job(std::string_view customer_id, const IngestCredential* who,
                    const LoopEvent& event);
  Status append_job_async(std::string_view customer_id,
                          const IngestCredential* who, LoopEvent event,
                          AppendDone& done);
  // Copies what the writer re-checks from `who` into `job`.
  static void take_credential(Job& job, const IngestCredential& who);

  // The token cache (see authenticate_ingest).
  struct CachedToken {
    std::string customer_id;
    std::optional<std::int64_t> revoked_at;  // a future expiry (rotation)
  };
  Result<std::optional<CachedToken>> look_up_token(const char* operation,
                                                   const std::string& hash,
                                                   std::int64_t at);
  void forget_tokens();
  std::uint64_t token_generation_for_batch(Connection& c);
  bool token_still_valid(Connection& c, const Job& job,
                         std::uint64_t generation, std::int64_t at);

  // Writer thread.
  void writer_main();
  void gather_appends(std::unique_lock<std::mutex>& lock);
  void take_jobs(std::vector<Job*>& batch);
  bool append_inline(WaitedJob& job);
  // `inline_run`: on a lone appender's thread (append_inline), which keeps
  // out of the group-commit statistics and hands the connection back itself.
  void run_appends(std::span<Job* const> jobs, Touches& touches,
                   bool inline_run = false);
  void release_connection(std::size_t appends_done = 0);
  void hand_back_connection(std::size_t appends_done);
  Status insert_event(Connection& c, const Job& job, std::int64_t received_at,
                      BatchRollups& rollups);
  void run_job(Job& job);
  void run_touches(Touches& touches);
  void write_touches(Connection& c, const Touches& touches);
  void final_checkpoint() noexcept;
  bool file_has_moved(Connection& c) const;
  void checkpoint_if_due(Connection& c) noexcept;

  const SqliteStoreOptions options_;
  const SqliteTuning tuning_;
  const bool in_memory_;
  ReaderPool readers_;
  // Used only by the thread that holds writer_busy_: the writer thread, or
  // a lone appender committing its own event (append_inline).
  std::unique_ptr<Connection> writer_;
  std::size_t last_batch_size_ = 1;  // guarded by mutex_
  int wal_pages_ = 0;  // frames in the WAL after the last commit
  // PRAGMA data_version of writer_ at the last batch; -1 before the first.
  std::int64_t writer_data_version_ = -1;

  std::mutex token_cache_mutex_;  // guards the two below
  std::unordered_map<std::string, CachedToken> token_cache_;
  // Advanced whenever cached tokens may have gone stale: a credential
  // checked at an older generation is checked again at its commit.
  std::uint64_t token_generation_ = 1;
  std::chrono::microseconds last_commit_duration_{0};

  std::mutex mutex_;              // guards everything below
  std::condition_variable wake_;  // the writer: work or stop
  std::condition_variable idle_;  // close(): active_calls_ reached 0
  std::deque<Job*> queue_;
  std::size_t queued_appends_ = 0;
  std::size_t queued_other_jobs_ = 0;
  // Appends accepted and not yet finished, queued or being committed.
  std::size_t appends_in_flight_ = 0;
  // Some thread is using writer_: the writer thread or an inline appender.
  bool writer_busy_ = false;
  // The writer thread's own record of holding writer_busy_ this turn; only
  // the writer thread touches it.
  bool writer_holds_connection_ = false;
  // The writer thread waits for an inline appender to release writer_.
  bool writer_waits_for_connection_ = false;
  // An inline commit left the WAL past kWalCheckpointPages.
  bool checkpoint_wanted_ = false;
  // 0 while the writer works; else the queued appends it waits for (1 when
  // idle, the batch size it expects while gathering).
  std::size_t writer_waits_for_ = 0;
  Touches pending_touches_;
  std::unordered_map<std::string, std::int64_t> last_seen_written_;
  std::size_t active_calls_ = 0;
  bool closed_ = false;
  bool stopping_ = false;

  std::mutex close_mutex_;  // serialises close()
  std::thread writer_thread_;
  // The writer's id while it runs, so that calls which would wait for it
  // are refused on the writer itself (an append callback calling back in).
  // Cleared once it has been joined: the id of a finished thread is soon
  // given to a new one.
  std::atomic<std::thread::id> writer_id_;
};

// ---- Submitting work --------------------------------------------------------

// Queues `job` for the writer, or refuses it when too many appends wait.
Status SqliteStore::enqueue(Job& job) {
  bool notify = false;
  {
    std::lock_guard lock(mutex_);
    if (job.kind == JobKind::append &&
        queued_appends_ >= tuning_.max_queued) {
      return make_error(ErrorCode::busy, "",
                        "append: too many events waiting to be written");
    }
    queue_.push_back(&job);  // first: it is what can throw
    if (job.kind == JobKind::append) {
      ++queued_appends_;
      ++appends_in_flight_;
    } else {
      ++queued_other_jobs_;
    }
    // Signal only a waiting writer, and while it gathers a batch only once
    // the batch is complete: one wake-up per batch, not one per append.
    notify = writer_waits_for_ > 0 && (job.kind != JobKind::append ||
                                       queued_appends_ >= writer_waits_for_);
  }
  if (notify) wake_.notify_one();
  return {};
}

// Queues `job` and waits until the writer has finished it.
Status SqliteStore::submit(WaitedJob& job) {
  // A host bug, not the client's: internal_error (500 through HTTP).
  if (on_commit_thread()) {
    return make_error(ErrorCode::internal_error, "",
                      std::string(job.operation) +
                          ": called from an append callback, on the thread "
                          "it would wait for");
  }
  Status queued = enqueue(job);
  if (!queued) return queued;
  return job.wait();
}

Status SqliteStore::run_write(const char* operation, Work work) {
  WaitedJob job;
  job.kind = JobKind::write;
  job.operation = operation;
  job.work = std::move(work);
  return submit(job);
}

// Runs `work` on a pooled read connection, or on the writer thread for an
// in-memory database. `snapshot` wraps it in one read transaction.
Status SqliteStore::run_read(const char* operation, bool snapshot,
                             const Work& work) {
  const auto body = [&work, snapshot](Connection& c) -> Status {
    if (!snapshot) return work(c);
    c.run(kBegin);
    Status result = work(c);
    c.run(kCommit);
    return result;
  };
  if (in_memory_) {
    WaitedJob job;
    job.kind = JobKind::read;
    job.operation = operation;
    job.work = body;
    return submit(job);
  }

  try {
    std::unique_ptr<Connection> connection = readers_.acquire();
    Status result = body(*connection);
    readers_.release(std::move(connection));
    return result;
  } catch (...) {
    // The connection went with the exception; the pool opens a new one.
    return current_error(operation);
  }
}

// last_seen_at is written by the writer, at most once a minute per
// customer, so that authenticate() never waits for a write. The update
// rides along with the next write's transaction: only the first pending one
// wakes an idle writer, which then gives it kTouchDelay to find one. A
// commit of its own costs a flush, and a burst of first requests from many
// customers used to make one such commit per request (bench/README.md).
void SqliteStore::note_seen(const std::string& customer_id, std::int64_t at) {
  bool notify = false;
  {
    std::lock_guard lock(mutex_);
    auto [it, inserted] = last_seen_written_.try_emplace(customer_id, at);
    if (!inserted) {
      if (at - it->second < kLastSeenInterval) return;
      it->second = at;
    }
    pending_touches_[customer_id] = at;
    // Idle, not gathering, and nothing pending before this one.
    notify = writer_waits_for_ == 1 && pending_touches_.size() == 1;
  }
  if (notify) wake_.notify_one();
}

// ---- The writer thread ------------------------------------------------------

void SqliteStore::writer_main() {
  std::vector<Job*> batch;
  batch.reserve(tuning_.max_batch);
  Touches touches;
  for (;;) {
    batch.clear();
    touches.clear();
    bool checkpoint_asked = false;
    {
      std::unique_lock lock(mutex_);
      gather_appends(lock);
      writer_waits_for_ = 1;
      wake_.wait(lock, [this] {
        return stopping_ || !queue_.empty() || !pending_touches_.empty() ||
               checkpoint_wanted_;
      });
      const auto has_jobs = [this] {
        return stopping_ || !queue_.empty() || checkpoint_wanted_;
      };
      if (!has_jobs()) wake_.wait_for(lock, kTouchDelay, has_jobs);
      // An inline appender may hold the connection; it wakes us when done.
      writer_waits_for_connection_ = true;
      wake_.wait(lock, [this] { return !writer_busy_; });
      writer_waits_for_connection_ = false;
      writer_waits_for_ = 0;
      if (queue_.empty() && pending_touches_.empty()) {
        if (stopping_) break;
        if (!checkpoint_wanted_) continue;  // an inline appender took them
      }
      checkpoint_asked = checkpoint_wanted_;
      checkpoint_wanted_ = false;
      writer_busy_ = true;  // released by release_connection()
      take_jobs(batch);
      touches.swap(pending_touches_);
    }
    writer_holds_connection_ = true;
    const bool appends =
        !batch.empty() && batch.front()->kind == JobKind::append;

    // Before the batch (which may be empty: a checkpoint was all there was
    // to do): after the acknowledgements of the commit that asked for it,
    // and while nobody else may use the connection.
    if (checkpoint_asked) checkpoint_if_due(*writer_);
    try {
      if (appends) {
        run_appends(batch, touches);
      } else {
        // Touches first, so that any write acknowledged after an
        // authenticate() also shows its last_seen_at.
        run_touches(touches);
        if (!batch.empty()) run_job(*batch.front());
      }
    } catch (...) {
      // Only an allocation can throw here, before any job was counted out
      // or finished (finishing is the last step of each path).
      const Error error = current_error("writer");
      release_connection(appends ? batch.size() : 0);
      for (Job* job : batch) job->finish(error);
    }
    release_connection();
  }
  final_checkpoint();
  writer_.reset();
}

// Appenders released by the last commit come back one by one; taking only
// the first to arrive would alternate small and large batches. So after a
// batch of several, wait for as many appends to be queued again, for at
// most half the last commit's duration (bounded by the tuning), woken once
// when they are all there or when other work arrives. If none came, the
// writer then waits idle and takes the next one at once. A single appender
// never waits.
void SqliteStore::gather_appends(std::unique_lock<std::mutex>& lock) {
  const std::size_t target = std::min(last_batch_size_, tuning_.max_batch);
  if (target <= 1 || stopping_) return;
  const auto ready = [&] {
    return stopping_ || queued_appends_ >= target || queued_other_jobs_ > 0;
  };
  if (ready()) return;

  const auto window =
      std::min(last_commit_duration_ / 2,
               std::chrono::microseconds(tuning_.max_gather_window_us));
  writer_waits_for_ = target;
  wake_.wait_for(lock, window, ready);
  writer_waits_for_ = 0;
}

// A run of appends up to max_batch, or one other job. Called under mutex_.
void SqliteStore::take_jobs(std::vector<Job*>& batch) {
  if (queue_.empty()) return;
  if (queue_.front()->kind != JobKind::append) {
    batch.push_back(queue_.front());
    queue_.pop_front();
    --queued_other_jobs_;
    return;
  }
  while (!queue_.empty() && queue_.front()->kind == JobKind::append &&
         batch.size() < tuning_.max_batch) {
    batch.push_back(queue_.front());
    queue_.pop_front();
    --queued_appends_;
  }
}

void SqliteStore::run_appends(std::span<Job* const> jobs, Touches& touches,
                              bool inline_run) {
  std::vector<Status> results(jobs.size());
  Connection& c = *writer_;
  const auto started = std::chrono::steady_clock::now();
  try {
    BatchRollups rollups;
    c.run(kBeginImmediate);
    const std::uint64_t generation = token_generation_for_batch(c);
    // After BEGIN, which may have waited for another process's revocation:
    // a revocation committed before it carries an earlier time than this.
    const std::int64_t received_at = now();
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      results[i] = token_still_valid(c, *jobs[i], generation, received_at)
                       ? insert_event(c, *jobs[i], received_at, rollups)
                       : token_stopped_working();
    }
    rollups.write(c);
    write_touches(c, touches);
    if (file_has_moved(c)) {
      throw SQLite::Exception(
          "the database file was deleted or replaced while open; nothing "
          "more is written to it (restart the receiver)",
          SQLITE_IOERR);
    }
    c.run(kCommit);
  } catch (...) {
    const Error error = current_error("append");
    c.rollback_quietly();
    log(kLogWarn, "a batch of " + std::to_string(jobs.size()) +
                      " events was not committed: " + error.message);
    for (auto& result : results) result = error;
  }
  touches.clear();  // written with the batch, or dropped with it
  if (inline_run) {
    jobs.front()->finish(std::move(results.front()));  // counted by the caller
    return;
  }
  last_commit_duration_ = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - started);

  // The connection goes back before the appenders are woken, so that one
  // of them coming back alone can commit inline at once; and the jobs are
  // counted out before they are finished, the last step that touches them.
  release_connection(jobs.size());
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    jobs[i]->finish(std::move(results[i]));
  }
}

// The writer thread hands writer_ back (once per turn; later calls in the
// same turn do nothing), counting out `appends_done` appends of the batch
// it committed, and asks its next turn for a checkpoint when one is due.
void SqliteStore::release_connection(std::size_t appends_done) {
  if (!writer_holds_connection_) return;
  writer_holds_connection_ = false;
  std::lock_guard lock(mutex_);
  hand_back_connection(appends_done);
  if (appends_done > 0) last_batch_size_ = appends_done;
}

// Whoever held writer_ (the writer thread or an inline appender) gives it
// up, counting out the `appends_done` appends it committed; a commit that
// left the WAL past its limit asks the writer thread for a checkpoint.
// Called under mutex_.
void SqliteStore::hand_back_connection(std::size_t appends_done) {
  writer_busy_ = false;
  appends_in_flight_ -= appends_done;
  if (!in_memory_ && wal_pages_ >= kWalCheckpointPages) {
    checkpoint_wanted_ = true;
  }
}

// SQLite would go on writing to a file that was unlinked or replaced, and
// acknowledge events nobody can read again. Checked before each commit.
bool SqliteStore::file_has_moved(Connection& c) const {
  if (in_memory_) return false;
  int moved = 0;
  sqlite3_file_control(c.db().getHandle(), "main", SQLITE_FCNTL_HAS_MOVED,
                       &moved);
  return moved != 0;
}

// SQLite's automatic checkpoint is passive: while readers keep old
// snapshots open it cannot start the WAL over, and under steady reads the
// file grows without bound. So, after the acknowledgements went out, the
// writer runs a RESTART checkpoint once the WAL holds kWalCheckpointPages:
// it waits (busy timeout) for the readers of older snapshots to finish,
// after which the next commit starts the WAL from its beginning and
// journal_size_limit truncates the file. A checkpoint that cannot finish is
// logged and tried again after the next batch.
void SqliteStore::checkpoint_if_due(Connection& c) noexcept {
  if (in_memory_) return;
  if (wal_pages_ < kWalCheckpointPages) return;
  sqlite3* db = c.db().getHandle();
  int wal_pages = 0;
  int checkpointed = 0;
  const int rc = sqlite3_wal_checkpoint_v2(
      db, "main", SQLITE_CHECKPOINT_RESTART, &wal_pages, &checkpointed);
  if (rc != SQLITE_OK) {
    log(kLogWarn, std::string("WAL checkpoint postponed: ") +
                      sqlite3_errstr(rc) + " (" + std::to_string(wal_pages) +
                      " pages in the WAL)");
  }
}

// One row. A constraint failure (the customer is gone) fails this append
// only: SQLite's default conflict resolution (ABORT) undoes just the failed
// statement and keeps the transaction, so no savepoint per row is needed
// (one cost a statement sub-journal copy of every page the row touched).
// Anything else aborts the whole batch.
Status SqliteStore::insert_event(Connection& c, const Job& job,
                                 std::int64_t received_at,
                                 BatchRollups& rollups) {
  try {
    Use insert(c.statement(sql::kInsertEvent));
    bind_event(*insert, job.customer_id, *job.event, received_at);
    insert->exec();
  } catch (const SQLite::Exception& e) {
    if (primary_code(e) != SQLITE_CONSTRAINT) throw;
    if (e.getExtendedErrorCode() == SQLITE_CONSTRAINT_FOREIGNKEY) {
      return customer_not_found("append", job.customer_id);
    }
    return make_error(
        ErrorCode::invalid_argument, "",
        std::string("append: the event was refused (") + e.what() + ")");
  }
  rollups.add(job.customer_id, *job.event);
  return {};
}

void SqliteStore::run_job(Job& job) {
  Connection& c = *writer_;
  Status result;
  try {
    if (job.kind == JobKind::write) {
      c.run(kBeginImmediate);
      result = job.work(c);
      if (result) {
        c.run(kCommit);
      } else {
        c.rollback_quietly();
      }
    } else {
      result = job.work(c);
    }
  } catch (...) {
    result = current_error(job.operation);
    c.rollback_quietly();
  }
  // Rotations, revocations and deletions change tokens: the cache forgets
  // them here, on the writer's connection and before any later batch.
  if (job.kind == JobKind::write) forget_tokens();
  release_connection();  // as in run_appends: before the caller wakes
  job.finish(std::move(result));
}

void SqliteStore::write_touches(Connection& c, const Touches& touches) {
  for (const auto& [customer_id, at] : touches) {
    Use touch(c.statement(kTouchCustomer));
    touch->bindNoCopy(1, customer_id);
    touch->bind(2, at);
    touch->exec();
  }
}

void SqliteStore::run_touches(Touches& touches) {
  if (touches.empty()) return;
  Connection& c = *writer_;
  try {
    c.run(kBeginImmediate);
    write_touches(c, touches);
    c.run(kCommit);
  } catch (...) {
    c.rollback_quietly();
    log(kLogWarn, current_error("last_seen_at").message);
  }
  touches.clear();
}

// Folds the WAL back into the database so that a closed store is one file.
void SqliteStore::final_checkpoint() noexcept {
  if (in_memory_ || !writer_) return;
  try {
    writer_->db().exec("PRAGMA wal_checkpoint(TRUNCATE)");
  } catch (...) {
    log(kLogWarn, current_error("close").message);
  }
}

// ---- Customers and tokens ---------------------------------------------------

Result<IssuedToken> SqliteStore::create_customer(
    std::string_view name, std::optional<std::string_view> email) {
  constexpr const char* kOp = "create_customer";
  CallScope scope(*this);
  if (!scope) return closed_error(kOp);
  if (name.empty()) {
    return make_error(ErrorCode::invalid_argument, "name",
                      "create_customer: the name must not be empty");
  }

  try {
    auto token = tokens::new_token();
    if (!token) return token.error();
    auto hash = tokens::hash_token(*token);
    if (!hash) return hash.error();

    IssuedToken issued;
    issued.token = std::move(*token);
    const std::string name_copy(name);
    const std::optional<std::string> email_copy =
        email ? std::optional<std::string>(*email) : std::nullopt;
    const std::int64_t created_at = now();

    Status status = run_write(kOp, [&](Connection& c) -> Status {
      for (int attempt = 0; attempt < kCustomerIdAttempts; ++attempt) {
        auto id = tokens::new_customer_id();
        if (!id) return id.error();
        if (customer_exists(c, *id)) continue;

        Use customer(c.statement(kInsertCustomer));
        customer->bind(1, *id);
        customer->bind(2, name_copy);
        bind_text(*customer, 3, email_copy);
        customer->bind(4, created_at);
        customer->exec();

        Use token_row(c.statement(kInsertToken));
        token_row->bind(1, *hash);
        token_row->bind(2, *id);
        token_row->bind(3, created_at);
        token_row->exec();
        issued.customer_id = std::move(*id);
        return {};
      }
      return make_error(ErrorCode::internal_error, "",
                        "create_customer: no free customer id");
    });
    if (!status) return status.error();
    log(kLogInfo, "created customer " + issued.customer_id);
    return issued;
  } catch (...) {
    return current_error(kOp);
  }
}

Result<std::string> SqliteStore::rotate_token(std::string_view customer_id,
                                              std::int64_t grace_seconds) {
  constexpr const char* kOp = "rotate_token";
  CallScope scope(*this);
  if (!scope) return closed_error(kOp);
  if (grace_seconds < 0) return negative_argument(kOp, "grace_seconds");

  try {
    auto token = tokens::new_token();
    if (!token) return token.error();
    auto hash = tokens::hash_token(*token);
    if (!hash) return hash.error();

    const std::string id(customer_id);
    const std::int64_t at = now();
    const std::int64_t expiry =
        grace_seconds > std::numeric_limits<std::int64_t>::max() - at
            ? std::numeric_limits<std::int64_t>::max()
            : at + grace_seconds;

    Status status = run_write(kOp, [&](Connection& c) -> Status {
      if (!customer_exists(c, id)) return customer_not_found(kOp, id);
      Use expire(c.statement(kExpireTokens));
      expire->bind(1, id);
      expire->bind(2, expiry);
      expire->exec();

      Use insert(c.statement(kInsertToken));
      insert->bind(1, *hash);
      insert->bind(2, id);
      insert->bind(3, at);
      insert->exec();
      return {};
    });
    if (!status) return status.error();
    log(kLogInfo, "rotated the token of " + id);
    return std::move(*token);
  } catch (...) {
    return current_error(kOp);
  }
}

Status SqliteStore::revoke_customer(std::string_view customer_id) {
  constexpr const char* kOp = "revoke_customer";
  CallScope scope(*this);
  if (!scope) return closed_error(kOp);

  try {
    const std::string id(customer_id);
    const std::int64_t at = now();
    Status status = run_write(kOp, [&](Connection& c) -> Status {
      if (!customer_exists(c, id)) return customer_not_found(kOp, id);
      Use expire(c.statement(kExpireTokens));
      expire->bind(1, id);
      expire->bind(2, at);
      expire->exec();
      return {};
    });
    if (status) log(kLogInfo, "revoked every token of " + id);
    return status;
  } catch (...) {
    return current_error(kOp);
  }
}

Status SqliteStore::delete_customer(std::string_view customer_id) {
  constexpr const char* kOp = "delete_customer";
  CallScope scope(*this);
  if (!scope) return closed_error(kOp);

  try {
    const std::string id(customer_id);
    Status status = run_write(kOp, [&](Connection& c) -> Status {
      if (!customer_exists(c, id)) return customer_not_found(kOp, id);
      for (const char* statement : kDeleteCustomer) {
        Use remove(c.statement(statement));
        remove->bind(1, id);
        remove->exec();
      }
      return {};
    });
    if (!status) return status;

    {
      std::lock_guard lock(mutex_);
      last_seen_written_.erase(id);
    }
    log(kLogInfo, "deleted customer " + id);
    return status;
  } catch (...) {
    return current_error(kOp);
  }
}

Result<std::vector<CustomerInfo>> SqliteStore::list_customers() {
  constexpr const char* kOp = "list_customers";
  CallScope scope(*this);
  if (!scope) return closed_error(kOp);

  try {
    std::vector<CustomerInfo> customers;
    const std::int64_t at = now();
    Status status = run_read(kOp, false, [&](Connection& c) -> Status {
      customers.clear();  // a retried read starts over
      Use query(c.statement(sql::kListCustomers));
      query->bind(1, at);
      while (query->executeStep()) {
        CustomerInfo info;
        info.customer_id = query->getColumn(0).getString();
        info.name = query->getColumn(1).getString();
        info.email = text_or_null(*query, 2);
        info.created_at = query->getColumn(3).getInt64();
        info.last_seen_at = int_or_null(*query, 4);
        info.active_tokens = query->getColumn(5).getInt64();
        info.event_count = query->getColumn(6).getInt64();
        customers.push_back(std::move(info));
      }
      return {};
    });
    if (!status) return status.error();
    return customers;
  } catch (...) {
    return current_error(kOp);
  }
}

Result<std::optional<std::string>> SqliteStore::authenticate(
    std::string_view token) {
  constexpr const char* kOp = "authenticate";
  CallScope scope(*this);
  if (!scope) return closed_error(kOp);

  try {
    // Hash and look up whatever arrived, so that every input costs the same.
    auto hash = tokens::hash_token(token);
    if (!hash) return hash.error();
    const std::int64_t at = now();

    auto found = look_up_token(kOp, *hash, at);
    if (!found) return found.error();
    if (!*found) return std::optional<std::string>();
    note_seen((*found)->customer_id, at);
    return std::optional<std::string>(std::move((*found)->customer_id));
  } catch (...) {
    return current_error(kOp);
  }
}

// The token with hash `hash` if it works at `at`, with its expiry.
Result<std::optional<SqliteStore::CachedToken>> SqliteStore::look_up_token(
    const char* operation, const std::string& hash, std::int64_t at) {
  std::optional<CachedToken> found;
  Status status = run_read(operation, false, [&](Connection& c) -> Status {
    found.reset();  // a retried read starts over
    Use query(c.statement(sql::kAuthenticate));
    query->bind(1, hash);
    query->bind(2, at);
    if (query->executeStep()) {
      found = CachedToken{query->getColumn(0).getString(),
                          int_or_null(*query, 1)};
    }
    return {};
  });
  if (!status) return status.error();
  return found;
}

// Ingest answers from a cache of the tokens it has found. A lookup right
// after a commit re-reads the token's pages, since SQLite empties a WAL
// reader's cache whenever the database changed: 4-8 µs of the server's CPU
// per request (bench/README.md). The cache goes stale in two ways, and in
// neither does a revoked token get an event stored:
// - this store changes tokens: each admin write moves the generation on,
//   on the writer thread right after its commit (run_job);
// - another connection changes them: the writer sees PRAGMA data_version
//   move inside the next batch's transaction and moves it on then.
// An append whose credential was checked at an older generation than its
// batch's is looked up again inside that transaction, and one past the
// token's expiry (the end of a rotation's grace) is refused there
// (token_still_valid).
// Unknown tokens are not cached, so every miss is a lookup as in
// authenticate(). Hashes are compared, not tokens: a hit answering faster
// than a miss tells nothing about any other token.
Result<std::optional<IngestCredential>> SqliteStore::authenticate_ingest(
    std::string_view token) {
  constexpr const char* kOp = "authenticate";
  CallScope scope(*this);
  if (!scope) return closed_error(kOp);

  try {
    auto hash = tokens::hash_token(token);
    if (!hash) return hash.error();
    const std::int64_t at = now();

    std::optional<IngestCredential> who;
    std::uint64_t generation = 0;
    {
      std::lock_guard lock(token_cache_mutex_);
      generation = token_generation_;
      const auto it = token_cache_.find(*hash);
      if (it != token_cache_.end() &&
          (!it->second.revoked_at || *it->second.revoked_at > at)) {
        who = IngestCredential{it->second.customer_id, *hash, generation,
                               it->second.revoked_at};
      }
    }
    if (!who) {
      auto looked_up = look_up_token(kOp, *hash, at);
      if (!looked_up) return looked_up.error();
      std::optional<CachedToken>& found = *looked_up;
      if (!found) return who;
      who = IngestCredential{found->customer_id, *hash, generation,
                             found->revoked_at};
      std::lock_guard lock(token_cache_mutex_);
      // Read at `generation`: once that has moved on, the row read may be
      // stale already, and only a later lookup may fill the cache.
      if (token_generation_ == generation) {
        if (token_cache_.size() >= kTokenCacheEntries) token_cache_.clear();
        token_cache_.insert_or_assign(*hash, std::move(*found));
      }
    }
    note_seen(who->customer_id, at);
    return who;
  } catch (...) {
    return current_error(kOp);
  }
}

void SqliteStore::forget_tokens() {
  std::lock_guard lock(token_cache_mutex_);
  token_cache_.clear();
  ++token_generation_;
}

// Called inside the batch's write transaction: no other connection can
// commit between this check and the batch's own commit.
std::uint64_t SqliteStore::token_generation_for_batch(Connection& c) {
  Use version(c.statement(kDataVersion));
  version->executeStep();
  const std::int64_t seen = version->getColumn(0).getInt64();
  if (seen != writer_data_version_) {
    // Another connection wrote since the last batch, or this is the
    // first batch (and the cache may hold tokens checked before it).
    forget_tokens();  // first: if it threw, the next batch would try again
    writer_data_version_ = seen;
  }
  std::lock_guard lock(token_cache_mutex_);
  return token_generation_;
}

// Whether the job may be committed in this batch at `at`: it has no token
// to check; or its token has not expired by `at` and either was checked at
// the batch's generation or a lookup in the batch's transaction finds it
// still owned by its customer.
bool SqliteStore::token_still_valid(Connection& c, const Job& job,
                                    std::uint64_t generation,
                                    std::int64_t at) {
  if (job.token_hash.empty()) return true;
  if (job.token_expires_at && *job.token_expires_at <= at) return false;
  if (job.token_generation == generation) return true;
  Use query(c.statement(sql::kAuthenticate));
  query->bind(1, job.token_hash);
  query->bind(2, at);
  return query->executeStep() && query->getColumn(0).getString() ==
                                     job.customer_id;
}

// ---- Events -----------------------------------------------------------------

Status SqliteStore::append(std::string_view customer_id,
                           const LoopEvent& event) {
  return append_job(customer_id, nullptr, event);
}

Status SqliteStore::append_for(const IngestCredential& who,
                               const LoopEvent& event) {
  return append_job(who.customer_id, &who, event);
}

void SqliteStore::take_credential(Job& job, const IngestCredential& who) {
  job.token_hash = who.token_hash;
  job.token_generation = who.checked_generation;
  job.token_expires_at = who.expires_at;
}

Status SqliteStore::append_job(std::string_view customer_id,
                               const IngestCredential* who,
                               const LoopEvent& event) {
  constexpr const char* kOp = "append";
  CallScope scope(*this);
  if (!scope) return closed_error(kOp);

  try {
    WaitedJob job;
    job.kind = JobKind::append;
    job.operation = kOp;
    job.customer_id = std::string(customer_id);
    if (who) take_credential(job, *who);
    job.event = &event;
    if (append_inline(job)) return job.wait();
    return submit(job);
  } catch (...) {
    return current_error(kOp);
  }
}

// A blocking append with no other append in flight commits its event on its
// own thread. Handing a lone event to the writer thread and being woken
// again costs two thread switches, about a sixth of its time through the C
// API (bench/README.md). Only a lone appender: with others in flight, or
// just after the writer thread committed a group, the writer's gathering
// keeps commits shared, and an appender that went ahead alone would split
// each group into two commits. The WAL checkpoint stays with the writer
// thread (checkpoint_wanted_), so that this caller does not wait for
// readers. Returns false, having changed nothing, when it cannot go ahead.
bool SqliteStore::append_inline(WaitedJob& job) {
  if (in_memory_ || on_commit_thread()) return false;
  Job* const batch[] = {&job};
  Touches touches;
  {
    std::lock_guard lock(mutex_);
    // last_batch_size_ > 1: the writer thread saw concurrent appenders
    // lately; the others of its last group are about to come back.
    if (appends_in_flight_ > 0 || last_batch_size_ > 1 || writer_busy_ ||
        stopping_ || !queue_.empty()) {
      return false;
    }
    writer_busy_ = true;
    ++appends_in_flight_;
    touches.swap(pending_touches_);
  }

  // Hands the connection back on every path, exceptions included: a
  // writer_busy_ left set would stop every later write.
  struct Release {
    SqliteStore& store;
    ~Release() {
      bool notify = false;
      {
        std::lock_guard lock(store.mutex_);
        store.hand_back_connection(1);
        notify = store.writer_waits_for_connection_ || !store.queue_.empty() ||
                 !store.pending_touches_.empty() || store.checkpoint_wanted_;
      }
      if (notify) store.wake_.notify_one();
    }
  } release{*this};

  try {
    run_appends(batch, touches, true);
  } catch (...) {
    // Only an allocation, before the job was finished (as in writer_main).
    // The fallback error is built without allocating.
    Error error;
    error.code = ErrorCode::internal_error;
    try {
      error = current_error("append");
    } catch (...) {
      // Out of memory: the code alone answers.
    }
    job.finish(std::move(error));
  }
  return true;
}

Status SqliteStore::append_async(std::string_view customer_id,
                                 LoopEvent event, AppendDone&& done) {
  return append_job_async(customer_id, nullptr, std::move(event), done);
}

Status SqliteStore::append_for_async(const IngestCredential& who,
                                     LoopEvent event, AppendDone&& done) {
  return append_job_async(who.customer_id, &who, std::move(event), done);
}

// `done` is moved from only when the job was queued.
Status SqliteStore::append_job_async(std::string_view customer_id,
                                     const IngestCredential* who,
                                     LoopEvent event, AppendDone& done) {
  constexpr const char* kOp = "append";
  CallScope scope(*this);
  if (!scope) return closed_error(kOp);

  std::unique_ptr<CallbackJob> job;
  try {
    job = std::make_unique<CallbackJob>(std::string(customer_id),
                                        std::move(event), std::move(done));
    if (who) take_credential(*job, *who);
    Status queued = enqueue(*job);
    if (queued) {
      job.release();  // the writer deletes it after its callback
      return {};
    }
    done = std::move(job->on_done);  // refused: the caller keeps it
    return queued;
  } catch (...) {
    if (job) done = std::move(job->on_done);
    return current_error(kOp);
  }
}

// ---- Reads ------------------------------------------------------------------

// The shape every read shares: counted in as a call, the limit checked,
// then one read snapshot in which an unknown customer is customer_not_found
// before `fill` writes the result. Exceptions become storage errors.
template <class T, class Fill>
Result<T> SqliteStore::customer_read(const char* op,
                                     const std::string& customer_id,
                                     int limit, const char* limit_name,
                                     Fill fill) {
  CallScope scope(*this);
  if (!scope) return closed_error(op);
  if (limit < 0) return negative_argument(op, limit_name);

  try {
    T out;
    Status status = run_read(op, true, [&](Connection& c) -> Status {
      out = T{};
      if (!customer_exists(c, customer_id)) {
        return customer_not_found(op, customer_id);
      }
      fill(c, out);
      return {};
    });
    if (!status) return status.error();
    return out;
  } catch (...) {
    return current_error(op);
  }
}

Result<Stats> SqliteStore::stats(const StatsQuery& q) {
  return customer_read<Stats>(
      "stats", q.customer_id, q.workload_limit, "workload_limit",
      [&](Connection& c, Stats& stats) {
        read_outcomes(c, q, stats);
        if (q.workload_limit > 0) read_workloads(c, q, stats);
      });
}

Result<std::vector<ProfileRow>> SqliteStore::profiles(const ProfilesQuery& q) {
  const char* text =
      q.workload_id ? sql::kProfilesForWorkload : sql::kProfiles;
  return customer_read<std::vector<ProfileRow>>(
      "profiles", q.customer_id, q.limit, "limit",
      [&](Connection& c, std::vector<ProfileRow>& rows) {
        Use query(c.statement(text));
        query->bind(1, q.customer_id);
        query->bind(2, q.since);
        query->bind(3, q.limit);
        if (q.workload_id) query->bind(4, *q.workload_id);
        while (query->executeStep()) {
          ProfileRow row;
          row.timestamp_hour = query->getColumn(0).getInt64();
          row.workload_id = text_or_null(*query, 1);
          row.profile_min = real_or_null(*query, 2);
          row.profile_max = real_or_null(*query, 3);
          row.profile_median = real_or_null(*query, 4);
          row.profile_samples = query->getColumn(5).getInt64();
          row.outcome = query->getColumn(6).getString();
          row.iterations_used = query->getColumn(7).getInt64();
          row.gain_margin = real_or_null(*query, 8);
          rows.push_back(std::move(row));
        }
      });
}

Result<std::vector<EventRow>> SqliteStore::events(const EventsQuery& q) {
  const char* text = q.rollbacks_only ? sql::kRollbackEvents : sql::kEvents;
  return customer_read<std::vector<EventRow>>(
      "events", q.customer_id, q.limit, "limit",
      [&](Connection& c, std::vector<EventRow>& rows) {
        Use query(c.statement(text));
        query->bind(1, q.customer_id);
        query->bind(2, q.since);
        query->bind(3, q.limit);
        while (query->executeStep()) {
          EventRow row;
          row.timestamp_hour = query->getColumn(0).getInt64();
          row.workload_id = text_or_null(*query, 1);
          row.outcome = query->getColumn(2).getString();
          row.iterations_used = query->getColumn(3).getInt64();
          row.gain_margin = real_or_null(*query, 4);
          row.profile_max = real_or_null(*query, 5);
          row.savings_vs_fixed_cap = int_or_null(*query, 6);
          row.library_version = query->getColumn(7).getString();
          rows.push_back(std::move(row));
        }
      });
}

// ---- Lifetime ---------------------------------------------------------------

Status SqliteStore::close() {
  // The writer cannot wait for itself; refused before anything changes, so
  // the store stays open and usable.
  if (on_commit_thread()) {
    return make_error(ErrorCode::internal_error, "",
                      "close: called from an append callback, on the thread "
                      "it would wait for");
  }
  std::lock_guard close_lock(close_mutex_);
  {
    std::unique_lock lock(mutex_);
    if (closed_) return {};
    closed_ = true;
    // Calls already inside (appends waiting for their commit among them)
    // finish first; the writer is still running for them.
    idle_.wait(lock, [this] { return active_calls_ == 0; });
  }
  readers_.clear();
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (writer_thread_.joinable()) writer_thread_.join();
  writer_id_.store(std::thread::id());
  log(kLogDebug, "store closed");
  return {};
}

// ---- Opening ----------------------------------------------------------------

std::string path_in_quotes(const std::string& path) {
  return "'" + path + "'";
}

Result<std::unique_ptr<Connection>> open_writer(
    const SqliteStoreOptions& options, const SqliteTuning& tuning,
    bool in_memory) {
  // NOMUTEX: opened here, then used by one thread at a time (the writer
  // thread, or a lone appender holding writer_busy_).
  const int flags =
      SQLite::OPEN_NOMUTEX |
      (tuning.read_only ? SQLite::OPEN_READONLY
                        : SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  auto writer =
      std::make_unique<Connection>(options.path, flags, tuning.busy_timeout_ms);
  SQLite::Database& db = writer->db();
  if (sqlite3_db_readonly(db.getHandle(), "main") == 1) {
    return make_error(
        ErrorCode::storage_error, "",
        "open: the database " + path_in_quotes(options.path) + " is read-only");
  }

  // Look before writing anything: a newer or foreign file stays untouched
  // (even switching to WAL would rewrite its header).
  const sqlite::SchemaState state = sqlite::inspect_schema(db);
  if (state.kind == sqlite::SchemaKind::too_new) {
    return make_error(
        ErrorCode::schema_too_new, "",
        "open: " + path_in_quotes(options.path) + " has schema version " +
            std::to_string(state.user_version) +
            ", newer than this library's " +
            std::to_string(sqlite::kSchemaVersion) + "; it was not modified");
  }
  if (state.kind == sqlite::SchemaKind::foreign) {
    return make_error(ErrorCode::storage_error, "",
                      "open: " + path_in_quotes(options.path) +
                          " is not a loopgain-receiver database or corrupt");
  }

  std::string mode;
  {
    SQLite::Statement journal(db, "PRAGMA journal_mode = WAL");
    journal.executeStep();
    mode = journal.getColumn(0).getString();
  }
  if (!in_memory && mode != "wal") {
    return make_error(ErrorCode::storage_error, "",
                      "open: cannot use WAL mode for " +
                          path_in_quotes(options.path) + " (journal mode is " +
                          mode + ")");
  }
  db.exec("PRAGMA synchronous = FULL");
  // The writer checkpoints by itself (see checkpoint_if_due); the size
  // limit makes the WAL file shrink back after each restart.
  db.exec("PRAGMA journal_size_limit = " + std::to_string(kWalSizeLimitBytes));
  // Statement journals (a failed insert is undone alone) stay in memory,
  // not in a temporary file.
  db.exec("PRAGMA temp_store = MEMORY");
  // Interleaved customers make every row touch index and rollup pages of
  // its own customer; with SQLite's default 2 MiB cache a store of a
  // million rows re-reads most of them from the OS for each batch.
  db.exec("PRAGMA cache_size = -" + std::to_string(kWriterCacheKiB));
  if (tuning.max_page_count > 0) {
    db.exec("PRAGMA max_page_count = " + std::to_string(tuning.max_page_count));
  }

  if (state.kind != sqlite::SchemaKind::current ||
      state.user_version < sqlite::kSchemaVersion) {
    sqlite::migrate(db, options.log);
  }
  // TODO(#store-integrity): a database at the current user_version whose
  // tables were altered by hand is trusted here and fails later, request
  // by request, with storage_error; checking the tables at open would
  // refuse it up front.
  db.exec("PRAGMA foreign_keys = ON");
  return writer;
}

}  // namespace

void bind_event(SQLite::Statement& s, const std::string& customer_id,
                const LoopEvent& e, std::int64_t received_at) {
  s.bindNoCopy(1, customer_id);
  s.bind(2, e.schema_version);
  s.bindNoCopy(3, e.library);
  s.bindNoCopy(4, e.library_version);
  bind_text(s, 5, e.workload_id);
  s.bind(6, e.timestamp_hour);
  s.bindNoCopy(7, e.outcome);
  s.bind(8, e.iterations_used);
  bind_real(s, 9, e.gain_margin);
  bind_int(s, 10, e.savings_vs_fixed_cap);
  s.bind(11, e.rollback_triggered ? 1 : 0);
  bind_real(s, 12, e.profile.min);
  bind_real(s, 13, e.profile.max);
  bind_real(s, 14, e.profile.median);
  s.bind(15, e.profile.samples);
  bind_int(s, 16, e.best_index);
  s.bind(17, e.thresholds.fast_converge);
  s.bind(18, e.thresholds.converging);
  s.bind(19, e.thresholds.stalling);
  s.bind(20, e.thresholds.oscillating_upper);
  s.bind(21, e.smoothing_window);
  bind_text(s, 22, e.framework);
  bind_text(s, 23, e.loop_type);
  bind_text(s, 24, e.team);
  bind_real(s, 25, e.actual_dollars_spent);
  bind_real(s, 26, e.actual_dollars_saved);
  bind_text(s, 27, e.per_iteration_json);
  s.bind(28, received_at);
}

Result<std::unique_ptr<Store>> open_sqlite_store(SqliteStoreOptions options,
                                                 const SqliteTuning& tuning) {
  if (auto ready = tokens::init(); !ready) return ready.error();
  if (tuning.max_batch == 0 || tuning.max_batch > kMaxBatchLimit) {
    return make_error(ErrorCode::invalid_argument, "max_batch",
                      "open: max_batch must be 1 .. 65536");
  }
  if (!options.now) {
    options.now = [] {
      return static_cast<std::int64_t>(
          std::chrono::duration_cast<std::chrono::seconds>(
              std::chrono::system_clock::now().time_since_epoch())
              .count());
    };
  }
  const bool in_memory = options.path.empty() || options.path == ":memory:";

  try {
    auto writer = open_writer(options, tuning, in_memory);
    if (!writer) return writer.error();
    if (options.log) {
      options.log(kLogInfo, "opened " + path_in_quotes(options.path) +
                                " at schema version " +
                                std::to_string(sqlite::kSchemaVersion));
    }
    return std::unique_ptr<Store>(std::make_unique<SqliteStore>(
        std::move(options), tuning, std::move(*writer), in_memory));
  } catch (const sqlite::MigrationError& e) {
    const ErrorCode code = e.kind() == sqlite::SchemaKind::too_new
                               ? ErrorCode::schema_too_new
                               : ErrorCode::storage_error;
    return make_error(code, "", std::string("open: ") + e.what());
  } catch (...) {
    return current_error("open");
  }
}

Result<std::unique_ptr<Store>> open_sqlite_store(SqliteStoreOptions options) {
  return open_sqlite_store(std::move(options), SqliteTuning{});
}

}  // namespace lgr
