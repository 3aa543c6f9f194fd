package loader

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"cloud.google.com/go/bigquery"
)

// Check proves, on a scratch table of its own, that loads will work: the
// credentials, the dataset (created when missing, as Prepare would), a
// table created, a transaction with an INSERT and a MERGE, the rows read
// back, the table dropped. It never touches the warehouse tables.
func (b *BigQuery) Check(ctx context.Context) []CheckResult {
	var out []CheckResult
	ok := func(name string) { out = append(out, CheckResult{Name: "bigquery: " + name, OK: true}) }
	fail := func(name, stmt string, err error, fix string) []CheckResult {
		detail := err.Error()
		if stmt != "" {
			detail = stmt + ": " + detail
		}
		return append(out, CheckResult{Name: "bigquery: " + name, Detail: detail, Fix: fix})
	}
	ds := b.client.Dataset(b.opts.Dataset)
	_, err := b.call(ctx, func(ctx context.Context) (any, error) { return ds.Metadata(ctx) })
	switch c := httpCode(err); {
	case err == nil || isNotFound(err):
		ok("credentials")
	case c == http.StatusUnauthorized || c == http.StatusForbidden:
		return fail("credentials", "get dataset "+b.opts.Dataset, err,
			"check warehouse.bigquery.auth and its key (credentials_file, or the Application Default Credentials): the account needs BigQuery Data Editor and Job User on the project")
	default:
		return fail("credentials", "get dataset "+b.opts.Dataset, err,
			"check warehouse.bigquery.endpoint and the network path to BigQuery")
	}
	if isNotFound(err) {
		if _, err := b.call(ctx, func(ctx context.Context) (any, error) {
			return nil, ds.Create(ctx, &bigquery.DatasetMetadata{Location: b.opts.Location})
		}); err != nil && !isDuplicate(err) {
			return fail("dataset", "create dataset "+b.opts.Dataset, err,
				"create the dataset "+b.opts.Dataset+" in "+b.opts.Location+", or grant the account BigQuery Data Editor on the project")
		}
	}
	ok("dataset")
	var nonce [6]byte
	_, _ = rand.Read(nonce[:])
	name := "OFFLOAD_CHECK_" + strings.ToUpper(hex.EncodeToString(nonce[:]))
	tbl := ds.Table(name)
	schema := bigquery.Schema{{Name: "N", Type: bigquery.IntegerFieldType}, {Name: "V", Type: bigquery.StringFieldType}}
	if _, err := b.call(ctx, func(ctx context.Context) (any, error) {
		return nil, tbl.Create(ctx, &bigquery.TableMetadata{Schema: schema})
	}); err != nil {
		return fail("create table", "create table "+name, err, "grant the account BigQuery Data Editor on dataset "+b.opts.Dataset)
	}
	ok("create table")
	dropped := false
	defer func() {
		if !dropped { // a check failed half-way: the scratch table goes anyway
			_, _ = b.call(context.Background(), func(ctx context.Context) (any, error) { return nil, tbl.Delete(ctx) })
		}
	}()
	script := fmt.Sprintf("BEGIN TRANSACTION;\nINSERT INTO %[1]s (N, V) VALUES (1, 'inserted');\n"+
		"MERGE %[1]s t USING %[1]s s ON t.N = s.N WHEN MATCHED THEN UPDATE SET V = 'merged';\nCOMMIT TRANSACTION;", b.table(name))
	q := b.client.Query(script)
	q.Location = b.opts.Location
	j, err := b.call(ctx, func(ctx context.Context) (any, error) { return q.Run(ctx) })
	if err == nil {
		err = wait(ctx, j.(*bigquery.Job))
	}
	if err != nil {
		return fail("transaction (insert, merge)", firstWords(script), err, "grant the account BigQuery Job User on project "+b.opts.Project)
	}
	ok("transaction (insert, merge)")
	rows, err := b.query(ctx, "SELECT V FROM "+b.table(name)+" WHERE N = 1")
	if err == nil && (len(rows) != 1 || rows[0][0] != "merged") {
		err = fmt.Errorf("read back %v, want one row \"merged\"", rows)
	}
	if err != nil {
		return fail("round trip", "SELECT V FROM "+name, err, "look at the job in the BigQuery console; the dataset may be read-only")
	}
	ok("round trip")
	if _, err := b.call(ctx, func(ctx context.Context) (any, error) { return nil, tbl.Delete(ctx) }); err != nil {
		return fail("drop table", "drop table "+name, err, "drop "+name+" by hand and grant the account BigQuery Data Editor on dataset "+b.opts.Dataset)
	}
	dropped = true
	ok("drop table")
	return out
}
