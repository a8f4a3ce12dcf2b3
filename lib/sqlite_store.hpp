// The SQLite backend of lgr::Store.
//
// One database file in WAL mode with synchronous=FULL: every acknowledged
// event survives a power cut. The schema is described in sqlite_schema.hpp.
//
// Writes (group commit): one writer thread owns the only write connection,
// which a lone append borrows. append() queues the event and blocks until
// the transaction holding it has committed; a lone append() (no other
// append in flight, the writer idle) commits on its caller's thread
// instead, holding the connection as the writer does, so that it pays no
// thread switches. The writer drains whatever is queued, up to
// SqliteTuning::max_batch events, into one transaction. A row that fails on
// its own (its customer was deleted meanwhile) is undone alone by SQLite's
// statement rollback and fails only its own append(), while a failed
// transaction (disk full, I/O error) fails every append() of the batch and
// leaves nothing of it. append_async() queues the same way and calls back
// from the writer thread after the commit. After a batch of n events the
// writer waits briefly for n appends to be queued again (see
// max_gather_window_us), so that concurrent appenders keep sharing commits.
// Admin writes (create, rotate, revoke, delete) and the throttled
// last_seen_at updates go through the same thread, so in-process callers
// never meet SQLITE_BUSY; another process holding the lock longer than the
// busy timeout gives ErrorCode::busy.
//
// Where a batch's events go (see sqlite_schema.hpp for the tables): a
// customer with at least SqliteTuning::direct_rows events in the batch and
// nothing waiting in the ingest log has them written straight into
// loop_events and the rollups, since they share that customer's pages.
// Every other event is appended to the ingest log, which costs the commit
// about one page per event whatever the customer: with many customers
// interleaved, writing them straight in cost about six (one per index and
// rollup). The writer folds logged events into loop_events and the rollups
// later, a customer at a time so that they share pages again, in
// transactions of at most fold_step_rows events between batches: a
// customer once it has fold_threshold events logged (or it sent a batch
// that could have gone straight in), every customer once the log holds
// more than max_log_rows, and everything once no write has come for
// idle_fold_delay_ms or the store closes. Folds and the deletion of the
// log's folded head commit without their own flush (synchronous=NORMAL):
// they move rows within the file atomically, so a power cut can only undo
// a whole fold, and the next acknowledging commit flushes them anyway. A
// customer whose rows cannot be folded (a constraint or trigger refuses
// them) is undone alone and tried again later, from 1 s to 64 s apart; its
// rows stay in the log, still read, and do not stop the others' folding
// or the log's trimming. Rows another process logged are found when the
// log's head is trimmed, or at close.
//
// WAL: once it holds wal_checkpoint_pages, a backfiller thread copies it
// into the database file; the writer then starts it over, waiting for
// readers of older snapshots 50 ms at most (200 ms once it has doubled),
// and an idle writer truncates the file without waiting. A reader that
// keeps a snapshot for long makes the WAL grow rather than hold up
// appends; a warning says so each time it has doubled again.
//
// Reads: a small pool of connections with query_only set; WAL readers never
// block the writer and see only committed transactions. Each read runs
// inside one read transaction (a consistent snapshot, so a fold is seen
// whole or not at all): stats() sums its rollup rows and the customer's
// unfolded log rows in memory; events() and profiles() merge an indexed
// range of loop_events with the customer's unfolded log rows. An
// in-memory database (":memory:" or "") cannot be shared between
// connections, so there every read runs on the writer thread.
//
// Tokens: authenticate() looks every token up. authenticate_ingest() keeps
// the tokens it found in memory (4,096 at most) and answers from there; an
// append carrying a credential checked before tokens may have changed (an
// admin write through this store, or any write by another connection, seen
// through PRAGMA data_version) looks its token up again inside the batch's
// transaction, and one past its credential's expires_at is refused there,
// so that no event is committed on a token revoked or expired before.
//
// Thread safety: one store may be used from any number of threads at once.
// close() may race with other calls: calls that already started finish,
// later ones fail with ErrorCode::closed. close() returns once the writer
// has committed everything queued and every connection is closed; the
// destructor calls it. SqliteStoreOptions::now and ::log may be called from
// any thread, including the writer's; log must not call back into the
// store.
//
// Errors: every SQLite failure becomes an lgr::Error naming the operation:
// busy (SQLITE_BUSY/LOCKED after the timeout), storage_error ("disk full",
// "the database is read-only", "not a loopgain-receiver database or
// corrupt", I/O errors), schema_too_new, customer_not_found,
// invalid_argument, closed; internal_error for anything else (out of
// memory). Nothing throws.
//
// Limits: reads answer customer_not_found for an unknown customer. stats()
// costs about one rollup row per (day, workload) and (day, outcome) in the
// window, so a customer with hundreds of workloads a day takes a few
// milliseconds (bench/store_bench), plus one row per unfolded log event of
// the customer (at most about fold_threshold, more while the writer is
// behind). Retention (pruning old events) is not done here.
#pragma once

#include "store.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace SQLite {
class Statement;
}

namespace lgr {

// Binds the parameters of sqlite::sql::kInsertEvent for one event: the one
// place that knows the column order. The strings are bound without a copy,
// so `customer_id` and `event` must outlive the statement's execution.
// Public for the store benchmark, whose bare loop must bind exactly alike.
void bind_event(SQLite::Statement& insert, const std::string& customer_id,
                const LoopEvent& event, std::int64_t received_at);

// Knobs beyond SqliteStoreOptions, for tests and benchmarks. The defaults
// are what open_sqlite_store(SqliteStoreOptions) uses.
struct SqliteTuning {
  // Open the file with SQLITE_OPEN_READONLY. A read-only database is refused
  // at open (storage_error), exactly like a file the process may not write;
  // this flag reproduces that where file modes cannot (tests run as root).
  bool read_only = false;
  // PRAGMA max_page_count for the write connection; 0 keeps SQLite's
  // default. A small value makes the database "full" (SQLITE_FULL).
  std::int64_t max_page_count = 0;
  // Most events committed by one transaction.
  std::size_t max_batch = 1024;
  // Upper bound on how long the writer waits for the appenders of its last
  // batch to come back before committing a smaller one (group commit). The
  // actual wait is at most half the last commit's duration. 0 disables.
  std::int64_t max_gather_window_us = 2000;
  // Events waiting for the writer beyond which append() answers busy.
  std::size_t max_queued = 65536;
  // Read connections kept open between reads. Reads running at the same
  // time beyond this many open a connection of their own and close it,
  // which costs more than the read of a token: with 4, eight threads
  // calling lgr_ingest() lost a quarter of their rate (bench/README.md).
  // 16 covers the example server's default worker pool plus its event
  // loop; each keeps at most 1 MiB of pages in its cache.
  std::size_t max_idle_readers = 16;
  int busy_timeout_ms = 5000;

  // The ingest log (see the comment at the top). A customer with at least
  // this many events in one batch, and none waiting in the log, has them
  // written straight into loop_events and the rollups; 0 logs everything.
  std::size_t direct_rows = 4;
  // A customer is folded once this many of its events wait in the log: it
  // bounds what each of its reads adds up from the log, as long as the
  // writer keeps up.
  std::size_t fold_threshold = 1024;
  // Past this many log rows every customer is folded, oldest first, and
  // the folded head is deleted: the log stays about this long, as long as
  // the writer keeps up (fold turns alternate with batches).
  std::size_t max_log_rows = 65536;
  // At most this many events folded per transaction, so that a fold holds
  // up the next batch's commit for a few milliseconds at most.
  std::size_t fold_step_rows = 256;
  // Log rows deleted per transaction once folded.
  std::size_t trim_rows = 4096;
  // With no write for this long, the writer folds the whole log and then
  // truncates the WAL file.
  std::int64_t idle_fold_delay_ms = 200;
  // The WAL is copied into the database and started over once it holds
  // this many pages (16 MiB at the default page size). With 1,000 pages,
  // ingest for 1,000 customers was about 10% slower (bench/README.md).
  int wal_checkpoint_pages = 4000;
};

Result<std::unique_ptr<Store>> open_sqlite_store(SqliteStoreOptions options,
                                                 const SqliteTuning& tuning);

}  // namespace lgr
