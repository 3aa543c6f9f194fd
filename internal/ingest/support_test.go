package ingest

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/offload/offload/wal"
)

type saslMech = sasl.Mechanism

// childEnv makes the test binary a kfake host instead of running tests:
// "topic:partitions".
const childEnv = "OFFLOAD_INGEST_KFAKE_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(kfakeChild(spec))
	}
	os.Exit(m.Run())
}

// kfakeChild hosts a kfake cluster and a producer. It prints "addr <a>",
// then for each "produce N" line on stdin produces N records and prints
// "ok"; it exits when stdin closes.
func kfakeChild(spec string) int {
	topic, ps, _ := strings.Cut(spec, ":")
	parts, _ := strconv.Atoi(ps)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(parts), topic))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer cl.Close()
	fmt.Println("addr", c.ListenAddrs()[0])
	seq := 0
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		n, _ := strconv.Atoi(strings.TrimPrefix(sc.Text(), "produce "))
		for done := 0; done < n; {
			m := min(2000, n-done)
			recs := make([]*kgo.Record, m)
			for i := range recs {
				recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "ord-%08d", seq/3), Value: eventJSON(seq)}
				seq++
			}
			if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				fmt.Println("error", err)
				return 1
			}
			done += m
		}
		fmt.Println("ok")
	}
	return 0
}

type kfakeProcess struct {
	addr  string
	topic string
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func startKfakeProcess(t *testing.T, topic string, partitions int) *kfakeProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d", childEnv, topic, partitions))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	k := &kfakeProcess{topic: topic, stdin: stdin, out: bufio.NewScanner(stdout)}
	line := k.line(t)
	addr, ok := strings.CutPrefix(line, "addr ")
	if !ok {
		t.Fatalf("kfake child: %q", line)
	}
	k.addr = addr
	return k
}

func (k *kfakeProcess) line(t *testing.T) string {
	t.Helper()
	if !k.out.Scan() {
		t.Fatalf("kfake child exited: %v", k.out.Err())
	}
	return k.out.Text()
}

// produce makes the child produce n more records and waits for them.
func (k *kfakeProcess) produce(t *testing.T, n int) {
	t.Helper()
	fmt.Fprintf(k.stdin, "produce %d\n", n)
	if line := k.line(t); line != "ok" {
		t.Fatalf("kfake child: %q", line)
	}
}

func (k *kfakeProcess) endOffsets(t *testing.T) map[wal.TopicPartition]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), k.topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[wal.TopicPartition]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		out[wal.TopicPartition{Topic: o.Topic, Partition: o.Partition}] = o.Offset
	})
	return out
}

// heapAlloc is the live heap after a full collection.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeTestPKI writes a self-signed certificate for localhost/127.0.0.1
// that serves as CA, server and client certificate, and returns its files
// and a server TLS config that requires a client certificate signed by it.
func writeTestPKI(t *testing.T) (certFile, keyFile string, server *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "offload test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return certFile, keyFile, &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	}
}
