// Package redshifttest is a Redshift-dialect test server for the tests of
// offload's redshift sink and for the embedded demo: it speaks the
// PostgreSQL wire protocol (pgx's pgproto3) on 127.0.0.1, runs the SQL on
// an in-memory DuckDB (one DuckDB connection per session, so temporary
// tables are the session's), and answers Redshift's
// COPY table FROM 's3://bucket/key' ... FORMAT AS PARQUET by fetching the
// object from an in-process fake S3 (github.com/johannesboyne/gofakes3)
// and loading it with DuckDB's read_parquet, columns by position as
// Redshift does.
//
// What it models:
//   - Login with a cleartext password (one user), SSL refused (sslmode
//     disable), the simple and the extended query protocol as pgx's
//     database/sql driver uses them (Parse, Describe, Bind, Execute, Sync,
//     Close; parameter types inferred by DuckDB, results as text),
//     transactions (BEGIN, COMMIT, ROLLBACK; a failed statement aborts the
//     transaction), search_path from the startup parameters.
//   - LOCK [TABLE] name [, ...]: an exclusive lock on each table, held
//     until the transaction (or, outside one, the statement) ends; a
//     session that asks for a table another holds waits, up to a minute
//     (then SQLSTATE 55P03).
//   - COPY FROM S3 with IAM_ROLE or ACCESS_KEY_ID/SECRET_ACCESS_KEY checked
//     against the server's options, FORMAT AS PARQUET, REGION.
//   - The statements Redshift refuses and PostgreSQL takes, answered with
//     SQLSTATE 0A000: COPY FROM STDIN, ON CONFLICT, QUALIFY, a MERGE with a
//     condition on WHEN MATCHED, a subquery as its source or an alias on
//     its target.
//   - PRIMARY KEY and UNIQUE taken and not enforced: CREATE TABLE runs
//     without them.
//   - Faults (Inject, RefuseConnections): refused connections, a dropped
//     connection, a failed statement with a chosen SQLSTATE, a statement
//     (COMMIT) applied with its answer lost, and a statement held, then
//     applied whatever its client did meanwhile.
//
// What it does not model: Redshift's distribution and sort keys,
// VARCHAR lengths in bytes (DuckDB ignores lengths), serializable
// isolation conflicts between sessions (DuckDB's optimistic concurrency
// answers differently), leader node only functions, STL/SVL system
// tables, COPY's other formats and options (MANIFEST, column lists, error
// limits), TLS, MD5/SCRAM/IAM logins, query cancellation, and COPY's
// parallel reads of S3 slices.
package redshifttest
