package loader

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/offload/offload/engine"
	"github.com/offload/offload/engine/event"
)

// RedshiftOptions configures the Redshift sink.
type RedshiftOptions struct {
	Host     string
	Port     int // [5439]
	User     string
	Password string
	Database string
	// Schema holds the tables; it must exist.
	Schema      string
	SSLMode     string // as PostgresOptions.SSLMode [verify-full]
	SSLRootCert string

	TransactionsTable string
	WindowsTable      string
	LedgerTable       string

	// IAMRole is the role COPY assumes to read the staged files; without
	// it COPY signs with S3AccessKeyID and S3SecretAccessKey.
	IAMRole string
	// S3Bucket, S3Prefix and S3Region say where batches are staged;
	// S3Endpoint and S3PathStyle override the endpoint and its addressing.
	S3Bucket, S3Prefix, S3Region string
	S3Endpoint                   string
	S3PathStyle                  bool
	// S3AccessKeyID and S3SecretAccessKey sign the uploads; without them
	// the AWS default chain does.
	S3AccessKeyID, S3SecretAccessKey string

	ApplianceID string
	// MergeRows inserts only the rows whose EVENT_ID the table does not
	// hold yet (dedupe.warehouse: merge).
	MergeRows bool
	// ExtraColumns are the typed columns the topics promote, sorted by
	// name; Prepare adds the ones the transactions table lacks.
	ExtraColumns   []ExtraColumn
	ConnectTimeout time.Duration
	Logger         *slog.Logger
}

// Redshift is the Redshift sink: the batch's Parquet files are uploaded to
// S3, COPY'd into temporary staging tables on one session, then one
// transaction inserts the rows, merges the windows and writes the ledger
// row, in the SQL shared with the postgres sink (docs/LOADER.md).
type Redshift struct {
	pgSQL
	s3   *s3.Client
	opts RedshiftOptions
}

var s3BucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// NewRedshift validates the options and returns the sink. It does not
// connect: the first Prepare does.
func NewRedshift(o RedshiftOptions) (*Redshift, error) {
	cfg, tables, err := pgConfig("redshift", pgConnOptions{
		Host: o.Host, Port: o.Port, User: o.User, Password: o.Password, Database: o.Database, Schema: o.Schema,
		SSLMode: o.SSLMode, SSLRootCert: o.SSLRootCert, DefaultPort: 5439, ConnectTimeout: o.ConnectTimeout,
		Tables: pgTables{o.TransactionsTable, o.WindowsTable, o.LedgerTable},
	})
	var errs []string
	if err != nil {
		errs = append(errs, err.Error())
	}
	if !s3BucketRE.MatchString(o.S3Bucket) {
		errs = append(errs, fmt.Sprintf("warehouse.redshift.s3.bucket: %q is not an S3 bucket name", o.S3Bucket))
	}
	if o.S3Region == "" {
		errs = append(errs, "warehouse.redshift.s3.region is required")
	}
	if strings.ContainsAny(o.S3Prefix+o.IAMRole+o.S3AccessKeyID+o.S3SecretAccessKey+o.S3Region, `'\`) {
		errs = append(errs, "warehouse.redshift: the S3 prefix, region, IAM role and keys must not hold quotes or backslashes")
	}
	if o.IAMRole == "" && (o.S3AccessKeyID == "" || o.S3SecretAccessKey == "") {
		errs = append(errs, "warehouse.redshift.iam_role: COPY needs the role to read S3 with, or the S3 access key and its secret")
	}
	errs = append(errs, checkExtraColumns(o.ExtraColumns)...)
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "\n"))
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	loads := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(o.S3Region)}
	if o.S3AccessKeyID != "" {
		loads = append(loads, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(o.S3AccessKeyID, o.S3SecretAccessKey, "")))
	}
	ac, err := awsconfig.LoadDefaultConfig(context.Background(), loads...)
	if err != nil {
		return nil, fmt.Errorf("warehouse.redshift.s3: cannot configure the S3 client: %w", err)
	}
	client := s3.NewFromConfig(ac, func(so *s3.Options) {
		if o.S3Endpoint != "" {
			so.BaseEndpoint = aws.String(o.S3Endpoint)
		}
		so.UsePathStyle = o.S3PathStyle
		// Checksums only where S3 requires them: S3-compatible stores
		// do not all take the SDK's default trailing checksums.
		so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	// Redshift's VARCHAR without a length is VARCHAR(256): ITEMS and the
	// like need room.
	r := &Redshift{pgSQL: newPgSQL(cfg, "redshift", "VARCHAR(65535)", o.Schema, tables, o.ApplianceID, o.MergeRows, o.Logger),
		s3: client, opts: o}
	// ATTRIBUTES is the JSON text in VARCHAR(65535), not SUPER: COPY
	// fills the staging table by position from Parquet text, and
	// JSON_PARSE(ATTRIBUTES) reads it as SUPER where needed
	// (docs/LOADER.md). ALTER TABLE has no ADD COLUMN IF NOT EXISTS.
	// The table's types go through pgSQL.columns, which gives VARCHAR its
	// length; a CAST names it.
	casts := maps.Clone(pgExtraTypes)
	casts[event.ExtraString] = "VARCHAR(65535)"
	r.rows = rowSQL{extras: o.ExtraColumns, types: pgExtraTypes, casts: casts, attributes: "VARCHAR",
		parse:   func(e string) string { return e },
		extract: func(e, name string) string { return "JSON_EXTRACT_PATH_TEXT(" + e + ", '" + name + "')" }}
	r.addColumn = "ALTER TABLE %s ADD COLUMN %s %s"
	// Redshift has one lock mode; LOCK as the transaction's first
	// statement also keeps serializable isolation from aborting it.
	r.lockLedger = "LOCK " + r.tables.Ledger
	return r, nil
}

// Load loads x: PUT the files to S3, COPY them into temporary staging
// tables on one session, then the one transaction.
func (r *Redshift) Load(ctx context.Context, x engine.Export) error {
	var keys []string
	defer func() { r.cleanup(x.ID, keys) }()
	return r.load(ctx, x, func(ctx context.Context, conn *sql.Conn, s staged, file string) error {
		key := r.opts.S3Prefix + x.ID + "/" + filepath.Base(file)
		keys = append(keys, key)
		if err := r.put(ctx, key, file); err != nil {
			return err
		}
		if _, err := conn.ExecContext(ctx, r.copyFrom(s.table, key)); err != nil {
			return fmt.Errorf("COPY %s FROM s3://%s/%s: %w", s.table, r.opts.S3Bucket, key, err)
		}
		return nil
	})
}

// put uploads a file to the bucket.
func (r *Redshift) put(ctx context.Context, key, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot open %s: %w", path, err)
	}
	defer f.Close()
	if _, err := r.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(r.opts.S3Bucket), Key: aws.String(key), Body: f}); err != nil {
		return fmt.Errorf("cannot upload %s to s3://%s/%s: %w", filepath.Base(path), r.opts.S3Bucket, key, err)
	}
	return nil
}

// copyFrom is the COPY of one staged object; it may hold the S3 secret
// key, so it never goes into an error or a log.
func (r *Redshift) copyFrom(table, key string) string {
	auth := "IAM_ROLE '" + r.opts.IAMRole + "'"
	if r.opts.IAMRole == "" {
		auth = "ACCESS_KEY_ID '" + r.opts.S3AccessKeyID + "' SECRET_ACCESS_KEY '" + r.opts.S3SecretAccessKey + "'"
	}
	return fmt.Sprintf("COPY %s FROM 's3://%s/%s' %s FORMAT AS PARQUET REGION '%s'", table, r.opts.S3Bucket, key, auth, r.opts.S3Region)
}

// cleanup deletes the staged objects, on success or failure; what it
// cannot delete is logged and harmless (the next attempt overwrites it).
func (r *Redshift) cleanup(id string, keys []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, k := range keys {
		if _, err := r.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(r.opts.S3Bucket), Key: aws.String(k)}); err != nil {
			r.log.Debug("loader: cannot delete a staged object (harmless; the next attempt replaces it)", "batch", id, "key", k, "err", err)
		}
	}
}

// Check is the preflight of the PostgreSQL-protocol sinks, plus a round
// trip through the bucket: a scratch object put and deleted under the
// prefix, as loads do.
func (r *Redshift) Check(ctx context.Context) []CheckResult {
	out := r.pgSQL.Check(ctx)
	key := r.opts.S3Prefix + "offload-check-" + randomHex(6)
	res := CheckResult{Name: "redshift: s3://" + r.opts.S3Bucket + "/" + r.opts.S3Prefix + " put and delete", OK: true}
	_, err := r.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(r.opts.S3Bucket), Key: aws.String(key), Body: strings.NewReader("offload check\n")})
	if err == nil {
		_, err = r.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(r.opts.S3Bucket), Key: aws.String(key)})
	}
	if err != nil {
		res.OK, res.Detail = false, fmt.Sprintf("s3://%s/%s: %v", r.opts.S3Bucket, key, err)
		res.Fix = "check warehouse.redshift.s3 (bucket, region, endpoint) and that the access key or the AWS default chain may s3:PutObject and s3:DeleteObject there"
	}
	return append(out, res)
}

// Classify is the PostgreSQL-protocol sinks' classification, plus
// Redshift's COPY load errors: Redshift answers a file its staging table
// cannot take with SQLSTATE XX000 and "Load into table ... failed"; that
// is the batch's fault, so it parks, while its other XX000 errors (S3
// access, serializable isolation) stay retryable.
func (r *Redshift) Classify(err error) Class {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "XX000" && strings.HasPrefix(pe.Message, "Load into table") {
		return Permanent
	}
	return r.pgSQL.Classify(err)
}
