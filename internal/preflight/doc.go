// Package preflight checks what `offload check` proves about the world
// before the appliance starts (docs/OPERATIONS.md): the Kafka cluster
// (brokers, topics, the consumer group) and the local machine (data_dir,
// fsync, free space, the admin address). Each check is a
// loader.CheckResult; the warehouse answers for itself through
// loader.Checker. It reads and probes; it changes nothing the appliance
// keeps: no offsets are committed, no files are left behind.
package preflight
