package config

import (
	"net/url"
	"regexp"
)

// BigQuery configures the BigQuery sink (warehouse.type bigquery): the
// options under warehouse.bigquery, OFFLOAD_WAREHOUSE_BIGQUERY_* in the
// environment. The table names are warehouse.tables'; docs/CONFIG.md
// describes each option.
type BigQuery struct {
	// Project is the Google Cloud project the jobs run in and the
	// dataset belongs to.
	Project string `yaml:"project"`
	// Dataset holds the tables; it is created when missing.
	Dataset string `yaml:"dataset"`
	// Location is where the dataset and the jobs live ["US"].
	Location string `yaml:"location"`
	// Auth is adc (Application Default Credentials) [default],
	// service_account (a key from CredentialsFile or
	// OFFLOAD_WAREHOUSE_BIGQUERY_CREDENTIALS) or none (no credentials:
	// only with Endpoint, for the emulator).
	Auth            string `yaml:"auth"`
	CredentialsFile string `yaml:"credentials_file"`
	Credentials     Secret `yaml:"credentials"`
	// Endpoint overrides https://bigquery.googleapis.com/ (the emulator's
	// address, a private endpoint).
	Endpoint string `yaml:"endpoint"`
}

// BigQuery authentication methods.
const (
	BigQueryAuthADC            = "adc"
	BigQueryAuthServiceAccount = "service_account"
	BigQueryAuthNone           = "none"
)

var (
	// A project id: 6 to 30 lower-case letters, digits and hyphens
	// (a domain-scoped project is prefixed by "domain:").
	bqProjectRE = regexp.MustCompile(`^([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	// Dataset and table names: letters, digits and underscores.
	bqNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,1000}$`)
)

// validate checks the BigQuery options and the table names it shares
// with the other warehouses; bad collects one line per problem.
func (b *BigQuery) validate(tables WarehouseTables, bad func(string, ...any)) {
	if b.Project == "" {
		bad("warehouse.bigquery.project: required with warehouse.type bigquery (or set OFFLOAD_WAREHOUSE_BIGQUERY_PROJECT)")
	} else if !bqProjectRE.MatchString(b.Project) {
		bad("warehouse.bigquery.project: %q is not a project id (6 to 30 lower-case letters, digits and hyphens)", b.Project)
	}
	if b.Dataset == "" {
		bad("warehouse.bigquery.dataset: required with warehouse.type bigquery (or set OFFLOAD_WAREHOUSE_BIGQUERY_DATASET)")
	} else if !bqNameRE.MatchString(b.Dataset) {
		bad("warehouse.bigquery.dataset: %q is not a dataset name (letters, digits and _)", b.Dataset)
	}
	for opt, v := range map[string]string{"warehouse.tables.transactions": tables.Transactions,
		"warehouse.tables.windows": tables.Windows, "warehouse.tables.ledger": tables.Ledger} {
		if !bqNameRE.MatchString(v) {
			bad("%s: %q is not a BigQuery table name (letters, digits and _, not starting with a digit)", opt, v)
		}
	}
	if b.Endpoint != "" {
		if u, err := url.Parse(b.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("warehouse.bigquery.endpoint: %q is not an http(s) URL (e.g. http://127.0.0.1:9050)", b.Endpoint)
		}
	}
	switch b.Auth {
	case "", BigQueryAuthADC:
		if b.CredentialsFile != "" || b.Credentials != "" {
			bad("warehouse.bigquery.auth: credentials are given but auth is adc; set auth: service_account to use them")
		}
	case BigQueryAuthServiceAccount:
		if b.Credentials == "" {
			bad("warehouse.bigquery.credentials_file: auth service_account needs the key's JSON file (or OFFLOAD_WAREHOUSE_BIGQUERY_CREDENTIALS)")
		}
	case BigQueryAuthNone:
		if b.Endpoint == "" {
			bad("warehouse.bigquery.auth: none is only for an emulator; set warehouse.bigquery.endpoint too")
		}
	default:
		bad("warehouse.bigquery.auth: %q is not allowed; use one of adc, service_account, none", b.Auth)
	}
}
