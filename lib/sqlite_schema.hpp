// The SQLite schema of lgr::Store: DDL, versioned migrations and the SQL of
// the reads.
//
// The schema version lives in PRAGMA user_version. Version 0 is either an
// empty file or the seed's original two-table schema (the Cloudflare Worker
// the receiver replaces: `customers` holding one token_hash per customer,
// and `loop_events`); anything else at version 0 is refused. Versions above
// kSchemaVersion were written by a newer library and are refused untouched.
//
// Where an event lives (version 2): an accepted event is committed first to
// `ingest_log`, an append-only table in arrival order whose one index is by
// customer, so that the commit that acknowledges it writes a few pages
// whatever the mix of customers. The store later folds each customer's
// logged events, in one transaction, into `loop_events` (and its three
// indexes) and the rollups, and records in `fold_marks` the last log id it
// folded for that customer; log rows at or below every mark are deleted
// in chunks from the oldest. A customer's events are therefore the rows of
// loop_events plus its log rows above its mark, and every read adds the
// two; the view `stored_events` spells that out for people and tests.
// Log ids come from AUTOINCREMENT, so a mark stays valid after the log has
// been emptied.
//
// Indexes on loop_events are ascending on timestamp_hour. SQLite walks them
// backwards for "timestamp_hour DESC, id DESC" (the rowid is the index's
// last column), so the newest-first reads need no temporary B-tree; a
// DESC index column would need one for the id tie-break. A folded event
// gets a new loop_events id, larger than every folded event before it, so
// id order remains arrival order within a customer, and a customer's
// unfolded events are newer than all of its folded ones.
//
// These functions throw SQLite::Exception (or MigrationError); the store
// turns every exception into an lgr::Error.
#pragma once

#include <SQLiteCpp/Database.h>

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace lgr::sqlite {

// The version this library writes. Migrations go from every older version
// up to it in one transaction.
inline constexpr int kSchemaVersion = 2;

enum class SchemaKind {
  empty,    // no tables yet: a new database
  seed,     // user_version 0 with the seed's customers/loop_events tables
  current,  // user_version 1 .. kSchemaVersion
  too_new,  // user_version > kSchemaVersion
  foreign,  // tables we do not recognise, or a negative user_version
};

struct SchemaState {
  SchemaKind kind = SchemaKind::empty;
  int user_version = 0;
};

// Thrown by migrate() when the state found inside its transaction forbids
// migrating (a newer or a foreign database).
class MigrationError : public std::runtime_error {
 public:
  MigrationError(SchemaKind kind, const std::string& message)
      : std::runtime_error(message), kind_(kind) {}
  SchemaKind kind() const noexcept { return kind_; }

 private:
  SchemaKind kind_;
};

// Reads the schema state without writing anything.
SchemaState inspect_schema(SQLite::Database& db);

// Brings the database to kSchemaVersion. Must be called outside a
// transaction: it turns foreign keys off for the duration (table rebuilds
// need that), runs every step in one IMMEDIATE transaction that re-inspects
// the state first, and turns foreign keys back on. Returns the version the
// database had before. Throws MigrationError for a too new or foreign
// database found inside the transaction.
int migrate(SQLite::Database& db,
            const std::function<void(int, std::string_view)>& log);

// Every column of an event after its id, in the order of loop_events'
// version 1 DDL and of the parameters that lgr::bind_event() binds. A macro,
// not a constant, so that the statements below are single string literals
// put together by the compiler: the store caches prepared statements by the
// address of their text.
#define LGR_SQL_EVENT_COLUMNS                                               \
  "customer_id, schema_version, library, library_version, workload_id,"     \
  " timestamp_hour, outcome, iterations_used, gain_margin,"                 \
  " savings_vs_fixed_cap, rollback_triggered, profile_min, profile_max,"    \
  " profile_median, profile_samples, best_index, threshold_fast_converge,"  \
  " threshold_converging, threshold_stalling, threshold_oscillating_upper," \
  " smoothing_window, framework, loop_type, team, actual_dollars_spent,"    \
  " actual_dollars_saved, per_iteration_json, received_at"

// The last log id folded for customer ?1; 0 before the first fold.
#define LGR_SQL_FOLD_MARK                                    \
  "(SELECT COALESCE(MAX(folded_through), 0) FROM fold_marks" \
  " WHERE customer_id = ?1)"

// The SQL of every read, shared with the tests that check query plans.
// Parameters are numbered; each comment lists them.
namespace sql {

// The token's customer and expiry (a future revoked_at: the token cache
// keeps it). ?1 token_hash, ?2 now
inline constexpr const char* kAuthenticate =
    "SELECT customer_id, revoked_at FROM tokens"
    " WHERE token_hash = ?1 AND (revoked_at IS NULL OR revoked_at > ?2)";

// ?1 customer_id
inline constexpr const char* kCustomerExists =
    "SELECT 1 FROM customers WHERE customer_id = ?1";

// ?1 now
inline constexpr const char* kListCustomers =
    "SELECT c.customer_id, c.name, c.email, c.created_at, c.last_seen_at,"
    " (SELECT COUNT(*) FROM tokens t WHERE t.customer_id = c.customer_id"
    "   AND (t.revoked_at IS NULL OR t.revoked_at > ?1)),"
    " (SELECT COALESCE(SUM(d.events), 0) FROM daily_outcomes d"
    "   WHERE d.customer_id = c.customer_id)"
    " + (SELECT COUNT(*) FROM ingest_log l"
    "   WHERE l.customer_id = c.customer_id AND l.id > COALESCE("
    "   (SELECT m.folded_through FROM fold_marks m"
    "   WHERE m.customer_id = c.customer_id), 0))"
    " FROM customers c ORDER BY c.created_at, c.customer_id";

// The stats rows are summed by the store, not by GROUP BY: SQLite groups
// through a temporary B-tree, which costs about three times as much as a
// hash map for the few thousand rollup rows of a 30-day window. Events not
// folded yet come as one row each, after the rollups' rows.

// ?1 customer_id, ?2 since, ?3 first_day_at_or_after(since): hourly rows
// before that day, daily rows from it on. Totals are the sums of all rows.
inline constexpr const char* kStatsOutcomes =
    "SELECT outcome, events, iterations, savings, rollbacks"
    " FROM hourly_outcomes WHERE customer_id = ?1 AND hour >= ?2 AND hour < ?3"
    " UNION ALL"
    " SELECT outcome, events, iterations, savings, rollbacks"
    " FROM daily_outcomes WHERE customer_id = ?1 AND day >= ?3"
    " UNION ALL"
    " SELECT outcome, 1, iterations_used, COALESCE(savings_vs_fixed_cap, 0),"
    " rollback_triggered <> 0 FROM ingest_log"
    " WHERE customer_id = ?1 AND id > " LGR_SQL_FOLD_MARK
    " AND timestamp_hour >= ?2";

// Parameters as for kStatsOutcomes.
inline constexpr const char* kStatsWorkloads =
    "SELECT workload_null, workload_id, events FROM hourly_workloads"
    " WHERE customer_id = ?1 AND hour >= ?2 AND hour < ?3"
    " UNION ALL"
    " SELECT workload_null, workload_id, events FROM daily_workloads"
    " WHERE customer_id = ?1 AND day >= ?3"
    " UNION ALL"
    " SELECT workload_id IS NULL, COALESCE(workload_id, ''), 1 FROM ingest_log"
    " WHERE customer_id = ?1 AND id > " LGR_SQL_FOLD_MARK
    " AND timestamp_hour >= ?2";

// The newest-first reads come in pairs: the folded events from loop_events
// and the customer's events still in the log, each ordered and limited;
// the store merges the two (unfolded first within an hour: they are the
// newer ones).

// ?1 customer_id, ?2 since, ?3 limit
inline constexpr const char* kProfiles =
    "SELECT timestamp_hour, workload_id, profile_min, profile_max,"
    " profile_median, profile_samples, outcome, iterations_used, gain_margin"
    " FROM loop_events WHERE customer_id = ?1 AND timestamp_hour >= ?2"
    " ORDER BY timestamp_hour DESC, id DESC LIMIT ?3";
inline constexpr const char* kUnfoldedProfiles =
    "SELECT timestamp_hour, workload_id, profile_min, profile_max,"
    " profile_median, profile_samples, outcome, iterations_used, gain_margin"
    " FROM ingest_log WHERE customer_id = ?1 AND id > " LGR_SQL_FOLD_MARK
    " AND timestamp_hour >= ?2 ORDER BY timestamp_hour DESC, id DESC LIMIT ?3";

// ?1 customer_id, ?2 since, ?3 limit, ?4 workload_id
inline constexpr const char* kProfilesForWorkload =
    "SELECT timestamp_hour, workload_id, profile_min, profile_max,"
    " profile_median, profile_samples, outcome, iterations_used, gain_margin"
    " FROM loop_events"
    " WHERE customer_id = ?1 AND workload_id = ?4 AND timestamp_hour >= ?2"
    " ORDER BY timestamp_hour DESC, id DESC LIMIT ?3";
inline constexpr const char* kUnfoldedProfilesForWorkload =
    "SELECT timestamp_hour, workload_id, profile_min, profile_max,"
    " profile_median, profile_samples, outcome, iterations_used, gain_margin"
    " FROM ingest_log WHERE customer_id = ?1 AND id > " LGR_SQL_FOLD_MARK
    " AND workload_id = ?4 AND timestamp_hour >= ?2"
    " ORDER BY timestamp_hour DESC, id DESC LIMIT ?3";

// ?1 customer_id, ?2 since, ?3 limit
inline constexpr const char* kEvents =
    "SELECT timestamp_hour, workload_id, outcome, iterations_used,"
    " gain_margin, profile_max, savings_vs_fixed_cap, library_version"
    " FROM loop_events WHERE customer_id = ?1 AND timestamp_hour >= ?2"
    " ORDER BY timestamp_hour DESC, id DESC LIMIT ?3";
inline constexpr const char* kUnfoldedEvents =
    "SELECT timestamp_hour, workload_id, outcome, iterations_used,"
    " gain_margin, profile_max, savings_vs_fixed_cap, library_version"
    " FROM ingest_log WHERE customer_id = ?1 AND id > " LGR_SQL_FOLD_MARK
    " AND timestamp_hour >= ?2 ORDER BY timestamp_hour DESC, id DESC LIMIT ?3";

// ?1 customer_id, ?2 since, ?3 limit. The literal "rollback_triggered = 1"
// is what lets SQLite use the partial index.
inline constexpr const char* kRollbackEvents =
    "SELECT timestamp_hour, workload_id, outcome, iterations_used,"
    " gain_margin, profile_max, savings_vs_fixed_cap, library_version"
    " FROM loop_events WHERE customer_id = ?1 AND timestamp_hour >= ?2"
    " AND rollback_triggered = 1"
    " ORDER BY timestamp_hour DESC, id DESC LIMIT ?3";
inline constexpr const char* kUnfoldedRollbackEvents =
    "SELECT timestamp_hour, workload_id, outcome, iterations_used,"
    " gain_margin, profile_max, savings_vs_fixed_cap, library_version"
    " FROM ingest_log WHERE customer_id = ?1 AND id > " LGR_SQL_FOLD_MARK
    " AND timestamp_hour >= ?2 AND rollback_triggered = 1"
    " ORDER BY timestamp_hour DESC, id DESC LIMIT ?3";

// ---- Writes -------------------------------------------------------------

// What the acknowledging transaction writes for each event.
// ?1 .. ?28 in the order of LGR_SQL_EVENT_COLUMNS (lgr::bind_event).
inline constexpr const char* kLogEvent =
    "INSERT INTO ingest_log (" LGR_SQL_EVENT_COLUMNS
    ")"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
    " ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)";

// The fold of one customer's log rows ?2 < id <= ?3 (?1 customer_id), in
// one transaction: the events into loop_events in arrival order, what the
// rollups need of them (summed by the store, upserted with kUpsert*), and
// the new mark (?1 customer_id, ?2 folded_through).
inline constexpr const char* kFoldEvents =
    "INSERT INTO loop_events (" LGR_SQL_EVENT_COLUMNS
    ")"
    " SELECT " LGR_SQL_EVENT_COLUMNS
    " FROM ingest_log"
    " WHERE customer_id = ?1 AND id > ?2 AND id <= ?3 ORDER BY id";
inline constexpr const char* kFoldRollupRows =
    "SELECT timestamp_hour, outcome, iterations_used,"
    " COALESCE(savings_vs_fixed_cap, 0), rollback_triggered <> 0, workload_id"
    " FROM ingest_log WHERE customer_id = ?1 AND id > ?2 AND id <= ?3";
inline constexpr const char* kSetFoldMark =
    "INSERT INTO fold_marks (customer_id, folded_through) VALUES (?1, ?2)"
    " ON CONFLICT (customer_id) DO UPDATE SET"
    " folded_through = excluded.folded_through";

// ?1 customer_id: its mark, and its newest log row.
inline constexpr const char* kFoldMark = "SELECT " LGR_SQL_FOLD_MARK;
inline constexpr const char* kNewestLogRow =
    "SELECT MAX(id) FROM ingest_log WHERE customer_id = ?1";

// ?1 customer_id, ?2 mark, ?3 n: the id of its (n + 1)th unfolded log row,
// which bounds one fold to n + 1 rows.
inline constexpr const char* kNthUnfoldedLogRow =
    "SELECT id FROM ingest_log WHERE customer_id = ?1 AND id > ?2"
    " ORDER BY id LIMIT 1 OFFSET ?3";

// The log's extent (two lookups, not a scan: SQLite answers a lone MIN or
// MAX of the rowid from the B-tree's edge).
inline constexpr const char* kLogExtent =
    "SELECT (SELECT MIN(id) FROM ingest_log), (SELECT MAX(id) FROM"
    " ingest_log)";

// Customers (?3 at most) with log rows ?1 <= id <= ?2 that are not folded
// yet: the head chunk of the log is trimmed once the fold has found none
// it can fold.
inline constexpr const char* kUnfoldedInRange =
    "SELECT DISTINCT l.customer_id FROM ingest_log l"
    " WHERE l.id BETWEEN ?1 AND ?2 AND l.id > COALESCE((SELECT"
    " m.folded_through FROM fold_marks m WHERE m.customer_id ="
    " l.customer_id), 0) LIMIT ?3";

// Every customer's unfolded log rows: count and oldest id (at open).
inline constexpr const char* kUnfoldedCustomers =
    "SELECT l.customer_id, COUNT(*), MIN(l.id) FROM ingest_log l"
    " WHERE l.id > COALESCE((SELECT m.folded_through FROM fold_marks m"
    " WHERE m.customer_id = l.customer_id), 0) GROUP BY l.customer_id";

// ?1: the folded log rows at or below it go. Unfolded ones stay: those of a
// customer whose fold keeps failing (see fold_step).
inline constexpr const char* kTrimLog =
    "DELETE FROM ingest_log WHERE id <= ?1 AND id <= COALESCE((SELECT"
    " m.folded_through FROM fold_marks m WHERE m.customer_id ="
    " ingest_log.customer_id), 0)";

// The straightforward writes of one event, straight into loop_events and
// the rollups: what the store does for a customer with several events in
// a batch, and the reference that bench/store_bench's bare loop measures
// the store against. ?1 .. ?28 in the order of LGR_SQL_EVENT_COLUMNS.
inline constexpr const char* kInsertEvent =
    "INSERT INTO loop_events (" LGR_SQL_EVENT_COLUMNS
    ")"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
    " ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)";

// ?1 customer_id, ?2 hour, ?3 outcome, ?4 events, ?5 iterations,
// ?6 savings, ?7 rollbacks
inline constexpr const char* kUpsertHourlyOutcome =
    "INSERT INTO hourly_outcomes (customer_id, hour, outcome, events,"
    " iterations, savings, rollbacks) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    " ON CONFLICT (customer_id, hour, outcome) DO UPDATE SET"
    " events = events + excluded.events,"
    " iterations = iterations + excluded.iterations,"
    " savings = savings + excluded.savings,"
    " rollbacks = rollbacks + excluded.rollbacks";

// As kUpsertHourlyOutcome with ?2 day.
inline constexpr const char* kUpsertDailyOutcome =
    "INSERT INTO daily_outcomes (customer_id, day, outcome, events,"
    " iterations, savings, rollbacks) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    " ON CONFLICT (customer_id, day, outcome) DO UPDATE SET"
    " events = events + excluded.events,"
    " iterations = iterations + excluded.iterations,"
    " savings = savings + excluded.savings,"
    " rollbacks = rollbacks + excluded.rollbacks";

// ?1 customer_id, ?2 day, ?3 workload_null, ?4 workload_id, ?5 events
inline constexpr const char* kUpsertDailyWorkload =
    "INSERT INTO daily_workloads (customer_id, day, workload_null,"
    " workload_id, events) VALUES (?1, ?2, ?3, ?4, ?5)"
    " ON CONFLICT (customer_id, day, workload_null, workload_id)"
    " DO UPDATE SET events = events + excluded.events";

// ?1 customer_id, ?2 hour, ?3 workload_null, ?4 workload_id, ?5 events
inline constexpr const char* kUpsertHourlyWorkload =
    "INSERT INTO hourly_workloads (customer_id, hour, workload_null,"
    " workload_id, events) VALUES (?1, ?2, ?3, ?4, ?5)"
    " ON CONFLICT (customer_id, hour, workload_null, workload_id)"
    " DO UPDATE SET events = events + excluded.events";

}  // namespace sql

inline constexpr std::int64_t kSecondsPerDay = 86400;

// The UTC day (its first second) that `timestamp` falls in.
constexpr std::int64_t day_of(std::int64_t timestamp) {
  if (timestamp < INT64_MIN + kSecondsPerDay) return INT64_MIN;
  return timestamp -
         ((timestamp % kSecondsPerDay) + kSecondsPerDay) % kSecondsPerDay;
}

// The first day boundary at or after `timestamp` (saturating).
constexpr std::int64_t first_day_at_or_after(std::int64_t timestamp) {
  const std::int64_t day = day_of(timestamp);
  if (day == timestamp) return day;
  if (day > INT64_MAX - kSecondsPerDay) return INT64_MAX;
  return day + kSecondsPerDay;
}

// Index names, for the query-plan tests.
namespace index {
inline constexpr std::string_view kEventsByTime =
    "loop_events_by_customer_time";
inline constexpr std::string_view kEventsByWorkload =
    "loop_events_by_customer_workload_time";
inline constexpr std::string_view kRollbacksByTime =
    "loop_events_rollbacks_by_customer_time";
inline constexpr std::string_view kLogByCustomer = "ingest_log_by_customer";
}  // namespace index

}  // namespace lgr::sqlite
