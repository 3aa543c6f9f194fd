package tui

import "testing"

func TestSparkline(t *testing.T) {
	for _, c := range []struct {
		samples series
		width   int
		want    string
	}{
		{nil, 10, ""},
		{series{0, 0, 0}, 10, "▁▁▁"},
		{series{0, 1, 2, 3, 4, 5, 6, 7}, 10, "▁▂▃▄▅▆▇█"},
		{series{0, 7, 0, 7}, 2, "▁█"}, // the newest samples when narrow
		{series{-4, 0, 4}, 10, "▁▄█"}, // a draining WAL goes below zero
		{series{100, 100}, 10, "██"},  // a steady rate is full height
		{series{1, 2, 3}, 0, ""},      // no room
	} {
		if got := sparkline(c.samples, c.width); got != c.want {
			t.Errorf("sparkline(%v, %d) = %q, want %q", c.samples, c.width, got, c.want)
		}
	}
}

func TestSeriesKeepsTheLastSamples(t *testing.T) {
	var s series
	for i := range historyLen + 5 {
		s = s.add(float64(i))
	}
	if len(s) != historyLen || s[0] != 5 || s.last() != historyLen+4 {
		t.Errorf("len %d, first %v, last %v", len(s), s[0], s.last())
	}
}

func TestFormats(t *testing.T) {
	for _, c := range [][2]string{
		{count(0), "0"}, {count(999), "999"}, {count(1000), "1,000"}, {count(-1234567), "-1,234,567"},
		{rate(4210.3), "4,210/s"}, {rate(0.25), "0.25/s"}, {rate(0), "0/s"},
		{bytesIEC(512), "512 B"}, {bytesIEC(1536), "1.5 KiB"}, {bytesIEC(1 << 20), "1.0 MiB"}, {bytesIEC(10 << 30), "10.0 GiB"}, {bytesIEC(-2048), "-2.0 KiB"},
		{age(8123.5), "2h15m"}, {age(310.2), "5m10s"}, {age(9), "9s"}, {age(3 * 86400), "3d0h"},
	} {
		if c[0] != c[1] {
			t.Errorf("got %q, want %q", c[0], c[1])
		}
	}
}
