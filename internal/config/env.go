package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// EnvPrefix starts every environment override: OFFLOAD_ followed by the
// option's path in upper case with dots as underscores, e.g.
// OFFLOAD_KAFKA_BROKERS for kafka.brokers. Lists are comma-separated.
const EnvPrefix = "OFFLOAD_"

// Option describes one configuration option.
type Option struct {
	Path string // YAML path, e.g. kafka.sasl.mechanism
	Env  string // environment variable
	Kind string // string, bool, list, bytes, duration, secret
}

var (
	byteSizeType = reflect.TypeOf(ByteSize(0))
	durationType = reflect.TypeOf(Duration(0))
	secretType   = reflect.TypeOf(Secret(""))
)

// Options lists every option with its environment variable.
func Options() []Option {
	var out []Option
	walk(reflect.ValueOf(&Config{}).Elem(), "", func(path string, _ reflect.Value, kind string) error {
		out = append(out, Option{Path: path, Env: envName(path), Kind: kind})
		return nil
	})
	return out
}

func envName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

func walk(v reflect.Value, prefix string, fn func(path string, f reflect.Value, kind string) error) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		path := tag
		if prefix != "" {
			path = prefix + "." + tag
		}
		f := v.Field(i)
		var kind string
		switch {
		case f.Type() == byteSizeType:
			kind = "bytes"
		case f.Type() == durationType:
			kind = "duration"
		case f.Type() == secretType:
			kind = "secret"
		case f.Kind() == reflect.Map:
			continue // per-key settings (topics.NAME) come from the file only
		case f.Kind() == reflect.Struct:
			if err := walk(f, path, fn); err != nil {
				return err
			}
			continue
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
			kind = "list"
		case f.Kind() == reflect.String:
			kind = "string"
		case f.Kind() == reflect.Bool:
			kind = "bool"
		case f.Kind() == reflect.Int, f.Kind() == reflect.Int64:
			kind = "int"
		case f.Kind() == reflect.Float64:
			kind = "float"
		default:
			panic(fmt.Sprintf("BUG: config option %s has unsupported type %s", path, f.Type()))
		}
		if err := fn(path, f, kind); err != nil {
			return err
		}
	}
	return nil
}

// applyEnv sets options from OFFLOAD_* variables in environ.
func applyEnv(c *Config, environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = v
		}
	}
	return walk(reflect.ValueOf(c).Elem(), "", func(path string, f reflect.Value, kind string) error {
		name := envName(path)
		s, ok := env[name]
		if !ok {
			return nil
		}
		bad := func(err error) error {
			return fmt.Errorf("config: %s (from %s): %v", path, name, err)
		}
		switch kind {
		case "bytes":
			b, err := ParseByteSize(s)
			if err != nil {
				return bad(err)
			}
			f.SetInt(int64(b))
		case "duration":
			d, err := time.ParseDuration(s)
			if err != nil {
				return bad(fmt.Errorf("%q is not a duration (e.g. 500ms, 30s, 5m)", s))
			}
			f.SetInt(int64(d))
		case "list":
			var items []string
			for _, it := range strings.Split(s, ",") {
				if it = strings.TrimSpace(it); it != "" {
					items = append(items, it)
				}
			}
			f.Set(reflect.ValueOf(items))
		case "bool":
			b, err := strconv.ParseBool(s)
			if err != nil {
				return bad(fmt.Errorf("%q is not true or false", s))
			}
			f.SetBool(b)
		case "int":
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return bad(fmt.Errorf("%q is not an integer", s))
			}
			f.SetInt(n)
		case "float":
			n, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return bad(fmt.Errorf("%q is not a number", s))
			}
			f.SetFloat(n)
		default: // string, secret
			f.SetString(s)
		}
		return nil
	})
}
