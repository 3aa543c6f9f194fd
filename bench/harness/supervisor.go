package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// supervisor runs `offload run` as a subprocess the way systemd does:
// started again after it stops, its output appended to one log file.
type supervisor struct {
	bin, cfg string
	env      []string
	logPath  string
	logFile  *os.File

	// One goroutine (the harness's) starts, kills and stops the daemon.
	cmd    *exec.Cmd
	done   chan struct{}
	extra  []string // the environment of the last start
	starts int
}

func newSupervisor(bin, cfg, logPath string, env ...string) (*supervisor, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &supervisor{bin: bin, cfg: cfg, env: env, logPath: logPath, logFile: f}, nil
}

func (s *supervisor) environ(extra []string) []string {
	env := append(os.Environ(), s.env...)
	return append(env, extra...)
}

// start starts the daemon with extra environment variables.
func (s *supervisor) start(extra []string) error {
	cmd := exec.Command(s.bin, "run", "--config", s.cfg)
	cmd.Env = s.environ(extra)
	cmd.Stdout, cmd.Stderr = s.logFile, s.logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cannot start offload run: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done, s.extra = cmd, done, extra
	s.starts++
	return nil
}

func (s *supervisor) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// kill SIGKILLs the daemon and waits for it; exited says it had stopped
// by itself already.
func (s *supervisor) kill() (exited bool, err error) {
	if s.exited() {
		return true, nil
	}
	if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return false, err
	}
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		return false, errors.New("offload did not die within 30s of SIGKILL")
	}
	return false, nil
}

// restartIfExited starts the daemon again, with the environment it had,
// if it stopped by itself, after a second (as systemd's Restart= does).
func (s *supervisor) restartIfExited() (bool, error) {
	if !s.exited() {
		return false, nil
	}
	time.Sleep(time.Second)
	return true, s.start(s.extra)
}

// stop sends SIGTERM and expects a clean exit.
func (s *supervisor) stop() error {
	if s.exited() {
		return fmt.Errorf("offload had stopped by itself (exit %d) before the final stop", s.cmd.ProcessState.ExitCode())
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		return errors.New("offload did not stop within 60s of SIGTERM")
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("offload exited %d on SIGTERM", code)
	}
	return nil
}

func (s *supervisor) close() {
	if s.cmd != nil && !s.exited() {
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	_ = s.logFile.Close()
}

// logSize is the log's current length, a mark for waitLog.
func (s *supervisor) logSize() int64 {
	st, err := os.Stat(s.logPath)
	if err != nil {
		return 0
	}
	return st.Size()
}

// firstLine returns the first log line after mark that contains text,
// ignoring case.
func (s *supervisor) firstLine(mark int64, text string) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil || int64(len(b)) < mark {
		return ""
	}
	text = strings.ToLower(text)
	for line := range strings.Lines(string(b[mark:])) {
		if strings.Contains(strings.ToLower(line), text) {
			return line
		}
	}
	return ""
}

// waitLog waits until a log line after mark contains text (any case).
func (s *supervisor) waitLog(mark int64, text string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if s.firstLine(mark, text) != "" {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the daemon's log (%s) did not say %q within %s", s.logPath, text, timeout)
}
