package bqtest_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/option"

	"github.com/offload/offload/internal/bqtest"
	"github.com/offload/offload/internal/testenv"
)

// TestProgram: the emulator run as its own program serves BigQuery's API
// through the relay and past it, and Close stops the program.
func TestProgram(t *testing.T) {
	if err := testenv.BigQueryEmulator(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	prog, err := bqtest.FindProgram()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := bqtest.Start(bqtest.Options{Launch: bqtest.Program(prog), Path: filepath.Join(t.TempDir(), "bq.sqlite")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for ds, endpoint := range map[string]string{"relayed": srv.Endpoint(), "direct": srv.DirectEndpoint()} {
		c, err := bigquery.NewClient(ctx, srv.Project(), option.WithEndpoint(endpoint), option.WithoutAuthentication())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Dataset(ds).Create(ctx, nil); err != nil {
			t.Fatalf("%s: %v", endpoint, err)
		}
		if _, err := c.Dataset(ds).Metadata(ctx); err != nil {
			t.Fatalf("%s: %v", endpoint, err)
		}
		_ = c.Close()
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(srv.DirectEndpoint())
	if err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
		_ = c.Close()
		t.Fatalf("the emulator still listens on %s after Close", u.Host)
	}
}

// TestProgramFailsToStart: a program that is not there, or that exits
// before it listens, fails Start with its path and what it printed.
func TestProgramFailsToStart(t *testing.T) {
	dir := t.TempDir()
	failing := filepath.Join(dir, "failing")
	if err := os.WriteFile(failing, []byte("#!/bin/sh\necho 'cannot open the database' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ prog, want string }{
		{filepath.Join(dir, "missing"), filepath.Join(dir, "missing")},
		{failing, "exited before it listened; it printed: cannot open the database"},
	} {
		_, err := bqtest.Start(bqtest.Options{Launch: bqtest.Program(c.prog)})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one with %q", c.prog, err, c.want)
		}
	}
}

// TestFindProgram: $OFFLOAD_BIGQUERY_EMULATOR names the program; without
// it, one beside the running binary, and the error says both.
func TestFindProgram(t *testing.T) {
	t.Setenv(bqtest.ProgramEnv, "/opt/emulator")
	if p, err := bqtest.FindProgram(); err != nil || p != "/opt/emulator" {
		t.Fatalf("FindProgram = %q, %v; want /opt/emulator", p, err)
	}
	t.Setenv(bqtest.ProgramEnv, "")
	_, err := bqtest.FindProgram()
	if err == nil || !strings.Contains(err.Error(), bqtest.ProgramEnv) || !strings.Contains(err.Error(), "make build") {
		t.Fatalf("err = %v, want one naming %s and make build", err, bqtest.ProgramEnv)
	}
}
