package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestBigQueryOptions(t *testing.T) {
	key := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(key, []byte(`{"type":"service_account","private_key":"hunter2"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	set := func(extra map[string]string) map[string]string {
		m := map[string]string{"warehouse.type": "bigquery", "warehouse.bigquery.project": "shop-analytics", "warehouse.bigquery.dataset": "offload"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	t.Run("valid", func(t *testing.T) {
		c, err := Load(writeConfig(t, withValues(t, validYAML, set(map[string]string{
			"warehouse.bigquery.auth": "service_account", "warehouse.bigquery.credentials_file": key}))), nil)
		if err != nil {
			t.Fatal(err)
		}
		if b := c.Warehouse.BigQuery; b.Credentials.Reveal() != `{"type":"service_account","private_key":"hunter2"}` || b.Project != "shop-analytics" {
			t.Fatalf("bigquery options %+v", b)
		}
	})
	t.Run("from the environment", func(t *testing.T) {
		c, err := Load(writeConfig(t, withValues(t, validYAML, map[string]string{"warehouse.type": "bigquery"})), []string{
			"OFFLOAD_WAREHOUSE_BIGQUERY_PROJECT=shop-analytics", "OFFLOAD_WAREHOUSE_BIGQUERY_DATASET=offload",
			"OFFLOAD_WAREHOUSE_BIGQUERY_LOCATION=EU", "OFFLOAD_WAREHOUSE_BIGQUERY_AUTH=service_account",
			`OFFLOAD_WAREHOUSE_BIGQUERY_CREDENTIALS={"type":"service_account"}`,
		})
		if err != nil {
			t.Fatal(err)
		}
		if b := c.Warehouse.BigQuery; b.Location != "EU" || b.Dataset != "offload" || b.Credentials == "" {
			t.Fatalf("bigquery options %+v", b)
		}
	})
	for _, tc := range []struct {
		name    string
		set     map[string]string
		want    string
		allowed string
	}{
		{"no project", map[string]string{"warehouse.bigquery.project": "''"}, "warehouse.bigquery.project", "OFFLOAD_WAREHOUSE_BIGQUERY_PROJECT"},
		{"bad project", map[string]string{"warehouse.bigquery.project": "Shop Analytics"}, "warehouse.bigquery.project", "project id"},
		{"no dataset", map[string]string{"warehouse.bigquery.dataset": "''"}, "warehouse.bigquery.dataset", "required"},
		{"bad dataset", map[string]string{"warehouse.bigquery.dataset": "off-load"}, "warehouse.bigquery.dataset", "letters, digits and _"},
		{"bad table", map[string]string{"warehouse.tables.ledger": "LEDGER$1"}, "warehouse.tables.ledger", "BigQuery table name"},
		{"bad auth", map[string]string{"warehouse.bigquery.auth": "kerberos"}, "warehouse.bigquery.auth", "adc, service_account, none"},
		{"key without service_account", map[string]string{"warehouse.bigquery.credentials_file": key}, "warehouse.bigquery.auth", "service_account"},
		{"service_account without key", map[string]string{"warehouse.bigquery.auth": "service_account"}, "warehouse.bigquery.credentials_file", "OFFLOAD_WAREHOUSE_BIGQUERY_CREDENTIALS"},
		{"missing key file", map[string]string{"warehouse.bigquery.auth": "service_account", "warehouse.bigquery.credentials_file": "/nonexistent/key.json"}, "warehouse.bigquery.credentials_file", "/nonexistent/key.json"},
		{"inline key", map[string]string{"warehouse.bigquery.credentials": "hunter2"}, "warehouse.bigquery.credentials", "secrets are not read"},
		{"none without endpoint", map[string]string{"warehouse.bigquery.auth": "none"}, "warehouse.bigquery.auth", "warehouse.bigquery.endpoint"},
		{"bad endpoint", map[string]string{"warehouse.bigquery.auth": "none", "warehouse.bigquery.endpoint": "127.0.0.1:9050"}, "warehouse.bigquery.endpoint", "http(s) URL"},
	} {
		t.Run(tc.name, func(t *testing.T) { refused(t, set(tc.set), nil, tc.want, tc.allowed) })
	}
}
