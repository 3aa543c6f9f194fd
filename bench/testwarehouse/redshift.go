package testwarehouse

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"time"

	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/internal/redshifttest"
)

// redshiftBucket is the fake S3 bucket batches are staged in.
const redshiftBucket = "offload-stage"

// redshift is the Redshift-dialect test server with its fake S3.
type redshift struct {
	*redshifttest.Server
	sqlTables
	path string
}

// newRedshift starts the server with its DuckDB file in dir, a user
// offload with a password of its own, and the stage's bucket.
func newRedshift(dir string) (*redshift, error) {
	path := filepath.Join(dir, "warehouse.duckdb")
	srv, err := redshifttest.New(redshifttest.Options{Path: path, User: "offload", Password: rand.Text()})
	if err != nil {
		return nil, err
	}
	if err := srv.CreateBucket(redshiftBucket); err != nil {
		_ = srv.Close()
		return nil, err
	}
	if _, err := srv.DB().Exec("CREATE SCHEMA IF NOT EXISTS PUBLIC"); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("cannot create schema PUBLIC: %w", err)
	}
	return &redshift{Server: srv, sqlTables: sqlTables{srv.DB()}, path: path}, nil
}

func (w *redshift) File() string { return w.path }

func (w *redshift) Configure(c *config.Warehouse) {
	host, port := w.Addr()
	user, pw := w.User()
	*c = config.Warehouse{Type: "redshift", Host: host, Port: port, User: user, Password: config.Secret(pw), Auth: "password",
		Database: "dev", Schema: "PUBLIC", Tables: defaultTables(),
		LoginTimeout: config.Duration(2 * time.Second), RequestTimeout: config.Duration(5 * time.Second),
		Redshift: config.RedshiftWarehouse{SSLMode: "disable", IAMRole: w.IAMRole(), S3: config.RedshiftS3{
			Bucket: redshiftBucket, Prefix: "offload/", Region: "us-east-1", Endpoint: w.S3Endpoint(), PathStyle: true}}}
	c.Redshift.S3.AccessKeyID, c.Redshift.S3.SecretAccessKey = w.s3Key()
}

func (w *redshift) s3Key() (string, config.Secret) {
	id, secret := w.S3Key()
	return id, config.Secret(secret)
}

func (w *redshift) YAML() string {
	host, port := w.Addr()
	user, _ := w.User()
	id, _ := w.s3Key()
	return fmt.Sprintf(`warehouse:
  type: redshift
  host: %s
  port: %d
  user: %s
  database: dev
  schema: PUBLIC
  login_timeout: 2s
  redshift:
    sslmode: disable
    iam_role: %s
    s3:
      bucket: %s
      prefix: offload/
      region: us-east-1
      endpoint: %s
      path_style: true
      access_key_id: %s
`, host, port, user, w.IAMRole(), redshiftBucket, w.S3Endpoint(), id)
}

func (w *redshift) Env() []string {
	_, pw := w.User()
	_, secret := w.S3Key()
	return []string{"OFFLOAD_WAREHOUSE_PASSWORD=" + pw, "OFFLOAD_WAREHOUSE_REDSHIFT_S3_SECRET_ACCESS_KEY=" + secret}
}
