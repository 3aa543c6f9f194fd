package snowtest_test

import (
	"os"
	"testing"

	"github.com/snowflakedb/gosnowflake"
)

func TestMain(m *testing.M) {
	// The driver logs every failed statement at error level; the tests
	// cause many on purpose.
	_ = gosnowflake.GetLogger().SetLogLevel("fatal")
	os.Exit(m.Run())
}
