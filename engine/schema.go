package engine

// schemaVersion is the version of the DDL below. A database created by
// another version is refused at Open: migrations are added with the version
// that needs them.
const schemaVersion = 4

// schemaDDL creates the engine's tables (doc.go explains each). Column
// order matters: the engine appends rows positionally with the DuckDB
// Appender.
var schemaDDL = []string{
	`CREATE TABLE IF NOT EXISTS schema_version (
	version INTEGER NOT NULL
)`,
	`CREATE TABLE IF NOT EXISTS engine_cursor (
	topic       VARCHAR NOT NULL,
	"partition" INTEGER NOT NULL,
	next_offset BIGINT  NOT NULL,
	PRIMARY KEY (topic, "partition")
)`,
	`CREATE TABLE IF NOT EXISTS engine_state (
	id                    INTEGER PRIMARY KEY,
	window_size_ms        BIGINT  NOT NULL,
	max_event_time_ns     BIGINT,
	dedupe_max_time_ns    BIGINT,
	dedupe_horizon_ns     BIGINT,
	open_ranges           VARCHAR NOT NULL,
	open_since            TIMESTAMPTZ,
	open_rows             BIGINT  NOT NULL,
	open_window_rows      BIGINT  NOT NULL,
	open_bytes            BIGINT  NOT NULL,
	next_dlq_id           BIGINT  NOT NULL,
	next_part_seq         BIGINT  NOT NULL,
	window_holds          VARCHAR,
	open_holds            VARCHAR
)`,
	`CREATE TABLE IF NOT EXISTS engine_counters (
	name  VARCHAR PRIMARY KEY,
	value BIGINT NOT NULL
)`,
	`CREATE TABLE IF NOT EXISTS outbox_parts (
	seq           BIGINT PRIMARY KEY,
	rows          BIGINT NOT NULL,
	bytes         BIGINT NOT NULL,
	sha256        VARCHAR NOT NULL,
	totals        VARCHAR NOT NULL,
	oldest_ingest TIMESTAMPTZ,
	created_at    TIMESTAMPTZ NOT NULL,
	batch_id      VARCHAR
)`,
	`CREATE TABLE IF NOT EXISTS outbox_windows (
	store_id           VARCHAR NOT NULL,
	currency           VARCHAR NOT NULL,
	event_type         VARCHAR NOT NULL,
	channel            VARCHAR NOT NULL,
	window_start       TIMESTAMPTZ NOT NULL,
	window_end         TIMESTAMPTZ NOT NULL,
	count              BIGINT NOT NULL,
	sum_amount         DECIMAL(38,4) NOT NULL,
	sum_base_amount    DECIMAL(38,4) NOT NULL,
	base_count         BIGINT NOT NULL,
	min_amount         DECIMAL(38,4) NOT NULL,
	max_amount         DECIMAL(38,4) NOT NULL,
	distinct_customers BIGINT NOT NULL,
	version            BIGINT NOT NULL,
	emitted_at         TIMESTAMPTZ NOT NULL,
	batch_id           VARCHAR
)`,
	`CREATE TABLE IF NOT EXISTS windows (
	store_id     VARCHAR NOT NULL,
	currency     VARCHAR NOT NULL,
	event_type   VARCHAR NOT NULL,
	channel      VARCHAR NOT NULL,
	window_start TIMESTAMPTZ NOT NULL,
	count        BIGINT NOT NULL,
	sum_e4       BIGINT NOT NULL,
	sum_base_e4  BIGINT NOT NULL,
	base_count   BIGINT NOT NULL,
	min_e4       BIGINT NOT NULL,
	max_e4       BIGINT NOT NULL,
	customers    BLOB NOT NULL,
	version      BIGINT NOT NULL,
	dirty        BOOLEAN NOT NULL
)`,
	`CREATE TABLE IF NOT EXISTS outbox_batches (
	batch_id     VARCHAR PRIMARY KEY,
	appliance_id VARCHAR NOT NULL,
	ranges       VARCHAR NOT NULL,
	rows         BIGINT NOT NULL,
	window_rows  BIGINT NOT NULL,
	bytes        BIGINT NOT NULL,
	created_at   TIMESTAMPTZ NOT NULL,
	sealed_at    TIMESTAMPTZ NOT NULL,
	state        VARCHAR NOT NULL,
	shipped_at   TIMESTAMPTZ,
	error        VARCHAR,
	holds        VARCHAR
)`,
	`CREATE TABLE IF NOT EXISTS dlq (
	id                 BIGINT PRIMARY KEY,
	topic              VARCHAR NOT NULL,
	"partition"        INTEGER NOT NULL,
	"offset"           BIGINT NOT NULL,
	kafka_time         TIMESTAMPTZ NOT NULL,
	ingest_time        TIMESTAMPTZ NOT NULL,
	raw                BLOB NOT NULL,
	stage              VARCHAR NOT NULL,
	code               VARCHAR NOT NULL,
	field              VARCHAR,
	reason             VARCHAR NOT NULL,
	"at"               TIMESTAMPTZ NOT NULL,
	replayed_at        TIMESTAMPTZ,
	last_replay_code   VARCHAR,
	last_replay_reason VARCHAR
)`,
}

// tempDDL creates the write connection's staging tables. TEMP tables live
// in memory, belong to the one connection that writes, and take part in
// its transactions like any other table.
var tempDDL = []string{
	`CREATE TEMP TABLE IF NOT EXISTS stage_window_ids (
	store_id     VARCHAR NOT NULL,
	currency     VARCHAR NOT NULL,
	event_type   VARCHAR NOT NULL,
	channel      VARCHAR NOT NULL,
	window_start TIMESTAMPTZ NOT NULL
)`,
	`CREATE TEMP TABLE IF NOT EXISTS stage_replay (
	id       BIGINT NOT NULL,
	replayed BOOLEAN NOT NULL,
	code     VARCHAR,
	reason   VARCHAR
)`,
}
