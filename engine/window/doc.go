// Package window keeps event-time tumbling windows with a watermark and
// allowed lateness: count, sum of amount, sum of base-currency amount, min,
// max and approximate distinct customers per (store, currency, event type,
// channel) and window.
//
// The package owns the window state machine and the byte format of its
// distinct-customer Sketch. It must not do I/O, start goroutines, read a
// clock or know about DuckDB: the engine drives a Set once per micro-batch
// and persists what it reports inside that micro-batch's DuckDB
// transaction. It builds without cgo.
//
// # Use
//
//	s := window.NewSet(opts)
//	s.Restore(persistedWindows, persistedMaxEventTime) // at start-up
//	for each micro-batch {
//		for each accepted, deduplicated event ev {
//			switch s.Add(ev) { case window.Late: ...; case window.TooLate: ... } // count
//		}
//		emitted, purged := s.Advance() // write emitted to the outbox
//		upsert(s.Changed())           // window rows, keyed by (Key, Start)
//		delete(s.Purged())
//		persist(s.MaxEventTime())
//		commit
//	}
//
// # Semantics
//
// A window of size Size (Options.Size, default 1m) is [Start, End) with
// Start a multiple of Size since the Unix epoch, in UTC, and End = Start +
// Size. An event belongs to the window of its Key (StoreID, Currency,
// EventType, Channel) whose Start <= EventTime < End.
//
// The watermark is the highest event time seen, as of the last Advance
// (the end of the previous micro-batch), minus the lateness L
// (Options.Lateness, default 5m); before the first Advance there is none.
// It never goes back. Each event is judged against the watermark in force:
//
//   - OnTime: EventTime >= watermark (or there is no watermark yet). The
//     window is updated.
//   - Late: EventTime < watermark and End + L > watermark. The window is
//     still kept: it is updated and marked dirty; if it was already emitted
//     it is emitted again at the next Advance with Version+1.
//   - TooLate: End + L <= watermark. The window has been purged; no window
//     is created or changed. The engine still keeps the event's clean row
//     and counts it as late.
//
// The watermark moves only at Advance, so the events of one micro-batch
// are judged alike whatever their order within it. That matters because a
// micro-batch reads the WAL partition after partition: judged one by one,
// a partition read first would make the same minutes of the others late,
// or too late, whenever a backlog is drained. The verdicts depend on the
// order of the events and on the micro-batch cuts, which the engine takes
// from WAL positions, so a micro-batch redone after a crash gets the same
// verdicts.
//
// Advance, called once after each micro-batch, first emits every window
// that is dirty and has End <= watermark (the watermark has passed its
// end): its Version is incremented (1 for the first emission) and Dirty
// cleared; the emitted rows come in order of Start, then StoreID,
// Currency, EventType, Channel. Then it purges every window with End + L
// <= watermark. A window's state is thus kept until the watermark reaches
// End + L, so events up to one further lateness after its first emission
// can still correct it. A window is never purged before it is emitted:
// End + L <= watermark implies End <= watermark, and Advance emits before
// it purges. A window can be emitted several times (once per micro-batch in
// which late events changed it), each counting more events than the one
// before; the warehouse upserts on (Key, Start) and the highest Version,
// the one that counts the most events, is the final state. Which versions are emitted
// depends on micro-batch boundaries; the final state of every window does
// not.
//
// Window fields: Count counts events; SumAmount sums Amount; SumBase and
// BaseCount sum and count only events with a base-currency amount; Min and
// Max are over Amount; Customers is a Sketch of CustomerHash(CustomerID)
// over events with a non-empty CustomerID. A sum that would leave the
// Decimal range saturates at its bound and is counted (Set.Overflows)
// instead of wrapping.
//
// Everything is deterministic: the same events in the same order, cut into
// the same micro-batches, give the same verdicts, the same Emitted rows in
// the same order and the same Changed and Purged lists, in this process or
// after a Restore; Go's map order never leaks out.
//
// Restart: the engine persists every window Changed returns (all fields,
// Customers through MarshalBinary), deletes every window Purged returns,
// and persists MaxEventTime, in the micro-batch's transaction. Restore then
// rebuilds the same Set. Windows are aligned to the Size they were built
// with: changing Options.Size with windows persisted is not supported (the
// engine should refuse to start, or drop the windows).
//
// Changed lists windows in the order they first changed since the last
// call; Purged and Advance's emitted rows are sorted by Start, then Key.
//
// # Memory
//
// A window costs about 300 bytes, plus 8 bytes per distinct customer while
// its sketch is sparse (up to 256) and 4 KiB once it is dense. A key with
// steady traffic holds up to 2*Lateness/Size + 1 windows: those past their
// end that late events may still correct, and those not yet ended (11 with
// the defaults). Add is a few hash-table and pointer hops; with many
// thousands of windows those hops miss the CPU cache and dominate its cost.
//
// With Lateness set to NoLateness the watermark is the highest event time
// itself: a window is emitted and purged by the first event at or past its
// end, and an event of an older window is TooLate.
//
// # Customer hash
//
// CustomerHash(id) is FNV-1a 64 over the bytes of id (offset basis
// 14695981039346656037, prime 1099511628211) followed by the MurmurHash3
// fmix64 finalizer (h ^= h>>33; h *= 0xff51afd7ed558ccd; h ^= h>>33;
// h *= 0xc4ceb9fe1a85ec53; h ^= h>>33). It has no seed, so it is the same
// in every process and across restarts, which stored sketches need. It
// must never change.
//
// # Sketch format
//
// A Sketch is a HyperLogLog with precision p = 12 (4096 registers) that
// starts sparse: an exact sorted set of up to 256 distinct 64-bit hashes,
// whose Estimate is its size. Adding a 257th distinct hash (or merging
// into more than 256) turns it dense for good: register i holds the largest
// rank seen for hashes whose top 12 bits are i, the rank being 1 + the
// number of leading zeros of the low 52 bits (53 when they are all zero).
// The dense Estimate is Ertl's improved raw estimator (2017), standard
// error about 1.6%. The state depends only on the set of hashes added, so
// equal sets marshal to equal bytes, whatever the order of adds and merges.
//
// MarshalBinary writes, all integers little-endian:
//
//	byte 0     version, 1
//	byte 1     precision, 12
//	byte 2     kind: 1 sparse, 2 dense
//	sparse:
//	  bytes 3-4   n, uint16, 0 <= n <= 256
//	  then        n hashes, uint64 each, strictly increasing
//	  total       5 + 8n bytes (an empty Sketch is 5 bytes)
//	dense:
//	  bytes 3-3074  the 4096 registers, 6 bits each (values 0-53), packed
//	              four per three bytes: registers 4k..4k+3 form the 24-bit
//	              value r0 | r1<<6 | r2<<12 | r3<<18 stored in bytes
//	              3+3k..5+3k
//	  total       3075 bytes
//
// UnmarshalBinary accepts exactly these encodings (no trailing bytes,
// hashes strictly increasing, registers at most 53) and returns an error
// wrapping ErrBadSketch for anything else. There is no checksum: sketches
// live in DuckDB rows, whose storage is checksummed. The version byte, the
// precision, the sparse limit and CustomerHash may never change without a
// new version byte (and a decoder for the old one).
package window
