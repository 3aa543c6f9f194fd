// Package ingest is offload's Kafka consumer: it takes custody of fetched
// records by writing them to the WAL and only then commits their offsets.
//
// # What it owns
//
// One franz-go client in a consumer group (cooperative-sticky balancer,
// auto-commit disabled), one fetch loop, the TLS and SASL settings of the
// Kafka connection, backpressure (pausing fetches while the data directory is
// past its byte budget) and the ingest counters.
//
// # The custody protocol
//
// Each pass of the loop polls what franz-go has buffered, groups the records
// by partition (they arrive in offset order per partition), appends each
// partition's records to the WAL (appends of different partitions run
// concurrently so they share one fsync) and, once every append has returned
// (the records are durable), commits offset+1 of the last appended record of
// each partition. The client is built with kgo.BlockRebalanceOnPoll and the
// loop calls AllowRebalance only after that commit, so a rebalance cannot
// revoke a partition between its append and its commit.
//
// Offsets that are durable but whose commit failed stay pending: they are
// committed on the next pass, in OnPartitionsRevoked before a partition
// leaves, and on shutdown; they are dropped (never committed) when the group
// reports the partition lost, because another member may own it by then.
//
// With Options.Loaded set (`kafka.delivery: end-to-end`) durable is not
// enough: each pass commits, per partition, only the offset Loaded returns
// (what the warehouse loads account for, engine.Engine.Loaded), on the
// same paths. uncommitted.go follows how long durable records wait for
// their commit either way.
//
// When partitions are assigned, consumption starts at
// max(committed offset, WAL high water + 1), so a crash between the WAL
// fsync and the Kafka commit does not even re-fetch what the WAL holds. The
// WAL drops re-fetched offsets anyway (wal.Append), so this is an
// optimization, not the guarantee.
//
// # Stopping
//
// When Run's context is cancelled the loop finishes the append in flight,
// commits it with its own timeout (the cancelled context is not used for
// commits), releases the rebalance gate and leaves the group, so its
// partitions move to another member at once. A static member
// (Options.InstanceID) keeps its partitions instead, for a restart within
// the session timeout.
//
// # Memory
//
// At most four fetches of Options.FetchMaxBytes (counted compressed, as
// stored in Kafka) are buffered, one partition's share of a fetch is capped
// at 256 KiB, and one poll is processed at a time. Under backpressure the
// loop stops polling, so nothing more is fetched.
//
// # What it must not do
//
//   - Commit an offset whose record is not durable in the WAL.
//   - Buffer records in memory beyond franz-go's bounded fetch buffers: under
//     backpressure it pauses fetching and stops polling; Kafka keeps the data.
//   - Drop or skip a record silently: fetch errors are logged (rate-limited)
//     and counted.
//   - Parse record values: they are opaque bytes here, as in the WAL.
//   - Put a SASL password in an error or a log line.
//
// A failed WAL append ends Run with that error: the appliance stops rather
// than move past records it could not make durable.
package ingest
