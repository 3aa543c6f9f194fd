package loader

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/offload/offload/internal/deliverytest"
	"github.com/offload/offload/internal/redshifttest"
)

const rsBucket = "offload-test"

// newRsServer is the Redshift-dialect test server with its bucket and
// the schema the sinks use.
func newRsServer(t *testing.T) *redshifttest.Server {
	t.Helper()
	srv, err := redshifttest.New(redshifttest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	if err := srv.CreateBucket(rsBucket); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.DB().Exec("CREATE SCHEMA offload"); err != nil {
		t.Fatal(err)
	}
	return srv
}

// rsSink returns a redshift sink on srv, COPY authorised by the IAM role,
// its options adjusted by tune.
func rsSink(t testing.TB, srv *redshifttest.Server, tune func(*RedshiftOptions)) *Redshift {
	t.Helper()
	host, port := srv.Addr()
	user, pw := srv.User()
	key, secret := srv.S3Key()
	o := RedshiftOptions{Host: host, Port: port, User: user, Password: pw, Database: "dev", Schema: "offload", SSLMode: "disable",
		IAMRole: srv.IAMRole(), S3Bucket: rsBucket, S3Prefix: "stage/", S3Region: "eu-west-1", S3Endpoint: srv.S3Endpoint(), S3PathStyle: true,
		S3AccessKeyID: key, S3SecretAccessKey: secret, ApplianceID: "lt", ConnectTimeout: 2 * time.Second, Logger: quietLogger()}
	tune(&o)
	r, err := NewRedshift(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func rsQuery(t *testing.T, srv *redshifttest.Server, q string) []string {
	t.Helper()
	return deliverytest.QueryStrings(t, srv.DB(), strings.ReplaceAll(q, "PUBLIC.", "offload."))
}

// rsCheck asserts the delivery contract on the server's tables, and that
// no staged object is left in the bucket.
func rsCheck(t *testing.T, srv *redshifttest.Server, want map[string]bool, batches int) {
	t.Helper()
	deliverytest.CheckTables(t, srv.DB(), "offload.", want, batches, true)
	if left, err := srv.Objects(rsBucket); err != nil || len(left) != 0 {
		t.Errorf("objects left in the bucket: %v (%v)", left, err)
	}
}

func TestRedshiftLoadsEveryBatchOnce(t *testing.T) {
	for _, auth := range []string{"iam_role", "access_key"} {
		t.Run(auth, func(t *testing.T) {
			srv := newRsServer(t)
			e := testOutbox(t, 3, 40)
			want := outboxEventIDs(t, e)
			sink := rsSink(t, srv, func(o *RedshiftOptions) {
				if auth == "access_key" {
					o.IAMRole = ""
				}
			})
			l := shipAll(t, e, fastOptions(e, sink, t.TempDir()))
			rsCheck(t, srv, want, 3)
			if st := l.Status(); st.Loaded != 3 || st.Retries != 0 {
				t.Fatalf("status %+v", st)
			}
			checkReconcile(t, e, sink, func() { rsQuery(t, srv, `DELETE FROM PUBLIC.OFFLOAD_TRANSACTIONS WHERE EVENT_ID = 'e-7'`) })
		})
	}
}

// TestRedshiftFaultMatrix injects each fault of the test server at each
// step of a load, and checks after recovery that the warehouse holds
// each event exactly once, the windows and the ledger agreeing.
func TestRedshiftFaultMatrix(t *testing.T) {
	moments := map[string]string{
		"staging":     `^CREATE TEMP TABLE OFFLOAD_STG_\w+_ROWS `,
		"lock":        `^LOCK `,
		"copy":        `^COPY `,
		"insert rows": `^INSERT INTO OFFLOAD_TRANSACTIONS`,
		"merge":       `^MERGE INTO`,
		"ledger":      `^INSERT INTO OFFLOAD_LOAD_LEDGER`,
		"commit":      `(?i)^commit`,
		"lookup":      `^SELECT COUNT\(\*\) FROM OFFLOAD_LOAD_LEDGER`,
	}
	faults := map[string]redshifttest.Fault{
		"drop":           {Kind: redshifttest.FaultDropConnection},
		"answer lost":    {Kind: redshifttest.FaultAnswerLost},
		"statement fail": {Kind: redshifttest.FaultStatementError, Code: "XX000", Times: 2},
		"serialization":  {Kind: redshifttest.FaultStatementError, Code: "40001"},
	}
	for fname, f := range faults {
		for mname, re := range moments {
			t.Run(fname+" at "+mname, func(t *testing.T) {
				t.Parallel()
				srv := newRsServer(t)
				e := testOutbox(t, 2, 20)
				want := outboxEventIDs(t, e)
				f := f
				f.SQL = regexp.MustCompile(re)
				inj := srv.Inject(f)
				opts := fastOptions(e, rsSink(t, srv, func(*RedshiftOptions) {}), t.TempDir())
				opts.LoadTimeout = 5 * time.Second
				shipAll(t, e, opts)
				if inj.Hits() == 0 {
					t.Fatalf("the fault never fired")
				}
				rsCheck(t, srv, want, 2)
			})
		}
	}
}

// TestRedshiftCommitAfterTheLoaderGaveUp: Redshift finishes a COMMIT
// whose client timed out while it waited (the commit queue). The retry's
// ledger lookup runs before that COMMIT ends and does not see the batch;
// its transaction, waiting on the ledger's lock, then finds it and loads
// nothing twice, with and without dedupe.warehouse: merge. Redshift
// enforces no primary key that would stop the second ledger row.
func TestRedshiftCommitAfterTheLoaderGaveUp(t *testing.T) {
	for _, merge := range []bool{false, true} {
		t.Run(fmt.Sprintf("merge=%v", merge), func(t *testing.T) {
			t.Parallel()
			srv := newRsServer(t)
			e := testOutbox(t, 2, 20)
			want := outboxEventIDs(t, e)
			// The first COMMIT ends 4.5s after it began: after the
			// attempt's 3s, and while the retry waits on the lock.
			slow := srv.Inject(redshifttest.Fault{Kind: redshifttest.FaultSlow, SQL: regexp.MustCompile(`(?i)^commit`), Hang: 4500 * time.Millisecond})
			opts := fastOptions(e, rsSink(t, srv, func(o *RedshiftOptions) { o.MergeRows = merge }), t.TempDir())
			opts.LoadTimeout = 3 * time.Second
			l := shipAll(t, e, opts)
			for deadline := time.Now().Add(20 * time.Second); slow.Applied() == 0; time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the slow COMMIT (hit %d times) never ran", slow.Hits())
				}
			}
			rsCheck(t, srv, want, 2)
			if st := l.Status(); st.Loaded != 1 || st.AlreadyLoaded != 1 || st.Retries == 0 {
				t.Fatalf("status %+v: want the batch found in the ledger after a retry", st)
			}
		})
	}
}

// TestRedshiftOutage: with the cluster away the loader retries and opens
// its circuit; once it is back the backlog drains, exactly once.
func TestRedshiftOutage(t *testing.T) {
	srv := newRsServer(t)
	checkOutage(t, rsSink(t, srv, func(*RedshiftOptions) {}), srv.RefuseConnections, srv.AcceptConnections,
		func(want map[string]bool) { rsCheck(t, srv, want, 2) })
}

// TestRedshiftSchemaMismatchParks: a transactions table that cannot take
// the rows parks the batch with the server's message; it loads after the
// fix.
func TestRedshiftSchemaMismatchParks(t *testing.T) {
	srv := newRsServer(t)
	checkParks(t, rsSink(t, srv, func(*RedshiftOptions) {}),
		func() { rsQuery(t, srv, `CREATE TABLE PUBLIC.OFFLOAD_TRANSACTIONS (EVENT_ID VARCHAR)`) },
		func() { rsQuery(t, srv, `DROP TABLE PUBLIC.OFFLOAD_TRANSACTIONS`) },
		func() string { return rsQuery(t, srv, `SELECT count(*) FROM PUBLIC.OFFLOAD_TRANSACTIONS`)[0] },
		"SQLSTATE 42", func(want map[string]bool) { rsCheck(t, srv, want, 1) })
}

// TestRedshiftMergeRowsKeepsDuplicatesOut: checkMergeRows on the redshift
// sink.
func TestRedshiftMergeRowsKeepsDuplicatesOut(t *testing.T) {
	for _, merge := range []bool{false, true} {
		t.Run(fmt.Sprintf("merge=%v", merge), func(t *testing.T) {
			srv := newRsServer(t)
			checkMergeRows(t, merge, func(appliance string) mergeSink {
				return rsSink(t, srv, func(o *RedshiftOptions) { o.MergeRows, o.ApplianceID = merge, appliance })
			}, func() string {
				return rsQuery(t, srv, `SELECT count(*), count(DISTINCT EVENT_ID) FROM PUBLIC.OFFLOAD_TRANSACTIONS`)[0]
			}, true)
		})
	}
}

// TestRedshiftMergeRowsConcurrentAppliances: checkConcurrentMergeRows on
// the redshift sink.
func TestRedshiftMergeRowsConcurrentAppliances(t *testing.T) {
	srv := newRsServer(t)
	checkConcurrentMergeRows(t, func(appliance string) mergeSink {
		return rsSink(t, srv, func(o *RedshiftOptions) { o.MergeRows, o.ApplianceID = true, appliance })
	}, func() string {
		return rsQuery(t, srv, `SELECT count(*), count(DISTINCT EVENT_ID) FROM PUBLIC.OFFLOAD_TRANSACTIONS`)[0]
	})
}

// TestRedshiftCopyCredentials: COPY with a role the cluster may not
// assume fails, and the error shows no secret.
func TestRedshiftCopyCredentials(t *testing.T) {
	srv := newRsServer(t)
	e := testOutbox(t, 1, 10)
	sink := rsSink(t, srv, func(o *RedshiftOptions) { o.IAMRole, o.S3SecretAccessKey = "", "wrong-Secret-42" })
	if err := sink.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	x := exportAll(t, e)[0]
	err := sink.Load(context.Background(), x)
	if err == nil || !strings.Contains(err.Error(), "COPY") || strings.Contains(err.Error(), "wrong-Secret-42") {
		t.Fatalf("load with a wrong S3 secret: %v", err)
	}
}

// TestRedshiftCheck: the preflight passes against the test server and
// leaves nothing behind; a bucket that does not exist fails the S3 check
// with what to do.
func TestRedshiftCheck(t *testing.T) {
	srv := newRsServer(t)
	res := rsSink(t, srv, func(*RedshiftOptions) {}).Check(context.Background())
	for _, r := range res {
		if !r.OK {
			t.Errorf("%s: %s (%s)", r.Name, r.Detail, r.Fix)
		}
	}
	if len(res) != 5 {
		t.Errorf("%d checks, want login, schema, the ledger's lock, round trip and S3: %+v", len(res), res)
	}
	if left := rsQuery(t, srv, `SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'OFFLOAD_CHECK%'`); left[0] != "0" {
		t.Fatalf("the check left %s tables", left[0])
	}
	if left, err := srv.Objects(rsBucket); err != nil || len(left) != 0 {
		t.Fatalf("the check left objects: %v (%v)", left, err)
	}
	res = rsSink(t, srv, func(o *RedshiftOptions) { o.S3Bucket = "no-such-bucket" }).Check(context.Background())
	if last := res[len(res)-1]; last.OK || !strings.Contains(last.Detail, "no-such-bucket") || last.Fix == "" {
		t.Fatalf("check with a missing bucket: %+v", last)
	}
}

// TestPgClassify: SQLSTATE classes 42, 22 and 23 park; connection,
// serialization, resource and shutdown errors, network errors and
// Redshift's other internal errors retry; Redshift's COPY load errors
// park.
func TestPgClassify(t *testing.T) {
	r := &Redshift{}
	pg := func(code, msg string) error {
		return fmt.Errorf("INSERT rows: %w", &pgconn.PgError{Code: code, Message: msg})
	}
	for _, c := range []struct {
		err  error
		want Class
	}{
		{pg("42703", "column does not exist"), Permanent},
		{pg("42501", "permission denied"), Permanent},
		{pg("22003", "numeric field overflow"), Permanent},
		{pg("23505", "duplicate key"), Permanent},
		{pg("08006", "connection failure"), Retryable},
		{pg("40001", "serialization failure"), Retryable},
		{pg("40P01", "deadlock detected"), Retryable},
		{pg("53100", "disk full"), Retryable},
		{pg("57P01", "terminating connection due to administrator command"), Retryable},
		{pg("28P01", "password authentication failed"), Retryable},
		{pg("XX000", "S3ServiceException:Access Denied,Status 403"), Retryable},
		{pg("XX000", "Load into table 'offload_stg_x_rows' failed. Check 'stl_load_errors' system table for details."), Permanent},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, Retryable},
	} {
		if got := r.Classify(c.err); got != c.want {
			t.Errorf("%v: class %v, want %v", c.err, got, c.want)
		}
	}
}
