package main

import (
	"io"
	"os"
)

// terminal tells whether in and out are terminals, as the dashboard
// (offload top, offload demo) needs: without one it would end at once.
func terminal(in *os.File, out io.Writer) bool {
	f, ok := out.(*os.File)
	return ok && charDevice(in) && charDevice(f)
}

func charDevice(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
