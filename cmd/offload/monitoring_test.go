package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"gopkg.in/yaml.v3"
)

// The monitoring files checked here, relative to the repository root.
const (
	grafanaDashboard = "deploy/grafana/offload.json"
	alertRules       = "deploy/prometheus/alerts.yml"
	prometheusConfig = "deploy/prometheus/prometheus.yml"
	datadogConf      = "deploy/datadog/conf.d/openmetrics.d/conf.yaml"
	metricsDoc       = "docs/METRICS.md"
)

// repoRoot is the repository's top directory (tests run in cmd/offload).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no repository root at %s: %v", root, err)
	}
	return root
}

func readRepoFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// metricCatalog maps each offload_ metric of docs/METRICS.md's tables to
// its type (counter, gauge or histogram).
func metricCatalog(t *testing.T) map[string]string {
	t.Helper()
	row := regexp.MustCompile("(?m)^\\| `(offload_[a-z0-9_]+)` \\| (counter|gauge|histogram) \\|")
	cat := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(readRepoFile(t, metricsDoc)), -1) {
		cat[m[1]] = m[2]
	}
	if len(cat) == 0 {
		t.Fatalf("no metric rows in %s", metricsDoc)
	}
	return cat
}

// dashboardExprs returns the PromQL of the Grafana dashboard: every "expr"
// of its panels and every "query" of its template variables, at any depth.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	var dash any
	if err := json.Unmarshal(readRepoFile(t, grafanaDashboard), &dash); err != nil {
		t.Fatalf("%s: %v", grafanaDashboard, err)
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if s, ok := e.(string); ok && (k == "expr" || k == "query") {
					exprs = append(exprs, s)
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(dash)
	return exprs
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func readAlertRules(t *testing.T) []alertRule {
	t.Helper()
	var f struct {
		Groups []struct {
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, alertRules), &f); err != nil {
		t.Fatalf("%s: %v", alertRules, err)
	}
	var rules []alertRule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules
}

var metricToken = regexp.MustCompile(`offload_[a-z0-9_]+`)

// metricNamesUsed returns, sorted and once each, the offload_ metric names
// in the PromQL of the Grafana dashboard and the alert rules. A histogram's
// series (_bucket, _sum, _count) count as the histogram's own name, which
// is the family name /metrics shows in its "# TYPE" line.
func metricNamesUsed(t *testing.T) []string {
	t.Helper()
	cat := metricCatalog(t)
	exprs := dashboardExprs(t)
	for _, r := range readAlertRules(t) {
		exprs = append(exprs, r.Expr)
	}
	used := map[string]bool{}
	for _, e := range exprs {
		for _, name := range metricToken.FindAllString(e, -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok && cat[base] == "histogram" {
					name = base
				}
			}
			used[name] = true
		}
	}
	return slices.Sorted(maps.Keys(used))
}

// TestMonitoringMetricsInCatalog: the dashboard and the alert rules use
// only metrics of the catalog, and every alert tells the operator what
// happened and what to do.
func TestMonitoringMetricsInCatalog(t *testing.T) {
	cat := metricCatalog(t)
	used := metricNamesUsed(t)
	for _, name := range used {
		if cat[name] == "" {
			t.Errorf("%s or %s uses %s, which %s does not list", grafanaDashboard, alertRules, name, metricsDoc)
		}
	}
	rules := readAlertRules(t)
	if len(rules) == 0 {
		t.Fatalf("no rules in %s", alertRules)
	}
	for _, r := range rules {
		if r.Alert == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("rule %q (%s) needs an alert name, a severity label and summary and description annotations", r.Alert, r.Expr)
		}
	}
	t.Logf("%d metrics used by the dashboard and the %d alert rules", len(used), len(rules))
}

// TestDatadogConfListsCatalog: the OpenMetrics check's metric list is the
// catalog, named as the check matches them (raw_metric_prefix offload_
// stripped, counters without _total).
func TestDatadogConfListsCatalog(t *testing.T) {
	var conf struct {
		Instances []struct {
			RawMetricPrefix string   `yaml:"raw_metric_prefix"`
			Metrics         []string `yaml:"metrics"`
		} `yaml:"instances"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, datadogConf), &conf); err != nil {
		t.Fatalf("%s: %v", datadogConf, err)
	}
	if len(conf.Instances) != 1 || conf.Instances[0].RawMetricPrefix != "offload_" {
		t.Fatalf("%s: want one instance with raw_metric_prefix offload_", datadogConf)
	}
	var want []string
	for name, typ := range metricCatalog(t) {
		name = strings.TrimPrefix(name, "offload_")
		if typ == "counter" {
			name = strings.TrimSuffix(name, "_total")
		}
		want = append(want, name)
	}
	slices.Sort(want)
	got := slices.Sorted(slices.Values(conf.Instances[0].Metrics))
	if !slices.Equal(got, want) {
		t.Fatalf("%s lists\n%v\nwant the catalog's\n%v", datadogConf, got, want)
	}
}

// lookPathOrSkip finds an executable: the test is skipped without it, or
// fails when the CI environment variable is set.
func lookPathOrSkip(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing in CI: scripts/setup.sh installs it", name)
		}
		t.Skipf("%s is not installed: run scripts/setup.sh", name)
	}
	return p
}

// TestPromtoolChecks: promtool accepts the alert rules and the example
// Prometheus configuration (which loads them), and the rules' unit tests
// (deploy/prometheus/alerts_test.yml) pass.
func TestPromtoolChecks(t *testing.T) {
	promtool := lookPathOrSkip(t, "promtool")
	root := repoRoot(t)
	for _, args := range [][]string{
		{"check", "rules", filepath.Join(root, alertRules)},
		{"check", "config", filepath.Join(root, prometheusConfig)},
		{"test", "rules", filepath.Join(root, "deploy/prometheus/alerts_test.yml")},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, promtool, args...).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// startPrometheus runs scripts/prometheus.sh start on a configuration
// scraping the admin endpoint at target every second and loading the alert
// rules, with its state in a directory of the test's, and returns the
// server's address. The server is stopped when the test ends.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	bin := os.Getenv("OFFLOAD_PROMETHEUS")
	if bin == "" {
		bin = "/usr/bin/prometheus"
	}
	lookPathOrSkip(t, bin)
	root := repoRoot(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	body := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: offload
    static_configs:
      - targets: [%q]
`, filepath.Join(root, alertRules), target)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	script := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(root, "scripts", "prometheus.sh")}, args...)...)
		cmd.Env = append(os.Environ(), "OFFLOAD_PROMETHEUS_DIR="+filepath.Join(dir, "state"))
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("prometheus.sh %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		return lines[len(lines)-1], nil
	}
	addr, err := script("start", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := script("stop"); err != nil {
			t.Error(err)
		}
	})
	return addr
}

var promClient = &http.Client{Timeout: 5 * time.Second}

// promGet GETs path from the Prometheus HTTP API at addr and decodes the
// "data" of a successful answer into data.
func promGet(addr, path string, data any) error {
	resp, err := promClient.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("%s: %s: %w", path, resp.Status, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, resp.Status, r.Error)
	}
	return json.Unmarshal(r.Data, data)
}

// promValue evaluates query, which must give at most one series, and
// returns its value; ok is false when the result is empty.
func promValue(addr, query string) (v float64, ok bool, err error) {
	var data struct {
		Result []struct {
			Value [2]any `json:"value"`
		} `json:"result"`
	}
	if err := promGet(addr, "/api/v1/query?"+url.Values{"query": {query}}.Encode(), &data); err != nil {
		return 0, false, err
	}
	switch len(data.Result) {
	case 0:
		return 0, false, nil
	case 1:
		s, _ := data.Result[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		return v, err == nil, err
	default:
		return 0, false, fmt.Errorf("%s: %d series, want one", query, len(data.Result))
	}
}

// TestPrometheusScrapes: a real Prometheus scrapes the daemon's /metrics
// while events flow to the warehouse, and its queries see the pipeline's
// counts: every record produced ingested, every valid event loaded, every
// malformed one rejected. The alert rules evaluate without errors on the
// real series.
func TestPrometheusScrapes(t *testing.T) {
	srv := newWarehouse(t)
	brokers, cl := kfakeTopic(t, "shop", 3)
	d := startDaemon(t, testConfig(t, t.TempDir(), brokers, "shop", warehouseYAML(srv)), warehouseEnv)
	d.waitLog(t, "admin endpoint listening", 30*time.Second)
	adminAddr := regexp.MustCompile(`admin endpoint listening" addr=(\S+)`).FindStringSubmatch(d.logs.String())[1]
	prom := startPrometheus(t, adminAddr)
	d.waitLog(t, "partitions assigned", 30*time.Second)

	want, malformed := shopEvents(t, cl, 0, 3000, rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	ends, err := newAdmin(t, brokers).ListEndOffsets(ctx, "shop")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	produced := 0
	ends.Each(func(o kadm.ListedOffset) { produced += int(o.Offset) })
	waitRows(t, srv, d, len(want), 60*time.Second)

	expect := map[string]float64{
		`up{job="offload"}`: 1,
		`sum(offload_ingest_records_total{job="offload"})`:  float64(produced),
		`sum(offload_loader_rows_total{job="offload"})`:     float64(len(want)),
		`sum(offload_engine_rejected_total{job="offload"})`: float64(malformed),
	}
	queries := slices.Sorted(maps.Keys(expect))
	deadline := time.Now().Add(60 * time.Second)
	for {
		var off []string
		for _, q := range queries {
			v, ok, err := promValue(prom, q)
			if !ok || v != expect[q] {
				off = append(off, fmt.Sprintf("%s = %v (present %v, %v), want %v", q, v, ok, err, expect[q]))
			}
		}
		if len(off) == 0 {
			t.Logf("Prometheus sees %d records ingested, %d rows loaded, %d rejected", produced, len(want), malformed)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus at %s, scraping %s, after 60s:\n%s", prom, adminAddr, strings.Join(off, "\n"))
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Every alert rule has been evaluated on these series without an error.
	deadline = time.Now().Add(30 * time.Second)
	for {
		var data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		}
		if err := promGet(prom, "/api/v1/rules", &data); err != nil {
			t.Fatal(err)
		}
		rules, healthy := 0, 0
		for _, g := range data.Groups {
			for _, r := range g.Rules {
				rules++
				switch r.Health {
				case "ok":
					healthy++
				case "err":
					t.Fatalf("alert rule %s fails: %s", r.Name, r.LastError)
				}
			}
		}
		if rules > 0 && healthy == rules {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d alert rules evaluated after 30s", healthy, rules)
		}
		time.Sleep(500 * time.Millisecond)
	}
	stopDaemon(t, d)
}
