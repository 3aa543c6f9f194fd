package loader

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestParsePrivateKey reads keys as openssl writes them for Snowflake
// key-pair authentication: plain PKCS#8, PKCS#1, and PKCS#8 encrypted with
// AES-256 and DES-EDE3 (the form Snowflake's documentation shows).
func TestParsePrivateKey(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is needed to write the test keys (Debian package openssl)")
	}
	dir := t.TempDir()
	run := func(args ...string) []byte {
		t.Helper()
		out, err := exec.Command(openssl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	pkcs1 := filepath.Join(dir, "rsa1.pem")
	run("genrsa", "-traditional", "-out", pkcs1, "2048")
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	want, err := ParsePrivateKey(read(pkcs1), nil)
	if err != nil {
		t.Fatalf("PKCS#1: %v", err)
	}
	const pass = "correct horse battery staple"
	for _, c := range []struct {
		name string
		args []string
		pass string
	}{
		{"pkcs8", []string{"pkcs8", "-topk8", "-nocrypt"}, ""},
		{"pkcs8-aes256", []string{"pkcs8", "-topk8", "-v2", "aes256", "-passout", "pass:" + pass}, pass},
		{"pkcs8-des3", []string{"pkcs8", "-topk8", "-v2", "des3", "-passout", "pass:" + pass}, pass},
	} {
		out := filepath.Join(dir, c.name+".p8")
		run(append(c.args, "-in", pkcs1, "-out", out)...)
		got, err := ParsePrivateKey(read(out), []byte(c.pass))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !got.Equal(want) {
			t.Fatalf("%s: a different key", c.name)
		}
		if c.pass == "" {
			continue
		}
		_, err = ParsePrivateKey(read(out), []byte("wrong"))
		if err == nil || !strings.Contains(err.Error(), "passphrase") || strings.Contains(err.Error(), pass) {
			t.Fatalf("%s with a wrong passphrase: %v", c.name, err)
		}
		if _, err := ParsePrivateKey(read(out), nil); err == nil || !strings.Contains(err.Error(), "give its passphrase") {
			t.Fatalf("%s without a passphrase: %v", c.name, err)
		}
	}
	for _, bad := range []string{"", "not pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"} {
		if _, err := ParsePrivateKey([]byte(bad), nil); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}
