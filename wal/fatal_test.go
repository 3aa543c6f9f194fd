package wal

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// TestFailedSyncIsFatal injects an error into the fsync of Pebble's log
// file. Pebble reports the failed commit through Logger.Fatalf from
// DB.Apply, in the appending goroutine; the WAL must call Options.Fatal
// and the append must never report success, whether Fatal stops the
// goroutine (as the default os.Exit does) or, wrongly, returns.
func TestFailedSyncIsFatal(t *testing.T) {
	for _, c := range []struct {
		name     string
		goexit   bool
		recycled bool // fail the sync of a recycled log file, not the first
	}{
		{"Fatal stops the goroutine", true, false},
		{"Fatal returns", false, false},
		{"recycled log/Fatal stops the goroutine", true, true},
		{"recycled log/Fatal returns", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			mem := vfs.NewCrashableMem()
			var failSync atomic.Bool
			var injected, reused atomic.Int64
			inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
				switch op.Kind {
				case errorfs.OpReuseForWrite:
					reused.Add(1)
				case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
					if failSync.Load() && strings.HasSuffix(op.Path, ".log") {
						injected.Add(1)
						return errorfs.ErrInjected
					}
				}
				return nil
			})
			fatals := make(chan error, 16)
			opts := testOptions(t, wrapFS(mem, inj))
			opts.Fatal = func(err error) {
				fatals <- err
				if c.goexit {
					runtime.Goexit()
				}
			}
			if c.recycled {
				opts.MemTableSize = 16 << 10
			}
			w, err := Open("wal", opts)
			if err != nil {
				t.Fatal(err)
			}
			tp := TopicPartition{Topic: "a", Partition: 0}
			mustAppend(t, w, tp, recs(0, 9))
			if c.recycled {
				// Fill memtables until Pebble rotates onto a recycled log.
				for i := int64(0); reused.Load() < 2; i++ {
					if i == 1000 {
						t.Fatal("Pebble recycled no log file")
					}
					filler := make([]Record, 10)
					for j := range filler {
						filler[j] = Record{Offset: i*10 + int64(j), Value: jsonish(i*10+int64(j), 1000)}
					}
					mustAppend(t, w, TopicPartition{Topic: "filler", Partition: 0}, filler)
				}
			}

			failSync.Store(true)
			type result struct {
				res AppendResult
				err error
			}
			results := make(chan result, 1)
			exited := make(chan struct{})
			go func() {
				defer close(exited)
				res, err := w.Append(tp, recs(10, 19))
				results <- result{res, err}
			}()
			select {
			case err := <-fatals:
				if !strings.Contains(err.Error(), errorfs.ErrInjected.Error()) {
					t.Errorf("Fatal got %v, want the injected sync error", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Options.Fatal was not called after a failed fsync")
			}
			<-exited
			if injected.Load() == 0 {
				t.Fatal("no sync error was injected")
			}
			if c.goexit {
				select {
				case r := <-results:
					t.Fatalf("append returned (%+v, %v) although Fatal stopped its goroutine", r.res, r.err)
				default:
				}
			} else {
				r := <-results
				if r.err == nil || r.res.Appended != 0 {
					t.Fatalf("append after a failed fsync returned (%+v, %v), want an error", r.res, r.err)
				}
				// Later appends are refused without touching Pebble.
				if _, err := w.Append(tp, recs(20, 29)); err == nil || !strings.Contains(err.Error(), "fatal") {
					t.Errorf("append after a fatal error: %v", err)
				}
			}
			if hw := w.HighWater(tp); hw != 9 {
				t.Errorf("high water %d after the failed append, want 9", hw)
			}

			// After the crash the appliance restarts: what was acknowledged
			// is there; the failed append may or may not be.
			clone := mem.CrashClone(vfs.CrashCloneCfg{})
			failSync.Store(false)
			closed := make(chan error, 1)
			go func() { closed <- w.Close() }()
			select {
			case err := <-closed:
				t.Logf("close after the fatal error: %v", err)
			case <-time.After(20 * time.Second):
				t.Fatal("Close hangs after a fatal error")
			}
			w2 := mustOpen(t, clone)
			defer mustClose(t, w2)
			entries, _ := readAll(t, w2, nil)
			got := offsetsOf(entries, tp)
			if !equalOffsets(got, span(0, 9)) && !equalOffsets(got, span(0, 19)) {
				t.Errorf("after restart: %v", got)
			}
			checkAccounting(t, w2)
		})
	}
}

// TestDefaultFatalExits checks that the default Fatal stops the process
// with status 1, in a child process running this test.
func TestDefaultFatalExits(t *testing.T) {
	if os.Getenv("WAL_TEST_DEFAULT_FATAL") == "1" {
		var o Options
		o.Logger = quietLogger()
		o.EnsureDefaults()
		o.Fatal(errors.New("sync failed"))
		return // not reached if Fatal exits
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDefaultFatalExits$", "-test.count=1")
	cmd.Env = append(os.Environ(), "WAL_TEST_DEFAULT_FATAL=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("default Fatal: %v, want exit status 1; output:\n%s", err, out)
	}
}
