package engine

import (
	"io"
	"unsafe"

	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/schema"
)

var arrowZstdLevel = 3
var arrowStats = true

type arrowCol struct {
	name string
	kind int // 0 string, 1 decimal, 2 ts, 3 int32, 4 int64
	opt  bool
	dict bool
}

var arrowCols = []arrowCol{
	{"event_id", 0, false, false}, {"order_id", 0, true, false}, {"event_type", 0, false, true},
	{"store_id", 0, true, true}, {"customer_id", 0, true, false}, {"customer_email_hash", 0, true, false},
	{"amount", 1, false, false}, {"currency", 0, true, true}, {"payment_method", 0, true, true},
	{"card_last4", 0, true, false}, {"channel", 0, true, true}, {"country", 0, true, true},
	{"items", 0, true, false}, {"event_time", 2, false, false}, {"base_amount", 1, true, false},
	{"region", 0, true, true}, {"timezone", 0, true, true}, {"source_topic", 0, false, true},
	{"source_partition", 3, false, true}, {"source_offset", 4, false, false},
	{"kafka_time", 2, false, false}, {"ingest_time", 2, false, false},
}

func arrowSchema() *schema.GroupNode {
	var fields schema.FieldList
	for _, c := range arrowCols {
		rep := parquet.Repetitions.Required
		if c.opt {
			rep = parquet.Repetitions.Optional
		}
		var n *schema.PrimitiveNode
		var err error
		switch c.kind {
		case 0:
			n, err = schema.NewPrimitiveNodeLogical(c.name, rep, schema.StringLogicalType{}, parquet.Types.ByteArray, 0, -1)
		case 1:
			n, err = schema.NewPrimitiveNodeLogical(c.name, rep, schema.NewDecimalLogicalType(18, 4), parquet.Types.Int64, 0, -1)
		case 2:
			n, err = schema.NewPrimitiveNodeLogical(c.name, rep, schema.NewTimestampLogicalType(true, schema.TimeUnitMicros), parquet.Types.Int64, 0, -1)
		case 3:
			n, err = schema.NewPrimitiveNodeLogical(c.name, rep, schema.NoLogicalType{}, parquet.Types.Int32, 0, -1)
		case 4:
			n, err = schema.NewPrimitiveNodeLogical(c.name, rep, schema.NoLogicalType{}, parquet.Types.Int64, 0, -1)
		}
		if err != nil {
			panic(err)
		}
		fields = append(fields, n)
	}
	g, err := schema.NewGroupNode("schema", parquet.Repetitions.Required, fields, -1)
	if err != nil {
		panic(err)
	}
	return g
}

func sb(s string) parquet.ByteArray { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func encodeArrow(w io.Writer, rows []outRow, items []byte) error {
	for i := range rows {
		if err := checkPartRow(&rows[i]); err != nil {
			return err
		}
	}
	opts := []parquet.WriterProperty{parquet.WithCompression(compress.Codecs.Zstd), parquet.WithCompressionLevel(arrowZstdLevel),
		parquet.WithDictionaryDefault(false), parquet.WithStats(true), parquet.WithMaxRowGroupLength(int64(max(len(rows), 1)))}
	for _, c := range arrowCols {
		if c.dict {
			opts = append(opts, parquet.WithDictionaryFor(c.name, true))
		}
	}
	opts = append(opts, parquet.WithEncodingFor("event_time", parquet.Encodings.DeltaBinaryPacked), parquet.WithEncodingFor("source_offset", parquet.Encodings.DeltaBinaryPacked), parquet.WithStats(arrowStats))
	pw := file.NewParquetWriter(w, arrowSchema(), file.WithWriterProps(parquet.NewWriterProperties(opts...)))
	rg := pw.AppendRowGroup()
	n := len(rows)
	bas := make([]parquet.ByteArray, n)
	i64 := make([]int64, n)
	i32 := make([]int32, n)
	def := make([]int16, n)
	for ci, c := range arrowCols {
		cw, err := rg.NextColumn()
		if err != nil {
			return err
		}
		vals := 0
		for i := range rows {
			r := &rows[i]
			ev := &r.ev
			def[i] = 1
			switch ci {
			case 0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 15, 16, 17:
				var s string
				switch ci {
				case 0:
					s = ev.EventID
				case 1:
					s = ev.OrderID
				case 2:
					s = ev.EventType
				case 3:
					s = ev.StoreID
				case 4:
					s = ev.CustomerID
				case 5:
					s = ev.CustomerEmailHash
				case 7:
					s = ev.Currency
				case 8:
					s = ev.PaymentMethod
				case 9:
					s = ev.CardLast4
				case 10:
					s = ev.Channel
				case 11:
					s = ev.Country
				case 15:
					s = ev.Region
				case 16:
					s = ev.Timezone
				case 17:
					s = r.source.topic
				}
				if c.opt && s == "" {
					def[i] = 0
				} else {
					bas[vals] = sb(s)
					vals++
				}
			case 12:
				if r.hasItems {
					bas[vals] = items[r.itemsFrom:r.itemsTo]
					vals++
				} else {
					def[i] = 0
				}
			case 6:
				i64[vals] = int64(ev.Amount)
				vals++
			case 14:
				if ev.HasBaseAmount {
					i64[vals] = int64(ev.BaseAmount)
					vals++
				} else {
					def[i] = 0
				}
			case 13:
				i64[vals] = ev.EventTime.UnixMicro()
				vals++
			case 20:
				i64[vals] = r.source.kafkaTime.UnixMicro()
				vals++
			case 21:
				i64[vals] = r.source.ingestTime.UnixMicro()
				vals++
			case 19:
				i64[vals] = r.source.offset
				vals++
			case 18:
				i32[vals] = r.source.partition
				vals++
			}
		}
		var d []int16
		if c.opt {
			d = def
		}
		switch cw := cw.(type) {
		case *file.ByteArrayColumnChunkWriter:
			_, err = cw.WriteBatch(bas[:vals], d, nil)
		case *file.Int64ColumnChunkWriter:
			_, err = cw.WriteBatch(i64[:vals], d, nil)
		case *file.Int32ColumnChunkWriter:
			_, err = cw.WriteBatch(i32[:vals], d, nil)
		}
		if err != nil {
			return err
		}
		if err := cw.Close(); err != nil {
			return err
		}
	}
	if err := rg.Close(); err != nil {
		return err
	}
	return pw.Close()
}
