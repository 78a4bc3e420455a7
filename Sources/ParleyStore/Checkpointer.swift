import Dispatch
import GRDBSQLite
import Synchronization

/// Checkpoints the WAL on a thread of its own, so that no commit waits for one.
///
/// With SQLite's automatic checkpoint the commit that crosses `wal_autocheckpoint` copies the whole WAL into
/// the database file before it returns: every few seconds under load one group of turns waited tens of
/// milliseconds (the S2 p99 in bench/results.md). Instead, a WAL hook on the writer connection asks this
/// checkpointer for a PASSIVE checkpoint (which never blocks writers or readers) once the WAL holds
/// `softLimit` pages, and only past `hardLimit` pages (the background checkpoint cannot keep up) does the
/// committing connection checkpoint itself, like SQLite would. Written by hand: GRDB has no background
/// checkpointing.
final class Checkpointer: Sendable {
    let path: String
    let softLimit: Int32
    let hardLimit: Int32
    private let queue = DispatchQueue(label: "parley.store.checkpoint")
    /// The checkpointer's own connection, opened on first use; touched only on `queue`.
    private let connection = Mutex<OpaquePointer?>(nil)
    private let scheduled = Atomic<Bool>(false)
    private let closed = Atomic<Bool>(false)
    private let runs = Atomic<Int>(0)
    /// Appends per commit, a moving average ×100 kept by the store's writer: the load hint the hook reads
    /// (100 when turns come one at a time; a single small commit under load does not flip it).
    private let averageBatch = Atomic<Int>(100)

    /// Records the size of a commit's batch (called by the single writer).
    func recordBatch(_ appends: Int) {
        let old = averageBatch.load(ordering: .relaxed)
        averageBatch.store((old * 7 + appends * 100) / 8, ordering: .relaxed)
    }

    init(path: String, softLimit: Int, hardLimit: Int) {
        self.path = path
        self.softLimit = Int32(clamping: max(1, softLimit))
        self.hardLimit = Int32(clamping: max(softLimit, hardLimit))
    }

    /// Background checkpoints run since opening (for tests).
    var checkpointRuns: Int { runs.load(ordering: .relaxed) }

    /// Installs the WAL hook on a connection of the store (called for each connection GRDB opens; readers
    /// never commit, so the hook only fires on the writer).
    func install(on db: OpaquePointer) {
        sqlite3_wal_hook(
            db,
            { context, db, name, pages in
                guard let context else { return SQLITE_OK }
                let checkpointer = Unmanaged<Checkpointer>.fromOpaque(context).takeUnretainedValue()
                guard pages >= checkpointer.softLimit else { return SQLITE_OK }
                if pages < checkpointer.hardLimit && checkpointer.averageBatch.load(ordering: .relaxed) >= 200 {
                    checkpointer.request()
                } else {
                    // Nobody waits, or the background checkpoint is far behind: the writer checkpoints itself.
                    _ = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
                }
                return SQLITE_OK
            }, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Runs a PASSIVE checkpoint on the checkpointer's thread unless one is already pending.
    func request() {
        guard !closed.load(ordering: .acquiring), !scheduled.exchange(true, ordering: .acquiringAndReleasing) else { return }
        queue.async { [self] in
            defer { scheduled.store(false, ordering: .releasing) }
            guard !closed.load(ordering: .acquiring) else { return }
            connection.withLock { db in
                if db == nil {
                    var opened: OpaquePointer?
                    guard sqlite3_open_v2(path, &opened, SQLITE_OPEN_READWRITE, nil) == SQLITE_OK, let opened else {
                        sqlite3_close(opened)
                        return
                    }
                    sqlite3_busy_timeout(opened, 5000)
                    // Checkpoints sync the WAL before copying and the database after (as the writer's FULL does).
                    sqlite3_exec(opened, "PRAGMA synchronous = FULL", nil, nil, nil)
                    db = opened
                }
                _ = sqlite3_wal_checkpoint_v2(db, nil, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
                runs.add(1, ordering: .relaxed)
            }
        }
    }

    /// Closes the checkpointer's connection after a running checkpoint; later requests do nothing.
    func close() {
        closed.store(true, ordering: .releasing)
        queue.sync {
            connection.withLock { db in
                if let open = db { sqlite3_close_v2(open) }
                db = nil
            }
        }
    }
}
