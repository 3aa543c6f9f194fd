// Package drain is offload's main benchmark (`offload bench --profile
// drain`, docs/PERFORMANCE.md): what a store-and-forward box does after
// every outage. It fills a fresh topic on a real Kafka broker first
// (untimed), then starts the appliance as its own process (`offload run`
// with a real configuration file) against the Snowflake-protocol test
// server held by the benchmark's process, and measures how fast the
// appliance catches up with Kafka, with the engine and with the warehouse,
// the appliance's own CPU time per event and peak memory (from /proc), a
// bare franz-go consumer draining the same topic as the ceiling, and, in a
// short second phase at a steady rate, the latencies from produce to WAL
// and to warehouse. It ends by checking that the warehouse holds every
// valid event exactly once.
//
// It owns the appliance process it starts and the warehouse; it must
// leave neither running, whatever happens.
package drain
