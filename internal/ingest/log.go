package ingest

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// logLimiter lets one log line per key through per interval and counts the
// ones it held back, so that a recurring problem (a broker down for hours)
// is reported regularly without flooding the log.
type logLimiter struct {
	every time.Duration
	mu    sync.Mutex
	keys  map[string]*limitState
}

type limitState struct {
	last       time.Time
	suppressed int
}

func newLogLimiter(every time.Duration) *logLimiter {
	return &logLimiter{every: every, keys: map[string]*limitState{}}
}

// allow reports whether a line for key may be logged now and how many were
// suppressed since the last one.
func (l *logLimiter) allow(key string) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	s := l.keys[key]
	if s == nil {
		s = &limitState{}
		l.keys[key] = s
	} else if now.Sub(s.last) < l.every {
		s.suppressed++
		return false, 0
	}
	suppressed, s.suppressed, s.last = s.suppressed, 0, now
	return true, suppressed
}

func (in *Ingest) warnEvery(key, msg string, args ...any) {
	if ok, n := in.limit.allow(key); ok {
		if n > 0 {
			args = append(args, "suppressed_since_last", n)
		}
		in.log.Warn(msg, args...)
	}
}

func (in *Ingest) infoEvery(key, msg string, args ...any) {
	if ok, n := in.limit.allow(key); ok {
		if n > 0 {
			args = append(args, "suppressed_since_last", n)
		}
		in.log.Info(msg, args...)
	}
}

// hooks observe the client's broker connections: failures are reported
// (rate-limited) and successful responses feed Ready. They run on
// franz-go's goroutines and must stay cheap.
type hooks struct{ in *Ingest }

var (
	_ kgo.HookBrokerConnect = hooks{}
	_ kgo.HookBrokerRead    = hooks{}
)

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (h hooks) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return // connected, or the client is closing
	}
	addr := net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port)))
	h.in.warnEvery("connect "+addr, "ingest: cannot connect to Kafka broker "+addr+"; retrying with backoff: check kafka.brokers, that the broker is up and reachable from this host, and the kafka.tls and kafka.sasl settings",
		"broker", addr, "brokers", h.in.opts.Brokers, "err", err)
}

// OnBrokerRead implements kgo.HookBrokerRead.
func (h hooks) OnBrokerRead(_ kgo.BrokerMetadata, _ int16, _ int, _, _ time.Duration, err error) {
	if err == nil {
		h.in.lastBrokerOK.Store(time.Now().UnixNano())
	}
}

// kgoLogger routes franz-go's own messages: warnings and errors to the
// logger (rate-limited per message), the rest at debug level.
type kgoLogger struct{ in *Ingest }

// Level implements kgo.Logger. franz-go's debug level is far too chatty to
// forward even at debug.
func (l kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelInfo }

// Log implements kgo.Logger.
func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	switch level {
	case kgo.LogLevelError, kgo.LogLevelWarn:
		l.in.warnEvery("kgo "+msg, "kafka client: "+msg, keyvals...)
	default:
		l.in.log.Debug("kafka client: "+msg, keyvals...)
	}
}
