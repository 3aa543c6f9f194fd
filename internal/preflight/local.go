package preflight

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"github.com/offload/offload/loader"
)

// probeBytes is what the write probe writes and fsyncs.
const probeBytes = 64 << 10

// DataDir checks that dir (config data_dir) takes a write and an fsync,
// and that its filesystem has room for the disk budget: free space plus
// what dir holds already. A dir that does not exist yet is probed in its
// nearest existing parent, where `offload run` creates it.
func DataDir(dir string, budget int64) []loader.CheckResult {
	at, missing, err := existingAncestor(dir)
	name := "local: data_dir " + dir + " writable"
	if missing {
		name = fmt.Sprintf("local: data_dir %s (missing: offload run creates it) writable in %s", dir, at)
	}
	if err != nil {
		return []loader.CheckResult{{Name: name, Detail: err.Error(), Fix: "correct data_dir: a path the service user can create"}}
	}
	if err := writeProbe(at); err != nil {
		fix := "give the service user write access (chown -R offload: " + at + ") or correct data_dir"
		if errors.Is(err, errSync) {
			fix = "the filesystem cannot fsync: put data_dir on a local disk (not a FUSE or network mount that drops fsync)"
		}
		return []loader.CheckResult{{Name: name, Detail: err.Error(), Fix: fix}}
	}
	out := []loader.CheckResult{{Name: name, OK: true}, {Name: "local: fsync in " + at, OK: true}}
	var st syscall.Statfs_t
	if err := syscall.Statfs(at, &st); err != nil {
		return append(out, loader.CheckResult{Name: "local: free space for disk_budget", Detail: err.Error(), Fix: "check the filesystem of data_dir"})
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	held := int64(0)
	if !missing {
		held = duBytes(dir)
	}
	check := loader.CheckResult{Name: fmt.Sprintf("local: free space for disk_budget %s (%s free, %s held in data_dir)", size(budget), size(free), size(held)),
		OK: free+held >= budget}
	if !check.OK {
		check.Detail = fmt.Sprintf("the filesystem of %s has %s free; with the %s data_dir holds, %s short of disk_budget %s",
			at, size(free), size(held), size(budget-free-held), size(budget))
		check.Fix = "free space on that filesystem, move data_dir to a larger one (docs/OPERATIONS.md), or lower disk_budget"
	}
	return append(out, check)
}

var errSync = errors.New("fsync failed")

// writeProbe writes, fsyncs and removes a file in dir, and fsyncs dir.
func writeProbe(dir string) error {
	f, err := os.CreateTemp(dir, ".offload-check-*")
	if err != nil {
		return fmt.Errorf("cannot create a file: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(make([]byte, probeBytes)); err != nil {
		_ = f.Close()
		return fmt.Errorf("cannot write %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("%w: %s: %w", errSync, f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cannot close %s: %w", f.Name(), err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cannot open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("%w: directory %s: %w", errSync, dir, err)
	}
	return nil
}

// existingAncestor returns dir, or its nearest existing ancestor when dir
// does not exist (missing true). A path in the way that is not a
// directory is an error.
func existingAncestor(dir string) (string, bool, error) {
	p := filepath.Clean(dir)
	for {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return p, p != filepath.Clean(dir), fmt.Errorf("%s is not a directory", p)
			}
			return p, p != filepath.Clean(dir), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return p, p != filepath.Clean(dir), err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return p, true, err
		}
		p = parent
	}
}

// duBytes totals the sizes of the regular files under dir; unreadable
// entries count as empty.
func duBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// AdminListen checks that the admin endpoint's address (config
// admin.listen) can be bound; empty means the endpoint is off.
func AdminListen(addr string) loader.CheckResult {
	if addr == "" {
		return loader.CheckResult{Name: "local: admin endpoint off (admin.listen empty)", OK: true}
	}
	name := "local: admin.listen " + addr + " can be bound"
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return loader.CheckResult{Name: name, Detail: err.Error(),
			Fix: "another process holds the port (offload running already? `ss -ltnp`), or the address is not this host's: correct admin.listen"}
	}
	_ = ln.Close()
	return loader.CheckResult{Name: name, OK: true}
}

// size formats n bytes in binary units.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
