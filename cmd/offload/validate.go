package main

import (
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/offload/offload/internal/config"
)

// loadConfig loads the file named by --config with the process environment.
func loadConfig(path string) (*config.Config, error) {
	c, err := config.Load(path, os.Environ())
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

func runValidate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate", stderr)
	path := fs.String("config", "", "configuration file (YAML)")
	quiet := fs.Bool("q", false, "print nothing when the configuration is valid")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageError{fmt.Errorf("--config FILE is required")}
	}
	c, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if *quiet {
		return nil
	}
	out, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# %s is valid; effective settings (secrets redacted):\n%s", *path, out)
	return nil
}
