#include "sqlite_schema.hpp"

#include <SQLiteCpp/Statement.h>

#include <cstdint>
#include <string>
#include <vector>

namespace lgr::sqlite {
namespace {

using LogFn = std::function<void(int, std::string_view)>;
constexpr int kLogInfo = 1;
constexpr int kLogWarn = 2;

// ---- Version 1 --------------------------------------------------------------

std::string customers_ddl(std::string_view table) {
  std::string ddl = "CREATE TABLE ";
  ddl += table;
  ddl +=
      " (customer_id TEXT PRIMARY KEY NOT NULL,"
      " name TEXT NOT NULL,"
      " email TEXT,"
      " created_at INTEGER NOT NULL,"
      " last_seen_at INTEGER)";
  return ddl;
}

// revoked_at: NULL while valid; a token stops working once
// revoked_at <= now, so a future value is a grace period.
constexpr const char* kTokensDdl =
    "CREATE TABLE tokens ("
    " token_hash TEXT PRIMARY KEY NOT NULL,"
    " customer_id TEXT NOT NULL REFERENCES customers(customer_id),"
    " created_at INTEGER NOT NULL,"
    " revoked_at INTEGER"
    ") WITHOUT ROWID;"
    "CREATE INDEX tokens_by_customer ON tokens (customer_id);";

// The columns of an event after its id, as loop_events and ingest_log
// declare them (LGR_SQL_EVENT_COLUMNS names them in this order).
#define LGR_SQL_EVENT_COLUMN_DEFS                                 \
  " customer_id TEXT NOT NULL REFERENCES customers(customer_id)," \
  " schema_version INTEGER NOT NULL,"                             \
  " library TEXT NOT NULL,"                                       \
  " library_version TEXT NOT NULL,"                               \
  " workload_id TEXT,"                                            \
  " timestamp_hour INTEGER NOT NULL,"                             \
  " outcome TEXT NOT NULL,"                                       \
  " iterations_used INTEGER NOT NULL,"                            \
  " gain_margin REAL,"                                            \
  " savings_vs_fixed_cap INTEGER,"                                \
  " rollback_triggered INTEGER NOT NULL,"                         \
  " profile_min REAL,"                                            \
  " profile_max REAL,"                                            \
  " profile_median REAL,"                                         \
  " profile_samples INTEGER NOT NULL,"                            \
  " best_index INTEGER,"                                          \
  " threshold_fast_converge REAL NOT NULL,"                       \
  " threshold_converging REAL NOT NULL,"                          \
  " threshold_stalling REAL NOT NULL,"                            \
  " threshold_oscillating_upper REAL NOT NULL,"                   \
  " smoothing_window INTEGER NOT NULL,"                           \
  " framework TEXT,"                                              \
  " loop_type TEXT,"                                              \
  " team TEXT,"                                                   \
  " actual_dollars_spent REAL,"                                   \
  " actual_dollars_saved REAL,"                                   \
  " per_iteration_json TEXT,"                                     \
  " received_at INTEGER NOT NULL"

// No AUTOINCREMENT: ids only break ties between events of the same hour.
constexpr const char* kLoopEventsDdl =
    "CREATE TABLE loop_events ("
    " id INTEGER PRIMARY KEY," LGR_SQL_EVENT_COLUMN_DEFS ")";

constexpr const char* kLoopEventsIndexesDdl =
    "CREATE INDEX loop_events_by_customer_time"
    " ON loop_events (customer_id, timestamp_hour);"
    "CREATE INDEX loop_events_by_customer_workload_time"
    " ON loop_events (customer_id, workload_id, timestamp_hour);"
    "CREATE INDEX loop_events_rollbacks_by_customer_time"
    " ON loop_events (customer_id, timestamp_hour)"
    " WHERE rollback_triggered = 1;";

// Pre-aggregates for stats(), kept in the transaction that inserts the
// events. `hour` is the events' timestamp_hour as stored, so a window
// "timestamp_hour >= since" selects exactly the same events from either.
// Outcomes and workloads are summed per hour and per UTC day: a 30-day
// window then reads about 30 daily and at most 23 hourly rows per outcome
// or workload instead of 720 hourly ones. A null workload_id cannot be part
// of a WITHOUT ROWID key, hence the workload_null flag with workload_id ''
// beside it.
constexpr const char* kRollupsDdl =
    "CREATE TABLE hourly_outcomes ("
    " customer_id TEXT NOT NULL,"
    " hour INTEGER NOT NULL,"
    " outcome TEXT NOT NULL,"
    " events INTEGER NOT NULL,"
    " iterations INTEGER NOT NULL,"
    " savings INTEGER NOT NULL,"
    " rollbacks INTEGER NOT NULL,"
    " PRIMARY KEY (customer_id, hour, outcome)"
    ") WITHOUT ROWID;"
    "CREATE TABLE daily_outcomes ("
    " customer_id TEXT NOT NULL,"
    " day INTEGER NOT NULL,"
    " outcome TEXT NOT NULL,"
    " events INTEGER NOT NULL,"
    " iterations INTEGER NOT NULL,"
    " savings INTEGER NOT NULL,"
    " rollbacks INTEGER NOT NULL,"
    " PRIMARY KEY (customer_id, day, outcome)"
    ") WITHOUT ROWID;"
    "CREATE TABLE hourly_workloads ("
    " customer_id TEXT NOT NULL,"
    " hour INTEGER NOT NULL,"
    " workload_null INTEGER NOT NULL,"
    " workload_id TEXT NOT NULL,"
    " events INTEGER NOT NULL,"
    " PRIMARY KEY (customer_id, hour, workload_null, workload_id)"
    ") WITHOUT ROWID;"
    "CREATE TABLE daily_workloads ("
    " customer_id TEXT NOT NULL,"
    " day INTEGER NOT NULL,"
    " workload_null INTEGER NOT NULL,"
    " workload_id TEXT NOT NULL,"
    " events INTEGER NOT NULL,"
    " PRIMARY KEY (customer_id, day, workload_null, workload_id)"
    ") WITHOUT ROWID;";

constexpr const char* kRebuildRollups =
    "DELETE FROM hourly_outcomes;"
    "DELETE FROM daily_outcomes;"
    "DELETE FROM hourly_workloads;"
    "DELETE FROM daily_workloads;"
    "INSERT INTO hourly_outcomes"
    " SELECT customer_id, timestamp_hour, outcome, COUNT(*),"
    " SUM(iterations_used), SUM(COALESCE(savings_vs_fixed_cap, 0)),"
    " SUM(rollback_triggered <> 0)"
    " FROM loop_events GROUP BY customer_id, timestamp_hour, outcome;"
    "INSERT INTO hourly_workloads"
    " SELECT customer_id, timestamp_hour, workload_id IS NULL,"
    " COALESCE(workload_id, ''), COUNT(*)"
    " FROM loop_events"
    " GROUP BY customer_id, timestamp_hour, workload_id IS NULL,"
    " COALESCE(workload_id, '');"
    "INSERT INTO daily_outcomes"
    " SELECT customer_id, day, outcome, SUM(events), SUM(iterations),"
    " SUM(savings), SUM(rollbacks)"
    " FROM (SELECT *, hour - ((hour % 86400) + 86400) % 86400 AS day"
    " FROM hourly_outcomes)"
    " GROUP BY customer_id, day, outcome;"
    "INSERT INTO daily_workloads"
    " SELECT customer_id, day, workload_null, workload_id, SUM(events)"
    " FROM (SELECT customer_id,"
    " hour - ((hour % 86400) + 86400) % 86400 AS day,"
    " workload_null, workload_id, events FROM hourly_workloads)"
    " GROUP BY customer_id, day, workload_null, workload_id;";

// ---- Version 2: the ingest log ----------------------------------------------

// See the header for what the log, the marks and the view are. The log's
// index is by customer alone: SQLite appends the rowid, so "customer_id = ?
// AND id > mark" is one range. AUTOINCREMENT keeps ids growing after the
// log has been emptied, which the marks rely on.
constexpr const char* kIngestLogDdl =
    "CREATE TABLE ingest_log ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT," LGR_SQL_EVENT_COLUMN_DEFS
    ");"
    "CREATE INDEX ingest_log_by_customer ON ingest_log (customer_id);"
    "CREATE TABLE fold_marks ("
    " customer_id TEXT PRIMARY KEY NOT NULL,"
    " folded_through INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE VIEW stored_events AS"
    " SELECT " LGR_SQL_EVENT_COLUMNS
    " FROM loop_events"
    " UNION ALL"
    " SELECT " LGR_SQL_EVENT_COLUMNS
    " FROM ingest_log l"
    " WHERE l.id > COALESCE((SELECT m.folded_through FROM fold_marks m"
    " WHERE m.customer_id = l.customer_id), 0);";

void upgrade_v1_to_v2(SQLite::Database& db) {
  db.exec(kIngestLogDdl);
}

void create_v1(SQLite::Database& db) {
  db.exec(customers_ddl("customers"));
  db.exec(kTokensDdl);
  db.exec(kLoopEventsDdl);
  db.exec(kLoopEventsIndexesDdl);
  db.exec(kRollupsDdl);
}

// ---- The seed's original schema -> version 1 ------------------------------

std::int64_t count_rows(SQLite::Database& db, const char* sql) {
  SQLite::Statement query(db, sql);
  query.executeStep();
  return query.getColumn(0).getInt64();
}

bool has_column(SQLite::Database& db, std::string_view table,
                std::string_view column) {
  SQLite::Statement query(
      db, "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2");
  query.bind(1, std::string(table));
  query.bind(2, std::string(column));
  query.executeStep();
  return query.getColumn(0).getInt64() > 0;
}

struct AddedColumn {
  const char* name;
  const char* declaration;
};

// What the seed's loop_events lacks. Later revisions of the seed already
// had some of these; only the missing ones are added.
constexpr AddedColumn kSeedMissingColumns[] = {
    {"schema_version", "INTEGER NOT NULL DEFAULT 1"},
    {"library", "TEXT NOT NULL DEFAULT 'loopgain'"},
    {"best_index", "INTEGER"},
    {"framework", "TEXT"},
    {"loop_type", "TEXT"},
    {"team", "TEXT"},
    {"actual_dollars_spent", "REAL"},
    {"actual_dollars_saved", "REAL"},
    {"per_iteration_json", "TEXT"},
};

void upgrade_seed(SQLite::Database& db, const LogFn& log) {
  // Every customer's single token becomes a row of `tokens`.
  db.exec(kTokensDdl);
  db.exec(
      "INSERT INTO tokens (token_hash, customer_id, created_at, revoked_at)"
      " SELECT lower(token_hash), customer_id, created_at, NULL"
      " FROM customers");

  // Rebuild customers without token_hash (a UNIQUE column cannot be
  // dropped in place). Foreign keys are off, so loop_events' reference to
  // "customers" resolves to the renamed table afterwards.
  db.exec(customers_ddl("customers_v1"));
  db.exec(
      "INSERT INTO customers_v1"
      " (customer_id, name, email, created_at, last_seen_at)"
      " SELECT customer_id, COALESCE(name, ''), contact_email, created_at,"
      " last_seen_at FROM customers");
  db.exec("DROP TABLE customers");
  db.exec("ALTER TABLE customers_v1 RENAME TO customers");

  for (const auto& column : kSeedMissingColumns) {
    if (has_column(db, "loop_events", column.name)) continue;
    db.exec(std::string("ALTER TABLE loop_events ADD COLUMN ") + column.name +
            " " + column.declaration);
  }

  // The seed's indexes are replaced by ours (see the header on ordering).
  db.exec(
      "DROP INDEX IF EXISTS idx_loop_events_customer_time;"
      "DROP INDEX IF EXISTS idx_loop_events_customer_workload_time;"
      "DROP INDEX IF EXISTS idx_loop_events_rollbacks;");
  db.exec(kLoopEventsIndexesDdl);
  db.exec(kRollupsDdl);
  db.exec(kRebuildRollups);

  if (log) {
    log(kLogInfo,
        "migrated the seed schema: " +
            std::to_string(count_rows(db, "SELECT COUNT(*) FROM customers")) +
            " customers, " +
            std::to_string(count_rows(db, "SELECT COUNT(*) FROM tokens")) +
            " tokens, " +
            std::to_string(count_rows(db, "SELECT COUNT(*) FROM loop_events")) +
            " events");
  }
}

// Steps from version N to N + 1, for N >= 1.
using Step = void (*)(SQLite::Database&);
const std::vector<Step>& later_steps() {
  static const std::vector<Step> steps = {upgrade_v1_to_v2};
  return steps;
}

void warn_about_orphans(SQLite::Database& db, const LogFn& log) {
  SQLite::Statement check(db, "PRAGMA foreign_key_check");
  std::int64_t orphans = 0;
  while (check.executeStep()) ++orphans;
  if (orphans > 0 && log) {
    log(kLogWarn, "migration kept " + std::to_string(orphans) +
                      " rows whose customer does not exist; no read shows"
                      " them");
  }
}

// Rolls back unless committed, without throwing from a destructor.
class ImmediateTransaction {
 public:
  explicit ImmediateTransaction(SQLite::Database& db) : db_(db) {
    db_.exec("BEGIN IMMEDIATE");
  }
  ~ImmediateTransaction() {
    if (done_) return;
    try {
      db_.exec("ROLLBACK");
    } catch (...) {
      // The connection is unusable anyway; the caller reports the error.
    }
  }
  ImmediateTransaction(const ImmediateTransaction&) = delete;
  ImmediateTransaction& operator=(const ImmediateTransaction&) = delete;

  void commit() {
    db_.exec("COMMIT");
    done_ = true;
  }

 private:
  SQLite::Database& db_;
  bool done_ = false;
};

class ForeignKeysOff {
 public:
  explicit ForeignKeysOff(SQLite::Database& db) : db_(db) {
    db_.exec("PRAGMA foreign_keys = OFF");
  }
  ~ForeignKeysOff() {
    try {
      db_.exec("PRAGMA foreign_keys = ON");
    } catch (...) {
      // Only fails on a broken connection, which the store then reports.
    }
  }
  ForeignKeysOff(const ForeignKeysOff&) = delete;
  ForeignKeysOff& operator=(const ForeignKeysOff&) = delete;

 private:
  SQLite::Database& db_;
};

}  // namespace

SchemaState inspect_schema(SQLite::Database& db) {
  SchemaState state;
  state.user_version = static_cast<int>(count_rows(db, "PRAGMA user_version"));
  if (state.user_version < 0) {
    state.kind = SchemaKind::foreign;
  } else if (state.user_version > kSchemaVersion) {
    state.kind = SchemaKind::too_new;
  } else if (state.user_version > 0) {
    state.kind = SchemaKind::current;
  } else if (count_rows(db,
                        "SELECT COUNT(*) FROM sqlite_schema WHERE type ="
                        " 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE"
                        " '\\'") == 0) {
    state.kind = SchemaKind::empty;
  } else if (db.tableExists("customers") && db.tableExists("loop_events") &&
             has_column(db, "customers", "token_hash")) {
    state.kind = SchemaKind::seed;
  } else {
    state.kind = SchemaKind::foreign;
  }
  return state;
}

int migrate(SQLite::Database& db, const LogFn& log) {
  ForeignKeysOff foreign_keys_off(db);
  ImmediateTransaction transaction(db);

  // Inspect again under the write lock: another process may have migrated
  // (or written a newer version) since the caller looked.
  const SchemaState state = inspect_schema(db);
  if (state.kind == SchemaKind::too_new) {
    throw MigrationError(state.kind, "written by a newer schema version " +
                                         std::to_string(state.user_version));
  }
  if (state.kind == SchemaKind::foreign) {
    throw MigrationError(state.kind, "not a loopgain-receiver database");
  }
  if (state.user_version == kSchemaVersion) return state.user_version;

  if (state.kind == SchemaKind::empty) {
    create_v1(db);
  } else if (state.kind == SchemaKind::seed) {
    upgrade_seed(db, log);
  }
  int version = state.user_version < 1 ? 1 : state.user_version;
  for (; version < kSchemaVersion; ++version) {
    later_steps().at(static_cast<std::size_t>(version - 1))(db);
  }

  warn_about_orphans(db, log);
  db.exec("PRAGMA user_version = " + std::to_string(kSchemaVersion));
  transaction.commit();
  if (log) {
    log(kLogInfo, "schema migrated from version " +
                      std::to_string(state.user_version) + " to " +
                      std::to_string(kSchemaVersion));
  }
  return state.user_version;
}

}  // namespace lgr::sqlite
