package drain

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is the kernel's USER_HZ, the unit of utime and stime in
// /proc/<pid>/stat (sysconf(_SC_CLK_TCK)): 100 on every Linux platform.
const clockTicks = 100

// stopTimeout bounds the wait for the appliance after SIGTERM.
const stopTimeout = 60 * time.Second

// appliance is `offload run` as a subprocess, its output in one log file.
type appliance struct {
	cmd     *exec.Cmd
	logPath string
	started time.Time
	done    chan struct{} // closed when the process has exited
	waitErr error         // set before done closes
}

// startAppliance runs bin as `offload run --config cfg` with env added to
// this process's environment.
func startAppliance(bin, cfg, logPath string, env []string) (*appliance, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("cannot create the appliance's log: %w", err)
	}
	defer logFile.Close() // the child holds its own descriptor
	a := &appliance{cmd: exec.Command(bin, "run", "--config", cfg), logPath: logPath, done: make(chan struct{})}
	a.cmd.Env = append(os.Environ(), env...)
	a.cmd.Stdout, a.cmd.Stderr = logFile, logFile
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start %s run: %w (set OFFLOAD_BIN to the offload binary)", bin, err)
	}
	a.started = time.Now()
	go func() {
		a.waitErr = a.cmd.Wait()
		close(a.done)
	}()
	return a, nil
}

// exited tells whether the process has stopped.
func (a *appliance) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits, bounded, for a clean exit; past the
// bound it kills the process.
func (a *appliance) stop() error {
	if a.exited() {
		return fmt.Errorf("the appliance had stopped by itself: %v (log: %s)", a.waitErr, a.logPath)
	}
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("cannot stop the appliance: %w", err)
	}
	select {
	case <-a.done:
	case <-time.After(stopTimeout):
		a.kill()
		return fmt.Errorf("the appliance did not stop within %s of SIGTERM (log: %s)", stopTimeout, a.logPath)
	}
	if a.waitErr != nil {
		return fmt.Errorf("the appliance stopped on SIGTERM with %v (log: %s)", a.waitErr, a.logPath)
	}
	return nil
}

// kill SIGKILLs the process unless it has exited, and waits for it.
func (a *appliance) kill() {
	if a.exited() {
		return
	}
	_ = a.cmd.Process.Kill()
	<-a.done
}

// cpuTicks reads the process's user plus system CPU time, in clock ticks,
// from /proc/<pid>/stat.
func (a *appliance) cpuTicks() (int64, error) {
	path := filepath.Join("/proc", strconv.Itoa(a.cmd.Process.Pid), "stat")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("cannot read the appliance's CPU time: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// utime and stime are fields 14 and 15, the 12th and 13th after it.
	i := strings.LastIndexByte(string(b), ')')
	fields := strings.Fields(string(b[i+1:]))
	if i < 0 || len(fields) < 13 {
		return 0, fmt.Errorf("cannot read the appliance's CPU time: %s: unexpected format", path)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("cannot read the appliance's CPU time: %s: %w", path, err)
	}
	return utime + stime, nil
}

// peakRSS reads the process's peak resident set size (VmHWM) from
// /proc/<pid>/status, in bytes.
func (a *appliance) peakRSS() (int64, error) {
	path := filepath.Join("/proc", strconv.Itoa(a.cmd.Process.Pid), "status")
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("cannot read the appliance's peak RSS: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cannot read the appliance's peak RSS: %s: %w", path, err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("cannot read the appliance's peak RSS: %w", err)
	}
	return 0, fmt.Errorf("cannot read the appliance's peak RSS: %s has no VmHWM", path)
}

// loopbackAddr returns a 127.0.0.1 address with a port nobody listens on
// now, for the appliance's admin API.
func loopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("cannot find a free port for the admin API: %w", err)
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}
