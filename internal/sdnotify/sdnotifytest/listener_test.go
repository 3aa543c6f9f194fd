package sdnotifytest

import (
	"net"
	"slices"
	"testing"
	"time"
)

func TestListener(t *testing.T) {
	l := Listen(t)
	conn, err := net.Dial("unixgram", l.Socket())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sent := []string{"READY=1", "STATUS=backlog 0"}
	for _, m := range sent {
		if _, err := conn.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range sent {
		if got, err := l.Next(5 * time.Second); err != nil || got != want {
			t.Fatalf("Next() = %q, %v; want %q", got, err, want)
		}
	}
	if got := l.Messages(); !slices.Equal(got, sent) {
		t.Fatalf("Messages() = %q, want %q", got, sent)
	}
	if got, err := l.Next(50 * time.Millisecond); err == nil {
		t.Fatalf("Next() = %q with nothing sent", got)
	}
}
