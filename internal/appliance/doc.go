// Package appliance owns the life of one offload appliance: the stages of
// docs/ARCHITECTURE.md assembled from the configuration and run together.
//
// Open opens the stages in data-flow order (the WAL, the engine, the
// loader and its warehouse sink, the Kafka ingest, the admin API), each
// pushing its closer on one stack, so that a failed start unwinds what
// was opened, newest first, the way pebble's Open does. Run runs them until
// its context is done or a stage fails, then stops them in data-flow order
// within shutdown_grace: ingest stops fetching, the engine finishes its
// micro-batch or has it interrupted when the grace is over, the loader
// abandons its load. Close releases what Open opened, in reverse order.
// Every goroutine the appliance starts is joined before Run returns.
//
// `offload run`, `offload demo`, the benchmark and the fault harness all
// start the appliance through this package; cmd/offload only parses flags,
// wires the options and prints. The package must not parse flags, print
// to stdout or exit the process.
package appliance
