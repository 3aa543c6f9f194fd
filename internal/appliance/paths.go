package appliance

import "path/filepath"

// WALDir is the WAL's folder inside the data directory.
func WALDir(dataDir string) string { return filepath.Join(dataDir, "wal") }

// QuarantineDir is where `offload wal repair` moves damaged WAL data and
// the loader keeps damaged exported files (docs/OPERATIONS.md).
func QuarantineDir(dataDir string) string { return filepath.Join(dataDir, "quarantine") }

// HashKeyPath is where a generated e-mail hash key is kept.
func HashKeyPath(dataDir string) string { return filepath.Join(dataDir, "secrets", "hash.key") }

// outboxDir is where the loader writes a batch's files while shipping it.
func outboxDir(dataDir string) string { return filepath.Join(dataDir, "outbox") }

// snowflakeTransactionFile names the Snowflake load transaction in flight,
// so that one a crash left open is aborted at the next start.
func snowflakeTransactionFile(dataDir string) string {
	return filepath.Join(outboxDir(dataDir), "snowflake-load-transaction")
}

// outboxQuarantineDir is where the loader keeps exported files that failed
// their checksum, for the operator (docs/OPERATIONS.md).
func outboxQuarantineDir(dataDir string) string {
	return filepath.Join(QuarantineDir(dataDir), "outbox")
}
