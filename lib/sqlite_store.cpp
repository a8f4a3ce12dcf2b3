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
#include <iterator>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <optional>
#include <set>
#include <span>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace lgr {
namespace {

namespace sql = sqlite::sql;

constexpr int kLogDebug = 0;
constexpr int kLogInfo = 1;
constexpr int kLogWarn = 2;
constexpr int kLogError = 3;
constexpr std::int64_t kLastSeenInterval = 60;  // seconds
// How long pending last_seen_at updates wait for a write to join before the
// writer commits them on their own.
constexpr auto kTouchDelay = std::chrono::seconds(1);
constexpr int kCustomerIdAttempts = 4;
// Tokens kept by authenticate_ingest(); the cache starts over when full.
constexpr std::size_t kTokenCacheEntries = 4096;
constexpr std::size_t kMaxBatchLimit = 65536;
// After a restart the WAL file is truncated back to this many bytes, so
// that in steady use it is overwritten rather than regrown: a flush that
// extends a file costs more than one that overwrites (bench/README.md).
// It is twice SqliteTuning::wal_checkpoint_pages at the default page size
// (see ask_for_checkpoint). An idle writer truncates the file to nothing.
constexpr std::int64_t kWalSizeLimitBytes = 32 * 1024 * 1024;

// What the writer connection's WAL hook, installed in place of SQLite's
// automatic checkpoint, records after every commit; used, like the
// connection, only by its holder.
struct WalState {
  // Frames since the WAL last started over; 0 once a checkpoint has made
  // the next commit start it over.
  int pages = 0;
  // Frames were written since the file was last truncated.
  bool dirty = false;
};

int record_wal_commit(void* state, sqlite3*, const char*, int pages) {
  auto* wal = static_cast<WalState*>(state);
  wal->pages = pages;
  wal->dirty = true;
  return SQLITE_OK;
}

// The writer's checkpoint (RESTART) waits this long for readers of older
// snapshots, and kCheckpointBusyLongMs once the WAL has grown to twice its
// checkpoint size. It never waits the whole busy timeout: appends would
// wait with it, and a reader that keeps a snapshot for long keeps the WAL
// from starting over however long this waits; the WAL then grows, and a
// warning says so (checkpoint_if_due). After a checkpoint that failed,
// none is tried again before kCheckpointRetryDelay, doubled after each
// further failure up to the maximum: with such a reader, appends wait at
// most 200 ms in 1.6 s.
constexpr int kCheckpointBusyMs = 50;
constexpr int kCheckpointBusyLongMs = 200;
constexpr auto kCheckpointRetryDelay = std::chrono::milliseconds(100);
constexpr auto kCheckpointRetryDelayMax = std::chrono::milliseconds(1600);
// An idle truncation that failed is tried again after this delay, doubled
// after each failure up to the maximum: it does not wait for readers.
constexpr auto kTruncateRetryDelay = std::chrono::seconds(1);
constexpr auto kTruncateRetryDelayMax = std::chrono::seconds(64);

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
constexpr const char* kUserVersion = "PRAGMA user_version";
constexpr const char* kSyncFull = "PRAGMA synchronous = FULL";
constexpr const char* kSyncNormal = "PRAGMA synchronous = NORMAL";
constexpr const char* kSavepoint = "SAVEPOINT fold_customer";
constexpr const char* kRollbackToSavepoint = "ROLLBACK TO fold_customer";
constexpr const char* kReleaseSavepoint = "RELEASE fold_customer";
// After a fold that failed (disk full, say), the writer waits this long
// before it folds again, instead of retrying after every batch.
constexpr auto kFoldRetryDelay = std::chrono::seconds(1);
// A customer whose fold fails is left out for kFoldRetryDelay, then twice
// as long after each further failure, up to this.
constexpr auto kFoldHoldMax = std::chrono::seconds(64);

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
    "DELETE FROM ingest_log WHERE customer_id = ?1",
    "DELETE FROM fold_marks WHERE customer_id = ?1",
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

// The contribution of a batch's directly written events to the rollup
// tables, summed in memory so that each (customer, hour or day, key) is
// upserted once per transaction. Keys borrow from the batch's jobs, which
// outlive it. Logged events reach the rollups when they are folded: the
// fold sums them with one of these too (fold_customer).
class BatchRollups {
 public:
  // What an event adds to the rollups. The texts are borrowed.
  struct Contribution {
    std::int64_t timestamp_hour = 0;
    std::string_view outcome;
    std::int64_t iterations = 0;
    std::int64_t savings = 0;
    bool rollback = false;
    std::optional<std::string_view> workload_id;
  };

  void add(std::string_view customer_id, const LoopEvent& e) {
    add(customer_id,
        Contribution{e.timestamp_hour, e.outcome, e.iterations_used,
                     e.savings_vs_fixed_cap.value_or(0), e.rollback_triggered,
                     e.workload_id
                         ? std::optional<std::string_view>(*e.workload_id)
                         : std::nullopt});
  }

  void add(std::string_view customer_id, const Contribution& e) {
    const std::int64_t day = sqlite::day_of(e.timestamp_hour);
    for (auto* sums :
         {&hourly_outcomes_[{customer_id, e.timestamp_hour, e.outcome}],
          &daily_outcomes_[{customer_id, day, e.outcome}]}) {
      sums->events += 1;
      sums->iterations += e.iterations;
      sums->savings += e.savings;
      sums->rollbacks += e.rollback ? 1 : 0;
    }

    const std::string_view workload = e.workload_id.value_or("");
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

// ---- The fold schedule ------------------------------------------------------

// What the holder of the write connection knows of the ingest log: how far
// it extends, and which customers have events in it that are not folded
// yet, how many and since which log id. Read from the database at open and
// kept up by this process's appends and folds. It only decides what to fold
// next: every fold reads its customer's mark inside its own transaction,
// and the log's head is deleted only after a query finds nothing unfolded
// in it, so rows another process logged are never lost, only folded late.
class FoldSchedule {
 public:
  using Clock = std::chrono::steady_clock;
  struct Pending {
    std::int64_t oldest = 0;  // a log id at or below its oldest unfolded row
    std::size_t rows = 0;
  };

  // The log's first and last ids, at open; 0, 0 when it is empty.
  void set_extent(std::int64_t first, std::int64_t last) {
    first_ = first;
    last_ = last;
  }
  // The head chunk through `through` was trimmed: the next one starts
  // after it (held rows left behind do not count any more); `last` is the
  // log's newest id now, 0 when it is empty.
  void trimmed(std::int64_t through, std::int64_t last) {
    first_ = std::max(first_, through + 1);
    last_ = last;
  }
  // The log's newest id as the database has it: rows another process
  // logged past what this one knows.
  void saw_last(std::int64_t last) {
    if (last < first_) return;
    if (first_ == 0) first_ = last;
    last_ = std::max(last_, last);
  }
  // Where the next head chunk starts.
  std::int64_t first() const { return first_; }
  // Rows from there to the newest, counting the gaps left by deleted
  // customers.
  std::int64_t rows() const {
    return first_ == 0 || last_ < first_ ? 0 : last_ - first_ + 1;
  }

  void logged(const std::string& customer, std::int64_t id,
              std::size_t fold_threshold) {
    if (first_ == 0) first_ = id;
    last_ = std::max(last_, id);
    auto [it, inserted] = pending_.try_emplace(customer);
    if (inserted) {
      it->second.oldest = id;
      by_age_.emplace(id, customer);
    }
    if (++it->second.rows >= fold_threshold) wanted_.insert(customer);
  }

  // What the database holds at open: `rows` unfolded events of `customer`,
  // the oldest at log id `oldest`.
  void restore(const std::string& customer, std::int64_t oldest,
               std::size_t rows, std::size_t fold_threshold) {
    pending_[customer] = Pending{oldest, rows};
    by_age_.emplace(oldest, customer);
    if (rows >= fold_threshold) wanted_.insert(customer);
  }

  // Asks for `customer` to be folded at the next turn whatever its size.
  // A customer the schedule does not know (its rows were logged by another
  // process) is entered with what is known: rows somewhere in the log.
  void want(const std::string& customer) {
    auto [it, inserted] = pending_.try_emplace(customer);
    if (inserted) {
      it->second = Pending{first_, 1};
      by_age_.emplace(first_, customer);
    }
    wanted_.insert(customer);
  }

  // Leaves `customer` out of next() for a while (its fold failed): for
  // `first` after the first failure, twice as long after each further
  // one, up to `longest`.
  void hold(const std::string& customer, Clock::time_point now,
            Clock::duration first, Clock::duration longest) {
    Hold& h = held_[customer];
    h.delay = h.delay == Clock::duration::zero()
                  ? first
                  : std::min(h.delay * 2, longest);
    h.until = now + h.delay;
  }
  void release_holds() { held_.clear(); }
  void take_holds(FoldSchedule& other) { held_ = std::move(other.held_); }

  bool held(const std::string& customer, Clock::time_point now) const {
    const auto it = held_.find(customer);
    return it != held_.end() && it->second.until > now;
  }

  // `rows` of the customer's events were folded, through log id `through`;
  // `all`: nothing of it is left in the log.
  void folded(const std::string& customer, std::size_t rows,
              std::int64_t through, bool all) {
    const auto it = pending_.find(customer);
    if (it == pending_.end()) return;
    if (all || rows >= it->second.rows) {
      forget(customer);
      return;
    }
    it->second.rows -= rows;
    by_age_.erase({it->second.oldest, customer});
    it->second.oldest = through + 1;
    by_age_.emplace(it->second.oldest, customer);
  }

  void forget(const std::string& customer) {
    held_.erase(customer);
    const auto it = pending_.find(customer);
    if (it == pending_.end()) return;
    by_age_.erase({it->second.oldest, customer});
    wanted_.erase(customer);
    pending_.erase(it);
  }

  std::size_t pending_rows(const std::string& customer) const {
    const auto it = pending_.find(customer);
    return it == pending_.end() ? 0 : it->second.rows;
  }
  bool any_wanted(Clock::time_point now) const {
    for (const auto& customer : wanted_) {
      if (!held(customer, now)) return true;
    }
    return false;
  }

  // Customers to fold next, at most `most`, none of them held: the wanted
  // ones, then, when `oldest_through` is set, those with unfolded rows at
  // or below it, oldest first.
  std::vector<std::string> next(Clock::time_point now, std::size_t most,
                                std::optional<std::int64_t> oldest_through) {
    std::vector<std::string> out;
    for (const auto& customer : wanted_) {
      if (out.size() == most) return out;
      if (!held(customer, now)) out.push_back(customer);
    }
    if (!oldest_through) return out;
    for (const auto& [oldest, customer] : by_age_) {
      if (out.size() == most || oldest > *oldest_through) break;
      if (wanted_.count(customer) == 0 && !held(customer, now)) {
        out.push_back(customer);
      }
    }
    return out;
  }

 private:
  std::int64_t first_ = 0;
  std::int64_t last_ = 0;
  std::unordered_map<std::string, Pending> pending_;
  std::set<std::pair<std::int64_t, std::string>> by_age_;
  std::unordered_set<std::string> wanted_;
  struct Hold {
    Clock::time_point until;
    Clock::duration delay{};
  };
  std::unordered_map<std::string, Hold> held_;
};

// What the ingest log holds (see FoldSchedule), read from the database: at
// open, and again should the schedule have missed a batch. One scan of the
// log, which the writer keeps at about max_log_rows.
FoldSchedule scan_fold_schedule(Connection& c, const SqliteTuning& tuning) {
  FoldSchedule schedule;
  {
    Use extent(c.statement(sql::kLogExtent));
    extent->executeStep();
    if (!extent->getColumn(0).isNull()) {
      schedule.set_extent(extent->getColumn(0).getInt64(),
                          extent->getColumn(1).getInt64());
    }
  }
  Use unfolded(c.statement(sql::kUnfoldedCustomers));
  while (unfolded->executeStep()) {
    schedule.restore(
        unfolded->getColumn(0).getString(), unfolded->getColumn(2).getInt64(),
        static_cast<std::size_t>(unfolded->getColumn(1).getInt64()),
        tuning.fold_threshold);
  }
  return schedule;
}

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
              std::unique_ptr<Connection> writer,
              std::unique_ptr<Connection> backfiller, FoldSchedule schedule,
              bool in_memory)
      : options_(std::move(options)),
        tuning_(tuning),
        in_memory_(in_memory),
        readers_(options_.path, tuning),
        writer_(std::move(writer)),
        backfiller_(std::move(backfiller)),
        has_backfiller_(backfiller_ != nullptr),
        schedule_(std::move(schedule)) {
    log_has_rows_ = schedule_.rows() > 0;
    // Before any thread can commit: an inline append may come first.
    if (!in_memory_) {
      sqlite3_wal_hook(writer_->db().getHandle(), record_wal_commit, &wal_);
    }
    // The backfiller first: if the writer thread cannot be started, the
    // backfiller is stopped again before the exception leaves.
    if (has_backfiller_) {
      backfiller_thread_ = std::thread([this] { backfiller_main(); });
    }
    try {
      writer_thread_ = std::thread([this] { writer_main(); });
    } catch (...) {
      stop_backfiller();
      throw;
    }
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

  // For noexcept paths: `message()` builds the text inside the guard, and
  // a message that cannot be built (out of memory) is dropped.
  template <class Message>
  void log_quietly(int level, Message message) const noexcept {
    try {
      log(level, message());
    } catch (...) {
      // Nothing to report it with.
    }
  }

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
  void begin_write(Connection& c);
  std::uint64_t current_token_generation();
  bool token_still_valid(Connection& c, const Job& job,
                         std::uint64_t generation, std::int64_t at);

  // Writer thread.
  void writer_main();
  template <class HasWork>
  void wait_for_turn(std::unique_lock<std::mutex>& lock, bool& draining,
                     const HasWork& has_work);
  void gather_appends(std::unique_lock<std::mutex>& lock);
  void take_jobs(std::vector<Job*>& batch);
  bool append_inline(WaitedJob& job);
  // `inline_run`: on a lone appender's thread (append_inline), which keeps
  // out of the group-commit statistics and hands the connection back itself.
  void run_appends(std::span<Job* const> jobs, Touches& touches,
                   bool inline_run = false);
  void release_connection(std::size_t appends_done = 0);
  bool hand_back_connection(std::size_t appends_done);
  // Writes the job's event into the log (setting *log_id) or, when
  // log_id is null, straight into loop_events and `rollups`.
  Status insert_event(Connection& c, const Job& job, std::int64_t received_at,
                      std::int64_t* log_id, BatchRollups& rollups);
  void note_logged(std::span<Job* const> jobs,
                   const std::vector<Status>& results,
                   const std::vector<std::int64_t>& log_ids,
                   const std::vector<std::string_view>& to_fold) noexcept;
  std::unordered_set<std::string_view> direct_customers(
      Connection& c, std::span<Job* const> jobs,
      std::vector<std::string_view>& to_fold);
  bool fold_step(Connection& c, bool drain) noexcept;
  struct Folded {
    std::size_t rows = 0;
    std::int64_t through = 0;
    bool all = false;
  };
  Folded fold_customer(Connection& c, const std::string& customer,
                       std::size_t budget);
  std::int64_t newest_log_id(Connection& c);
  bool fold_due_at_hand_back() const;
  // Under mutex_: the WAL has frames and no backfill is at work, which a
  // truncation would only run into.
  bool can_truncate_wal() const {
    return wal_has_frames_ && !backfill_running_ && !backfill_wanted_;
  }
  void ask_for_checkpoint();
  void restore_full_sync(Connection& c) noexcept;
  void require_full_sync(Connection& c);
  void run_job(Job& job);
  void run_touches(Touches& touches);
  void write_touches(Connection& c, const Touches& touches);
  void final_checkpoint() noexcept;
  void truncate_wal() noexcept;
  void backfiller_main() noexcept;
  void stop_backfiller() noexcept;
  bool file_has_moved(Connection& c) const;
  void checkpoint_if_due(Connection& c) noexcept;

  const SqliteStoreOptions options_;
  const SqliteTuning tuning_;
  const bool in_memory_;
  ReaderPool readers_;
  // Used only by the thread that holds writer_busy_: the writer thread, or
  // a lone appender committing its own event (append_inline).
  std::unique_ptr<Connection> writer_;
  // The backfiller thread's own connection (null in memory); closed once
  // the writer thread has stopped too.
  std::unique_ptr<Connection> backfiller_;
  const bool has_backfiller_;
  // What is waiting in the ingest log; used, like writer_, only by the
  // connection's holder.
  FoldSchedule schedule_;
  // When a fold failed, the next is not tried before this (holder only).
  std::chrono::steady_clock::time_point fold_retry_after_{};
  // The schedule missed what a committed batch logged (out of memory while
  // recording it): the next fold turn reads it again (holder only).
  bool schedule_stale_ = false;
  // synchronous=FULL could not be restored after a fold: batches try again
  // before they write and fail while it stays lost (holder only).
  bool sync_lost_ = false;
  std::size_t last_batch_size_ = 1;  // guarded by mutex_
  WalState wal_;                     // used only by the holder of writer_
  // After a failed checkpoint or idle truncation (holder only).
  std::chrono::steady_clock::time_point checkpoint_retry_after_{};
  std::chrono::milliseconds checkpoint_retry_delay_ = kCheckpointRetryDelay;
  int checkpoint_warned_size_ = 0;
  std::chrono::steady_clock::time_point truncate_retry_after_{};
  std::chrono::seconds truncate_retry_delay_ = kTruncateRetryDelay;
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
  // The WAL is to be restarted (see checkpoint_if_due) at the writer
  // thread's next turn.
  bool checkpoint_wanted_ = false;
  // The backfiller is asked to copy the WAL into the database / is at it;
  // backfiller_stop_ ends its thread.
  bool backfill_wanted_ = false;
  bool backfill_running_ = false;
  bool backfiller_stop_ = false;
  std::condition_variable backfill_wake_;
  // Set by the connection's holder as it hands the connection back: a fold
  // is due now (fold_due_at_hand_back), or the log holds rows for the idle
  // writer to fold.
  bool fold_urgent_ = false;
  // A fold is due but waits until fold_retry_after_ (one failed).
  bool fold_delayed_ = false;
  bool log_has_rows_ = false;
  // The WAL holds frames an idle writer may truncate away, now or (after
  // a failed try) once truncate_retry_after_ has passed.
  bool wal_has_frames_ = false;
  bool truncate_delayed_ = false;
  // When the last append was committed, by the writer or inline.
  std::chrono::steady_clock::time_point last_append_at_{};
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
  std::thread backfiller_thread_;
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

// The writer thread's wait between turns, under mutex_: returns once
// `has_work()` (jobs, touches, a checkpoint, a fold that is due) or, with
// `draining` set, an idle step can be taken (a fold, or the WAL's
// truncation). `draining` is set here once nothing was appended for
// idle_fold_delay_ms while the log holds rows or the WAL frames, and
// cleared when nothing is left for it. All the deadlines of the idle
// writer (the quiet period, a fold or a truncation waiting out a failed
// one) are waited for together, the earliest first. fold_retry_after_ and
// truncate_retry_after_ are written only by this thread's turns.
template <class HasWork>
void SqliteStore::wait_for_turn(std::unique_lock<std::mutex>& lock,
                                bool& draining, const HasWork& has_work) {
  using Clock = std::chrono::steady_clock;
  const auto idle_delay = std::chrono::milliseconds(tuning_.idle_fold_delay_ms);
  const Clock::time_point idle_since = Clock::now();
  while (!has_work()) {
    const Clock::time_point now = Clock::now();
    if (fold_delayed_ && now >= fold_retry_after_) {
      fold_urgent_ = true;  // a has_work() reason: the loop ends
      fold_delayed_ = false;
      continue;
    }
    if (truncate_delayed_ && now >= truncate_retry_after_) {
      truncate_delayed_ = false;
      wal_has_frames_ = true;
    }
    const bool fold_waits = now < fold_retry_after_;
    if (draining) {
      if ((log_has_rows_ && !fold_waits) || can_truncate_wal()) return;
      if (!log_has_rows_ && !wal_has_frames_) draining = false;
    }
    Clock::time_point deadline = Clock::time_point::max();
    if (!draining && (log_has_rows_ || wal_has_frames_)) {
      // The quiet period: lone appends commit without this thread, so the
      // clock is theirs, not this wait's.
      const Clock::time_point quiet_until =
          std::max(last_append_at_, idle_since) + idle_delay;
      if (now >= quiet_until) {
        draining = true;
        continue;
      }
      deadline = quiet_until;
    }
    if (fold_delayed_ || (draining && log_has_rows_)) {
      deadline = std::min(deadline, fold_retry_after_);
    }
    if (truncate_delayed_) deadline = std::min(deadline, truncate_retry_after_);
    // Whatever the holder of the connection or the backfiller changes, and
    // notifies, is looked at again.
    const auto seen = std::make_tuple(
        log_has_rows_, wal_has_frames_, fold_delayed_, truncate_delayed_,
        backfill_running_, backfill_wanted_, last_append_at_);
    const auto changed = [&] {
      return has_work() ||
             seen != std::make_tuple(log_has_rows_, wal_has_frames_,
                                     fold_delayed_, truncate_delayed_,
                                     backfill_running_, backfill_wanted_,
                                     last_append_at_);
    };
    if (deadline == Clock::time_point::max()) {
      wake_.wait(lock, changed);
    } else {
      wake_.wait_until(lock, deadline, changed);
    }
  }
}

void SqliteStore::writer_main() {
  std::vector<Job*> batch;
  batch.reserve(tuning_.max_batch);
  Touches touches;
  // Under load, fold turns alternate with batches rather than take over.
  bool folded_last_turn = false;
  // No write came for idle_fold_delay_ms: fold the whole log, one step per
  // turn, for as long as nothing else arrives, then truncate the WAL.
  bool draining = false;

  for (;;) {
    batch.clear();
    touches.clear();
    bool checkpoint_asked = false;
    bool fold_turn = false;
    bool truncate_turn = false;
    {
      std::unique_lock lock(mutex_);
      if (!(fold_urgent_ && !folded_last_turn)) gather_appends(lock);
      writer_waits_for_ = 1;
      const auto has_jobs = [this] {
        return stopping_ || !queue_.empty() || checkpoint_wanted_ ||
               fold_urgent_;
      };
      const auto has_work = [&] {
        return has_jobs() || !pending_touches_.empty();
      };
      wait_for_turn(lock, draining, has_work);
      if (!draining && !has_jobs()) wake_.wait_for(lock, kTouchDelay, has_jobs);
      // An inline appender may hold the connection; it wakes us when done.
      writer_waits_for_connection_ = true;
      wake_.wait(lock, [this] { return !writer_busy_; });
      writer_waits_for_connection_ = false;
      writer_waits_for_ = 0;
      if (!queue_.empty()) draining = false;
      const bool fold_ready =
          std::chrono::steady_clock::now() >= fold_retry_after_;
      fold_turn = !stopping_ &&
                  ((fold_urgent_ && (queue_.empty() || !folded_last_turn)) ||
                   (draining && log_has_rows_ && fold_ready && queue_.empty()));
      truncate_turn = !stopping_ && !fold_turn && draining &&
                      can_truncate_wal() && queue_.empty();
      if (truncate_turn) {
        wal_has_frames_ = false;  // tried once; the next commit sets it
        fold_turn = true;         // no jobs taken, no touches
      }
      if (!fold_turn && queue_.empty() && pending_touches_.empty()) {
        if (stopping_) break;
        if (!checkpoint_wanted_) continue;  // an inline appender took them
      }
      checkpoint_asked = checkpoint_wanted_;
      checkpoint_wanted_ = false;
      writer_busy_ = true;  // released by release_connection()
      if (!fold_turn) {
        take_jobs(batch);
        touches.swap(pending_touches_);
      }
    }
    writer_holds_connection_ = true;
    const bool appends =
        !batch.empty() && batch.front()->kind == JobKind::append;

    // Before the batch (which may be empty: a checkpoint was all there was
    // to do): after the acknowledgements of the commit that asked for it,
    // and while nobody else may use the connection.
    if (checkpoint_asked) checkpoint_if_due(*writer_);
    folded_last_turn = fold_turn;
    if (truncate_turn) {
      truncate_wal();
      draining = false;
      release_connection();
      continue;
    }
    if (fold_turn) {
      if (!fold_step(*writer_, draining)) {
        // Nowhere to go (a fold failed, or the log's head waits for one):
        // no fold turn for kFoldRetryDelay, rather than one after another;
        // a drain truncates the WAL meanwhile.
        fold_retry_after_ =
            std::max(fold_retry_after_,
                     std::chrono::steady_clock::now() + kFoldRetryDelay);
      }
      release_connection();
      continue;
    }
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
  // Closing: every call has returned, so nobody else wants the connection.
  // What is left in the log is folded, so that a closed store keeps its
  // events where every reader of the file expects them; folds that failed
  // lately are tried once more.
  fold_retry_after_ = {};
  schedule_.release_holds();
  while (!in_memory_ && fold_step(*writer_, true)) {
    // The hand-backs that would ask for checkpoints do not happen here.
    checkpoint_if_due(*writer_);
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

// One batch: its events into the ingest log or straight in, committed with
// a flush, then acknowledged.
//
// TODO(#7-throughput): with one customer the commit's flush (fdatasync of
// the WAL, 135-190 us on the VM of bench/README.md) is the floor of a
// request's latency: 16 connections settle into two halves that commit
// in turn, so a request waits about two commits, and HTTP ingest stays
// near 27,000 requests/s against the 50,000 of issue #7. Overlapping
// flushes (two fdatasync calls in flight scale on that disk) would need
// commits that do not wait for each other; flushing the WAL from a second
// thread was measured slower (bench/README.md).
void SqliteStore::run_appends(std::span<Job* const> jobs, Touches& touches,
                              bool inline_run) {
  std::vector<Status> results(jobs.size());
  // The log id of each event that went to the log; 0 for the others.
  std::vector<std::int64_t> log_ids(jobs.size(), 0);
  std::vector<std::string_view> to_fold;
  bool committed = false;
  Connection& c = *writer_;
  const auto started = std::chrono::steady_clock::now();
  try {
    BatchRollups rollups;
    require_full_sync(c);
    begin_write(c);
    const std::uint64_t generation = current_token_generation();
    // After BEGIN, which may have waited for another process's revocation:
    // a revocation committed before it carries an earlier time than this.
    const std::int64_t received_at = now();
    const auto direct = direct_customers(c, jobs, to_fold);
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      std::int64_t* log_id =
          direct.count(jobs[i]->customer_id) > 0 ? nullptr : &log_ids[i];
      results[i] = token_still_valid(c, *jobs[i], generation, received_at)
                       ? insert_event(c, *jobs[i], received_at, log_id, rollups)
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
    committed = true;
  } catch (...) {
    const Error error = current_error("append");
    c.rollback_quietly();
    log(kLogWarn, "a batch of " + std::to_string(jobs.size()) +
                      " events was not committed: " + error.message);
    for (auto& result : results) result = error;
  }
  touches.clear();  // written with the batch, or dropped with it
  if (committed) note_logged(jobs, results, log_ids, to_fold);
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

// Records in the schedule what a committed batch logged. The batch is
// committed whatever happens here: should recording fail (out of memory),
// the schedule is read again from the database at the next fold turn.
void SqliteStore::note_logged(
    std::span<Job* const> jobs, const std::vector<Status>& results,
    const std::vector<std::int64_t>& log_ids,
    const std::vector<std::string_view>& to_fold) noexcept {
  try {
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      if (log_ids[i] != 0 && results[i]) {
        schedule_.logged(jobs[i]->customer_id, log_ids[i],
                         tuning_.fold_threshold);
      }
    }
    for (const std::string_view customer : to_fold) {
      schedule_.want(std::string(customer));
    }
  } catch (...) {
    schedule_stale_ = true;
  }
}

// The customers whose events in this batch go straight into loop_events:
// those with at least direct_rows of them, since they then share their
// pages, and nothing in the log. The log's rows are older, and reads order
// a customer's unfolded events after its folded ones, so a customer with
// rows in the log (known to the schedule, or logged by another process)
// is logged again and named in `to_fold`: folding it lets its next batch
// go straight in.
std::unordered_set<std::string_view> SqliteStore::direct_customers(
    Connection& c, std::span<Job* const> jobs,
    std::vector<std::string_view>& to_fold) {
  std::unordered_set<std::string_view> direct;
  if (tuning_.direct_rows == 0 || jobs.size() < tuning_.direct_rows) {
    return direct;
  }
  std::unordered_map<std::string_view, std::size_t> per_customer;
  for (const Job* job : jobs) ++per_customer[job->customer_id];
  for (const auto& [customer, events] : per_customer) {
    if (events < tuning_.direct_rows) continue;
    const std::string id(customer);
    bool logged = schedule_.pending_rows(id) > 0;
    if (!logged) {
      Use mark(c.statement(sql::kFoldMark));
      mark->bind(1, id);
      mark->executeStep();
      Use newest(c.statement(sql::kNewestLogRow));
      newest->bind(1, id);
      newest->executeStep();
      logged = !newest->getColumn(0).isNull() &&
               newest->getColumn(0).getInt64() > mark->getColumn(0).getInt64();
    }
    if (logged) {
      to_fold.push_back(customer);
    } else {
      direct.insert(customer);
    }
  }
  return direct;
}

// The writer thread hands writer_ back (once per turn; later calls in the
// same turn do nothing), counting out `appends_done` appends of the batch
// it committed, and asks its next turn for a checkpoint when one is due.
void SqliteStore::release_connection(std::size_t appends_done) {
  if (!writer_holds_connection_) return;
  writer_holds_connection_ = false;
  std::lock_guard lock(mutex_);
  (void)hand_back_connection(appends_done);  // this thread is the writer
  if (appends_done > 0) last_batch_size_ = appends_done;
}

// Whoever held writer_ (the writer thread or an inline appender) gives it
// up, counting out the `appends_done` appends it committed; a commit that
// left the WAL past its limit asks the writer thread for a checkpoint, and
// the fold flags are set from the schedule. Returns whether the writer
// thread has new fold work to be woken for. Called under mutex_.
bool SqliteStore::hand_back_connection(std::size_t appends_done) {
  writer_busy_ = false;
  appends_in_flight_ -= appends_done;
  if (appends_done > 0) last_append_at_ = std::chrono::steady_clock::now();
  ask_for_checkpoint();
  const bool idle_work_before =
      log_has_rows_ || wal_has_frames_ || truncate_delayed_;
  const bool fold_due = fold_due_at_hand_back();
  fold_urgent_ =
      fold_due && std::chrono::steady_clock::now() >= fold_retry_after_;
  fold_delayed_ = fold_due && !fold_urgent_;
  log_has_rows_ = schedule_.rows() > 0 || schedule_stale_;
  const bool truncate_waits =
      std::chrono::steady_clock::now() < truncate_retry_after_;
  wal_has_frames_ = wal_.dirty && !truncate_waits;
  truncate_delayed_ = wal_.dirty && truncate_waits;
  return fold_urgent_ || fold_delayed_ ||
         ((log_has_rows_ || wal_has_frames_ || truncate_delayed_) &&
          !idle_work_before);
}

// Whether the writer should fold before its next batch: a customer asked
// for it (fold_threshold reached, or a batch that could have gone straight
// in), or the log is longer than max_log_rows. Called by the connection's
// holder; the caller defers it while a failed fold waits out
// kFoldRetryDelay (fold_delayed_).
bool SqliteStore::fold_due_at_hand_back() const {
  const auto now = std::chrono::steady_clock::now();
  return schedule_stale_ || schedule_.any_wanted(now) ||
         schedule_.rows() > static_cast<std::int64_t>(tuning_.max_log_rows);
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

// WAL housekeeping, in two steps. SQLite's automatic checkpoint is
// passive: while readers keep old snapshots open, or the writer keeps
// committing, it cannot start the WAL over, and the file grows without
// bound. Copying the WAL's pages into the database file is most of a
// checkpoint's cost (4 ms for 1,000 pages of many customers, on the
// writer's time before this was split: bench/README.md), and it needs no
// write lock. So once the WAL holds wal_checkpoint_pages, the backfiller
// thread copies it with a PASSIVE checkpoint on its own connection while
// the writer goes on committing; then the writer, at its next turn, runs
// a RESTART checkpoint, which only has the pages committed meanwhile left
// to copy, waits (busy timeout) for readers of older snapshots, and lets
// the next commit start the WAL from its beginning (journal_size_limit
// truncates the file). Should the backfiller fall behind by as much again,
// the writer restarts the WAL itself. A checkpoint that cannot finish is
// logged and asked for again after kCheckpointRetryDelay. Called by the holder
// of the connection, under mutex_.
void SqliteStore::ask_for_checkpoint() {
  if (in_memory_ || wal_.pages < tuning_.wal_checkpoint_pages) return;
  if (std::chrono::steady_clock::now() < checkpoint_retry_after_) return;
  if (!has_backfiller_ ||
      (wal_.pages >= 2 * tuning_.wal_checkpoint_pages && !backfill_running_)) {
    checkpoint_wanted_ = true;
    return;
  }
  if (backfill_running_ || backfill_wanted_ || checkpoint_wanted_) return;
  backfill_wanted_ = true;
  backfill_wake_.notify_one();
}

void SqliteStore::backfiller_main() noexcept {
  std::unique_lock lock(mutex_);
  for (;;) {
    backfill_wake_.wait(
        lock, [this] { return backfiller_stop_ || backfill_wanted_; });
    if (backfiller_stop_) return;
    backfill_wanted_ = false;
    backfill_running_ = true;
    lock.unlock();
    int wal_pages = 0;
    int copied = 0;
    const int rc = sqlite3_wal_checkpoint_v2(backfiller_->db().getHandle(),
                                             "main", SQLITE_CHECKPOINT_PASSIVE,
                                             &wal_pages, &copied);
    if (rc != SQLITE_OK) {
      log_quietly(kLogWarn, [rc] {
        return std::string("copying the WAL into the database failed: ") +
               sqlite3_errstr(rc) + "; the writer checkpoints";
      });
    }
    lock.lock();
    backfill_running_ = false;
    checkpoint_wanted_ = true;
    // Only a waiting writer needs the signal; a busy one looks at the flag
    // before its next turn.
    if (writer_waits_for_ > 0) wake_.notify_one();
  }
}

void SqliteStore::checkpoint_if_due(Connection& c) noexcept {
  if (in_memory_) return;
  if (wal_.pages < tuning_.wal_checkpoint_pages) return;
  const auto now = std::chrono::steady_clock::now();
  if (now < checkpoint_retry_after_) return;
  sqlite3* db = c.db().getHandle();
  int wal_pages = 0;
  int checkpointed = 0;
  // Readers are waited for only briefly: while this holds the connection,
  // appends wait too, and a reader that keeps its snapshot would make
  // every try wait the whole busy timeout. Longer as the WAL grows.
  const int size = wal_.pages / tuning_.wal_checkpoint_pages;
  sqlite3_busy_timeout(db,
                       size >= 2 ? kCheckpointBusyLongMs : kCheckpointBusyMs);
  const int rc = sqlite3_wal_checkpoint_v2(
      db, "main", SQLITE_CHECKPOINT_RESTART, &wal_pages, &checkpointed);
  sqlite3_busy_timeout(db, tuning_.busy_timeout_ms);
  if (rc == SQLITE_OK) {
    wal_.pages = 0;  // the next commit starts the WAL over
    checkpoint_retry_delay_ = kCheckpointRetryDelay;
    checkpoint_warned_size_ = 0;
    return;
  }
  checkpoint_retry_after_ = now + checkpoint_retry_delay_;
  checkpoint_retry_delay_ = std::min<std::chrono::milliseconds>(
      checkpoint_retry_delay_ * 2, kCheckpointRetryDelayMax);
  // -1 pages: the backfiller holds the checkpoint; it asks again when done.
  if (wal_pages < 0) return;
  // A warning each time the WAL has doubled again, from four times its
  // checkpoint size: a reader keeps an old snapshot open.
  const bool warn = size >= 4 && size >= 2 * checkpoint_warned_size_;
  if (warn) checkpoint_warned_size_ = size;
  log_quietly(warn ? kLogWarn : kLogDebug, [rc, wal_pages] {
    return std::string("WAL checkpoint postponed: ") + sqlite3_errstr(rc) +
           " (" + std::to_string(wal_pages) +
           " pages in the WAL; a reader keeps an older snapshot)";
  });
}

// One row, into the log or straight in. A constraint failure (the customer
// is gone) fails this append only: SQLite's default conflict resolution
// (ABORT) undoes just the failed statement and keeps the transaction, so no
// savepoint per row is needed (one cost a statement sub-journal copy of
// every page the row touched). Anything else aborts the whole batch.
Status SqliteStore::insert_event(Connection& c, const Job& job,
                                 std::int64_t received_at, std::int64_t* log_id,
                                 BatchRollups& rollups) {
  try {
    Use insert(c.statement(log_id ? sql::kLogEvent : sql::kInsertEvent));
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
  if (log_id) {
    *log_id = c.db().getLastInsertRowid();
  } else {
    rollups.add(job.customer_id, *job.event);
  }
  return {};
}

// Before a write that must be flushed: throws unless synchronous=FULL holds.
void SqliteStore::require_full_sync(Connection& c) {
  if (!sync_lost_) return;
  restore_full_sync(c);
  if (sync_lost_) {
    throw SQLite::Exception(
        "commits cannot be flushed (synchronous=FULL was lost)", SQLITE_IOERR);
  }
}

// ---- Folding
// ------------------------------------------------------------------

// One transaction of folding on `c`, which the caller holds: at most
// fold_step_rows logged events of the customers the schedule names (those
// that asked, and, while the log is over max_log_rows or `drain` is set,
// those with rows in its head chunk, oldest first); or, when nothing in
// the head chunk is left to fold, the deletion of that chunk. Returns
// whether it got anywhere: folded or deleted rows, or learned that the
// schedule was out of date. A customer whose fold fails on its own rows
// (a constraint or trigger refuses them) is undone alone, through a
// savepoint, and left out for kFoldRetryDelay, while the others go on; any
// other failure undoes the step, and folding waits kFoldRetryDelay.
bool SqliteStore::fold_step(Connection& c, bool drain) noexcept {
  const auto started = std::chrono::steady_clock::now();
  if (started < fold_retry_after_) return false;
  try {
    if (schedule_stale_) {
      FoldSchedule fresh = scan_fold_schedule(c, tuning_);
      fresh.take_holds(schedule_);
      schedule_ = std::move(fresh);
      schedule_stale_ = false;
    }
    const bool trimming = drain || schedule_.rows() > static_cast<std::int64_t>(
                                                          tuning_.max_log_rows);
    if (!trimming && !schedule_.any_wanted(started)) return false;
    const std::int64_t rows_before = schedule_.rows();
    if (drain && rows_before == 0) {
      // Idle or closing with nothing logged here: another process may
      // have logged rows (or died before folding them).
      schedule_.saw_last(newest_log_id(c));
      if (schedule_.rows() == 0) return false;
    }
    const std::int64_t head_end =
        schedule_.first() + static_cast<std::int64_t>(tuning_.trim_rows) - 1;
    const std::vector<std::string> customers = schedule_.next(
        started, tuning_.fold_step_rows,
        trimming ? std::optional<std::int64_t>(head_end) : std::nullopt);

    struct Done {
      std::string customer;
      Folded folded;
    };
    std::vector<Done> done;
    std::vector<std::string> refused;
    bool trimmed = false;
    std::int64_t newest_after_trim = 0;
    // A fold moves rows within the file: it needs no flush of its own.
    c.run(kSyncNormal);
    begin_write(c);
    std::size_t budget = tuning_.fold_step_rows;
    const auto fold_one = [&](const std::string& customer) {
      c.run(kSavepoint);
      try {
        done.push_back({customer, fold_customer(c, customer, budget)});
      } catch (const SQLite::Exception& e) {
        if (primary_code(e) != SQLITE_CONSTRAINT) throw;
        c.run(kRollbackToSavepoint);
        c.run(kReleaseSavepoint);
        refused.push_back(customer);
        log_quietly(kLogWarn, [&] {
          return "folding the events of " + customer +
                 " failed, retried later: " + e.what();
        });
        return;
      }
      c.run(kReleaseSavepoint);
      budget -= std::min(budget, done.back().folded.rows);
    };
    for (const std::string& customer : customers) {
      if (budget == 0) break;
      fold_one(customer);
    }
    if (done.empty() && refused.empty() && trimming && schedule_.rows() > 0) {
      // Nothing this process knows of is left to fold in the head chunk;
      // rows another process logged may be. Once none is left but those of
      // held customers, the chunk's folded rows are deleted, and the next
      // chunk starts after it: held rows stay behind, in the schedule, and
      // do not stop the log from being trimmed.
      std::vector<std::string> others;
      {
        Use unfolded(c.statement(sql::kUnfoldedInRange));
        unfolded->bind(1, schedule_.first());
        unfolded->bind(2, head_end);
        unfolded->bind(3, static_cast<std::int64_t>(tuning_.fold_step_rows));
        while (unfolded->executeStep()) {
          std::string customer = unfolded->getColumn(0).getString();
          if (!schedule_.held(customer, started)) {
            others.push_back(std::move(customer));
          }
        }
      }
      for (const std::string& customer : others) {
        if (budget == 0) break;
        fold_one(customer);
      }
      if (others.empty()) {
        Use trim(c.statement(sql::kTrimLog));
        trim->bind(1, head_end);
        trim->exec();
        trimmed = true;
        newest_after_trim = newest_log_id(c);
      }
    }
    c.run(kCommit);
    c.run(kSyncFull);
    if (trimmed) schedule_.trimmed(head_end, newest_after_trim);
    bool progress = trimmed || schedule_.rows() != rows_before;
    for (const Done& d : done) {
      schedule_.folded(d.customer, d.folded.rows, d.folded.through,
                       d.folded.all);
      progress = true;
    }
    for (const std::string& customer : refused) {
      schedule_.want(customer);  // held, but tried again after the hold
      schedule_.hold(customer, started, kFoldRetryDelay, kFoldHoldMax);
    }
    return progress;
  } catch (...) {
    c.rollback_quietly();
    restore_full_sync(c);
    fold_retry_after_ = std::chrono::steady_clock::now() + kFoldRetryDelay;
    log_quietly(kLogWarn, [] {
      return "folding the ingest log failed, retried later: " +
             current_error("fold").message;
    });
    return false;
  }
}

// The log's newest id; 0 when it is empty.
std::int64_t SqliteStore::newest_log_id(Connection& c) {
  Use extent(c.statement(sql::kLogExtent));
  extent->executeStep();
  return extent->getColumn(1).isNull() ? 0 : extent->getColumn(1).getInt64();
}

// Folds up to `budget` (at least one) of `customer`'s unfolded log rows,
// oldest first, inside the caller's write transaction.
SqliteStore::Folded SqliteStore::fold_customer(Connection& c,
                                               const std::string& customer,
                                               std::size_t budget) {
  std::int64_t mark = 0;
  std::int64_t newest = 0;
  {
    Use query(c.statement(sql::kFoldMark));
    query->bind(1, customer);
    query->executeStep();
    mark = query->getColumn(0).getInt64();
  }
  {
    Use query(c.statement(sql::kNewestLogRow));
    query->bind(1, customer);
    query->executeStep();
    if (!query->getColumn(0).isNull()) newest = query->getColumn(0).getInt64();
  }
  if (newest <= mark) return {0, mark, true};

  std::int64_t through = newest;
  {
    Use nth(c.statement(sql::kNthUnfoldedLogRow));
    nth->bind(1, customer);
    nth->bind(2, mark);
    nth->bind(3,
              static_cast<std::int64_t>(std::max<std::size_t>(budget, 1)) - 1);
    if (nth->executeStep()) through = nth->getColumn(0).getInt64();
  }
  std::size_t rows = 0;
  {
    Use fold(c.statement(sql::kFoldEvents));
    fold->bind(1, customer);
    fold->bind(2, mark);
    fold->bind(3, through);
    rows = static_cast<std::size_t>(fold->exec());
  }
  {
    // The rollups are summed here in one pass over the rows, not with a
    // GROUP BY per rollup table (four passes and four sorts). `texts`
    // keeps the borrowed outcomes and workload ids alive; a deque never
    // moves what it holds.
    std::deque<std::string> texts;
    BatchRollups rollups;
    Use query(c.statement(sql::kFoldRollupRows));
    query->bind(1, customer);
    query->bind(2, mark);
    query->bind(3, through);
    while (query->executeStep()) {
      BatchRollups::Contribution e;
      e.timestamp_hour = query->getColumn(0).getInt64();
      e.outcome = texts.emplace_back(query->getColumn(1).getString());
      e.iterations = query->getColumn(2).getInt64();
      e.savings = query->getColumn(3).getInt64();
      e.rollback = query->getColumn(4).getInt() != 0;
      if (!query->getColumn(5).isNull()) {
        e.workload_id = texts.emplace_back(query->getColumn(5).getString());
      }
      rollups.add(customer, e);
    }
    rollups.write(c);
  }
  {
    Use mark_it(c.statement(sql::kSetFoldMark));
    mark_it->bind(1, customer);
    mark_it->bind(2, through);
    mark_it->exec();
  }
  return {rows, through, through == newest};
}

// Puts the connection back to synchronous=FULL after a fold, whatever
// happened: every acknowledging commit depends on it. If even that fails,
// the connection is closed for writing (writes fail with storage_error)
// rather than left acknowledging events it has not flushed.
void SqliteStore::restore_full_sync(Connection& c) noexcept {
  if (sqlite3_exec(c.db().getHandle(), kSyncFull, nullptr, nullptr, nullptr) ==
      SQLITE_OK) {
    sync_lost_ = false;
    return;
  }
  sync_lost_ = true;
  log_quietly(kLogError, [] {
    return std::string(
        "could not restore synchronous=FULL after a fold; refusing further "
        "writes until it is");
  });
}

void SqliteStore::run_job(Job& job) {
  Connection& c = *writer_;
  Status result;
  try {
    if (job.kind == JobKind::write) {
      require_full_sync(c);
      begin_write(c);
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
    begin_write(c);
    write_touches(c, touches);
    c.run(kCommit);
  } catch (...) {
    c.rollback_quietly();
    log(kLogWarn, current_error("last_seen_at").message);
  }
  touches.clear();
}

// An idle writer empties the WAL file: what it holds is copied into the
// database and the file truncated, so that a store at rest is (almost) one
// file. It does not wait: while it holds the connection, appends would
// wait too. A reader of an older snapshot (or the backfiller at work)
// makes it fail at once with SQLITE_BUSY; it is then tried again at the
// first idle period after kTruncateRetryDelay, which doubles with each
// failure up to kTruncateRetryDelayMax.
void SqliteStore::truncate_wal() noexcept {
  if (in_memory_) return;
  sqlite3* db = writer_->db().getHandle();
  sqlite3_busy_timeout(db, 0);
  const int rc = sqlite3_wal_checkpoint_v2(
      db, "main", SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  sqlite3_busy_timeout(db, tuning_.busy_timeout_ms);
  if (rc == SQLITE_OK) {
    wal_.pages = 0;
    wal_.dirty = false;
    truncate_retry_delay_ = kTruncateRetryDelay;
    return;
  }
  truncate_retry_after_ =
      std::chrono::steady_clock::now() + truncate_retry_delay_;
  truncate_retry_delay_ = std::min<std::chrono::seconds>(
      truncate_retry_delay_ * 2, kTruncateRetryDelayMax);
  log_quietly(kLogDebug, [rc] {
    return std::string("idle WAL truncation postponed: ") + sqlite3_errstr(rc);
  });
}

// Folds the WAL back into the database so that a closed store is one file.
void SqliteStore::final_checkpoint() noexcept {
  if (in_memory_ || !writer_) return;
  try {
    writer_->db().exec("PRAGMA wal_checkpoint(TRUNCATE)");
  } catch (...) {
    log_quietly(kLogWarn, [] { return current_error("close").message; });
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
      // On the writer thread, which holds the connection. Should the
      // commit fail, the customer's rows stay in the log unknown to the
      // schedule, and are folded when trimming reaches them or at close.
      schedule_.forget(id);
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
// BEGIN IMMEDIATE on the writer connection, then a look at what other
// connections did since its last write transaction (PRAGMA data_version
// moves only for their commits): their token changes make the token cache
// stale, and a newer library may have migrated the file, which this one
// must then no longer write (schema_too_new surfaces as storage_error
// here; the receiver needs a restart with the newer library).
void SqliteStore::begin_write(Connection& c) {
  c.run(kBeginImmediate);
  Use version(c.statement(kDataVersion));
  version->executeStep();
  const std::int64_t seen = version->getColumn(0).getInt64();
  if (seen == writer_data_version_) return;
  {
    Use schema(c.statement(kUserVersion));
    schema->executeStep();
    const int found = schema->getColumn(0).getInt();
    if (found != sqlite::kSchemaVersion) {
      throw SQLite::Exception(
          "the database is now at schema version " + std::to_string(found) +
              " (another process migrated it); this library writes version " +
              std::to_string(sqlite::kSchemaVersion) + " only",
          SQLITE_ERROR);
    }
  }
  // Another connection wrote since the last write here, or this is the
  // first (and the cache may hold tokens checked before it).
  forget_tokens();  // first: if it threw, the next write would try again
  writer_data_version_ = seen;
}

std::uint64_t SqliteStore::current_token_generation() {
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
        const bool fold_work = store.hand_back_connection(1);
        notify = store.writer_waits_for_connection_ || !store.queue_.empty() ||
                 !store.pending_touches_.empty() || store.checkpoint_wanted_ ||
                 fold_work;
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

ProfileRow read_profile_row(SQLite::Statement& query) {
  ProfileRow row;
  row.timestamp_hour = query.getColumn(0).getInt64();
  row.workload_id = text_or_null(query, 1);
  row.profile_min = real_or_null(query, 2);
  row.profile_max = real_or_null(query, 3);
  row.profile_median = real_or_null(query, 4);
  row.profile_samples = query.getColumn(5).getInt64();
  row.outcome = query.getColumn(6).getString();
  row.iterations_used = query.getColumn(7).getInt64();
  row.gain_margin = real_or_null(query, 8);
  return row;
}

EventRow read_event_row(SQLite::Statement& query) {
  EventRow row;
  row.timestamp_hour = query.getColumn(0).getInt64();
  row.workload_id = text_or_null(query, 1);
  row.outcome = query.getColumn(2).getString();
  row.iterations_used = query.getColumn(3).getInt64();
  row.gain_margin = real_or_null(query, 4);
  row.profile_max = real_or_null(query, 5);
  row.savings_vs_fixed_cap = int_or_null(query, 6);
  row.library_version = query.getColumn(7).getString();
  return row;
}

// A newest-first read: the customer's unfolded log rows (`unfolded_sql`)
// and its folded rows (`folded_sql`), each ordered newest first and
// limited, bound alike (?1 customer, ?2 since, ?3 limit, then `more`),
// merged into `rows`. Within an hour the unfolded rows come first: they
// arrived after every folded row of the customer.
template <class Row>
void read_newest_first(Connection& c, const char* folded_sql,
                       const char* unfolded_sql, const std::string& customer,
                       std::int64_t since, int limit,
                       const std::optional<std::string>& more,
                       Row (*read_row)(SQLite::Statement&),
                       std::vector<Row>& rows) {
  std::vector<Row> unfolded;
  std::vector<Row> folded;
  for (auto [text, out] :
       {std::pair{unfolded_sql, &unfolded}, std::pair{folded_sql, &folded}}) {
    Use query(c.statement(text));
    query->bind(1, customer);
    query->bind(2, since);
    query->bind(3, limit);
    if (more) query->bind(4, *more);
    while (query->executeStep()) out->push_back(read_row(*query));
  }
  // std::merge takes from the first range on ties.
  rows.reserve(std::min(unfolded.size() + folded.size(),
                        static_cast<std::size_t>(limit)));
  std::merge(std::make_move_iterator(unfolded.begin()),
             std::make_move_iterator(unfolded.end()),
             std::make_move_iterator(folded.begin()),
             std::make_move_iterator(folded.end()), std::back_inserter(rows),
             [](const Row& a, const Row& b) {
               return a.timestamp_hour > b.timestamp_hour;
             });
  if (rows.size() > static_cast<std::size_t>(limit)) {
    rows.resize(static_cast<std::size_t>(limit));
  }
}

Result<std::vector<ProfileRow>> SqliteStore::profiles(const ProfilesQuery& q) {
  const bool one = q.workload_id.has_value();
  return customer_read<std::vector<ProfileRow>>(
      "profiles", q.customer_id, q.limit, "limit",
      [&](Connection& c, std::vector<ProfileRow>& rows) {
        read_newest_first(
            c, one ? sql::kProfilesForWorkload : sql::kProfiles,
            one ? sql::kUnfoldedProfilesForWorkload : sql::kUnfoldedProfiles,
            q.customer_id, q.since, q.limit, q.workload_id, &read_profile_row,
            rows);
      });
}

Result<std::vector<EventRow>> SqliteStore::events(const EventsQuery& q) {
  const bool rollbacks = q.rollbacks_only;
  return customer_read<std::vector<EventRow>>(
      "events", q.customer_id, q.limit, "limit",
      [&](Connection& c, std::vector<EventRow>& rows) {
        read_newest_first(
            c, rollbacks ? sql::kRollbackEvents : sql::kEvents,
            rollbacks ? sql::kUnfoldedRollbackEvents : sql::kUnfoldedEvents,
            q.customer_id, q.since, q.limit, std::nullopt, &read_event_row,
            rows);
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
  stop_backfiller();
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (writer_thread_.joinable()) writer_thread_.join();
  backfiller_.reset();  // a closed store holds no connection
  writer_id_.store(std::thread::id());
  log(kLogDebug, "store closed");
  return {};
}

void SqliteStore::stop_backfiller() noexcept {
  {
    std::lock_guard lock(mutex_);
    backfiller_stop_ = true;
  }
  backfill_wake_.notify_all();
  if (backfiller_thread_.joinable()) backfiller_thread_.join();
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

// scan_fold_schedule() at open. A log that cannot be read (damaged pages)
// does not stop the store from opening, as no other table does: its reads
// fail where they meet the damage, and its events are folded once a fold
// or trim finds them (fold_step).
FoldSchedule read_fold_schedule(Connection& c, const SqliteTuning& tuning,
                                const LogFunction& log) {
  try {
    return scan_fold_schedule(c, tuning);
  } catch (...) {
    if (log) {
      log(kLogWarn, current_error("open: reading the ingest log").message);
    }
    return FoldSchedule();
  }
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
  for (const auto& [value, name] :
       {std::pair{tuning.fold_threshold, "fold_threshold"},
        std::pair{tuning.fold_step_rows, "fold_step_rows"},
        std::pair{tuning.trim_rows, "trim_rows"}}) {
    if (value == 0) {
      return make_error(ErrorCode::invalid_argument, name,
                        std::string("open: ") + name + " must be at least 1");
    }
  }
  if (tuning.wal_checkpoint_pages < 1) {
    return make_error(ErrorCode::invalid_argument, "wal_checkpoint_pages",
                      "open: wal_checkpoint_pages must be at least 1");
  }
  if (tuning.idle_fold_delay_ms < 0) {
    return make_error(ErrorCode::invalid_argument, "idle_fold_delay_ms",
                      "open: idle_fold_delay_ms must not be negative");
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
    FoldSchedule schedule = read_fold_schedule(**writer, tuning, options.log);
    std::unique_ptr<Connection> backfiller;
    if (!in_memory && !tuning.read_only) {
      backfiller = std::make_unique<Connection>(
          options.path, SQLite::OPEN_READWRITE | SQLite::OPEN_NOMUTEX,
          tuning.busy_timeout_ms);
      // Its checkpoints flush the database file before they count.
      backfiller->db().exec("PRAGMA synchronous = FULL");
    }
    if (options.log) {
      options.log(kLogInfo, "opened " + path_in_quotes(options.path) +
                                " at schema version " +
                                std::to_string(sqlite::kSchemaVersion));
    }
    return std::unique_ptr<Store>(std::make_unique<SqliteStore>(
        std::move(options), tuning, std::move(*writer), std::move(backfiller),
        std::move(schedule), in_memory));
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
