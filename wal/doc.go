// Package wal is offload's write-ahead log: the durable custody of every
// record fetched from Kafka, kept in a Pebble database under the data
// directory until the engine has consumed it.
//
// The WAL owns the on-disk layout described below, durability (an append
// returns only once its batch is fsync'd; concurrent appends share one fsync
// through Pebble's group commit), per-partition deduplication of re-fetched
// offsets, ordered reads from a cursor, truncation and size accounting. It
// does not parse record values: they are opaque bytes to it.
//
// # Keys
//
// One Pebble entry holds one fetched record batch of one partition, never a
// single record (one entry per record caps throughput at the rate of Pebble
// writes). Keys sort by (topic, partition, first offset):
//
//	entry key:  0x01 | topic bytes | 0x00 | partition uint32 BE | first offset uint64 BE
//	meta key:   0x02 | topic bytes | 0x00 | partition uint32 BE
//
// That is the layout of a topic's first incarnation (below); a later
// incarnation N (N >= 1) ends the topic with 0x01 and carries N:
//
//	entry key:  0x01 | topic bytes | 0x01 | N uint32 BE | partition uint32 BE | first offset uint64 BE
//	meta key:   0x02 | topic bytes | 0x01 | N uint32 BE | partition uint32 BE
//
// Kafka topic names are limited to [a-zA-Z0-9._-], so neither terminator
// occurs inside a topic and byte order equals (topic, incarnation,
// partition, offset) order. Incarnation 0 has only the 0x00 spelling.
//
// # Incarnations
//
// A Kafka topic deleted and created again under the same name is another
// topic (Kafka 2.8 and later give it a new topic ID) whose offsets start
// at 0 again. The WAL keeps each one apart as an incarnation of the name:
// TopicPartition.Incarnation, 0 for the first topic of a name the WAL
// held (and for every topic of a WAL written before incarnations), one
// more for each recreation. Each incarnation's partitions have their own
// entries, meta, high water and cursor position, so the new topic's
// offset 5 is not a re-delivery of the old topic's offset 5. Recreate
// starts the next incarnation by writing its partitions' metas with the
// new topic ID and no records, synced, before ingest appends any of its
// records; Incarnation reads back the latest one and its ID after a
// restart. An earlier incarnation is read and consumed like any other
// partition; once a truncation leaves it no entry, its meta is deleted in
// the same batch (its high water is no longer needed: Kafka no longer has
// the topic, and ingest fetches the latest incarnation only).
//
// # Entry value
//
// All integers are big endian.
//
//	header (25 bytes)
//	  0   1  format version, always 1
//	  1   8  append time, Unix nanoseconds (int64)
//	  9   8  last offset in the entry (int64)
//	  17  4  record count N (uint32, N >= 1)
//	  21  4  CRC32-Castagnoli of header bytes [0, 21)
//	N records, each
//	  0   4  body length L (uint32)
//	  4   4  CRC32-Castagnoli of the L body bytes
//	  8   L  body:
//	           8  Kafka offset (int64)
//	           8  Kafka timestamp, Unix milliseconds (int64)
//	           uvarint K: 0 for a null key, else key length + 1
//	           K-1 key bytes
//	           value bytes: the rest of the body
//
// Offsets inside an entry strictly increase; the first equals the key's first
// offset and the last equals the header's last offset. Nothing may follow the
// N-th record.
//
// # Meta value
//
// One per partition, written in the same Pebble batch as every append and
// truncation of that partition, so it always agrees with the entries, and
// on its own (synced) when ingest records the partition's Kafka topic ID.
// Version 2 (written since offload records topic IDs):
//
//	0   1  format version, 2
//	1   8  high water: highest offset ever made durable (int64, -1 if none)
//	9   8  live bytes: key + value bytes of the entries still held (uint64)
//	17  8  live entries (uint64)
//	25  8  live records (uint64)
//	33  16 Kafka topic ID of the records (all zero: not known yet)
//	49  4  CRC32-Castagnoli of bytes [0, 49)
//
// Version 1 has no topic ID: bytes 33 to 37 are the CRC32-Castagnoli of
// bytes [0, 33). Both are read; the upgrade is in place and needs no
// step: a version 1 meta is written as version 2 at its partition's next
// append, truncation or topic ID. A binary older than version 2 refuses a
// WAL that holds one ("unknown format version 2"): downgrading needs the
// WAL drained first (docs/OPERATIONS.md, Upgrade).
//
// The high water survives truncation: a re-fetch after a crash between the
// WAL fsync and the Kafka offset commit is dropped on append even when the
// engine already consumed and truncated those records.
//
// # Blob files
//
// Pebble keeps an entry's value apart from its key once the value is at
// least 1 KiB (value separation; every entry of more than a few records):
// at the memtable's flush the value goes to a blob file (NNNNNN.blob in
// the WAL directory) and the sstable keeps the key and a reference (the
// blob file's ID, a block and a value index). Compactions then move keys
// and references, not the batches, which live seconds to minutes. Metas
// (53 bytes) and small entries stay in the sstables, so opening the WAL
// and reading its state never reads a blob file. A WAL written before
// separation reads as it is: its values stay in the sstables until they
// are consumed. The format of the values is the same wherever they lie.
//
// A blob file goes once no key references it: consumed entries leave
// garbage in their blob files until compactions drop their deleted keys
// (or, for a file mostly garbage and at least a minute old, Pebble
// copies its referenced values to a new file). The byte budget counts the
// entries' own bytes; what the files hold beyond them is reported as the
// WAL's disk usage (docs/PERFORMANCE.md has measured figures).
//
// Pebble names a damaged sstable in its errors but not a damaged blob
// file, and it panics when it cannot open a blob file (Pebble v2.1.7), so
// the WAL handles blob files itself. Open opens every blob file the
// manifest references, as Pebble would (footer and index): a read-write
// Open refuses one that cannot be opened, naming its path; a read-only
// Open (verify, repair) keeps going and never lets Pebble read from it.
// A value that cannot be read (a damaged block, or a file that cannot be
// opened) is a *CorruptionError that names the entry (its key still
// reads), the blob file's path in File, and the value's block and index
// in the file. Pebble's blob file rewrites, which panic on a damaged
// block, are allowed only once Verify found no damage and stop when a
// read meets some.
//
// # Memory
//
// Pebble grows the memtable, doubling at each flush, up to
// Options.MemTableSize (32 MiB by default) and keeps the last flushed one
// to reuse, so a WAL written at any steady rate would hold two full
// memtables. Written slowly (less than half of MemTableSize in
// memflush.Interval, 10 s: under ~1.6 MB/s by default), the WAL flushes
// its memtable at the first append or truncation after each interval, and
// the memtables stay at what an interval's writes fill (~5 MB at 1,000
// events a second of ~460 bytes). A backlog fills them to MemTableSize as
// before; the pages a full memtable touched stay with the process while
// Pebble reuses it. Each early flush writes a small sstable: mostly
// deletions of consumed entries, and the values not consumed yet go to a
// small blob file.
//
// # Constants that never change
//
// The key prefixes 0x01 and 0x02, the entry's format version byte 1, the
// CRC polynomial (Castagnoli) and every field width above. A new layout
// gets a new version byte and a reader for both, as the meta's version 2
// did.
//
// # Corruption
//
// A damaged entry yields a *CorruptionError carrying the topic, partition,
// the entry's first offset, the record index and the byte position inside the
// value. Damage below Pebble (a flipped bit in an sstable or log file) is
// reported by Pebble's own block checksums and surfaces as a
// *CorruptionError without a partition, naming the damaged sstable in File:
// from the read that met it (Read, Verify), or from Open when it is in the
// middle of Pebble's log. Damage in a blob file names the entry and the
// blob file (above, "Blob files"); Verify goes on with the next key. Such
// damage is reported, never fatal. A torn tail
// (a crash during the last write) is not corruption: Pebble's log recovery
// stops at the last complete batch, and a batch is either wholly present or
// absent.
//
// # Repair
//
// Repair rebuilds the WAL from every entry that checks into a directory
// beside it (dir + ".repair"), moves the damaged entries' raw bytes, a
// manifest.json and the whole old WAL directory into a quarantine folder,
// and renames the rebuilt WAL into place. Where Pebble cannot read a block
// it probes forward to the first readable key and records the unreadable
// run of offsets. An entry whose key reads and whose value does not (it
// lies in a damaged blob file) is moved as a run of its own, from its
// first offset to the one before the next entry's (or the high water for
// the last), naming the blob file; the file stays, with the rest of the
// old WAL directory, in the quarantine folder. Metas are rebuilt from the
// kept entries. Each partition
// keeps its high water from its meta or, when the meta cannot be read,
// from the last offset of its highest entry whose header checksum holds
// (kept or moved). When neither tells it (meta and that entry's header
// both damaged, an unreadable end of the partition, or a partition
// truncated to no entries whose meta is damaged) the high water can come
// out lower than it was, so a re-fetch above it is admitted again: the
// report lists each such partition (RepairReport.HighWater). Nothing is
// deleted.
//
// The repair protocol. One repair runs at a time: Repair locks
// dir + ".repair.lock", beside the directories it renames, and then the
// WAL's own directory lock, so it fails while the appliance has the WAL
// open. Its steps, each synced before the next:
//
//  1. Finish what an interrupted repair left (below).
//  2. Rebuild: copy every entry that checks, and a rebuilt meta per
//     partition, into dir + ".repair". A WAL without damage stops here:
//     the rebuild is removed and the WAL left as it is.
//  3. Quarantine: write the moved entries' raw keys and values and the
//     manifest (the report as JSON), under the name
//     manifest.json.pending, into a new folder wal-<UTC time> under the
//     quarantine directory.
//  4. Mark: write the marker OFFLOAD-REPAIR-COMPLETE, naming the
//     quarantine folder, into the rebuild. A rebuild without it may be
//     discarded; one with it is never discarded, for once the swap begins
//     it is the only copy of the repaired WAL.
//  5. Swap: rename dir to <folder>/wal, then the rebuild to dir. When the
//     first rename fails nothing was changed: the rebuild and the folder,
//     which holds only copies, are removed.
//  6. Publish: rename the manifest to manifest.json, then remove the
//     marker from dir. ReadQuarantine counts a folder only once its
//     manifest has its name, so it never counts entries the WAL still
//     holds; it lists the folders without one.
//
// Open refuses while a rebuild exists (ErrRepairInterrupted). Step 1 of
// the next repair then finds one of: a rebuild and no dir (stopped between
// the renames of step 5), renamed into place; a rebuild without the marker
// beside dir, discarded (it never replaced anything); a marked rebuild
// beside dir, refused with an error that says which directory holds what
// (dir was created again after step 5 moved it away, or the repair
// stopped before moving it), for only the operator can tell; a marker in
// dir (stopped in step 6), whose step 6 is finished.
//
// A failed fsync is fatal: Pebble cannot tell what reached the disk, so the
// WAL calls Options.Fatal and the appliance stops rather than retry.
package wal
