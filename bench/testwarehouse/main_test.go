package testwarehouse

import (
	"fmt"
	"os"
	"testing"

	"github.com/offload/offload/internal/testenv"
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

// testMain gives the BigQuery test warehouse its emulator's program.
func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "offload-bigquery-emulator")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := testenv.BigQueryEmulator(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}
