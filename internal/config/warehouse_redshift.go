package config

import (
	"fmt"
	"regexp"
	"strings"
)

// RedshiftWarehouse holds the options of warehouse.type redshift; the
// cluster's endpoint, user, password, database, schema and tables are the
// warehouse's common options.
type RedshiftWarehouse struct {
	// SSLMode and SSLRootCert are as for postgres.
	SSLMode     string `yaml:"sslmode"`
	SSLRootCert string `yaml:"sslrootcert"`
	// IAMRole is the ARN of the role COPY assumes to read S3; without it
	// COPY uses the S3 access key below.
	IAMRole string     `yaml:"iam_role"`
	S3      RedshiftS3 `yaml:"s3"`
}

// RedshiftS3 is where batches are staged for COPY.
type RedshiftS3 struct {
	Bucket string `yaml:"bucket"`
	// Prefix is put before each batch's objects.
	Prefix string `yaml:"prefix"`
	Region string `yaml:"region"`
	// Endpoint overrides the S3 endpoint (an S3-compatible store, a VPC
	// endpoint, a local test server); PathStyle addresses buckets by path.
	Endpoint  string `yaml:"endpoint"`
	PathStyle bool   `yaml:"path_style"`
	// AccessKeyID and the secret key (from a file or
	// OFFLOAD_WAREHOUSE_REDSHIFT_S3_SECRET_ACCESS_KEY) sign the uploads;
	// without them the AWS default chain does (environment, shared
	// files, instance role).
	AccessKeyID         string `yaml:"access_key_id"`
	SecretAccessKeyFile string `yaml:"secret_access_key_file"`
	SecretAccessKey     Secret `yaml:"secret_access_key"`
}

var (
	s3BucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	iamRoleRE  = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$`)
)

func (w *Warehouse) validateRedshift() []string {
	r := &w.Redshift
	errs := w.validatePgConn("redshift", "warehouse.redshift.", r.SSLMode, r.SSLRootCert)
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if !s3BucketRE.MatchString(r.S3.Bucket) {
		bad("warehouse.redshift.s3.bucket: %q is not an S3 bucket name (3-63 of a-z 0-9 . -)", r.S3.Bucket)
	}
	if r.S3.Region == "" {
		bad("warehouse.redshift.s3.region: required with warehouse.type redshift (the bucket's region)")
	}
	if strings.ContainsAny(r.S3.Prefix, "'\\") {
		bad("warehouse.redshift.s3.prefix: %q must not hold quotes or backslashes", r.S3.Prefix)
	}
	if (r.S3.AccessKeyID == "") != (r.S3.SecretAccessKey == "") {
		bad("warehouse.redshift.s3.access_key_id, warehouse.redshift.s3.secret_access_key_file: set both (the secret may come from OFFLOAD_WAREHOUSE_REDSHIFT_S3_SECRET_ACCESS_KEY) or neither")
	}
	switch {
	case r.IAMRole != "" && !iamRoleRE.MatchString(r.IAMRole):
		bad("warehouse.redshift.iam_role: %q is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)", r.IAMRole)
	case r.IAMRole == "" && r.S3.AccessKeyID == "":
		bad("warehouse.redshift.iam_role: COPY needs the role to read S3 with, or the S3 access key (warehouse.redshift.s3.access_key_id and its secret)")
	}
	return errs
}
