// Package snowtest is a Snowflake-protocol test server backed by DuckDB,
// with fault injection. Tests run the real gosnowflake driver against it
// (sql.OpenDB(gosnowflake.NewConnector(gosnowflake.SnowflakeDriver{},
// *srv.Config("user")))); `offload demo` can embed it as its warehouse. It
// is built from the driver's source (v1.19.1: restful.go, auth.go,
// connection.go, file_transfer_agent.go, local_storage_client.go), not from
// a specification, and must never be taken for Snowflake itself.
//
// # Protocol
//
// HTTP on 127.0.0.1 (random port, Config sets Protocol "http"):
// /session/v1/login-request, /queries/v1/query-request (JSON rowsets
// only, never Arrow: rowtype plus rowset of strings as converter.go's
// stringToValue reads them), /session/token-request (renewal with the
// master token), /session/heartbeat, /session?delete=true,
// /queries/v1/abort-request and /telemetry/send (both accepted and
// ignored). A retried query request (same requestId, with retryCount) is
// answered from its first execution instead of running again, modelled
// on Snowflake's request-id dedupe.
//
// Logins: password (390100 when wrong), key pair (an RS256 JWT whose
// signature verifies with the user's key, iss ACCOUNT.USER.SHA256:<base64
// SHA-256 of the public key DER>, sub ACCOUNT.USER; 390144 when not) and
// OAuth access token (390303). An unknown account gets HTTP 403. Each
// session owns one DuckDB connection to the server's database, so
// transactions are per session. Session tokens last Options.SessionTTL
// (then 390112: the driver renews and re-sends the query) and master
// tokens Options.MasterTTL (then 390114: the caller must log in again).
//
// # SQL subset
//
// Statements are rewritten for DuckDB token by token: unquoted identifiers
// are upper-cased (Snowflake's resolution, so offload_transactions and
// OFFLOAD_TRANSACTIONS are one table and result columns come back
// upper-case), :N placeholders become $N, Snowflake types in column
// definitions and casts become DuckDB types (NUMBER(p,s) and bare
// NUMBER/DECIMAL -> DECIMAL(p,s)/DECIMAL(38,0), INT family -> BIGINT,
// FLOAT/REAL -> DOUBLE, STRING/TEXT/VARCHAR(n) -> VARCHAR, TIMESTAMP_NTZ ->
// TIMESTAMP, TIMESTAMP_TZ/LTZ -> TIMESTAMPTZ, VARIANT/OBJECT/ARRAY -> JSON,
// BINARY -> BLOB), DB.SCHEMA.NAME loses the session's database, backslash
// escapes in string literals are resolved, and IFF, NVL, PARSE_JSON,
// CURRENT_TIMESTAMP() and SYSDATE() are renamed.
//
//   - SELECT / WITH, INSERT (VALUES or SELECT), UPDATE, DELETE, MERGE
//     (counts per action from DuckDB's RETURNING merge_action), with bind
//     variables (also array binds for DML).
//   - CREATE [OR REPLACE] [TEMPORARY] TABLE / SCHEMA / VIEW / SEQUENCE,
//     DROP, ALTER TABLE, TRUNCATE. DDL commits an open transaction first,
//     as in Snowflake.
//   - BEGIN / START TRANSACTION / COMMIT / ROLLBACK; COMMIT and ROLLBACK
//     outside a transaction do nothing, as in Snowflake. Isolation is
//     DuckDB's snapshot, begun at a transaction's first statement, where
//     Snowflake reads committed data statement by statement.
//   - Table locks (lock.go): UPDATE, DELETE and MERGE lock their table
//     until the transaction ends, and another session's UPDATE, DELETE or
//     MERGE of it waits, up to Options.LockTimeout (then 000625); INSERT
//     and COPY take none. A transaction idle for Options.DetachedTimeout
//     (Snowflake: 4 hours) while another waits is rolled back as
//     Snowflake aborts a detached one; its client then gets 000625 until
//     it ends it. SELECT CURRENT_TRANSACTION() and SELECT
//     SYSTEM$ABORT_TRANSACTION(id) (txfunc.go) name and end a session's
//     open transaction.
//   - USE DATABASE / SCHEMA / WAREHOUSE / ROLE, ALTER SESSION (accepted).
//   - CREATE [OR REPLACE] [TEMPORARY] STAGE [IF NOT EXISTS], DROP STAGE,
//     PUT file://... @stage[/prefix] [AUTO_COMPRESS] [OVERWRITE]
//     [SOURCE_COMPRESSION] (answered with a LOCAL_FS stage: the driver
//     copies the file into the server's directory itself), LIST and
//     REMOVE [PATTERN], the user stage @~.
//   - COPY INTO table FROM @stage/path FILE_FORMAT = (TYPE = PARQUET)
//     MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE|CASE_SENSITIVE [PURGE]
//     [FORCE] [FILES] [PATTERN], one transaction, loaded by DuckDB's
//     read_parquet; the result has Snowflake's columns (file, status,
//     rows_parsed, rows_loaded, ...). Files already loaded into the table
//     are skipped unless FORCE, like Snowflake's load metadata.
//
// Anything else fails with 001003 "... is not supported by the snowtest
// server"; DuckDB errors map to the nearest Snowflake class (002003 missing
// object, 000904 binder, 100038 conversion, ...) with DuckDB's message.
//
// # Faults
//
// Server.Inject adds a Fault, matched on the endpoint and/or a regexp on
// the statement, for one or Times requests; Injected.Hits and
// Server.Requests show that it fired. What the driver (v1.19.1) makes of
// each, with Config's RequestTimeout at 1 s (no query retries):
//
//   - FaultHTTPStatus 5xx/429: retried by the driver (backoff 1-16 s,
//     MaxRetryCount 7, bounded by RequestTimeout/LoginTimeout); when it
//     gives up, a plain error "timeout after ... HTTP Status: 503".
//     Other 4xx: *SnowflakeError 261000, not retried.
//   - Server.RefuseConnections: *url.Error wrapping ECONNREFUSED, retried
//     like 5xx; AcceptConnections reopens the same port.
//   - FaultHang: the driver waits for ClientTimeout (default 900 s) or the
//     context; on a context deadline it returns the context error and sends
//     an abort request.
//   - FaultSlow: the statement runs Hang late whatever the client does; a
//     client that gave up first gets the context error (and sends an
//     abort request, which stops nothing), and a COMMIT is applied all
//     the same. SYSTEM$ABORT_TRANSACTION of its transaction, and the
//     session's close, wait for it.
//   - FaultDropConnection: *url.Error (EOF), retried like 5xx; nothing ran.
//   - FaultResponseLost: the statement ran (a COMMIT is applied) and the
//     driver gets a *url.Error; when it retries (RequestTimeout 0) the
//     replayed answer makes the failure invisible.
//   - FaultSessionExpired: 390112, renewed by the driver transparently.
//   - FaultStatementError: *SnowflakeError 000603; at COMMIT the
//     transaction is rolled back.
//   - FaultInsufficientPrivileges: *SnowflakeError 003001 (SQLSTATE
//     42501), a missing grant; nothing ran.
//
// # Gaps versus Snowflake
//
// One database per server, stages in one namespace (not per schema) and
// schemas created on login. DuckDB semantics underneath: a failed statement
// aborts the whole open transaction (Snowflake rolls back the statement
// only), DuckDB identifiers are case-insensitive even when quoted,
// TIMESTAMP_LTZ and TIMESTAMP_TZ are both TIMESTAMPTZ in UTC, VARIANT is
// DuckDB JSON (objects come back with sorted keys), no Arrow results, no
// query result chunks, no async queries, no multi-statement requests, no
// SHOW/DESCRIBE, no table stages (@%t), external stages, file formats by
// name, COPY transformations or ON_ERROR other than ABORT_STATEMENT, no
// GET, no time travel, no roles or grants. Error codes for data errors
// are approximations. Driver behaviour to know (tests pin it): a streamed
// PUT (WithFileStream) to a LOCAL_FS stage writes an empty file, and the
// driver's local upload does not truncate an existing file (the server
// removes it first when OVERWRITE = TRUE).
package snowtest
