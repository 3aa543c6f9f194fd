package drain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/offload/offload/internal/admin"
)

// errNoPprof says the appliance's admin API does not serve /debug/pprof.
var errNoPprof = errors.New("the appliance has no /debug/pprof")

// profiler takes one CPU profile of the appliance in the background.
type profiler struct {
	done chan struct{} // closed when the goroutine has finished
	err  error         // set before done closes
}

// start fetches a CPU profile of seconds from the appliance once its
// admin API answers, and writes it to path.
func (p *profiler) start(ctx context.Context, w watcher, path string, seconds int, progress io.Writer) {
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		p.err = fetchProfile(ctx, w, path, seconds)
		if p.err != nil {
			fmt.Fprintf(progress, "drain: no CPU profile of the appliance: %v; the run goes on\n", p.err)
		} else {
			fmt.Fprintf(progress, "drain: the appliance's CPU profile (%d s) is in %s\n", seconds, path)
		}
	}()
}

// wait waits for the profile and tells whether it was written; it may be
// called more than once.
func (p *profiler) wait() bool {
	<-p.done
	return p.err == nil
}

func fetchProfile(ctx context.Context, w watcher, path string, seconds int) error {
	if _, err := w.until(ctx, "answering", func(admin.Status) bool { return true }); err != nil {
		return err
	}
	url := "http://" + w.addr + "/debug/pprof/profile?seconds=" + strconv.Itoa(seconds)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("cannot fetch %s: %w", url, err)
	}
	cl := &http.Client{Timeout: time.Duration(seconds)*time.Second + time.Minute}
	resp, err := cl.Do(req)
	if err != nil {
		return fmt.Errorf("cannot fetch %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return errNoPprof
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cannot fetch %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("cannot write the CPU profile: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("cannot write the CPU profile to %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cannot write the CPU profile to %s: %w", path, err)
	}
	return nil
}
