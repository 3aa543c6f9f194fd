package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/offload/offload/engine/event"
)

const validYAML = `
appliance_id: edge-01
data_dir: /tmp/offload-test
disk_budget: 2GiB
kafka:
  brokers: [127.0.0.1:9092]
  topics: [orders]
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "offload.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadValid(t *testing.T) {
	c, err := Load(writeConfig(t, validYAML), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.ApplianceID != "edge-01" || c.DiskBudget != 2<<30 || c.Kafka.Group != "offload" ||
		c.Kafka.ClientID != "offload-edge-01" || c.ShutdownGrace.D() != 30*time.Second {
		t.Fatalf("unexpected config: %+v", c)
	}
}

func TestEnvOverrides(t *testing.T) {
	env := []string{
		"OFFLOAD_KAFKA_BROKERS=a:1, b:2",
		"OFFLOAD_DISK_BUDGET=512MiB",
		"OFFLOAD_SHUTDOWN_GRACE=5s",
		"OFFLOAD_KAFKA_TLS_INSECURE_SKIP_VERIFY=true",
		"OFFLOAD_LOG_LEVEL=debug",
		"UNRELATED=1",
	}
	c, err := Load(writeConfig(t, validYAML), env)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(c.Kafka.Brokers) != "[a:1 b:2]" || c.DiskBudget != 512<<20 || c.ShutdownGrace.D() != 5*time.Second ||
		!c.Kafka.TLS.InsecureSkipVerify || c.Log.Level != "debug" {
		t.Fatalf("overrides not applied: %+v", c)
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("hunter2-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	body := validYAML + "  sasl:\n    mechanism: scram-sha-512\n    username: u\n    password_file: " + pw + "\n"
	c, err := Load(writeConfig(t, body), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka.SASL.Password.Reveal() != "hunter2-file" {
		t.Fatalf("password file not read: got %d bytes", len(c.Kafka.SASL.Password.Reveal()))
	}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%v", *c)} {
		if strings.Contains(s, "hunter2") {
			t.Fatalf("secret printed: %s", s)
		}
	}
	c, err = Load(writeConfig(t, validYAML+"  sasl:\n    mechanism: plain\n    username: u\n"), []string{"OFFLOAD_KAFKA_SASL_PASSWORD=hunter2-env"})
	if err != nil || c.Kafka.SASL.Password.Reveal() != "hunter2-env" {
		t.Fatalf("password from env not applied: %v", err)
	}
}

// TestBadConfigs checks that every bad configuration is rejected with a
// message naming the option at fault.
func TestBadConfigs(t *testing.T) {
	cases := []struct {
		name    string
		set     map[string]string // YAML path -> YAML value replacing or adding to validYAML
		env     []string
		want    string // the option named in the error
		allowed string // text that must also appear (allowed values, hint)
	}{
		{"unknown option", map[string]string{"colour": "blue"}, nil, "colour", "not found"},
		{"bad appliance id", map[string]string{"appliance_id": "'has space'"}, nil, "appliance_id", "A-Z"},
		{"empty data dir", map[string]string{"data_dir": "''"}, nil, "data_dir", "must be set"},
		{"bad budget unit", map[string]string{"disk_budget": "lots"}, nil, "disk_budget", "byte size"},
		{"tiny budget", map[string]string{"disk_budget": "1MiB"}, nil, "disk_budget", "4MiB"},
		{"bad grace", map[string]string{"shutdown_grace": "soon"}, nil, "shutdown_grace", "duration"},
		{"bad log level", map[string]string{"log.level": "loud"}, nil, "log.level", "debug, info, warn, error"},
		{"bad log format", map[string]string{"log.format": "xml"}, nil, "log.format", "text, json"},
		{"no brokers", map[string]string{"kafka.brokers": "[]"}, nil, "kafka.brokers", "host:port"},
		{"broker without port", map[string]string{"kafka.brokers": "[localhost]"}, nil, "kafka.brokers", "host:port"},
		{"no topics", map[string]string{"kafka.topics": "[]"}, nil, "kafka.topics", "at least one"},
		{"bad topic", map[string]string{"kafka.topics": "['or ders']"}, nil, "kafka.topics", "valid Kafka topic"},
		{"topics not a list", map[string]string{"kafka.topics": "{a: 1}"}, nil, "kafka.topics", "cannot unmarshal"},
		{"session timeout too short", map[string]string{"kafka.session_timeout": "1s"}, nil, "kafka.session_timeout", "6s to 30m"},
		{"empty group", map[string]string{"kafka.group": "''"}, nil, "kafka.group", "consumer group"},
		{"bad delivery", map[string]string{"kafka.delivery": "maybe"}, nil, "kafka.delivery", "custody, end-to-end"},
		{"end-to-end without warehouse", map[string]string{"kafka.delivery": "end-to-end", "dedupe.warehouse": "merge"}, nil, "kafka.delivery", "needs a warehouse"},
		{"end-to-end without merge", map[string]string{"kafka.delivery": "end-to-end", "warehouse.type": "snowflake", "warehouse.account": "a", "warehouse.user": "u", "warehouse.database": "d", "warehouse.schema": "s"}, []string{"OFFLOAD_WAREHOUSE_PASSWORD=pw"}, "kafka.delivery", "dedupe.warehouse: merge"},
		{"fetch too small", map[string]string{"kafka.fetch_max_bytes": "1KiB"}, nil, "kafka.fetch_max_bytes", "1MiB to 1GiB"},
		{"bad mechanism", map[string]string{"kafka.sasl.mechanism": "kerberos"}, nil, "kafka.sasl.mechanism", "none, plain, scram-sha-256, scram-sha-512"},
		{"sasl without user", map[string]string{"kafka.sasl.mechanism": "plain"}, []string{"OFFLOAD_KAFKA_SASL_PASSWORD=x"}, "kafka.sasl.username", "required"},
		{"sasl without password", map[string]string{"kafka.sasl.mechanism": "plain", "kafka.sasl.username": "u"}, nil, "kafka.sasl.password_file", "OFFLOAD_KAFKA_SASL_PASSWORD"},
		{"inline password", map[string]string{"kafka.sasl.password": "hunter2"}, nil, "kafka.sasl.password", "secrets are not read from the configuration file"},
		{"missing password file", map[string]string{"kafka.sasl.mechanism": "plain", "kafka.sasl.username": "u", "kafka.sasl.password_file": "/nonexistent/pw"}, nil, "kafka.sasl.password_file", "/nonexistent/pw"},
		{"tls files without tls", map[string]string{"kafka.tls.ca_file": "/etc/hosts"}, nil, "kafka.tls.enabled", "true"},
		{"missing ca file", map[string]string{"kafka.tls.enabled": "true", "kafka.tls.ca_file": "/nonexistent/ca.pem"}, nil, "kafka.tls.ca_file", "/nonexistent/ca.pem"},
		{"cert without key", map[string]string{"kafka.tls.enabled": "true", "kafka.tls.cert_file": "/etc/hosts"}, nil, "kafka.tls.key_file", "both"},
		{"memtable too big", map[string]string{"wal.memtable_size": "2GiB"}, nil, "wal.memtable_size", "4MiB to 1GiB"},
		{"window not dividing a day", map[string]string{"engine.window": "7m"}, nil, "engine.window", "divide a day"},
		{"bad base currency", map[string]string{"engine.base_currency": "euro"}, nil, "engine.base_currency", "ISO-4217"},
		{"missing rates file", map[string]string{"engine.rates_file": "/nonexistent/rates.csv"}, nil, "engine.rates_file", "/nonexistent/rates.csv"},
		{"tiny engine memory", map[string]string{"engine.memory_limit": "1MiB"}, nil, "engine.memory_limit", "64MiB"},
		{"tiny dedupe memory", map[string]string{"engine.dedupe_memory": "64KiB"}, nil, "engine.dedupe_memory", "1MiB"},
		{"dedupe max keys", map[string]string{"engine.dedupe_max_keys": "5000000"}, nil, "engine.dedupe_max_keys", "engine.dedupe_memory"},
		{"zero batch records", map[string]string{"engine.batch_records": "0"}, nil, "engine.batch_records", "1 to 10000000"},
		{"inline hash key", map[string]string{"engine.hash_key": "hunter2hunter2hunter2"}, nil, "engine.hash_key", "secrets are not read"},
		{"short hash key", nil, []string{"OFFLOAD_ENGINE_HASH_KEY=hunter2"}, "engine.hash_key_file", "at least 16 bytes"},
		{"tiny seal bytes", map[string]string{"outbox.seal_bytes": "1KiB"}, nil, "outbox.seal_bytes", "1MiB"},
		{"topic not consumed", map[string]string{"topics.other": "{format: json}"}, nil, "topics.other", "not in kafka.topics"},
		{"unknown canonical field", map[string]string{"topics.orders": "{fields: {colour: c}}"}, nil, "topics.orders.fields", "colour"},
		{"bad topic format", map[string]string{"topics.orders": "{format: xml}"}, nil, "topics.orders.format", "json"},
		{"bad extra column type", map[string]string{"topics.orders": "{extra_columns: {coupon_code: {source: coupon, type: text}}}"}, nil,
			"topics.orders.extra_columns.coupon_code.type", "string, int, decimal, timestamp, bool"},
		{"extra column named like a canonical one", map[string]string{"topics.orders": "{extra_columns: {amount: {source: total, type: decimal}}}"}, nil,
			"topics.orders.extra_columns.amount", "a column of every row"},
		{"bad extra column name", map[string]string{"topics.orders": "{extra_columns: {Coupon-Code: {source: coupon, type: string}}}"}, nil,
			"topics.orders.extra_columns.Coupon-Code", "lower-case letter"},
		{"extra column of a mapped source", map[string]string{"topics.orders": "{extra_columns: {ref: {source: event_id, type: string}}}"}, nil,
			"topics.orders.extra_columns.ref.source", "source of event_id"},
		{"extra column of a csv topic", map[string]string{"topics.orders": "{format: csv, columns: [event_id, coupon], required: [event_id], extra_columns: {c: {source: coupon, type: string}}}"}, nil,
			"topics.orders.extra_columns", "json topics only"},
		{"extra column typed twice", map[string]string{"kafka.topics": "[orders, refunds]",
			"topics.orders": "{extra_columns: {c: {source: a, type: string}}}", "topics.refunds": "{extra_columns: {c: {source: b, type: int}}}"}, nil,
			"topics.refunds.extra_columns.c.type", "topics.orders.extra_columns.c"},
		{"bad admin listen", map[string]string{"admin.listen": "nowhere"}, nil, "admin.listen", "host:port"},
		{"bad warehouse type", map[string]string{"warehouse.type": "oracle"}, nil, "warehouse.type", "snowflake, postgres, redshift, bigquery"},
		{"snowflake without account", map[string]string{"warehouse.type": "snowflake", "warehouse.user": "u", "warehouse.database": "d", "warehouse.schema": "s"}, []string{"OFFLOAD_WAREHOUSE_PASSWORD=pw"}, "warehouse.account", "required"},
		{"snowflake without password", map[string]string{"warehouse.type": "snowflake", "warehouse.account": "a", "warehouse.user": "u", "warehouse.database": "d", "warehouse.schema": "s"}, nil, "warehouse.password_file", "OFFLOAD_WAREHOUSE_PASSWORD"},
		{"inline warehouse password", map[string]string{"warehouse.password": "hunter2"}, nil, "warehouse.password", "secrets are not read"},
		{"bad warehouse auth", map[string]string{"warehouse.type": "snowflake", "warehouse.account": "a", "warehouse.user": "u", "warehouse.database": "d", "warehouse.schema": "s", "warehouse.auth": "kerberos"}, nil, "warehouse.auth", "password, keypair, oauth"},
		{"missing private key", map[string]string{"warehouse.type": "snowflake", "warehouse.account": "a", "warehouse.user": "u", "warehouse.database": "d", "warehouse.schema": "s", "warehouse.auth": "keypair", "warehouse.private_key_file": "/nonexistent/key.p8"}, nil, "warehouse.private_key_file", "/nonexistent/key.p8"},
		{"oauth without token", map[string]string{"warehouse.type": "snowflake", "warehouse.account": "a", "warehouse.user": "u", "warehouse.database": "d", "warehouse.schema": "s", "warehouse.auth": "oauth"}, nil, "warehouse.oauth_token_file", "OFFLOAD_WAREHOUSE_OAUTH_TOKEN"},
		{"bad table name", map[string]string{"warehouse.type": "snowflake", "warehouse.account": "a", "warehouse.user": "u", "warehouse.database": "d", "warehouse.schema": "s", "warehouse.tables.ledger": "'x; DROP'"}, []string{"OFFLOAD_WAREHOUSE_PASSWORD=pw"}, "warehouse.tables.ledger", "plain identifier"},
		{"postgres without host", map[string]string{"warehouse.type": "postgres", "warehouse.user": "u", "warehouse.database": "d", "warehouse.schema": "s"}, []string{"OFFLOAD_WAREHOUSE_PASSWORD=pw"}, "warehouse.host", "required with warehouse.type postgres"},
		{"postgres without password", map[string]string{"warehouse.type": "postgres", "warehouse.host": "h", "warehouse.user": "u", "warehouse.database": "d", "warehouse.schema": "s"}, nil, "warehouse.password_file", "OFFLOAD_WAREHOUSE_PASSWORD"},
		{"postgres bad sslmode", map[string]string{"warehouse.type": "postgres", "warehouse.host": "h", "warehouse.user": "u", "warehouse.database": "d", "warehouse.schema": "s", "warehouse.postgres.sslmode": "sometimes"}, []string{"OFFLOAD_WAREHOUSE_PASSWORD=pw"}, "warehouse.postgres.sslmode", "verify-full"},
		{"postgres keypair", map[string]string{"warehouse.type": "postgres", "warehouse.host": "h", "warehouse.user": "u", "warehouse.database": "d", "warehouse.schema": "s", "warehouse.auth": "keypair"}, []string{"OFFLOAD_WAREHOUSE_PASSWORD=pw"}, "warehouse.auth", "use password"},
		{"postgres bad schema", map[string]string{"warehouse.type": "postgres", "warehouse.host": "h", "warehouse.user": "u", "warehouse.database": "d", "warehouse.schema": "'a b'"}, []string{"OFFLOAD_WAREHOUSE_PASSWORD=pw"}, "warehouse.schema", "plain identifier"},
		{"redshift without bucket", map[string]string{"warehouse.type": "redshift", "warehouse.host": "h", "warehouse.user": "u", "warehouse.database": "d", "warehouse.schema": "s", "warehouse.redshift.s3.region": "eu-west-1", "warehouse.redshift.iam_role": "arn:aws:iam::123456789012:role/offload"}, []string{"OFFLOAD_WAREHOUSE_PASSWORD=pw"}, "warehouse.redshift.s3.bucket", "bucket name"},
		{"redshift without region", map[string]string{"warehouse.type": "redshift", "warehouse.host": "h", "warehouse.user": "u", "warehouse.database": "d", "warehouse.schema": "s", "warehouse.redshift.s3.bucket": "b-1", "warehouse.redshift.iam_role": "arn:aws:iam::123456789012:role/offload"}, []string{"OFFLOAD_WAREHOUSE_PASSWORD=pw"}, "warehouse.redshift.s3.region", "required"},
		{"redshift without copy credentials", map[string]string{"warehouse.type": "redshift", "warehouse.host": "h", "warehouse.user": "u", "warehouse.database": "d", "warehouse.schema": "s", "warehouse.redshift.s3.bucket": "b-1", "warehouse.redshift.s3.region": "eu-west-1"}, []string{"OFFLOAD_WAREHOUSE_PASSWORD=pw"}, "warehouse.redshift.iam_role", "COPY needs"},
		{"redshift key without secret", map[string]string{"warehouse.type": "redshift", "warehouse.host": "h", "warehouse.user": "u", "warehouse.database": "d", "warehouse.schema": "s", "warehouse.redshift.s3.bucket": "b-1", "warehouse.redshift.s3.region": "eu-west-1", "warehouse.redshift.s3.access_key_id": "AKIA"}, []string{"OFFLOAD_WAREHOUSE_PASSWORD=pw"}, "warehouse.redshift.s3.access_key_id", "set both"},
		{"redshift bad role", map[string]string{"warehouse.type": "redshift", "warehouse.host": "h", "warehouse.user": "u", "warehouse.database": "d", "warehouse.schema": "s", "warehouse.redshift.s3.bucket": "b-1", "warehouse.redshift.s3.region": "eu-west-1", "warehouse.redshift.iam_role": "offload"}, []string{"OFFLOAD_WAREHOUSE_PASSWORD=pw"}, "warehouse.redshift.iam_role", "IAM role ARN"},
		{"inline s3 secret", map[string]string{"warehouse.redshift.s3.secret_access_key": "hunter2"}, nil, "warehouse.redshift.s3.secret_access_key", "secrets are not read"},
		{"bigquery without a project", map[string]string{"warehouse.type": "bigquery"}, nil, "warehouse.bigquery.project", "required with warehouse.type bigquery"},
		{"bad loader order", map[string]string{"loader.order": "random"}, nil, "loader.order", "oldest, newest"},
		{"bad shipping window", map[string]string{"loader.shipping_windows": "['1am-5am']"}, nil, "loader.shipping_windows", "is not HH:MM"},
		{"retry max below base", map[string]string{"loader.retry_base": "10s", "loader.retry_max": "1s"}, nil, "loader.retry_base", "retry_base <= retry_max"},
		{"bad env budget", nil, []string{"OFFLOAD_DISK_BUDGET=huge"}, "disk_budget (from OFFLOAD_DISK_BUDGET)", "byte size"},
		{"bad env bool", nil, []string{"OFFLOAD_KAFKA_TLS_ENABLED=perhaps"}, "kafka.tls.enabled (from OFFLOAD_KAFKA_TLS_ENABLED)", "true or false"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { refused(t, tc.set, tc.env, tc.want, tc.allowed) })
	}
}

// refused checks that validYAML with set and env is refused with an
// error naming want and allowed, and not the secret hunter2.
func refused(t *testing.T, set map[string]string, env []string, want, allowed string) {
	t.Helper()
	_, err := Load(writeConfig(t, withValues(t, validYAML, set)), env)
	if err == nil {
		t.Fatal("accepted a bad configuration")
	}
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), allowed) {
		t.Fatalf("error %q does not name %q with %q", err, want, allowed)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error leaks a secret: %q", err)
	}
}

// withValues returns base with the options in set replaced or added; each
// value is YAML text.
func withValues(t *testing.T, base string, set map[string]string) string {
	t.Helper()
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(base), &root); err != nil {
		t.Fatal(err)
	}
	for path, val := range set {
		var v yaml.Node
		if err := yaml.Unmarshal([]byte(val), &v); err != nil {
			t.Fatal(err)
		}
		m := root.Content[0]
		parts := strings.Split(path, ".")
		for i, key := range parts {
			var found *yaml.Node
			for j := 0; j+1 < len(m.Content); j += 2 {
				if m.Content[j].Value == key {
					found = m.Content[j+1]
					if i == len(parts)-1 {
						m.Content[j+1] = v.Content[0]
					}
				}
			}
			if found == nil {
				child := v.Content[0]
				if i < len(parts)-1 {
					child = &yaml.Node{Kind: yaml.MappingNode}
				}
				m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, child)
				found = child
			}
			m = found
		}
	}
	out, err := yaml.Marshal(&root)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestMissingFile(t *testing.T) {
	_, err := Load("/nonexistent/offload.yaml", nil)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/offload.yaml") {
		t.Fatalf("want error naming the path, got %v", err)
	}
}

func TestOptionsListEveryEnv(t *testing.T) {
	seen := map[string]bool{}
	for _, o := range Options() {
		if !strings.HasPrefix(o.Env, EnvPrefix) || seen[o.Env] {
			t.Fatalf("bad or duplicate env name %q", o.Env)
		}
		seen[o.Env] = true
	}
	for _, want := range []string{"OFFLOAD_KAFKA_SASL_PASSWORD", "OFFLOAD_DISK_BUDGET", "OFFLOAD_KAFKA_TLS_CA_FILE"} {
		if !seen[want] {
			t.Fatalf("%s missing from Options()", want)
		}
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"1024": 1024, "64MiB": 64 << 20, "1.5GiB": 3 << 29, "100MB": 100e6, "10 GiB": 10 << 30} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if s := ByteSize(64 << 20).String(); s != "64MiB" {
		t.Errorf("String() = %s", s)
	}
}

// TestDocsListEveryOption keeps docs/CONFIG.md complete: every option and
// its environment variable is documented.
func TestDocsListEveryOption(t *testing.T) {
	doc, err := os.ReadFile("../../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range Options() {
		if !strings.Contains(string(doc), "`"+o.Path+"`") || !strings.Contains(string(doc), "`"+o.Env+"`") {
			t.Errorf("docs/CONFIG.md does not document %s (%s)", o.Path, o.Env)
		}
	}
}

// TestExampleConfigIsValid keeps the shipped example loadable.
func TestExampleConfigIsValid(t *testing.T) {
	if _, err := Load("../../deploy/examples/offload.yaml", nil); err != nil {
		t.Fatal(err)
	}
}

func TestChanged(t *testing.T) {
	a, b := Default(), Default()
	a.Topics = map[string]event.Config{"orders": {Filters: []event.Rule{{Name: "t", Field: "order_id", Prefix: []string{"T-"}}}}}
	b.Topics = map[string]event.Config{"orders": {Filters: []event.Rule{{Name: "t", Field: "order_id", Prefix: []string{"X-"}}}}}
	b.Log.Level = "debug"
	b.Outbox.SealRows = 5
	b.Kafka.Brokers = []string{"k:9092"}
	b.Warehouse.Password = "changed"
	got := strings.Join(Changed(&a, &b), " ")
	if want := "kafka.brokers log.level outbox.seal_rows topics.orders.filters warehouse.password"; got != want {
		t.Fatalf("Changed: %q, want %q", got, want)
	}
	b.Topics["orders"] = event.Config{Mapping: event.Mapping{Format: "csv"}, Filters: a.Topics["orders"].Filters}
	if got := Changed(&a, &b); !slices.Contains(got, "topics.orders") || slices.Contains(got, "topics.orders.filters") {
		t.Fatalf("a topic's mapping changed: %v", got)
	}
	if c := Changed(&a, &a); len(c) != 0 {
		t.Fatalf("no change: %v", c)
	}
}

// TestWarehouseTypes: a complete configuration of each PostgreSQL-protocol
// type loads, its secrets from the environment.
func TestWarehouseTypes(t *testing.T) {
	common := map[string]string{"warehouse.host": "db.example.com", "warehouse.user": "u", "warehouse.database": "d", "warehouse.schema": "s"}
	for typ, own := range map[string]map[string]string{
		"postgres": {"warehouse.postgres.sslmode": "require"},
		"redshift": {"warehouse.redshift.s3.bucket": "offload-stage", "warehouse.redshift.s3.region": "eu-west-1",
			"warehouse.redshift.s3.access_key_id": "AKIAEXAMPLE"},
	} {
		t.Run(typ, func(t *testing.T) {
			set := map[string]string{"warehouse.type": typ}
			for k, v := range common {
				set[k] = v
			}
			for k, v := range own {
				set[k] = v
			}
			c, err := Load(writeConfig(t, withValues(t, validYAML, set)),
				[]string{"OFFLOAD_WAREHOUSE_PASSWORD=pw", "OFFLOAD_WAREHOUSE_REDSHIFT_S3_SECRET_ACCESS_KEY=sk"})
			if err != nil {
				t.Fatal(err)
			}
			if c.Warehouse.Password.Reveal() != "pw" || c.Warehouse.Redshift.S3.SecretAccessKey.Reveal() != "sk" {
				t.Fatal("secrets from the environment not applied")
			}
		})
	}
}

// TestEndToEndDelivery checks that kafka.delivery: end-to-end loads with
// what it needs: a warehouse and dedupe.warehouse: merge.
func TestEndToEndDelivery(t *testing.T) {
	body := strings.Replace(validYAML, "kafka:\n", "kafka:\n  delivery: end-to-end\n", 1) +
		"warehouse:\n  type: snowflake\n  account: a\n  user: u\n  database: d\n  schema: s\ndedupe:\n  warehouse: merge\n"
	c, err := Load(writeConfig(t, body), []string{"OFFLOAD_WAREHOUSE_PASSWORD=pw"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka.Delivery != DeliveryEndToEnd {
		t.Fatalf("kafka.delivery = %q, want %q", c.Kafka.Delivery, DeliveryEndToEnd)
	}
}
