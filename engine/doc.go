// Package engine turns the records the WAL holds into clean, deduplicated,
// windowed rows in an embedded DuckDB database, ready for the loader.
//
// # Micro-batches
//
// The engine reads the WAL from its own cursor, every Options.Interval or
// as soon as Options.BatchRecords records wait, whichever comes first. Each
// record of a micro-batch is decoded, mapped, cleaned, validated, filtered,
// masked and enriched by engine/event, then deduplicated and added to the
// event-time windows of engine/window. Its fate is one of:
//
//   - accepted: a clean row in the micro-batch's part (below), with its
//     lineage (topic, partition, offset, Kafka time, ingest time);
//   - duplicate: counted (deduplicated), not stored;
//   - filtered: counted per filter rule (filtered.NAME), not stored;
//   - rejected: a row in the dead-letter table with its reason.
//
// A micro-batch takes effect all or nothing (docs/ARCHITECTURE.md, contract
// 2). Its clean rows are written first, as one zstd Parquet file, a part,
// under Options.Dir/parts, fsync'd with its directory. Then ONE DuckDB
// transaction records the part (its number, rows, bytes, SHA-256 and
// control totals) with everything else the micro-batch changes: the dead
// letters, the window state and the emitted windows, the counters, the
// engine state (the dedupe horizon among it) and the new cursor. Only
// after COMMIT are its dedupe keys stored ("Dedupe") and the WAL
// truncated below the cursor (with Options.KeepUntilLoaded, below what
// shipped batches account for and above the records of the windows still
// open: loaded.go, holds.go). A crash at any moment therefore leaves
// either all of a micro-batch or none of it: a part that
// no committed transaction names is deleted at the next Open, which then
// reloads the state from DuckDB and reads the WAL again from the committed
// cursor. Micro-batches are cut by WAL position, never by the clock, so
// the redone micro-batch is the one that was lost; the crash test
// (crash_test.go) kills an engine process at random moments and compares
// the outbox and the dead letters with those of an uninterrupted run.
//
// Writing the rows as a column file instead of into DuckDB's row store is
// what makes a micro-batch cheap: the part is written once and shipped as
// it is (docs/PERFORMANCE.md).
//
// # Parts
//
// A part is named by its number, 16 decimal digits, in commit order
// (0000000000000042.parquet); its columns are those of the warehouse's
// transactions table less the batch id and the extra columns, plus
// extras, the JSON of the row's extra columns (attributes and extras
// came later: a part without them reads them as NULL, and ExportBatch
// rewrites it with them). It is written under a temporary
// name, fsync'd, renamed and its directory fsync'd, so a file under a
// part's name is complete. Sealing an outbox batch gives its parts the
// batch id; ExportBatch checks each against its SHA-256 and hands the
// loader copies of the parts as they are, or, when they average under
// 1 MiB or some predate a column, the parts compacted by DuckDB into one
// file. A damaged part is
// never shipped: the batch is parked and the part quarantined. Parts of shipped batches are deleted after the grace
// period. RowsSQL shows the parts as one relation for inspection.
//
// # Tables
//
//	engine_cursor    next WAL offset per (topic, partition); the topic
//	                 column is wal's TopicKey, "topic#N" for incarnation N
//	                 of a recreated topic (docs/ARCHITECTURE.md)
//	engine_state     window size, highest event time, dedupe bounds, the open
//	                 outbox batch's ranges and sizes, the next dead-letter id;
//	                 with KeepUntilLoaded the window holds (holds.go)
//	engine_counters  persisted counters (Stats): records_in, accepted,
//	                 rejected.CODE, filtered.RULE, deduplicated, late, ...
//	windows          open windows: aggregates and the customer sketch
//	outbox_parts     the parts: number, rows, bytes, SHA-256, control totals,
//	                 oldest ingest time; batch_id NULL while the batch is open
//	outbox_windows   emitted windows (each version once); batch_id as above
//	outbox_batches   sealed batches: id, ranges, window holds, sizes, state
//	dlq              dead letters
//
// The column lists are in schema.go; the DDL is created when missing, a
// database of schema version 1, 2 or 3 is upgraded in place (migrate.go:
// version 2's dedupe table moves into the key store, version 3 gains the
// window holds' columns), and one of another
// version is refused.
//
// # Dedupe
//
// An event id is remembered as the first 128 bits of its SHA-256, with the
// event's time. Ids are remembered for Options.DedupeWindow (default 24h)
// of event time behind the highest event time accepted so far: the
// horizon, rounded down to the minute. An event older than the horizon is
// still accepted (it cannot be told from a duplicate whose key was
// forgotten), but its id is not remembered, and it is counted
// (dedupe_too_old). Keys leave only by the horizon (dedupe_expired):
// nothing evicts them.
//
// The keys are in the key store (keystore.go), a Pebble database under
// Options.Dir/dedupe, not in DuckDB: at 1,000 events a second a day is
// 86.4M keys, too many for memory and for point lookups in a DuckDB table
// (docs/PERFORMANCE.md, "Dedupe"). Its layout, which may never change:
//
//	't' | bucket start | key  →  event time
//	 1       8 bytes     16        8 bytes     (times in Unix µs, big-endian
//	                                           with the sign bit flipped, so
//	                                           byte order is time order)
//	'm' "seq"                →  part number  (8 bytes, big-endian)
//	'm' "bkt"                →  bucket length in µs  (8 bytes, big-endian)
//
// A bucket is a span of event time: half a slice in whole minutes (3h for
// a 24h window), recorded when the store is created and kept whatever
// window it is opened with later; a store that records none was written
// with one-hour buckets and keeps them. Keys arrive roughly in event-time
// order, so the store's flushes land next to its newest keys and its
// compactions leave older buckets alone, however many keys it holds. A
// key below the horizon no longer counts, and the buckets wholly below it
// are deleted by one DeleteRange (so the disk holds up to a bucket more
// than the window). A store of the earlier layout, keyed by
// slice ('k' | slice start | key → event time), is converted at Open; its
// filter files and generation go with the old keys, so Open scans every
// slice (filter files are described below).
//
// A slice is a span of event time, a quarter of the window in whole
// minutes (6h for 24h), with a blocked Bloom filter (bloom.go) in memory,
// all of them within Options.DedupeMemory; a slice's filter is freed once
// its newest key is below the horizon. Each slice's share of the memory
// is the most its filter takes: a new slice's filter is sized for twice
// the keys of the fullest live slice at 16 bits a key (the share, or a
// half of it down to 1/64), the first one, with nothing to go by, the
// smallest of them, a filter whose keys outgrow it is rebuilt at twice the
// size from the slice's keys in the store (the old one is freed after,
// so for that moment both count against the memory), and a scan rebuilds
// a filter in the whole share and then halves it to the size a new
// slice's filter would take (blocks 2j and 2j+1 OR-ed into j: the filter
// its keys would fill at half the size). A slow stream's filters thus
// take a small part of the memory: at 100 events a second ~11 MiB a
// slice instead of 43. A
// lookup probes the filter of each
// live slice (at most window/slice + 2 = 6), newest first, and reads
// Pebble only on a filter hit: first the key in the bucket of the looked-up
// event's time (a duplicate most often carries its original's time), then
// in the slice's other buckets (one more for a 6-hour slice of 3-hour
// buckets, five of one-hour buckets). A fresh id almost
// never costs a disk read, and a filter hit is confirmed, never taken on
// trust: no id is wrongly taken for a duplicate, and a copy with another
// event time than its original is caught too. Past Options.DedupeRate
// events a second the filters fill and more fresh ids cost reads; nothing
// is forgotten or missed. Within a micro-batch, the ids seen so far are
// in a map: its keys reach the store only after the commit. The lookups
// run on the goroutines that decode the micro-batch, beside the commit of
// the one before when it was read ahead (lookup.go): the store's mu
// orders them before that commit's changes or after, and an id the
// micro-batch before accepted is looked up again.
//
// A key is never durable without its row (docs/ARCHITECTURE.md, contract
// 2): a micro-batch's keys are written in one synced Pebble batch after
// its DuckDB transaction has committed, with 'm' "seq" set to the number
// of the last part whose keys the store holds. The filters of the slices
// gaining keys are made before that write, so that nothing can fail
// between the keys becoming durable and their filters holding them. A
// failure there stops the engine (the keys are missing, the rows are
// not). Open brings the store
// up to the database: it reads the keys of each committed part numbered
// above seq back from the part (every accepted row with its event id and
// time) and stores them, so a committed row always has its key; a store
// whose seq is above the database's last part (a database restored under
// it) is refused.
//
// The filters outlive a clean stop. Every key store commit that adds keys
// raises the store's generation ('m' "gen", 8 bytes) and stamps each
// slice it adds to ('m' 'f' | slice start → generation, slice length:
// 8 + 8 bytes) in the same Pebble batch; the stamps of slices wholly
// below the horizon are deleted with their keys. Close writes each live
// slice's filter with the generation of its stamp to
// Options.Dir/dedupe/filters/<slice start, 16 hex digits>.filter, under
// a temporary name then renamed, laid out big-endian as:
//
//	 0  8  magic "OFDDFLT1"
//	 8  8  slice start (µs)
//	16  8  slice length (µs)
//	24  8  generation
//	32  8  keys
//	40  8  newest event time (µs)
//	48  8  filter bytes F
//	56  4  minutes M
//	60     M × (minute start µs, keys), 16 bytes each
//	       F bytes of filter
//	       4 bytes: CRC32-Castagnoli of every byte before
//
// Open loads a file only if its checksum and slice length match, its
// filter size is one a slice's filter takes (or the whole share, the one
// size of files written before filters were sized by their keys), and its
// generation is at least its slice's stamp, and scans the
// store for the other stamped slices only; a store without stamps, or
// stamped for another slice length, is scanned whole and stamped again. A file never makes a key
// look absent: a stale or damaged one is not used. The keys themselves
// are never loaded into memory.
//
// Dedupe state is per appliance: the same event id reaching two appliances
// of one consumer group (after a partition moves) is not caught here.
//
// # Windows
//
// Accepted events are added to tumbling windows keyed by (store, currency,
// event type, channel); engine/window describes the watermark, lateness and
// re-emission. Each micro-batch writes the windows it changed to the
// windows table and the windows the watermark closed (or a late event
// corrected, with a higher version) to outbox_windows.
//
// # Outbox batches
//
// Parts and window rows with a NULL batch_id form the open batch. The
// micro-batch that brings it to Options.Seal.Rows rows or Seal.Bytes bytes,
// or the first one after it has been open for Seal.Age, seals it: in the
// same transaction every open part and window row gets the batch id and
// the batch is recorded in outbox_batches as "sealed". The loader ships sealed batches
// and marks them "shipped", or "parked" when the warehouse refuses them for
// good.
//
// # Batch ids
//
// A batch id is the appliance id, '-', and 16 hex digits of SHA-256 over
// the batch's WAL ranges (first and last offset per partition, and the
// dead-letter ids of replayed records). The same records always give the
// same id, so the warehouse's load ledger recognises a batch that was
// loaded before a crash. A range of a recreated topic's later incarnation
// names it ("incarnation": N; left out for 0), so the new topic's offsets
// never hash to an id of the old topic's.
//
// # Dead letters
//
// A dead-letter row keeps the raw record (anything that looks like a card
// number masked), its Kafka coordinates and times, the stage that refused
// it (route, decode, validate, enrich), the reason code, the field, and a
// reason in words. Rows are never deleted. DLQReplay runs pending rows
// again through the current configuration (after a mapping fix, say):
// those now accepted go to the outbox like any record, and the row is
// marked replayed with what the replay found.
//
// # Memory
//
// DuckDB runs with Options.MemoryLimit and Options.Threads. On the Go side a
// micro-batch holds at most BatchRecords records and their rows; the open
// windows are bounded by the window options and the dedupe filters by
// DedupeMemory (mapped outside the Go heap; a filter's pages become
// resident as keys touch them, on transparent huge pages once it is
// dense). The key store's Pebble adds
// its cache (8 MiB) and memtables: up to two of 32 MiB while keys come
// fast; given keys slowly, it flushes its memtable every 10 s and holds
// what those seconds fill (internal/memflush).
package engine
