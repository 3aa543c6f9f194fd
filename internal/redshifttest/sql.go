package redshifttest

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Statements Redshift refuses that PostgreSQL and DuckDB take.
var (
	copyStdinRE   = regexp.MustCompile(`(?is)^\s*COPY\s+\S+.*\bFROM\s+STDIN\b`)
	onConflictRE  = regexp.MustCompile(`(?i)\bON\s+CONFLICT\b`)
	arrayRE       = regexp.MustCompile(`(?i)\[\]|\bARRAY\s*\[`)
	mergeTargetRE = regexp.MustCompile(`(?is)^\s*MERGE\s+INTO\s+\S+\s+(\S+)`)
	mergeSubRE    = regexp.MustCompile(`(?is)\bUSING\s*\(`)
	matchedAndRE  = regexp.MustCompile(`(?is)\bWHEN\s+MATCHED\s+AND\b`)
	matchedRE     = regexp.MustCompile(`(?is)\bWHEN\s+MATCHED\s+THEN\b`)
	notMatchedRE  = regexp.MustCompile(`(?is)\bWHEN\s+NOT\s+MATCHED\s+THEN\b`)
)

// refused answers the statements Redshift does not accept as Redshift
// does: feature not supported.
func refused(q string) error {
	no := func(what string) error { return &pgError{"0A000", what + " is not supported by Redshift"} }
	switch {
	case copyStdinRE.MatchString(q):
		return no("COPY FROM STDIN")
	case onConflictRE.MatchString(q):
		return no("INSERT ... ON CONFLICT")
	case arrayRE.MatchString(q):
		return no("an array type")
	}
	if m := mergeTargetRE.FindStringSubmatch(q); m != nil {
		switch {
		case !strings.EqualFold(m[1], "USING"):
			return no("an alias on MERGE's target table")
		case mergeSubRE.MatchString(q):
			return no("a subquery as MERGE's source (use a table)")
		case matchedAndRE.MatchString(q):
			return no("a condition on WHEN MATCHED")
		case len(matchedRE.FindAllString(q, -1)) != 1 || len(notMatchedRE.FindAllString(q, -1)) != 1:
			return no("a MERGE without exactly one WHEN MATCHED and one WHEN NOT MATCHED")
		}
	}
	return nil
}

// Key constraints of CREATE TABLE: a table's (", PRIMARY KEY (a, b)")
// and a column's (" PRIMARY KEY").
var (
	tableKeyRE  = regexp.MustCompile(`(?is),\s*(?:PRIMARY\s+KEY|UNIQUE)\s*\([^)]*\)`)
	columnKeyRE = regexp.MustCompile(`(?i)\s+(?:PRIMARY\s+KEY|UNIQUE)\b`)
)

// unenforced returns CREATE TABLE q without its PRIMARY KEY and UNIQUE
// constraints: Redshift takes them as information for its planner and
// does not enforce them, and DuckDB would.
func unenforced(q string) string {
	return columnKeyRE.ReplaceAllString(tableKeyRE.ReplaceAllString(q, ""), "")
}

var (
	copyS3RE  = regexp.MustCompile(`(?is)^\s*COPY\s+(\S+)\s+FROM\s+'s3://([^/']+)/([^']+)'\s+(.*)$`)
	optRE     = regexp.MustCompile(`(?i)\b(IAM_ROLE|ACCESS_KEY_ID|SECRET_ACCESS_KEY|REGION)\s+'([^']*)'`)
	parquetRE = regexp.MustCompile(`(?i)\bFORMAT\s+(AS\s+)?PARQUET\b`)
)

// copyFromS3 runs COPY table FROM 's3://bucket/key' <credentials> FORMAT
// AS PARQUET [REGION 'r']: the object from the fake S3 into table,
// columns by position.
func (ss *session) copyFromS3(ctx context.Context, q string) (string, error) {
	m := copyS3RE.FindStringSubmatch(q)
	if m == nil {
		return "", &pgError{"42601", "COPY: only COPY table FROM 's3://bucket/key' ... FORMAT AS PARQUET is modelled"}
	}
	table, bucket, key, rest := m[1], m[2], m[3], m[4]
	if !parquetRE.MatchString(rest) {
		return "", &pgError{"0A000", "COPY: only FORMAT AS PARQUET is modelled"}
	}
	opts := map[string]string{}
	for _, o := range optRE.FindAllStringSubmatch(rest, -1) {
		opts[strings.ToUpper(o[1])] = o[2]
	}
	o := ss.srv.opts
	switch {
	case opts["IAM_ROLE"] != "":
		if opts["IAM_ROLE"] != o.IAMRole {
			return "", &pgError{"XX000", "User arn:aws:redshift:test is not authorized to assume IAM Role " + opts["IAM_ROLE"]}
		}
	case opts["ACCESS_KEY_ID"] != "":
		if opts["ACCESS_KEY_ID"] != o.AccessKeyID || opts["SECRET_ACCESS_KEY"] != o.SecretAccessKey {
			return "", &pgError{"XX000", "S3ServiceException:The AWS Access Key Id you provided does not exist in our records.,Status 403"}
		}
	default:
		return "", &pgError{"42601", "COPY from S3 needs IAM_ROLE or ACCESS_KEY_ID and SECRET_ACCESS_KEY"}
	}
	obj, err := ss.srv.s3.GetObject(bucket, key, nil)
	if err != nil {
		return "", &pgError{"XX000", fmt.Sprintf("S3ServiceException:The specified key does not exist (s3://%s/%s): %v", bucket, key, err)}
	}
	defer obj.Contents.Close()
	f, err := os.CreateTemp(ss.srv.tmp, "copy-*.parquet")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	if _, err := io.Copy(f, obj.Contents); err != nil {
		_ = f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	res, err := ss.conn.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s SELECT * FROM read_parquet('%s')", table, filepath.ToSlash(f.Name())))
	if err != nil {
		return "", &pgError{"XX000", "Load into table '" + table + "' failed: " + err.Error()}
	}
	n, _ := res.RowsAffected()
	return fmt.Sprintf("COPY %d", n), nil
}
