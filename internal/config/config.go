// Package config holds offload's configuration: one YAML file, overridden
// by OFFLOAD_* environment variables, completed with defaults and validated
// before anything starts. Every option is documented in docs/CONFIG.md.
//
// The package only describes and checks settings; it opens no file other
// than the configuration itself and the secret files it names.
package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/offload/offload/engine/event"
	"github.com/offload/offload/loader"
)

// Config is the whole appliance configuration.
type Config struct {
	// ApplianceID names this appliance in batch ids, client ids and the
	// warehouse ledger. Default: the host name.
	ApplianceID string `yaml:"appliance_id"`
	// DataDir holds the WAL and all other state.
	DataDir string `yaml:"data_dir"`
	// DiskBudget is the byte budget for the data directory's live data.
	DiskBudget ByteSize `yaml:"disk_budget"`
	// ShutdownGrace bounds the drain on SIGTERM.
	ShutdownGrace Duration `yaml:"shutdown_grace"`

	Log    Log    `yaml:"log"`
	Kafka  Kafka  `yaml:"kafka"`
	WAL    WAL    `yaml:"wal"`
	Engine Engine `yaml:"engine"`
	Outbox Outbox `yaml:"outbox"`
	// Warehouse is where sealed batches go; without it they wait in the
	// outbox (and ingest pauses once the disk budget is used).
	Warehouse Warehouse `yaml:"warehouse"`
	Loader    Loader    `yaml:"loader"`
	Admin     Admin     `yaml:"admin"`
	Datadog   Datadog   `yaml:"datadog"`
	Dedupe    Dedupe    `yaml:"dedupe"`
	// Topics holds each topic's decoding, mapping, validation and filter
	// settings, keyed by topic name. A topic of kafka.topics without an
	// entry takes canonical JSON with the defaults. Not overridable from
	// the environment.
	Topics map[string]event.Config `yaml:"topics"`
}

// Engine configures cleaning, dedupe and windows.
type Engine struct {
	// Interval and BatchRecords cut micro-batches: every Interval or after
	// BatchRecords records, whichever comes first.
	Interval     Duration `yaml:"interval"`
	BatchRecords int      `yaml:"batch_records"`
	MemoryLimit  ByteSize `yaml:"memory_limit"`
	Threads      int      `yaml:"threads"`
	// DedupeWindow is how long, in event time, an event id is remembered.
	DedupeWindow Duration `yaml:"dedupe_window"`
	// DedupeMemory bounds the dedupe key store's filters (the keys are on
	// disk); it holds DedupeWindow up to a rate docs/CONFIG.md gives.
	DedupeMemory ByteSize `yaml:"dedupe_memory"`
	// DedupeMaxKeys is refused: DedupeMemory replaced it.
	DedupeMaxKeys int `yaml:"dedupe_max_keys"`
	// Window is the tumbling window size; Lateness how far behind the
	// newest event time a window still waits, and then still corrects.
	Window   Duration `yaml:"window"`
	Lateness Duration `yaml:"lateness"`
	// BaseCurrency and RatesFile give base-currency amounts.
	BaseCurrency string `yaml:"base_currency"`
	RatesFile    string `yaml:"rates_file"`
	// ReferenceFile is a CSV keyed by store_id (region, timezone, ...).
	ReferenceFile string `yaml:"reference_file"`
	// HashKeyFile holds the key of the e-mail hash; without it (and without
	// OFFLOAD_ENGINE_HASH_KEY) a key is generated once in the data
	// directory.
	HashKeyFile string `yaml:"hash_key_file"`
	HashKey     Secret `yaml:"hash_key"`
}

// Outbox configures when batches are sealed for shipping.
type Outbox struct {
	SealRows  int      `yaml:"seal_rows"`
	SealBytes ByteSize `yaml:"seal_bytes"`
	SealAge   Duration `yaml:"seal_age"`
}

// Warehouse configures the sink the loader ships to.
type Warehouse struct {
	// Type is "" (no warehouse), "snowflake", "postgres", "redshift" or
	// "bigquery". The connection options below serve every type that
	// has them (docs/CONFIG.md says which); the options of one type only
	// are in its own section (Postgres, Redshift, BigQuery).
	Type      string `yaml:"type"`
	Account   string `yaml:"account"`
	User      string `yaml:"user"`
	Role      string `yaml:"role"`
	Database  string `yaml:"database"`
	Schema    string `yaml:"schema"`
	Warehouse string `yaml:"warehouse"`
	// Host, Port and Protocol override <account>.snowflakecomputing.com,
	// 443, https; for postgres and redshift Host and Port are the
	// server's.
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"`
	Protocol string `yaml:"protocol"`
	// Auth is password, keypair or oauth. Secrets come from the files
	// named here or from the environment (OFFLOAD_WAREHOUSE_PASSWORD,
	// OFFLOAD_WAREHOUSE_PRIVATE_KEY_PASSPHRASE, OFFLOAD_WAREHOUSE_OAUTH_TOKEN),
	// never from the YAML file.
	Auth                     string `yaml:"auth"`
	PasswordFile             string `yaml:"password_file"`
	Password                 Secret `yaml:"password"`
	PrivateKeyFile           string `yaml:"private_key_file"`
	PrivateKeyPassphraseFile string `yaml:"private_key_passphrase_file"`
	PrivateKeyPassphrase     Secret `yaml:"private_key_passphrase"`
	OAuthTokenFile           string `yaml:"oauth_token_file"`
	OAuthToken               Secret `yaml:"oauth_token"`
	// Stage and Tables name the warehouse objects (created when missing).
	Stage  string          `yaml:"stage"`
	Tables WarehouseTables `yaml:"tables"`
	// LoginTimeout and RequestTimeout bound the driver's own retries.
	LoginTimeout   Duration `yaml:"login_timeout"`
	RequestTimeout Duration `yaml:"request_timeout"`
	// Postgres, Redshift and BigQuery hold the options of those types only.
	Postgres PostgresWarehouse `yaml:"postgres"`
	Redshift RedshiftWarehouse `yaml:"redshift"`
	BigQuery BigQuery          `yaml:"bigquery"`
}

// WarehouseTables names the warehouse tables.
type WarehouseTables struct {
	Transactions string `yaml:"transactions"`
	Windows      string `yaml:"windows"`
	Ledger       string `yaml:"ledger"`
}

// Loader configures how and when batches are shipped.
type Loader struct {
	// Order is oldest or newest: which sealed batch goes first.
	Order           string   `yaml:"order"`
	RetryBase       Duration `yaml:"retry_base"`
	RetryMax        Duration `yaml:"retry_max"`
	BreakerFailures int      `yaml:"breaker_failures"`
	BreakerCooldown Duration `yaml:"breaker_cooldown"`
	// ShippingWindows are daily periods of local time ("01:00-05:00")
	// when loads may start; empty means any time.
	ShippingWindows []string `yaml:"shipping_windows"`
	// UplinkRate caps the average upload rate (bytes a second; 0: none).
	UplinkRate ByteSize `yaml:"uplink_rate"`
	// ShippedGrace is how long shipped batches' rows stay in the outbox.
	ShippedGrace Duration `yaml:"shipped_grace"`
	// LoadTimeout bounds one attempt at a batch.
	LoadTimeout Duration `yaml:"load_timeout"`
	// UnansweredAfter is the floor past which an attempt the warehouse
	// has not answered shows as warehouse_unavailable (docs/LOADER.md).
	UnansweredAfter Duration `yaml:"unanswered_after"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text, json
}

// Kafka configures the consumer.
type Kafka struct {
	Brokers       []string `yaml:"brokers"`
	Topics        []string `yaml:"topics"`
	Group         string   `yaml:"group"`
	ClientID      string   `yaml:"client_id"`
	Delivery      string   `yaml:"delivery"`
	FetchMaxBytes ByteSize `yaml:"fetch_max_bytes"`
	// SessionTimeout is how long the group waits for a silent member
	// before moving its partitions. The appliance is a static member
	// (its client id is its group instance id), so a restart within this
	// time gets its partitions back without a rebalance.
	SessionTimeout Duration `yaml:"session_timeout"`
	TLS            TLS      `yaml:"tls"`
	SASL           SASL     `yaml:"sasl"`
}

// TLS configures the Kafka connection's TLS.
type TLS struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// SASL configures Kafka authentication.
type SASL struct {
	Mechanism    string `yaml:"mechanism"` // none, plain, scram-sha-256, scram-sha-512
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// Password comes from OFFLOAD_KAFKA_SASL_PASSWORD or PasswordFile,
	// never from the YAML file.
	Password Secret `yaml:"password"`
}

// WAL configures the write-ahead log.
type WAL struct {
	MemtableSize ByteSize `yaml:"memtable_size"`
}

// Dedupe configures deduplication beyond the appliance's own.
type Dedupe struct {
	// Warehouse is insert (rows are inserted; dedupe is the engine's,
	// per appliance) or merge (a MERGE on event_id keeps out an event
	// another appliance loaded already, at the cost of a join with the
	// whole table on every load).
	Warehouse string `yaml:"warehouse"`
}

// Datadog configures DogStatsD output of the metrics.
type Datadog struct {
	// StatsdAddr is the agent's DogStatsD address (host:port, UDP);
	// empty turns the output off.
	StatsdAddr string   `yaml:"statsd_addr"`
	Interval   Duration `yaml:"interval"`
	// Tags are added to every metric, "key:value".
	Tags []string `yaml:"tags"`
}

// Admin configures the admin HTTP endpoint.
type Admin struct {
	Listen string `yaml:"listen"`
	// TokenFile holds the bearer token that actions require (and every
	// request when Listen is not a loopback address); OFFLOAD_ADMIN_TOKEN
	// overrides it.
	TokenFile string `yaml:"token_file"`
	Token     Secret `yaml:"token"`
}

// Delivery modes.
const (
	// DeliveryCustody commits Kafka offsets once the WAL holds the
	// records durably.
	DeliveryCustody = "custody"
	// DeliveryEndToEnd commits Kafka offsets only once the warehouse
	// load holding the records has committed; the WAL keeps them until
	// then (docs/ARCHITECTURE.md, "Delivery contract").
	DeliveryEndToEnd = "end-to-end"
)

// Default returns the configuration used when a file leaves options unset.
func Default() Config {
	host, _ := os.Hostname()
	return Config{
		ApplianceID:   sanitizeID(host),
		DataDir:       "/var/lib/offload",
		DiskBudget:    10 << 30,
		ShutdownGrace: Duration(30 * time.Second),
		Log:           Log{Level: "info", Format: "text"},
		Kafka: Kafka{
			Brokers:        []string{"127.0.0.1:9092"},
			Group:          "offload",
			Delivery:       DeliveryCustody,
			FetchMaxBytes:  8 << 20,
			SessionTimeout: Duration(45 * time.Second),
			SASL:           SASL{Mechanism: "none"},
		},
		WAL: WAL{MemtableSize: 32 << 20},
		Engine: Engine{
			Interval:     Duration(time.Second),
			BatchRecords: 50000,
			MemoryLimit:  512 << 20,
			Threads:      2,
			DedupeWindow: Duration(24 * time.Hour),
			DedupeMemory: 256 << 20,
			Window:       Duration(time.Minute),
			Lateness:     Duration(5 * time.Minute),
			BaseCurrency: "EUR",
		},
		Outbox: Outbox{SealRows: 1_000_000, SealBytes: 128 << 20, SealAge: Duration(5 * time.Minute)},
		Warehouse: Warehouse{
			Auth: "password", Stage: "OFFLOAD_STAGE",
			Tables:         WarehouseTables{Transactions: "OFFLOAD_TRANSACTIONS", Windows: "OFFLOAD_WINDOWS", Ledger: "OFFLOAD_LOAD_LEDGER"},
			LoginTimeout:   Duration(60 * time.Second),
			RequestTimeout: Duration(60 * time.Second),
			Postgres:       PostgresWarehouse{SSLMode: "verify-full"},
			Redshift:       RedshiftWarehouse{SSLMode: "verify-full", S3: RedshiftS3{Prefix: "offload/"}},
		},
		Loader: Loader{
			Order: "oldest", RetryBase: Duration(time.Second), RetryMax: Duration(5 * time.Minute),
			BreakerFailures: 5, BreakerCooldown: Duration(30 * time.Second), ShippedGrace: Duration(24 * time.Hour),
			LoadTimeout: Duration(30 * time.Minute), UnansweredAfter: Duration(30 * time.Second),
		},
		Admin:   Admin{Listen: "127.0.0.1:7070"},
		Datadog: Datadog{Interval: Duration(10 * time.Second)},
		Dedupe:  Dedupe{Warehouse: "insert"},
	}
}

// Load reads the YAML file at path over the defaults, applies OFFLOAD_*
// environment overrides from environ (os.Environ() form), reads secret
// files, fills derived defaults and validates. Errors name the option.
func Load(path string, environ []string) (*Config, error) {
	c := Default()
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: cannot read %s: %w", path, err)
		}
		if err := decodeYAML(raw, &c); err != nil {
			return nil, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	if err := applyEnv(&c, environ); err != nil {
		return nil, err
	}
	if err := c.resolveSecrets(); err != nil {
		return nil, err
	}
	c.EnsureDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) resolveSecrets() error {
	for _, s := range []struct {
		opt    string
		file   string
		secret *Secret
	}{
		{"kafka.sasl.password_file", c.Kafka.SASL.PasswordFile, &c.Kafka.SASL.Password},
		{"engine.hash_key_file", c.Engine.HashKeyFile, &c.Engine.HashKey},
		{"warehouse.password_file", c.Warehouse.PasswordFile, &c.Warehouse.Password},
		{"admin.token_file", c.Admin.TokenFile, &c.Admin.Token},
		{"warehouse.private_key_passphrase_file", c.Warehouse.PrivateKeyPassphraseFile, &c.Warehouse.PrivateKeyPassphrase},
		{"warehouse.oauth_token_file", c.Warehouse.OAuthTokenFile, &c.Warehouse.OAuthToken},
		{"warehouse.redshift.s3.secret_access_key_file", c.Warehouse.Redshift.S3.SecretAccessKeyFile, &c.Warehouse.Redshift.S3.SecretAccessKey},
		{"warehouse.bigquery.credentials_file", c.Warehouse.BigQuery.CredentialsFile, &c.Warehouse.BigQuery.Credentials},
	} {
		if s.file == "" || *s.secret != "" {
			continue // the environment wins over the file
		}
		v, err := readSecretFile(s.file)
		if err != nil {
			return fmt.Errorf("config: %s: %w", s.opt, err)
		}
		*s.secret = v
	}
	return nil
}

func readSecretFile(path string) (Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		// The error names the path, never the content.
		return "", fmt.Errorf("cannot read %s: %w", path, errors.Unwrap(err))
	}
	return Secret(strings.TrimRight(string(b), "\r\n")), nil
}

// EnsureDefaults fills options derived from others.
func (c *Config) EnsureDefaults() {
	if c.Kafka.ClientID == "" {
		c.Kafka.ClientID = "offload-" + c.ApplianceID
	}
	if c.Kafka.SASL.Mechanism == "" {
		c.Kafka.SASL.Mechanism = "none"
	}
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func sanitizeID(s string) string {
	s = regexp.MustCompile(`[^A-Za-z0-9._-]`).ReplaceAllString(s, "-")
	if len(s) > 64 {
		s = s[:64]
	}
	if s == "" {
		return "offload"
	}
	return s
}

func oneOf(opt, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%s: %q is not allowed; use one of %s", opt, v, strings.Join(allowed, ", "))
}

// Validate checks every option and returns all problems, each naming its
// option and what is allowed.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if !idRE.MatchString(c.ApplianceID) {
		add(fmt.Errorf("appliance_id: %q must be 1-64 characters of A-Z a-z 0-9 . _ -", c.ApplianceID))
	}
	if c.DataDir == "" {
		add(errors.New("data_dir: must be set to a directory offload may write"))
	}
	if c.DiskBudget < 4<<20 {
		add(fmt.Errorf("disk_budget: %s is too small; use at least 4MiB", c.DiskBudget))
	}
	if c.ShutdownGrace <= 0 {
		add(fmt.Errorf("shutdown_grace: %s must be positive (e.g. 30s)", c.ShutdownGrace))
	}
	add(oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error"))
	add(oneOf("log.format", c.Log.Format, "text", "json"))

	k := &c.Kafka
	if len(k.Brokers) == 0 {
		add(errors.New("kafka.brokers: must list at least one host:port"))
	}
	for _, b := range k.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			add(fmt.Errorf("kafka.brokers: %q is not host:port", b))
		}
	}
	if len(k.Topics) == 0 {
		add(errors.New("kafka.topics: must list at least one topic"))
	}
	for _, t := range k.Topics {
		if !topicRE.MatchString(t) {
			add(fmt.Errorf("kafka.topics: %q is not a valid Kafka topic name (1-249 characters of A-Z a-z 0-9 . _ -)", t))
		}
	}
	if k.Group == "" {
		add(errors.New("kafka.group: must name the consumer group"))
	}
	add(oneOf("kafka.delivery", k.Delivery, DeliveryCustody, DeliveryEndToEnd))
	if k.FetchMaxBytes < 1<<20 || k.FetchMaxBytes > 1<<30 {
		add(fmt.Errorf("kafka.fetch_max_bytes: %s is out of range; use 1MiB to 1GiB", k.FetchMaxBytes))
	}
	if k.SessionTimeout < Duration(6*time.Second) || k.SessionTimeout > Duration(30*time.Minute) {
		add(fmt.Errorf("kafka.session_timeout: %s is out of range; use 6s to 30m (the broker's group.min/max.session.timeout.ms)", k.SessionTimeout))
	}
	if k.TLS.Enabled {
		for opt, f := range map[string]string{"kafka.tls.ca_file": k.TLS.CAFile, "kafka.tls.cert_file": k.TLS.CertFile, "kafka.tls.key_file": k.TLS.KeyFile} {
			if f != "" {
				if _, err := os.Stat(f); err != nil {
					add(fmt.Errorf("%s: %w", opt, err))
				}
			}
		}
		if (k.TLS.CertFile == "") != (k.TLS.KeyFile == "") {
			add(errors.New("kafka.tls.cert_file, kafka.tls.key_file: set both for client certificates, or neither"))
		}
	} else if k.TLS.CAFile != "" || k.TLS.CertFile != "" || k.TLS.KeyFile != "" {
		add(errors.New("kafka.tls.enabled: files are set but TLS is off; set kafka.tls.enabled: true"))
	}
	add(oneOf("kafka.sasl.mechanism", k.SASL.Mechanism, "none", "plain", "scram-sha-256", "scram-sha-512"))
	if k.SASL.Mechanism != "none" {
		if k.SASL.Username == "" {
			add(fmt.Errorf("kafka.sasl.username: required with mechanism %s", k.SASL.Mechanism))
		}
		if k.SASL.Password == "" {
			add(fmt.Errorf("kafka.sasl.password_file: required with mechanism %s (or set OFFLOAD_KAFKA_SASL_PASSWORD)", k.SASL.Mechanism))
		}
	}
	if c.WAL.MemtableSize < 4<<20 || c.WAL.MemtableSize > 1<<30 {
		add(fmt.Errorf("wal.memtable_size: %s is out of range; use 4MiB to 1GiB", c.WAL.MemtableSize))
	}
	add(c.validateEngine())
	add(c.validateWarehouse())
	if c.Admin.Listen != "" {
		if host, _, err := net.SplitHostPort(c.Admin.Listen); err != nil {
			add(fmt.Errorf("admin.listen: %q is not host:port (empty disables the admin endpoint)", c.Admin.Listen))
		} else if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" && c.Admin.Token == "" {
			add(fmt.Errorf("admin.token_file: admin.listen %s is not a loopback address; a bearer token is required (or set OFFLOAD_ADMIN_TOKEN)", c.Admin.Listen))
		}
	}
	add(oneOf("dedupe.warehouse", c.Dedupe.Warehouse, "insert", "merge"))
	add(c.validateDelivery())
	if d := c.Datadog; d.StatsdAddr != "" {
		if _, _, err := net.SplitHostPort(d.StatsdAddr); err != nil {
			add(fmt.Errorf("datadog.statsd_addr: %q is not host:port (e.g. 127.0.0.1:8125)", d.StatsdAddr))
		}
		if d.Interval < Duration(time.Second) {
			add(fmt.Errorf("datadog.interval: %s is too short; use at least 1s", d.Interval))
		}
		for _, tag := range d.Tags {
			if !strings.Contains(tag, ":") || strings.ContainsAny(tag, " |,#") {
				add(fmt.Errorf("datadog.tags: %q is not key:value (no spaces, |, , or #)", tag))
			}
		}
	}
	if c.Admin.Token != "" && len(c.Admin.Token.Reveal()) < 16 {
		add(errors.New("admin.token_file: the token must be at least 16 characters"))
	}
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return fmt.Errorf("config: %s", strings.Join(msgs, "\nconfig: "))
}

var topicRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,249}$`)

func (c *Config) validateEngine() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	e := &c.Engine
	if e.Interval < Duration(10*time.Millisecond) || e.Interval > Duration(time.Hour) {
		bad("engine.interval: %s is out of range; use 10ms to 1h", e.Interval)
	}
	if e.BatchRecords < 1 || e.BatchRecords > 10_000_000 {
		bad("engine.batch_records: %d is out of range; use 1 to 10000000", e.BatchRecords)
	}
	if e.MemoryLimit < 64<<20 {
		bad("engine.memory_limit: %s is too small; use at least 64MiB", e.MemoryLimit)
	}
	if e.Threads < 1 || e.Threads > 256 {
		bad("engine.threads: %d is out of range; use 1 to 256", e.Threads)
	}
	if e.DedupeWindow < Duration(time.Minute) {
		bad("engine.dedupe_window: %s is too short; use at least 1m", e.DedupeWindow)
	}
	if e.DedupeMemory < 1<<20 {
		bad("engine.dedupe_memory: %s is too small; use at least 1MiB (256MiB holds 24h at 1,000 events/s)", e.DedupeMemory)
	}
	if e.DedupeMaxKeys != 0 {
		bad("engine.dedupe_max_keys: no longer used (the dedupe keys are on disk and never evicted); remove it and size engine.dedupe_memory instead (256MiB holds 24h at 1,000 events/s, docs/CONFIG.md)")
	}
	if e.Window < Duration(time.Second) || e.Window > Duration(24*time.Hour) || time.Duration(24*time.Hour)%e.Window.D() != 0 {
		bad("engine.window: %s must divide a day and lie between 1s and 24h (e.g. 1m, 5m, 1h)", e.Window)
	}
	if e.Lateness < 0 || e.Lateness > Duration(7*24*time.Hour) {
		bad("engine.lateness: %s is out of range; use 0s to 168h", e.Lateness)
	}
	if !currencyRE.MatchString(e.BaseCurrency) {
		bad("engine.base_currency: %q is not an ISO-4217 code (e.g. EUR, USD)", e.BaseCurrency)
	}
	for opt, f := range map[string]string{"engine.rates_file": e.RatesFile, "engine.reference_file": e.ReferenceFile} {
		if f != "" {
			if _, err := os.Stat(f); err != nil {
				bad("%s: %v", opt, err)
			}
		}
	}
	if e.HashKey != "" && len(e.HashKey.Reveal()) < event.MinHashKeyBytes {
		bad("engine.hash_key_file: the key must be at least %d bytes", event.MinHashKeyBytes)
	}
	o := &c.Outbox
	if o.SealRows < 1 {
		bad("outbox.seal_rows: %d must be positive", o.SealRows)
	}
	if o.SealBytes < 1<<20 {
		bad("outbox.seal_bytes: %s is too small; use at least 1MiB", o.SealBytes)
	}
	if o.SealAge < Duration(time.Second) {
		bad("outbox.seal_age: %s is too short; use at least 1s", o.SealAge)
	}
	listed := map[string]bool{}
	for _, t := range c.Kafka.Topics {
		listed[t] = true
	}
	names := make([]string, 0, len(c.Topics))
	for name := range c.Topics {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !listed[name] {
			bad("topics.%s: not in kafka.topics %v; list it there or remove this entry", name, c.Kafka.Topics)
			continue
		}
		tc := c.Topics[name]
		tc.EnsureDefaults()
		if err := tc.Validate("topics." + name); err != nil {
			errs = append(errs, strings.Split(err.Error(), "\n")...)
		}
	}
	// The topics load into one table: an extra column is one column.
	first := map[string]string{} // extra column -> the first topic naming it
	for _, name := range names {
		for _, col := range slices.Sorted(maps.Keys(c.Topics[name].ExtraColumns)) {
			typ := c.Topics[name].ExtraColumns[col].Type
			if t, ok := first[col]; ok && c.Topics[t].ExtraColumns[col].Type != typ {
				bad("topics.%s.extra_columns.%s.type: %q, but topics.%s.extra_columns.%s is %q: the topics load into one table; use one type", name, col, typ, t, col, c.Topics[t].ExtraColumns[col].Type)
			} else if !ok {
				first[col] = name
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errors.New(strings.Join(errs, "\nconfig: "))
}

// ExtraColumn is a column of the warehouse's transactions table that a
// topic's extra_columns promote.
type ExtraColumn struct{ Name, Type string }

// ExtraColumns returns the extra columns of every topic, by name (the
// validation makes one name one type across topics).
func (c *Config) ExtraColumns() []ExtraColumn {
	types := map[string]string{}
	for _, tc := range c.Topics {
		for name, x := range tc.ExtraColumns {
			types[name] = x.Type
		}
	}
	out := make([]ExtraColumn, 0, len(types))
	for _, name := range slices.Sorted(maps.Keys(types)) {
		out = append(out, ExtraColumn{name, types[name]})
	}
	return out
}

var currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)

func (c *Config) validateWarehouse() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	w := &c.Warehouse
	switch w.Type {
	case "":
	case "postgres":
		errs = append(errs, w.validatePostgres()...)
	case "redshift":
		errs = append(errs, w.validateRedshift()...)
	case "bigquery":
		w.BigQuery.validate(w.Tables, bad)
	case "snowflake":
		for opt, v := range map[string]string{"warehouse.account": w.Account, "warehouse.user": w.User,
			"warehouse.database": w.Database, "warehouse.schema": w.Schema} {
			if v == "" {
				bad("%s: required with warehouse.type snowflake", opt)
			}
		}
		switch w.Auth {
		case "password":
			if w.Password == "" {
				bad("warehouse.password_file: auth password needs the password in a file or in OFFLOAD_WAREHOUSE_PASSWORD")
			}
		case "keypair":
			if w.PrivateKeyFile == "" {
				bad("warehouse.private_key_file: auth keypair needs the PEM private key's file")
			} else if _, err := os.Stat(w.PrivateKeyFile); err != nil {
				bad("warehouse.private_key_file: %v", err)
			}
		case "oauth":
			if w.OAuthToken == "" {
				bad("warehouse.oauth_token_file: auth oauth needs the token in a file or in OFFLOAD_WAREHOUSE_OAUTH_TOKEN")
			}
		default:
			bad("warehouse.auth: %q is not allowed; use one of password, keypair, oauth", w.Auth)
		}
		if w.Protocol != "" && w.Protocol != "https" && w.Protocol != "http" {
			bad("warehouse.protocol: %q is not allowed; use https (or http for a local test server)", w.Protocol)
		}
		if w.Port < 0 || w.Port > 65535 {
			bad("warehouse.port: %d is out of range", w.Port)
		}
		for opt, v := range map[string]string{"warehouse.stage": w.Stage, "warehouse.tables.transactions": w.Tables.Transactions,
			"warehouse.tables.windows": w.Tables.Windows, "warehouse.tables.ledger": w.Tables.Ledger} {
			if !loader.ValidIdentifier(v) {
				bad("%s: %q is not a plain identifier (letters, digits, _ and $, not starting with a digit)", opt, v)
			}
		}
		if w.LoginTimeout < Duration(time.Second) || w.RequestTimeout < Duration(time.Second) {
			bad("warehouse.login_timeout, warehouse.request_timeout: use at least 1s")
		}
	default:
		bad("warehouse.type: %q is not allowed; use one of snowflake, postgres, redshift, bigquery (empty: no warehouse)", w.Type)
	}
	l := &c.Loader
	if err := oneOf("loader.order", l.Order, "oldest", "newest"); err != nil {
		bad("%v", err)
	}
	if l.RetryBase < Duration(time.Millisecond) || l.RetryMax < l.RetryBase {
		bad("loader.retry_base, loader.retry_max: %s and %s; want 1ms <= retry_base <= retry_max", l.RetryBase, l.RetryMax)
	}
	if l.BreakerFailures < 1 {
		bad("loader.breaker_failures: %d must be at least 1", l.BreakerFailures)
	}
	if l.BreakerCooldown < Duration(time.Millisecond) {
		bad("loader.breaker_cooldown: %s is too short", l.BreakerCooldown)
	}
	for _, sw := range l.ShippingWindows {
		if _, err := loader.ParseShippingWindow(sw); err != nil {
			bad("loader.shipping_windows: %v", err)
		}
	}
	if l.UplinkRate < 0 {
		bad("loader.uplink_rate: %s must not be negative", l.UplinkRate)
	}
	if l.LoadTimeout < Duration(time.Second) {
		bad("loader.load_timeout: %s is too short; use at least 1s", l.LoadTimeout)
	}
	if l.UnansweredAfter < Duration(time.Second) {
		bad("loader.unanswered_after: %s is too short; use at least 1s", l.UnansweredAfter)
	}
	if l.ShippedGrace < 0 {
		bad("loader.shipped_grace: %s must not be negative", l.ShippedGrace)
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\nconfig: "))
	}
	return nil
}

// validateDelivery checks what kafka.delivery: end-to-end needs: a
// warehouse to load into, and dedupe.warehouse: merge, without which the
// records Kafka re-delivers after a lost data directory would be loaded
// twice (docs/OPERATIONS.md, "Choosing the delivery mode").
func (c *Config) validateDelivery() error {
	if c.Kafka.Delivery != DeliveryEndToEnd {
		return nil
	}
	if c.Warehouse.Type == "" {
		return errors.New("kafka.delivery: end-to-end commits Kafka offsets after the warehouse load, so it needs a warehouse: set warehouse.type or use kafka.delivery: custody")
	}
	if c.Dedupe.Warehouse != "merge" {
		return fmt.Errorf("kafka.delivery: end-to-end needs dedupe.warehouse: merge (not %q): after a lost data directory Kafka re-delivers records already loaded, and only the MERGE on event_id keeps them out", c.Dedupe.Warehouse)
	}
	return nil
}
