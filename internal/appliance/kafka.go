package appliance

import (
	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/internal/ingest"
)

// KafkaTLS and KafkaSASL are the consumer's security options (config
// kafka.tls, kafka.sasl), for ingest and for `offload check`.
func KafkaTLS(c *config.Config) ingest.TLSOptions {
	t := c.Kafka.TLS
	return ingest.TLSOptions{Enabled: t.Enabled, CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile,
		ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
}

// KafkaSASL: see KafkaTLS.
func KafkaSASL(c *config.Config) ingest.SASLOptions {
	s := c.Kafka.SASL
	return ingest.SASLOptions{Mechanism: s.Mechanism, Username: s.Username, Password: s.Password.Reveal()}
}
