package ingest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/offload/offload/wal"
)

// DefaultFetchMaxBytes is the fetch size used when Options.FetchMaxBytes is
// 0. With maxConcurrentFetches it bounds what franz-go buffers.
const DefaultFetchMaxBytes = 4 << 20

const (
	// maxConcurrentFetches bounds the fetches in flight or buffered at
	// once, so the client buffers at most this many times FetchMaxBytes
	// (franz-go's default is one per broker, unbounded in the number of
	// brokers).
	maxConcurrentFetches = 4
	// maxPartitionBytes caps one partition's share of a fetch so that a
	// busy partition does not starve the others of a fetch response.
	maxPartitionBytes = 256 << 10
)

// TLSOptions configures TLS for the connections to the brokers
// (config kafka.tls.*).
type TLSOptions struct {
	// Enabled turns TLS on. The other fields are rejected without it, so
	// that a CA file can never be configured on a connection that then
	// silently runs in plaintext.
	Enabled bool
	// CAFile is a PEM bundle of the CAs that sign the brokers'
	// certificates; empty means the system roots.
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and key for
	// mutual TLS; both or neither.
	CertFile, KeyFile string
	// ServerName overrides the name checked in the brokers' certificates;
	// empty means each broker's host name.
	ServerName string
	// InsecureSkipVerify disables certificate verification (tests only).
	InsecureSkipVerify bool
}

// SASLOptions configures SASL authentication (config kafka.sasl.*).
type SASLOptions struct {
	// Mechanism is one of "" or "none" (no SASL), "plain",
	// "scram-sha-256" or "scram-sha-512", case-insensitive.
	Mechanism string
	// Username and Password are the credentials. The password never
	// appears in an error or a log line.
	Username, Password string
}

// Options configures an Ingest.
type Options struct {
	// Brokers are the seed brokers, host:port (config kafka.brokers).
	Brokers []string
	// Topics are the topics to consume (config kafka.topics).
	Topics []string
	// Group is the consumer group; appliances sharing a group split the
	// partitions (config kafka.group).
	Group string
	// ClientID names this client to the brokers; empty means "offload"
	// (config kafka.client_id).
	ClientID string
	// InstanceID, when set, makes this member static (KIP-345): a restart
	// within SessionTimeout gets the same partitions back without a
	// rebalance, and stopping does not leave the group (the offsets are
	// committed all the same). It must be unique per appliance in the
	// group; offload uses the appliance's kafka.client_id. Empty means a
	// dynamic member that leaves the group when it stops.
	InstanceID string
	// SessionTimeout is how long the group waits for a silent member
	// before moving its partitions to others; 0 means franz-go's 45 s
	// (config kafka.session_timeout).
	SessionTimeout time.Duration
	// TLS configures TLS (config kafka.tls.*).
	TLS TLSOptions
	// SASL configures authentication (config kafka.sasl.*).
	SASL SASLOptions
	// FetchMaxBytes is the most a broker returns for one fetch; 0 means
	// DefaultFetchMaxBytes (config kafka.fetch_max_bytes). It counts
	// bytes as stored in Kafka: compressed batches take several times
	// more memory once decompressed. At most maxConcurrentFetches fetches
	// are buffered at once, and one partition's share of a fetch is
	// capped at 256 KiB, which bounds a poll when partitions are few.
	FetchMaxBytes int32
	// WAL receives the records. Required.
	WAL *wal.WAL
	// OverBudget reports whether the data directory is past its byte
	// budget; while it returns true, fetching is paused. nil means never.
	// It is called from the fetch loop, often: it must be cheap.
	OverBudget func() bool
	// OnDurable, if set, is called after each WAL append that succeeded,
	// with how long the append took (write and fsync), the records it was
	// given (their Kafka timestamps tell the produce-to-durable latency)
	// and when it returned. It must not keep recs.
	OnDurable func(took time.Duration, recs []wal.Record, at time.Time)
	// Loaded, if set, selects `kafka.delivery: end-to-end`: offsets are
	// committed only up to what it returns for each WAL partition (the
	// next offset not yet accounted for by a warehouse load,
	// engine.Engine.Loaded), not as soon as the WAL holds the records.
	// nil is custody mode. It is called on every pass of the fetch loop:
	// it must be cheap.
	Loaded func() wal.Cursor
	// StopTimeout bounds what Run does once its context is done:
	// committing the durable offsets (those of partitions the leave
	// revokes too) and leaving the group, all together. 0 means
	// commitTimeout plus leaveTimeout; the appliance passes its
	// shutdown_grace.
	StopTimeout time.Duration
	// Logger receives ingest's and franz-go's messages; nil means
	// slog.Default().
	Logger *slog.Logger
	// ExtraOpts are appended to the franz-go options (tests only: e.g.
	// shorter session timeouts or a custom dialer).
	ExtraOpts []kgo.Opt
}

// validate checks o and returns the first problem, naming the option.
// It never prints the password.
func (o *Options) validate() error {
	if len(o.Brokers) == 0 {
		return errors.New("ingest: kafka.brokers: at least one broker (host:port) is required")
	}
	for _, b := range o.Brokers {
		host, port, err := net.SplitHostPort(b)
		if err != nil || host == "" {
			return fmt.Errorf("ingest: kafka.brokers: %q is not host:port", b)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("ingest: kafka.brokers: %q: port must be 1-65535", b)
		}
	}
	if len(o.Topics) == 0 {
		return errors.New("ingest: kafka.topics: at least one topic is required")
	}
	seen := map[string]bool{}
	for _, t := range o.Topics {
		if !wal.ValidTopic(t) {
			return fmt.Errorf("ingest: kafka.topics: %q is not a valid Kafka topic name (1-249 characters of a-z A-Z 0-9 . _ -)", t)
		}
		if seen[t] {
			return fmt.Errorf("ingest: kafka.topics: %q is listed twice", t)
		}
		seen[t] = true
	}
	if strings.TrimSpace(o.Group) == "" {
		return errors.New("ingest: kafka.group: a consumer group name is required")
	}
	if o.InstanceID != "" && !wal.ValidTopic(o.InstanceID) {
		return fmt.Errorf("ingest: kafka.client_id: %q cannot serve as the group instance id (1-249 characters of a-z A-Z 0-9 . _ -)", o.InstanceID)
	}
	if o.SessionTimeout < 0 || o.SessionTimeout > 0 && o.SessionTimeout < time.Second {
		return fmt.Errorf("ingest: kafka.session_timeout: %v is not a session timeout (at least 1s; brokers usually require 6s to 30m)", o.SessionTimeout)
	}
	if o.FetchMaxBytes < 0 {
		return fmt.Errorf("ingest: kafka.fetch_max_bytes: %d is negative (0 means the default %d)", o.FetchMaxBytes, DefaultFetchMaxBytes)
	}
	if o.FetchMaxBytes > 0 && o.FetchMaxBytes < 64<<10 {
		return fmt.Errorf("ingest: kafka.fetch_max_bytes: %d is below the minimum 65536", o.FetchMaxBytes)
	}
	if _, err := saslMechanism(o.SASL); err != nil {
		return err
	}
	if _, err := tlsConfig(o.TLS); err != nil {
		return err
	}
	if o.WAL == nil {
		return errors.New("ingest: Options.WAL is nil: BUG: the WAL must be opened before ingest")
	}
	return nil
}

// SecurityOpts returns the franz-go options for TLS and SASL (none when
// both are off), for ingest's client and for other clients of the same
// cluster (the load generator). Errors name the option.
func SecurityOpts(t TLSOptions, s SASLOptions) ([]kgo.Opt, error) {
	mech, err := saslMechanism(s)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := tlsConfig(t)
	if err != nil {
		return nil, err
	}
	var opts []kgo.Opt
	if tlsCfg != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsCfg))
	}
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	return opts, nil
}

// saslMechanism builds the SASL mechanism, nil for none. Errors name the
// option and never contain the password.
func saslMechanism(s SASLOptions) (sasl.Mechanism, error) {
	mech := strings.ToLower(strings.TrimSpace(s.Mechanism))
	if mech == "" || mech == "none" {
		if s.Username != "" || s.Password != "" {
			return nil, errors.New("ingest: kafka.sasl.mechanism: credentials are set but no mechanism; use plain, scram-sha-256 or scram-sha-512")
		}
		return nil, nil
	}
	switch mech {
	case "plain", "scram-sha-256", "scram-sha-512":
	default:
		return nil, fmt.Errorf("ingest: kafka.sasl.mechanism: %q is not one of none, plain, scram-sha-256, scram-sha-512", s.Mechanism)
	}
	if s.Username == "" {
		return nil, fmt.Errorf("ingest: kafka.sasl.username: required with kafka.sasl.mechanism %s", mech)
	}
	if s.Password == "" {
		return nil, fmt.Errorf("ingest: kafka.sasl.password: required with kafka.sasl.mechanism %s (set kafka.sasl.password_file or OFFLOAD_KAFKA_SASL_PASSWORD)", mech)
	}
	switch mech {
	case "plain":
		return plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism(), nil
	case "scram-sha-256":
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism(), nil
	default:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism(), nil
	}
}

// tlsConfig builds the TLS configuration, nil when TLS is off.
func tlsConfig(t TLSOptions) (*tls.Config, error) {
	if !t.Enabled {
		switch {
		case t.CAFile != "":
			return nil, errors.New("ingest: kafka.tls.ca_file: set but kafka.tls.enabled is false; enable TLS or remove it")
		case t.CertFile != "":
			return nil, errors.New("ingest: kafka.tls.cert_file: set but kafka.tls.enabled is false; enable TLS or remove it")
		case t.KeyFile != "":
			return nil, errors.New("ingest: kafka.tls.key_file: set but kafka.tls.enabled is false; enable TLS or remove it")
		case t.ServerName != "":
			return nil, errors.New("ingest: kafka.tls.server_name: set but kafka.tls.enabled is false; enable TLS or remove it")
		case t.InsecureSkipVerify:
			return nil, errors.New("ingest: kafka.tls.insecure_skip_verify: set but kafka.tls.enabled is false; enable TLS or remove it")
		}
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // an explicit, documented test-only option
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ingest: kafka.tls.ca_file: cannot read CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ingest: kafka.tls.ca_file: %s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		return nil, errors.New("ingest: kafka.tls.key_file: required with kafka.tls.cert_file")
	case t.KeyFile != "" && t.CertFile == "":
		return nil, errors.New("ingest: kafka.tls.cert_file: required with kafka.tls.key_file")
	case t.CertFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("ingest: kafka.tls.cert_file/kafka.tls.key_file: cannot load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
