package tui

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/charmbracelet/x/ansi"
)

// count formats n with thousands separators: 1234567 -> 1,234,567.
func count(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3+1)
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// rate formats a per-second rate: 4210.3 -> 4,210/s, 0.25 -> 0.25/s.
func rate(v float64) string {
	if math.Abs(v) < 10 && v != math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', 2, 64) + "/s"
	}
	return count(int64(math.Round(v))) + "/s"
}

// bytesIEC formats a byte count: 1048576 -> 1.0 MiB.
func bytesIEC(n float64) string {
	const unit = 1024
	sign := ""
	if n < 0 {
		sign, n = "-", -n
	}
	if n < unit {
		return fmt.Sprintf("%s%.0f B", sign, n)
	}
	exp := 0
	for n >= unit*unit && exp < 4 {
		n /= unit
		exp++
	}
	return fmt.Sprintf("%s%.1f %ciB", sign, n/unit, "KMGTP"[exp])
}

// age formats seconds compactly: 8123.5 -> 2h15m, 310.2 -> 5m10s.
func age(seconds float64) string {
	d := time.Duration(seconds * float64(time.Second)).Truncate(time.Second)
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%ds", d/time.Minute, d%time.Minute/time.Second)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

// countdown is the whole seconds left, rounded up so 0 means "now".
func countdown(d time.Duration) int {
	return int(math.Ceil(max(d, 0).Seconds()))
}

// fit truncates s (which may hold ANSI styles) to width cells.
func fit(s string, width int) string {
	return ansi.Truncate(s, width, "…")
}
