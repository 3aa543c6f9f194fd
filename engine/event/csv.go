package event

import (
	"errors"
	"fmt"
)

// csvSplitter splits one CSV record (RFC 4180 quoting: a field may be
// enclosed in double quotes, inside which "" is a quote and the delimiter,
// CR and LF are data). Cells are slices of the input or, for quoted fields
// with "" escapes, of buf; buf is reserved up front so they stay valid.
type csvSplitter struct {
	cells [][]byte
	buf   []byte
}

var errCSVBareQuote = errors.New(`bare '"' in an unquoted field`)

func (sp *csvSplitter) split(line []byte, delim byte) ([][]byte, error) {
	// One record: a single trailing line end is the record's terminator.
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
	}
	if cap(sp.buf) < len(line) {
		sp.buf = make([]byte, 0, len(line))
	}
	sp.buf = sp.buf[:0]
	cells := sp.cells[:0]
	i := 0
	for {
		if i < len(line) && line[i] == '"' {
			// Quoted field.
			i++
			start := len(sp.buf)
			for {
				j := i
				for j < len(line) && line[j] != '"' {
					j++
				}
				if j == len(line) {
					sp.cells = cells
					return nil, fmt.Errorf("quoted field opened at byte %d is not closed", start)
				}
				sp.buf = append(sp.buf, line[i:j]...)
				if j+1 < len(line) && line[j+1] == '"' {
					sp.buf = append(sp.buf, '"')
					i = j + 2
					continue
				}
				i = j + 1
				break
			}
			cells = append(cells, sp.buf[start:len(sp.buf):len(sp.buf)])
			if i == len(line) {
				break
			}
			if line[i] != delim {
				sp.cells = cells
				return nil, fmt.Errorf("byte %d: %q after a closing quote; expected the delimiter", i, line[i])
			}
			i++
			continue
		}
		j := i
		for j < len(line) && line[j] != delim {
			if c := line[j]; c == '"' {
				sp.cells = cells
				return nil, errCSVBareQuote
			} else if c == '\n' || c == '\r' {
				sp.cells = cells
				return nil, fmt.Errorf("line break at byte %d outside quotes: a record is one CSV line", j)
			}
			j++
		}
		cells = append(cells, line[i:j:j])
		if j == len(line) {
			break
		}
		i = j + 1
	}
	sp.cells = cells
	return cells, nil
}
