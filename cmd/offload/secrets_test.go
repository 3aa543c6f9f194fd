package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/offload/offload/internal/snowtest"
)

// TestSecretsNeverLogged runs the daemon at debug level with a password,
// an encrypted private key and its passphrase configured, through warehouse
// faults and a failing login, then greps everything it and the CLI
// printed: no secret may appear, in any encoding a log could carry.
func TestSecretsNeverLogged(t *testing.T) {
	const (
		password   = "Pw-never-9d2e71b4"
		passphrase = "Pp-never-5a8c03f6"
	)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.pem")
	if err := os.WriteFile(plain, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "rsa_key.p8")
	if out, err := exec.Command("openssl", "pkcs8", "-topk8", "-v2", "aes256", "-in", plain, "-out", keyFile, "-passout", "pass:"+passphrase).CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	pemText, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(plain); err != nil {
		t.Fatal(err)
	}

	srv := newWarehouse(t)
	srv.AddUser(snowtest.User{Name: "OFFLOAD_KEY", PrivateKey: key})
	for _, f := range []snowtest.Fault{
		{Kind: snowtest.FaultHTTPStatus, Status: 503, Endpoint: snowtest.EndpointQuery, Times: 2},
		{Kind: snowtest.FaultSessionExpired, Endpoint: snowtest.EndpointQuery},
		{Kind: snowtest.FaultStatementError, SQL: regexp.MustCompile(`^PUT `)},
	} {
		srv.Inject(f)
	}
	brokers, cl := kfakeTopic(t, "shop", 2)
	keyYAML := strings.Replace(warehouseYAML(srv), "user: OFFLOAD\n", fmt.Sprintf("user: OFFLOAD_KEY\n  auth: keypair\n  private_key_file: %s\n", keyFile), 1)
	env := []string{"OFFLOAD_WAREHOUSE_PASSWORD=" + password, "OFFLOAD_WAREHOUSE_PRIVATE_KEY_PASSPHRASE=" + passphrase, "OFFLOAD_LOG_LEVEL=debug"}
	keyCfg := testConfig(t, t.TempDir(), brokers, "shop", keyYAML)
	d := startDaemon(t, keyCfg, env...)
	d.waitLog(t, "partitions assigned", 30*time.Second)
	want, _ := shopEvents(t, cl, 0, 500, mrand.New(mrand.NewPCG(1, 2)))
	waitRows(t, srv, d, len(want), 60*time.Second)
	stopDaemon(t, d)
	printed := d.logs.String()

	// A login that fails: the wrong password is in the environment.
	badCfg := testConfig(t, t.TempDir(), brokers, "shop", warehouseYAML(srv))
	bad := startDaemon(t, badCfg, "OFFLOAD_WAREHOUSE_PASSWORD="+password, "OFFLOAD_LOG_LEVEL=debug")
	bad.waitLog(t, "partitions assigned", 30*time.Second)
	shopEvents(t, cl, 500, 100, mrand.New(mrand.NewPCG(3, 4)))
	bad.waitLog(t, "load failed; will retry", 30*time.Second)
	stopDaemon(t, bad)
	printed += bad.logs.String()
	if !strings.Contains(bad.logs.String(), "390100") {
		t.Fatalf("the failed login is not reported with its code:\n%s", bad.logs.String())
	}

	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		t.Setenv(k, v)
	}
	for _, args := range [][]string{{"validate", "--config", keyCfg}, {"validate", "--config", badCfg}, {"dlq", "list", "--config", keyCfg}} {
		code, out, errOut := runCLI(args...)
		if code != 0 {
			t.Fatalf("offload %s: exit %d\n%s", strings.Join(args, " "), code, errOut)
		}
		printed += out + errOut
	}

	secrets := map[string]string{"password": password, "passphrase": passphrase,
		"private exponent": key.D.String(), "private exponent (hex)": key.D.Text(16), "prime": key.Primes[0].String()}
	der := x509.MarshalPKCS1PrivateKey(key)
	secrets["private key (base64 DER)"] = base64.StdEncoding.EncodeToString(der)[40:100]
	for i, line := range strings.Split(string(pemText), "\n") {
		if len(line) == 64 {
			secrets[fmt.Sprintf("PEM line %d", i)] = line
		}
	}
	secrets["password (base64)"] = base64.StdEncoding.EncodeToString([]byte(password))
	for what, s := range secrets {
		if strings.Contains(printed, s) {
			t.Errorf("the %s appears in what offload printed", what)
		}
	}
	if lines := strings.Count(printed, "\n"); lines < 50 {
		t.Fatalf("only %d lines were checked", lines)
	}
}
