package preflight

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/internal/ingest"
	"github.com/offload/offload/internal/testenv"
	"github.com/offload/offload/loader"
)

// summary renders results one a line, "OK" or "FAIL", as offload check
// prints them.
func summary(rs []loader.CheckResult) string {
	var b strings.Builder
	for _, r := range rs {
		if r.OK {
			fmt.Fprintf(&b, "OK   %s\n", r.Name)
		} else {
			fmt.Fprintf(&b, "FAIL %s: %s (fix: %s)\n", r.Name, r.Detail, r.Fix)
		}
	}
	return b.String()
}

// wantResults checks rs against want: for each, a prefix of a result's
// name and whether it passed, in order.
func wantResults(t *testing.T, rs []loader.CheckResult, want ...string) {
	t.Helper()
	if len(rs) != len(want) {
		t.Fatalf("%d results, want %d:\n%s", len(rs), len(want), summary(rs))
	}
	for i, w := range want {
		ok := !strings.HasPrefix(w, "FAIL ")
		if rs[i].OK != ok || !strings.HasPrefix(rs[i].Name, strings.TrimPrefix(w, "FAIL ")) {
			t.Fatalf("result %d: want %q:\n%s", i, w, summary(rs))
		}
		if !ok && (rs[i].Detail == "" || rs[i].Fix == "") {
			t.Fatalf("result %d failed without a detail and a fix:\n%s", i, summary(rs))
		}
	}
}

func checkCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestKafkaCheckKfake: against an in-process cluster, the existing topic
// passes with its partitions, a missing one fails, and the group is
// described and its offsets fetched, committed ones counted.
func TestKafkaCheckKfake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CommitOffsets(checkCtx(t), "appliances", kadm.OffsetsFromRecords(kgo.Record{Topic: "orders", Partition: 1, Offset: 9})); err != nil {
		t.Fatal(err)
	}
	rs := Kafka(checkCtx(t), KafkaOptions{Brokers: c.ListenAddrs(), Topics: []string{"orders", "payments"}, Group: "appliances"})
	wantResults(t, rs, "kafka: brokers", "kafka: topic orders (3 partitions)", "FAIL kafka: topic payments",
		"kafka: describe group appliances", "kafka: fetch the offsets of group appliances (orders: 1 partitions committed; payments: 0")
	if !strings.Contains(rs[2].Detail, "no topic payments") {
		t.Fatalf("missing topic: %+v", rs[2])
	}
}

// TestKafkaCheckWrongSASLPassword: a refused SASL login fails the brokers
// check with the option to fix, never the password, and stops there.
func TestKafkaCheckWrongSASLPassword(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"), kfake.EnableSASL(), kfake.Superuser("PLAIN", "offload", "right-Passw0rd"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const wrong = "wrong-Passw0rd"
	rs := Kafka(checkCtx(t), KafkaOptions{Brokers: c.ListenAddrs(), Topics: []string{"orders"}, Group: "g",
		SASL: ingest.SASLOptions{Mechanism: "plain", Username: "offload", Password: wrong}})
	wantResults(t, rs, "FAIL kafka: brokers")
	if !strings.Contains(rs[0].Fix, "kafka.sasl") || strings.Contains(summary(rs), wrong) {
		t.Fatalf("result: %+v", rs[0])
	}
	rs = Kafka(checkCtx(t), KafkaOptions{Brokers: c.ListenAddrs(), Topics: []string{"orders"}, Group: "g",
		SASL: ingest.SASLOptions{Mechanism: "plain", Username: "offload", Password: "right-Passw0rd"}})
	wantResults(t, rs, "kafka: brokers", "kafka: topic orders (1 partitions)", "kafka: describe group g (new", "kafka: fetch the offsets of group g")
}

// TestKafkaCheckUnreachable: no broker listening fails the first check and
// stops.
func TestKafkaCheckUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	rs := Kafka(ctx, KafkaOptions{Brokers: []string{addr}, Topics: []string{"orders"}, Group: "g"})
	wantResults(t, rs, "FAIL kafka: brokers "+addr)
}

// TestKafkaCheckRealBroker runs the Kafka checks against the real broker
// (scripts/kafka-broker.sh): a topic made for the test passes with its
// partition count, a missing one fails.
func TestKafkaCheckRealBroker(t *testing.T) {
	brokers := strings.Split(testenv.Brokers(t), ",")
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topic := fmt.Sprintf("offload-check-%d", time.Now().UnixNano())
	if _, err := adm.CreateTopic(checkCtx(t), 4, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	defer adm.DeleteTopics(context.Background(), topic)
	rs := Kafka(checkCtx(t), KafkaOptions{Brokers: brokers, Topics: []string{topic, topic + "-missing"}, Group: topic + "-group"})
	wantResults(t, rs, "kafka: brokers", "kafka: topic "+topic+" (4 partitions)", "FAIL kafka: topic "+topic+"-missing",
		"kafka: describe group "+topic+"-group", "kafka: fetch the offsets of group "+topic+"-group")
}

// TestDataDirCheck: a writable directory passes with room for the budget;
// a missing one is probed in its parent; a path through a file is not
// writable; a budget larger than the disk fails the free space check.
func TestDataDirCheck(t *testing.T) {
	dir := t.TempDir()
	wantResults(t, DataDir(dir, 1<<20), "local: data_dir "+dir+" writable", "local: fsync in "+dir, "local: free space for disk_budget 1.0 MiB")
	wantResults(t, DataDir(filepath.Join(dir, "a", "b"), 1<<20), "local: data_dir "+filepath.Join(dir, "a", "b")+" (missing: offload run creates it) writable in "+dir,
		"local: fsync in "+dir, "local: free space")
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rs := DataDir(filepath.Join(file, "data"), 1<<20)
	wantResults(t, rs, "FAIL local: data_dir "+filepath.Join(file, "data"))
	if !strings.Contains(rs[0].Detail, "not a directory") {
		t.Fatalf("detail: %q", rs[0].Detail)
	}
	rs = DataDir(dir, 1<<60)
	wantResults(t, rs, "local: data_dir", "local: fsync", "FAIL local: free space for disk_budget 1.0 EiB")
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("the probe left files behind: %v", entries)
	}
}

// TestAdminListenCheck: a free address binds; a taken one fails.
func TestAdminListenCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	wantResults(t, []loader.CheckResult{AdminListen(ln.Addr().String())}, "FAIL local: admin.listen "+ln.Addr().String())
	wantResults(t, []loader.CheckResult{AdminListen("127.0.0.1:0")}, "local: admin.listen 127.0.0.1:0 can be bound")
	wantResults(t, []loader.CheckResult{AdminListen("")}, "local: admin endpoint off")
}
