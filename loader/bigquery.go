package loader

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/offload/offload/engine"
	"github.com/offload/offload/engine/event"
)

// BigQuery authentication methods (BigQueryOptions.Auth).
const (
	BigQueryAuthADC            = "adc"             // Application Default Credentials
	BigQueryAuthServiceAccount = "service_account" // a service account's JSON key
	BigQueryAuthNone           = "none"            // no credentials: an emulator
)

// BigQueryOptions configures the BigQuery sink.
type BigQueryOptions struct {
	Project  string
	Dataset  string
	Location string // of the dataset and the jobs ["US"]
	// Auth is BigQueryAuthADC [default], BigQueryAuthServiceAccount (with
	// CredentialsJSON) or BigQueryAuthNone (only with Endpoint).
	Auth            string
	CredentialsJSON []byte
	// Endpoint overrides https://bigquery.googleapis.com/ (an emulator,
	// a private endpoint).
	Endpoint string
	// HTTPClient, if set, carries every request instead of the client
	// library's own (which authenticates): for an emulator behind a test
	// transport. Auth must be none then.
	HTTPClient *http.Client

	// The tables are created in Dataset when missing.
	TransactionsTable string
	WindowsTable      string
	LedgerTable       string

	ApplianceID string
	// MergeRows inserts a batch's rows with a MERGE on EVENT_ID instead of
	// an INSERT (dedupe.warehouse: merge), as SnowflakeOptions.MergeRows.
	MergeRows bool
	// ExtraColumns are the typed columns the topics promote, sorted by
	// name; Prepare adds the ones the transactions table lacks.
	ExtraColumns []ExtraColumn
	// RequestTimeout bounds one API call with the client library's own
	// retries of it [60s]; the wait for a job is bounded by the load's
	// context only.
	RequestTimeout time.Duration
	Logger         *slog.Logger
}

// DefaultBigQueryLocation is where the dataset and the jobs live unless
// BigQueryOptions.Location says otherwise.
const DefaultBigQueryLocation = "US"

// BigQuery is the BigQuery sink: each Parquet file of a batch goes into a
// per-batch staging table by a load job, then one multi-statement query
// job inserts the rows, merges the windows and writes the ledger row in
// one transaction. Job ids are derived from the batch, so a job that ran
// is found again instead of run twice (docs/LOADER.md, "BigQuery").
type BigQuery struct {
	opts   BigQueryOptions
	client *bigquery.Client
	log    *slog.Logger
	rows   rowSQL
	// duplicates counts rows MergeRows kept out because the table held
	// their event already.
	duplicates atomic.Int64
}

// Duplicates returns how many rows MergeRows kept out of the warehouse
// because their event was there already.
func (b *BigQuery) Duplicates() int64 { return b.duplicates.Load() }

// NewBigQuery validates the options and returns the sink. It makes no
// request: the first Prepare does. Errors never hold the credentials.
func NewBigQuery(ctx context.Context, o BigQueryOptions) (*BigQuery, error) {
	if o.Location == "" {
		o.Location = DefaultBigQueryLocation
	}
	if o.Auth == "" {
		o.Auth = BigQueryAuthADC
	}
	defaultTables(&o.TransactionsTable, &o.WindowsTable, &o.LedgerTable)
	if o.RequestTimeout == 0 {
		o.RequestTimeout = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	var errs []string
	if o.Project == "" {
		errs = append(errs, "warehouse.bigquery.project is required")
	}
	if o.Dataset == "" {
		errs = append(errs, "warehouse.bigquery.dataset is required")
	}
	opts := []option.ClientOption{}
	switch o.Auth {
	case BigQueryAuthADC:
	case BigQueryAuthServiceAccount:
		if len(o.CredentialsJSON) == 0 {
			errs = append(errs, "warehouse.bigquery.credentials_file: auth service_account needs the key's JSON")
		} else if !json.Valid(o.CredentialsJSON) {
			// The key's text is never quoted back.
			errs = append(errs, "warehouse.bigquery.credentials_file: the service account key is not JSON")
		}
		opts = append(opts, option.WithAuthCredentialsJSON(option.ServiceAccount, o.CredentialsJSON))
	case BigQueryAuthNone:
		if o.Endpoint == "" {
			errs = append(errs, "warehouse.bigquery.auth: none needs warehouse.bigquery.endpoint (an emulator)")
		}
		opts = append(opts, option.WithoutAuthentication())
	default:
		errs = append(errs, fmt.Sprintf("warehouse.bigquery.auth: %q is not allowed; use adc, service_account or none", o.Auth))
	}
	if o.HTTPClient != nil {
		if o.Auth != BigQueryAuthNone {
			errs = append(errs, "loader: an HTTPClient is only for an emulator (auth none)")
		}
		opts = []option.ClientOption{option.WithHTTPClient(o.HTTPClient)}
	}
	if o.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(o.Endpoint))
	}
	errs = append(errs, checkExtraColumns(o.ExtraColumns)...)
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "\n"))
	}
	client, err := bigquery.NewClient(ctx, o.Project, opts...)
	if err != nil {
		return nil, fmt.Errorf("cannot create the BigQuery client (check warehouse.bigquery.auth and its credentials): %w", err)
	}
	client.Location = o.Location
	return &BigQuery{opts: o, client: client, log: o.Logger, rows: bigqueryRows(o.ExtraColumns)}, nil
}

// bigqueryExtraTypes are the GoogleSQL types extra columns are cast to:
// bqField's for snowflakeExtraTypes.
var bigqueryExtraTypes = map[string]string{event.ExtraString: "STRING", event.ExtraInt: "INT64",
	event.ExtraDecimal: "BIGNUMERIC", event.ExtraTimestamp: "TIMESTAMP", event.ExtraBool: "BOOL"}

// bigqueryRows is the GoogleSQL of ATTRIBUTES and the extra columns. The
// table's types come from the Snowflake ones through bqField; the casts
// name GoogleSQL's.
func bigqueryRows(extras []ExtraColumn) rowSQL {
	return rowSQL{extras: extras, types: snowflakeExtraTypes, casts: bigqueryExtraTypes, attributes: "VARIANT",
		staged:  strings.ToLower,
		parse:   func(e string) string { return "PARSE_JSON(" + e + ")" },
		extract: func(e, name string) string { return "JSON_VALUE(" + e + ", '$." + name + "')" }}
}

// Close closes the client.
func (b *BigQuery) Close() error { return b.client.Close() }

// bqField is c as a BigQuery column: the Snowflake sink's column
// definitions (snowflake.go) in BigQuery types. staging fields take the
// Parquet files' lower-case names and are all NULLABLE: a load job
// matches Parquet columns by name.
func bqField(c column, staging bool) *bigquery.FieldSchema {
	typ, required := strings.CutSuffix(c.typ, " NOT NULL")
	f := &bigquery.FieldSchema{Name: c.name, Required: required && !staging}
	if staging {
		f.Name = strings.ToLower(c.name)
	}
	switch {
	case typ == "VARCHAR":
		f.Type = bigquery.StringFieldType
	case typ == "INTEGER", typ == "BIGINT":
		f.Type = bigquery.IntegerFieldType
	case typ == "BOOLEAN":
		f.Type = bigquery.BooleanFieldType
	case typ == "VARIANT":
		f.Type = bigquery.JSONFieldType
	case typ == "TIMESTAMP_TZ":
		f.Type = bigquery.TimestampFieldType
	case strings.HasPrefix(typ, "NUMBER("):
		// DECIMAL(38,4) has 34 integer digits: NUMERIC keeps 29, so a
		// Parquet DECIMAL(38,4) loads as BIGNUMERIC.
		f.Type = bigquery.BigNumericFieldType
	default:
		panic(fmt.Sprintf("BUG: no BigQuery type for column %s %s", c.name, c.typ))
	}
	return f
}

func bqSchema(cols []column, staging bool) bigquery.Schema {
	s := make(bigquery.Schema, len(cols))
	for i, c := range cols {
		s[i] = bqField(c, staging)
	}
	return s
}

// bqTables are the warehouse tables and their schemas, in the order
// Prepare creates them.
func (b *BigQuery) bqTables() []struct {
	name   string
	schema bigquery.Schema
} {
	o := b.opts
	return []struct {
		name   string
		schema bigquery.Schema
	}{
		{o.TransactionsTable, bqSchema(b.rows.tableColumns(transactionColumns), false)},
		{o.WindowsTable, bqSchema(windowTableColumns, false)},
		{o.LedgerTable, bqSchema(ledgerColumns, false)},
	}
}

// errBigQuerySchema marks a table whose columns cannot take the batches:
// the operator must fix the table, so it is permanent.
var errBigQuerySchema = errors.New("table schema differs")

// Prepare creates the dataset and the tables where missing, and checks
// that tables found have every column with the expected type.
func (b *BigQuery) Prepare(ctx context.Context) error {
	ds := b.client.Dataset(b.opts.Dataset)
	if _, err := b.call(ctx, func(ctx context.Context) (any, error) { return ds.Metadata(ctx) }); isNotFound(err) {
		_, err := b.call(ctx, func(ctx context.Context) (any, error) {
			return nil, ds.Create(ctx, &bigquery.DatasetMetadata{Location: b.opts.Location})
		})
		if err != nil && !isDuplicate(err) {
			return fmt.Errorf("create dataset %s: %w", b.opts.Dataset, err)
		}
	} else if err != nil {
		return fmt.Errorf("get dataset %s: %w", b.opts.Dataset, err)
	}
	for _, t := range b.bqTables() {
		tbl := ds.Table(t.name)
		md, err := b.call(ctx, func(ctx context.Context) (any, error) { return tbl.Metadata(ctx) })
		if isNotFound(err) {
			_, err = b.call(ctx, func(ctx context.Context) (any, error) {
				return nil, tbl.Create(ctx, &bigquery.TableMetadata{Schema: t.schema})
			})
			if err != nil && !isDuplicate(err) {
				return fmt.Errorf("create table %s: %w", t.name, err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("get table %s: %w", t.name, err)
		}
		if t.name == b.opts.TransactionsTable {
			if md, err = b.addColumns(ctx, tbl, md.(*bigquery.TableMetadata)); err != nil {
				return err
			}
		}
		if err := sameColumns(t.name, t.schema, md.(*bigquery.TableMetadata).Schema); err != nil {
			return err
		}
	}
	return nil
}

// addColumns adds to the transactions table ATTRIBUTES and the extra
// columns it lacks by ALTER TABLE ... ADD COLUMN IF NOT EXISTS, and
// returns its metadata after. The emulator's ALTER leaves the table's
// metadata as it was: a schema update (the same columns appended) follows
// where the metadata lacks them (docs/LOADER.md, "BigQuery emulator
// gaps").
func (b *BigQuery) addColumns(ctx context.Context, tbl *bigquery.Table, md *bigquery.TableMetadata) (any, error) {
	have := map[string]bool{}
	for _, f := range md.Schema {
		have[strings.ToUpper(f.Name)] = true
	}
	schema := md.Schema
	for _, c := range b.rows.added() {
		if have[c.name] {
			continue
		}
		f := bqField(c, false)
		q := fmt.Sprintf("ALTER TABLE %s ADD COLUMN IF NOT EXISTS `%s` %s", b.table(b.opts.TransactionsTable), c.name, f.Type)
		if _, err := b.call(ctx, func(ctx context.Context) (any, error) { return b.query(ctx, q) }); err != nil {
			return nil, fmt.Errorf("cannot add column %s to table %s: %w (the account needs bigquery.tables.update)", c.name, b.opts.TransactionsTable, err)
		}
		schema = append(schema[:len(schema):len(schema)], f)
	}
	if len(schema) == len(md.Schema) {
		return md, nil
	}
	now, err := b.call(ctx, func(ctx context.Context) (any, error) { return tbl.Metadata(ctx) })
	if err != nil || len(now.(*bigquery.TableMetadata).Schema) >= len(schema) {
		return now, err
	}
	return b.call(ctx, func(ctx context.Context) (any, error) {
		return tbl.Update(ctx, bigquery.TableMetadataToUpdate{Schema: schema}, "")
	})
}

// sameColumns tells whether have holds every column of want with its
// type (extra columns are allowed: NULL in offload's rows).
func sameColumns(table string, want, have bigquery.Schema) error {
	types := map[string]bigquery.FieldType{}
	for _, f := range have {
		types[strings.ToUpper(f.Name)] = f.Type
	}
	for _, f := range want {
		got, ok := types[f.Name]
		if !ok {
			return fmt.Errorf("%w: table %s has no column %s (%s); add it or drop the table to have it created", errBigQuerySchema, table, f.Name, f.Type)
		}
		if got != f.Type {
			return fmt.Errorf("%w: column %s.%s is %s, offload loads %s; fix the column or drop the table to have it created", errBigQuerySchema, table, f.Name, got, f.Type)
		}
	}
	return nil
}

// call runs one API call bounded by RequestTimeout.
func (b *BigQuery) call(ctx context.Context, f func(context.Context) (any, error)) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.RequestTimeout)
	defer cancel()
	return f(ctx)
}

// table is a table's name quoted for GoogleSQL.
func (b *BigQuery) table(name string) string {
	return "`" + b.opts.Project + "." + b.opts.Dataset + "." + name + "`"
}

// query runs a read-only query with parameters and returns its rows.
func (b *BigQuery) query(ctx context.Context, sql string, params ...bigquery.QueryParameter) ([][]bigquery.Value, error) {
	q := b.client.Query(sql)
	q.Parameters = params
	q.Location = b.opts.Location
	it, err := q.Read(ctx)
	if err != nil {
		return nil, err
	}
	var out [][]bigquery.Value
	for {
		var row []bigquery.Value
		err := it.Next(&row)
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, row)
	}
}

// Loaded tells whether the ledger holds batch id.
func (b *BigQuery) Loaded(ctx context.Context, id string) (bool, error) {
	rows, err := b.query(ctx, "SELECT COUNT(*) FROM "+b.table(b.opts.LedgerTable)+" WHERE `BATCH_ID` = @id",
		bigquery.QueryParameter{Name: "id", Value: id})
	if err != nil {
		return false, err
	}
	n, _ := rows[0][0].(int64)
	return n > 0, nil
}

// jobID is the id of one step of batch id's load. Batch ids are
// [A-Za-z0-9._-] (the appliance id's alphabet, '-' and hex) and job ids
// [A-Za-z0-9_-]: dots become underscores.
func jobID(batch, step string) string {
	return "offload_" + strings.ReplaceAll(batch, ".", "_") + "_" + step
}

// Load loads x: a load job per file into staging tables, then the
// commit script, then the staging tables are dropped (also on failure).
func (b *BigQuery) Load(ctx context.Context, x engine.Export) error {
	stgRows, stgWindows := stagingName(x.ID, "ROWS"), stagingName(x.ID, "WINDOWS")
	defer b.cleanup(x.ID, stgRows, stgWindows)
	// A staging job's id is the batch's, the step's and this attempt's:
	// an attempt loads the files afresh into tables an earlier attempt
	// may have dropped, and its retried inserts find their own job.
	var nonce [4]byte
	_, _ = rand.Read(nonce[:])
	attempt := hex.EncodeToString(nonce[:])
	for i, f := range x.RowsFiles {
		if err := b.stage(ctx, jobID(x.ID, fmt.Sprintf("stage_rows_%d_%s", i, attempt)), f, stgRows, fileColumns, i > 0); err != nil {
			return err
		}
	}
	withWindows := x.WindowRows > 0 // most batches between two window closings have none
	if withWindows {
		if err := b.stage(ctx, jobID(x.ID, "stage_windows_"+attempt), x.WindowsFile, stgWindows, windowColumns, false); err != nil {
			return err
		}
	}
	for _, s := range []struct {
		table string
		want  int64
		on    bool
	}{{stgRows, x.Rows, true}, {stgWindows, x.WindowRows, withWindows}} {
		if !s.on {
			continue
		}
		rows, err := b.query(ctx, "SELECT COUNT(*) FROM "+b.table(s.table))
		if err != nil {
			return fmt.Errorf("count staged rows: %w", err)
		}
		if n, _ := rows[0][0].(int64); n != s.want {
			return fmt.Errorf("%w: staging table %s holds %d rows, the batch %d", errStagedCount, s.table, n, s.want)
		}
	}
	if withWindows {
		if err := b.dedupeStaged(ctx, stgWindows, windowKey, "version", false); err != nil {
			return err
		}
	}
	if b.opts.MergeRows {
		if err := b.dedupeStaged(ctx, stgRows, []string{"EVENT_ID"}, "source_offset", true); err != nil {
			return err
		}
	}
	if err := b.commit(ctx, x, stgRows, stgWindows, withWindows); err != nil {
		return err
	}
	if b.opts.MergeRows {
		rows, err := b.query(ctx, "SELECT `DUPLICATES` FROM "+b.table(b.opts.LedgerTable)+" WHERE `BATCH_ID` = @id",
			bigquery.QueryParameter{Name: "id", Value: x.ID})
		if err != nil {
			// The batch is loaded; only the counter misses it.
			b.log.Warn("loader: cannot read the duplicates a merge kept out", "batch", x.ID, "err", err)
		} else if len(rows) == 1 {
			if n, _ := rows[0][0].(int64); n > 0 {
				b.duplicates.Add(n)
				b.log.Warn("loader: rows already in the warehouse were not loaded again (warehouse dedupe: merge)",
					"batch", x.ID, "rows", x.Rows, "skipped", n)
			}
		}
	}
	return nil
}

// stage loads Parquet file into staging table (replacing what it held,
// or appending) by a load job with id.
func (b *BigQuery) stage(ctx context.Context, id, file, table string, cols []column, appendRows bool) error {
	start := func(ctx context.Context) (*bigquery.Job, error) {
		// Opened for each insert: a retried insert uploads it again.
		f, err := os.Open(file)
		if err != nil {
			return nil, &localError{fmt.Errorf("cannot open %s: %w", file, err)}
		}
		defer f.Close()
		src := bigquery.NewReaderSource(f)
		src.SourceFormat = bigquery.Parquet
		src.Schema = bqSchema(cols, true)
		l := b.client.Dataset(b.opts.Dataset).Table(table).LoaderFrom(src)
		l.JobID, l.Location = id, b.opts.Location
		l.CreateDisposition, l.WriteDisposition = bigquery.CreateIfNeeded, bigquery.WriteTruncate
		if appendRows {
			l.WriteDisposition = bigquery.WriteAppend
		}
		return l.Run(ctx)
	}
	if err := b.runJob(ctx, id, start); err != nil {
		return fmt.Errorf("load %s into staging: %w", filepath.Base(file), err)
	}
	return nil
}

// runJob inserts a job under id and waits for its outcome. An insert
// answered "already exists" (HTTP 409: an earlier insert of this id was
// created but its answer lost) is followed by jobs.get: the job that
// exists is waited for and its outcome is this one's, never run twice.
func (b *BigQuery) runJob(ctx context.Context, id string, start func(context.Context) (*bigquery.Job, error)) error {
	j, err := b.call(ctx, func(ctx context.Context) (any, error) { return start(ctx) })
	if isDuplicate(err) {
		b.log.Info("loader: job exists already (an insert whose answer was lost); waiting for it", "job", id)
		j, err = b.call(ctx, func(ctx context.Context) (any, error) { return b.client.JobFromIDLocation(ctx, id, b.opts.Location) })
	}
	if err != nil {
		return err
	}
	return wait(ctx, j.(*bigquery.Job))
}

// wait waits for job and returns its error, if it failed.
func wait(ctx context.Context, job *bigquery.Job) error {
	failed, err := outcome(ctx, job)
	if err != nil {
		return err
	}
	return failed
}

// outcome waits for job to be done and returns the job's error (failed)
// apart from an error getting there (err). The job's status decides; a
// query job whose status shows no error but whose results are refused
// with a 4xx failed too: the emulator's jobs.get reports every job done
// without its error (docs/LOADER.md, "BigQuery emulator gaps"). Anything
// else unclear is err, never failed: a commit job taken for failed
// would be run again under the next id.
func outcome(ctx context.Context, job *bigquery.Job) (failed, err error) {
	_, werr := job.Wait(ctx)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	st, err := job.Status(ctx)
	if err != nil {
		return nil, err
	}
	if !st.Done() {
		return nil, fmt.Errorf("job %s is not done yet", job.ID())
	}
	if st.Err() != nil {
		return st.Err(), nil
	}
	if c := httpCode(werr); c >= 400 && c < 500 && c != http.StatusNotFound {
		return werr, nil
	}
	return nil, werr
}

// maxCommitJobs bounds the commit jobs of one batch: each failed one
// (retried after its cause went away) takes the next id.
const maxCommitJobs = 1000

// commit runs the commit script under the batch's first commit job id
// that is free or names a job that did not fail. The job of an earlier
// attempt that is still running or succeeded (its answer lost) is waited
// for instead of a second one run.
func (b *BigQuery) commit(ctx context.Context, x engine.Export, stgRows, stgWindows string, withWindows bool) error {
	script, err := b.script(x, stgRows, stgWindows, withWindows)
	if err != nil {
		return err
	}
	for gen := 0; gen < maxCommitJobs; gen++ {
		id := jobID(x.ID, fmt.Sprintf("commit_%d", gen))
		j, err := b.call(ctx, func(ctx context.Context) (any, error) { return b.client.JobFromIDLocation(ctx, id, b.opts.Location) })
		if err == nil {
			failed, err := outcome(ctx, j.(*bigquery.Job))
			if err != nil {
				return fmt.Errorf("commit job %s: %w", id, err)
			}
			if failed != nil {
				continue // a failed attempt's job: the next id is free
			}
			b.log.Info("loader: the batch's commit job ran already (its answer was lost)", "batch", x.ID, "job", id)
			return nil
		}
		if !isNotFound(err) {
			return fmt.Errorf("look up commit job %s: %w", id, err)
		}
		start := func(ctx context.Context) (*bigquery.Job, error) {
			q := b.client.Query(script)
			q.JobID, q.Location = id, b.opts.Location
			return q.Run(ctx)
		}
		if err := b.runJob(ctx, id, start); err != nil {
			return fmt.Errorf("commit job %s: %w", id, err)
		}
		return nil
	}
	return fmt.Errorf("loader: batch %s has %d failed commit jobs; look at the last one's error in BigQuery", x.ID, maxCommitJobs)
}

// script is x's commit script: one transaction for the rows, the windows
// and the ledger row. With MergeRows the ledger's control totals are
// those of the rows that went in, totalled from the table in the script.
// The batch's values are literals, not query parameters: the emulator
// binds every parameter to every statement of a script
// (docs/LOADER.md, "BigQuery emulator gaps").
func (b *BigQuery) script(x engine.Export, stgRows, stgWindows string, withWindows bool) (string, error) {
	o := b.opts
	ct, err := json.Marshal(append([]engine.CurrencyTotal{}, x.Totals...))
	if err != nil {
		return "", err
	}
	r := strings.NewReplacer("@batch", bqLiteral(x.ID), "@appliance", bqLiteral(o.ApplianceID),
		"@rows", fmt.Sprint(x.Rows), "@window_rows", fmt.Sprint(x.WindowRows), "@bytes", fmt.Sprint(x.FileBytes),
		"@totals", bqLiteral(string(ct)))
	var s strings.Builder
	s.WriteString("BEGIN TRANSACTION;\n")
	cols := quoted(b.rows.tableColumns(transactionColumns), "")
	if o.MergeRows {
		fmt.Fprintf(&s, "MERGE %s t USING %s s\nON t.`EVENT_ID` = s.event_id\nWHEN NOT MATCHED THEN INSERT (%s) VALUES (%s);\n",
			b.table(o.TransactionsTable), b.table(stgRows), cols, b.stagedValues("s."))
	} else {
		fmt.Fprintf(&s, "INSERT INTO %s (%s)\nSELECT %s FROM %s;\n", b.table(o.TransactionsTable), cols, b.stagedValues(""), b.table(stgRows))
	}
	if withWindows {
		s.WriteString(b.mergeWindows(stgWindows) + ";\n")
	}
	totals := "@totals"
	if o.MergeRows {
		totals = fmt.Sprintf(`IF(n_in = @rows, @totals, (
    SELECT TO_JSON_STRING(ARRAY_AGG(STRUCT(c AS Currency, n AS `+"`Rows`"+`, a AS Amount) ORDER BY c))
    FROM (SELECT COALESCE(`+"`CURRENCY`"+`, '') AS c, COUNT(*) AS n, CAST(SUM(`+"`AMOUNT`"+`) AS STRING) AS a
          FROM %s WHERE `+"`BATCH_ID`"+` = @batch GROUP BY c)))`, b.table(o.TransactionsTable))
	}
	// n_in is how many rows went in: with MergeRows the batch's rows in
	// the table; without, every staged row went in, and they are counted
	// in the staging table: counting the batch's rows in the table scans
	// all of it, which BigQuery bills each load, and which makes each load
	// slower than the last on the emulator.
	in := b.table(stgRows)
	if o.MergeRows {
		in = b.table(o.TransactionsTable) + " WHERE `BATCH_ID` = @batch"
	}
	fmt.Fprintf(&s, `INSERT INTO %s (%s)
SELECT @batch, @appliance, @rows, @window_rows, @bytes, %s, CURRENT_TIMESTAMP(), @rows - n_in
FROM (SELECT COUNT(*) AS n_in FROM %s);
COMMIT TRANSACTION;`, b.table(o.LedgerTable), quoted(ledgerColumns, ""), totals, in)
	return r.Replace(s.String()), nil
}

// bqLiteral is s as a GoogleSQL string literal.
func bqLiteral(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`, "\n", `\n`, "\r", `\r`).Replace(s) + "'"
}

// mergeWindows upserts the staged windows of this appliance: a row
// replaces the table's only if it counts more events, or as many with a
// higher version (Snowflake.mergeWindows says why). The staging table holds the
// highest version of each window only (dedupeStaged): the emulator's
// MERGE takes a table as its source, not a query.
func (b *BigQuery) mergeWindows(stg string) string {
	var on, set []string
	for _, k := range windowKey {
		on = append(on, "t.`"+k+"` = s."+strings.ToLower(k))
	}
	on = append(on, "t.`APPLIANCE_ID` = @appliance")
	for _, c := range windowColumns[len(windowKey):] {
		set = append(set, "`"+c.name+"` = s."+strings.ToLower(c.name))
	}
	return fmt.Sprintf(`MERGE %s t USING %s s
ON %s
WHEN MATCHED AND (s.count > t.`+"`COUNT`"+` OR (s.count = t.`+"`COUNT`"+` AND s.version > t.`+"`VERSION`"+`)) THEN UPDATE SET %s
WHEN NOT MATCHED THEN INSERT (%s) VALUES (%s, @appliance)`,
		b.table(b.opts.WindowsTable), b.table(stg), strings.Join(on, " AND "), strings.Join(set, ", "),
		quoted(windowTableColumns, ""), lowerNames(windowColumns, "s."))
}

// dedupeStaged deletes from a staging table the rows another row of the
// same key supersedes: the one with the higher (or, lowest, the lower)
// order column. It runs before the transaction, on this attempt's own
// staging table.
func (b *BigQuery) dedupeStaged(ctx context.Context, table string, key []string, order string, lowest bool) error {
	var same []string
	for _, k := range key {
		same = append(same, "o."+strings.ToLower(k)+" = r."+strings.ToLower(k))
	}
	cmp := ">"
	if lowest {
		cmp = "<"
	}
	q := b.client.Query(fmt.Sprintf("DELETE FROM %s r WHERE EXISTS (SELECT 1 FROM %s o WHERE %s AND o.%s %s r.%s)",
		b.table(table), b.table(table), strings.Join(same, " AND "), order, cmp, order))
	q.Location = b.opts.Location
	j, err := b.call(ctx, func(ctx context.Context) (any, error) { return q.Run(ctx) })
	if err != nil {
		return fmt.Errorf("dedupe staging table %s: %w", table, err)
	}
	if err := wait(ctx, j.(*bigquery.Job)); err != nil {
		return fmt.Errorf("dedupe staging table %s: %w", table, err)
	}
	return nil
}

// quoted lists cols' names quoted, each after prefix.
func quoted(cols []column, prefix string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = prefix + "`" + c.name + "`"
	}
	return strings.Join(out, ", ")
}

// stagedValues lists the values of a transactions row from the staged row
// named by prefix: the staging table's lower-case columns, and the batch
// id (@batch) for BATCH_ID, which the rows files do not carry.
func (b *BigQuery) stagedValues(prefix string) string {
	return b.rows.values(prefix, "@batch")
}

// lowerNames lists the staging table's lower-case columns of cols, each
// after prefix.
func lowerNames(cols []column, prefix string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = prefix + strings.ToLower(c.name)
	}
	return strings.Join(out, ", ")
}

// cleanup drops the staging tables, on success or failure; what it
// cannot drop is logged and harmless (the next attempt replaces it).
func (b *BigQuery) cleanup(id string, tables ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, t := range tables {
		tbl := b.client.Dataset(b.opts.Dataset).Table(t)
		if _, err := b.call(ctx, func(ctx context.Context) (any, error) { return nil, tbl.Delete(ctx) }); err != nil && !isNotFound(err) {
			b.log.Debug("loader: cannot drop a staging table (harmless; replaced by the next attempt)", "batch", id, "table", t, "err", err)
		}
	}
}

// httpCode returns the HTTP status of a googleapi error in err, or 0.
func httpCode(err error) int {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

func isNotFound(err error) bool { return httpCode(err) == http.StatusNotFound }

func isDuplicate(err error) bool { return httpCode(err) == http.StatusConflict }

// reasons lists the BigQuery error reasons in err: of an API call's
// answer (googleapi.Error) or of a failed job (bigquery.Error).
func reasons(err error) []string {
	var out []string
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		for _, e := range ge.Errors {
			out = append(out, e.Reason)
		}
	}
	var be *bigquery.Error
	if errors.As(err, &be) {
		out = append(out, be.Reason)
	}
	return out
}

// BigQuery error reasons (cloud.google.com/bigquery/docs/error-messages).
var (
	bqRetryableReasons = map[string]bool{"backendError": true, "rateLimitExceeded": true, "internalError": true,
		"jobInternalError": true, "jobBackendError": true, "jobRateLimitExceeded": true, "quotaExceeded": true}
	bqPermanentReasons = map[string]bool{"invalid": true, "invalidQuery": true, "notFound": true, "accessDenied": true,
		"responseTooLarge": true}
)

// Classify sorts errors: a table's wrong schema, and the reasons invalid,
// invalidQuery, notFound and accessDenied (among others in
// bqPermanentReasons) are permanent, except a transaction cancelled for a
// concurrent update; 429, 5xx, rateLimitExceeded,
// backendError, network failures, timeouts and expired or refused
// credentials retryable (the operator fixes credentials, not each batch).
func (b *BigQuery) Classify(err error) Class {
	if errors.Is(err, errBigQuerySchema) {
		return Permanent
	}
	// BigQuery cancels the later of two transactions that change one
	// table (the loads of two appliances of the tables) with reason
	// invalidQuery; run again, it goes through.
	if strings.Contains(err.Error(), "due to concurrent update") {
		return Retryable
	}
	rs := reasons(err)
	for _, r := range rs {
		if bqRetryableReasons[r] {
			return Retryable
		}
	}
	if c := httpCode(err); c == http.StatusTooManyRequests || c >= 500 || c == http.StatusUnauthorized {
		return Retryable
	}
	for _, r := range rs {
		if bqPermanentReasons[r] {
			return Permanent
		}
	}
	return Retryable
}
