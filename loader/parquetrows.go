package loader

import (
	"context"
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/jackc/pgx/v5/pgtype"
)

// parquetRows reads a Parquet file of the outbox (pure Go, no cgo) as
// rows of Go values in the order of cols, matched to the file's columns
// by name regardless of case: it is the pgx.CopyFromSource that fills a
// staging table from a batch's file.
type parquetRows struct {
	path string
	cols []column
	fr   *file.Reader
	rr   pqarrow.RecordReader
	rec  arrow.RecordBatch
	idx  []int // file column of each of cols
	row  int
	vals []any
	err  error
	n    int64
}

// openParquetRows opens path for reading cols.
func openParquetRows(ctx context.Context, path string, cols []column) (*parquetRows, error) {
	fr, err := file.OpenParquetFile(path, false)
	if err != nil {
		return nil, fmt.Errorf("cannot open %s: %w", path, err)
	}
	pr, err := pqarrow.NewFileReader(fr, pqarrow.ArrowReadProperties{BatchSize: 8192}, memory.DefaultAllocator)
	if err != nil {
		_ = fr.Close()
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	schema, err := pr.Schema()
	if err != nil {
		_ = fr.Close()
		return nil, fmt.Errorf("cannot read the schema of %s: %w", path, err)
	}
	idx := make([]int, len(cols))
	for i, c := range cols {
		idx[i] = -1
		for j, f := range schema.Fields() {
			if strings.EqualFold(f.Name, c.name) {
				idx[i] = j
			}
		}
		if idx[i] < 0 {
			_ = fr.Close()
			return nil, fmt.Errorf("%s has no column %s", path, c.name)
		}
	}
	rr, err := pr.GetRecordReader(ctx, nil, nil)
	if err != nil {
		_ = fr.Close()
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	return &parquetRows{path: path, cols: cols, fr: fr, rr: rr, idx: idx, vals: make([]any, len(cols))}, nil
}

// Next moves to the next row.
func (p *parquetRows) Next() bool {
	for p.rec == nil || p.row+1 >= int(p.rec.NumRows()) {
		if !p.rr.Next() {
			if err := p.rr.Err(); err != nil {
				p.err = fmt.Errorf("cannot read %s: %w", p.path, err)
			}
			return false
		}
		p.rec, p.row = p.rr.RecordBatch(), -1
	}
	p.row++
	p.n++
	return true
}

// Values returns the current row's values, as pgx encodes them.
func (p *parquetRows) Values() ([]any, error) {
	for i, j := range p.idx {
		v, err := arrowValue(p.rec.Column(j), p.row)
		if err != nil {
			return nil, fmt.Errorf("%s column %s: %w", p.path, p.cols[i].name, err)
		}
		p.vals[i] = v
	}
	return p.vals, nil
}

// Err is the error that ended the rows, if any.
func (p *parquetRows) Err() error { return p.err }

// Close releases the reader and closes the file.
func (p *parquetRows) Close() error {
	p.rr.Release()
	return p.fr.Close()
}

// arrowValue is row i of a as the Go value pgx writes for the column's
// warehouse type: decimals exactly, as pgtype.Numeric.
func arrowValue(a arrow.Array, i int) (any, error) {
	if a.IsNull(i) {
		return nil, nil
	}
	switch a := a.(type) {
	case *array.String:
		return a.Value(i), nil
	case *array.LargeString:
		return a.Value(i), nil
	case *array.Int32:
		return a.Value(i), nil
	case *array.Int64:
		return a.Value(i), nil
	case *array.Decimal128:
		return pgtype.Numeric{Int: a.Value(i).BigInt(), Exp: -a.DataType().(*arrow.Decimal128Type).Scale, Valid: true}, nil
	case *array.Timestamp:
		return a.Value(i).ToTime(a.DataType().(*arrow.TimestampType).Unit).UTC(), nil
	}
	return nil, fmt.Errorf("unsupported Parquet type %s", a.DataType())
}
