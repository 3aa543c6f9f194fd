package bqtest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ProgramName is the program that runs the emulator in a process of its
// own (cmd/offload-bigquery-emulator); `make build` puts it beside
// bin/offload.
const ProgramName = "offload-bigquery-emulator"

// ProgramEnv names the program when it is not beside the running binary.
const ProgramEnv = "OFFLOAD_BIGQUERY_EMULATOR"

// ReadyLine is the line the program prints on its standard output once
// the emulator listens.
const ReadyLine = ProgramName + ": listening"

// programStartTimeout bounds the program's start (the emulator opening
// its database); programStopTimeout its stop after its standard input
// closes, after which it is killed.
const (
	programStartTimeout = 60 * time.Second
	programStopTimeout  = 15 * time.Second
)

// FindProgram returns the program's path: $OFFLOAD_BIGQUERY_EMULATOR, or
// offload-bigquery-emulator beside the running binary.
func FindProgram() (string, error) {
	if p := os.Getenv(ProgramEnv); p != "" {
		return p, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("cannot find the running binary to look for %s beside it: %w (name it in %s)", ProgramName, err, ProgramEnv)
	}
	p := filepath.Join(filepath.Dir(exe), ProgramName)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("the BigQuery emulator runs as the program %s, which is not beside %s (`make build` builds it there; or name it in %s): %w", ProgramName, exe, ProgramEnv, err)
	}
	return p, nil
}

// Program launches the emulator as the program at path. The program stops
// when its standard input closes: when stop closes it, or when this
// process dies.
func Program(path string) Launch {
	return func(project, dbPath, httpAddr, grpcAddr string) (func() error, error) {
		p := &program{cmd: exec.Command(path, "--project", project, "--database", dbPath, "--http", httpAddr, "--grpc", grpcAddr)}
		if err := p.start(); err != nil {
			return nil, fmt.Errorf("cannot run the BigQuery emulator %s: %w", path, err)
		}
		return p.stop, nil
	}
}

// program is a running offload-bigquery-emulator.
type program struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr tailWriter
	read   sync.WaitGroup // the reader of its standard output
	ready  chan bool      // true once ReadyLine is read; closed at EOF
}

func (p *program) start() error {
	p.cmd.Stderr = &p.stderr
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return err
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := p.cmd.Start(); err != nil {
		return err
	}
	p.ready = make(chan bool, 1)
	p.read.Go(func() { p.readStdout(stdout) })
	select {
	case ok := <-p.ready:
		if ok {
			return nil
		}
		err = errors.New("it exited before it listened")
	case <-time.After(programStartTimeout):
		err = fmt.Errorf("it did not listen within %v", programStartTimeout)
	}
	_ = p.cmd.Process.Kill()
	p.read.Wait()
	_ = p.cmd.Wait()
	if tail := p.stderr.String(); tail != "" {
		err = fmt.Errorf("%w; it printed: %s", err, tail)
	}
	return err
}

// readStdout reports ReadyLine on p.ready, then reads on to EOF so that
// the program never blocks on a full pipe.
func (p *program) readStdout(r io.Reader) {
	defer close(p.ready)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == ReadyLine {
			p.ready <- true
			break
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// stop closes the program's standard input, waits for it to exit, and
// kills it past programStopTimeout.
func (p *program) stop() error {
	_ = p.stdin.Close()
	exited := make(chan error, 1)
	go func() {
		p.read.Wait()
		exited <- p.cmd.Wait()
	}()
	select {
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("the BigQuery emulator exited with %w: %s", err, p.stderr.String())
		}
		return nil
	case <-time.After(programStopTimeout):
		_ = p.cmd.Process.Kill()
		<-exited
		return fmt.Errorf("the BigQuery emulator did not stop within %v of its input closing: killed", programStopTimeout)
	}
}

// tailWriter keeps the last tailSize bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
}

const tailSize = 4 << 10

func (t *tailWriter) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - tailSize; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}
