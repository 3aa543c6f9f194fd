// Package check compares a warehouse's tables with what the load generator
// (bench/gen) produced: whether each valid event arrived exactly once, and
// how long events took from Kafka to the WAL and to the warehouse. The
// benchmarks and the fault harness use it; it only reads the warehouse,
// through whatever *sql.DB reaches it (the test server's DuckDB directly,
// or the gosnowflake driver).
package check
