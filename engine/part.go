package engine

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"time"
	"unsafe"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/compress/gzip"

	"github.com/offload/offload/internal/durable"
)

// partFile describes a part written by writePart.
type partFile struct {
	Rows   int64
	Bytes  int64  // file size
	SHA256 string // hex of the file's bytes, as sha256sum prints it
}

// partPageBuffer is the size of parquet-go's page buffers. With its
// default (256 KiB), and customer_email_hash DELTA_LENGTH_BYTE_ARRAY rather
// than PLAIN, that column's hex compressed to 61 bytes a row instead of 35.
// customer_email_hash is dictionary-encoded: a customer's hash repeats
// in a micro-batch as often as the customer orders, and the dictionary
// stores it once (docs/PERFORMANCE.md, "Parquet writer").
const partPageBuffer = 1 << 20

// maxPartDecimal bounds the units an amount may have in a part: the
// columns are DECIMAL(18,4), so at most 18 digits.
const maxPartDecimal = 999_999_999_999_999_999

// partRow declares a part's schema: the columns of outbox_rows in
// engine/schema.go without batch_id, in the same order. encode writes the
// columns straight from outRow, never a partRow; its NULLs are
// nullString's "" for the optional strings, !hasItems and !HasBaseAmount.
type partRow struct {
	EventID           string    `parquet:"event_id"`
	OrderID           *string   `parquet:"order_id,optional"`
	EventType         string    `parquet:"event_type,dict"`
	StoreID           *string   `parquet:"store_id,optional,dict"`
	CustomerID        *string   `parquet:"customer_id,optional"`
	CustomerEmailHash *string   `parquet:"customer_email_hash,optional,dict"`
	Amount            int64     `parquet:"amount,decimal(4:18)"`
	Currency          *string   `parquet:"currency,optional,dict"`
	PaymentMethod     *string   `parquet:"payment_method,optional,dict"`
	CardLast4         *string   `parquet:"card_last4,optional"`
	Channel           *string   `parquet:"channel,optional,dict"`
	Country           *string   `parquet:"country,optional,dict"`
	Items             *string   `parquet:"items,optional"`
	EventTime         time.Time `parquet:"event_time,timestamp(microsecond:utc),delta"`
	BaseAmount        *int64    `parquet:"base_amount,optional,decimal(4:18)"`
	Region            *string   `parquet:"region,optional,dict"`
	Timezone          *string   `parquet:"timezone,optional,dict"`
	SourceTopic       string    `parquet:"source_topic,dict"`
	SourcePartition   int32     `parquet:"source_partition,dict"`
	SourceOffset      int64     `parquet:"source_offset,delta"`
	KafkaTime         time.Time `parquet:"kafka_time,timestamp(microsecond:utc)"`
	IngestTime        time.Time `parquet:"ingest_time,timestamp(microsecond:utc)"`
	Attributes        *string   `parquet:"attributes,optional"`
	Extras            *string   `parquet:"extras,optional"`
}

// partCodec compresses a part's columns but customer_email_hash. One
// codec for every part keeps its pool of zstd encoders (a new codec made a
// new encoder, tables and all, per part).
var partCodec = &zstdCodec{}

// hashCodec compresses customer_email_hash. Its dictionary holds each
// hash once, and the hex of an HMAC holds no repeats for zstd's match
// finder, only 4 bits of entropy a character: deflate's Huffman coding
// alone makes it as small (0.52 of its bytes against zstd's 0.51) at an
// eighth of the CPU (docs/PERFORMANCE.md, "Parquet writer"). Every reader
// of Parquet the sinks use reads GZIP.
var hashCodec = &gzip.Codec{Level: gzip.HuffmanOnly}

// partSchema is partRow's schema with customer_email_hash compressed by
// hashCodec (compression is not part of a node's type).
var partSchema = newPartSchema()

func newPartSchema() *parquet.Schema {
	s := parquet.SchemaOf(partRow{})
	fields := append([]parquet.Field(nil), s.Fields()...)
	for i, f := range fields {
		if f.Name() == "customer_email_hash" {
			fields[i] = codecField{Field: f, codec: hashCodec}
		}
	}
	return parquet.NewSchema(s.Name(), fieldsNode{Node: s, fields: fields})
}

// codecField is a column with a compression codec of its own.
type codecField struct {
	parquet.Field
	codec compress.Codec
}

func (f codecField) Compression() compress.Codec { return f.codec }

// fieldsNode is a group node with its fields replaced.
type fieldsNode struct {
	parquet.Node
	fields []parquet.Field
}

func (n fieldsNode) Fields() []parquet.Field { return n.fields }

// partCounter counts and hashes the bytes on their way to the file.
type partCounter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (c *partCounter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

// partEncoder writes parts, one at a time, reusing its Parquet writer's
// column buffers, its value buffer and its file buffer from one part to the
// next: a new writer per part allocated ~800 bytes a row for the collector
// (docs/PERFORMANCE.md, "Drain"). The zero value is ready.
type partEncoder struct {
	pw   *parquet.GenericWriter[any] // of no row type: encode writes its columns
	bw   *bufio.Writer
	vals []parquet.Value // partColumnCount runs of partChunk values, one a column
}

// writePart writes a part with an encoder of its own.
func writePart(ctx context.Context, path string, rows []outRow, items []byte) (partFile, error) {
	return new(partEncoder).write(ctx, path, rows, items)
}

// write writes rows (their items JSON in items[r.itemsFrom:r.itemsTo]
// when r.hasItems) to path as a zstd Parquet file: written to path+".tmp",
// fsync'd, renamed to path, and the directory fsync'd, so a file under its
// final name is complete and durable. It returns the file's size and
// SHA-256 (computed while writing, not by re-reading).
func (pe *partEncoder) write(ctx context.Context, path string, rows []outRow, items []byte) (partFile, error) {
	var pf partFile
	err := durable.WriteFile(path, 0o644, func(w io.Writer) (err error) {
		if pf, err = pe.encodeFile(w, rows, items); err != nil {
			return err
		}
		// The fsync is what a slow disk makes long: a micro-batch
		// abandoned by then (Engine.Interrupt) skips it.
		return ctx.Err()
	})
	if err != nil {
		return partFile{}, fmt.Errorf("cannot write part %s: %w (check the parts directory's permissions and free space)", path, err)
	}
	return pf, nil
}

// encodeFile writes the Parquet bytes of rows to w through a buffer,
// counting and hashing them on the way.
func (pe *partEncoder) encodeFile(w io.Writer, rows []outRow, items []byte) (partFile, error) {
	c := &partCounter{w: w, h: sha256.New()}
	if pe.bw == nil {
		pe.bw = bufio.NewWriterSize(c, 1<<20)
	}
	pe.bw.Reset(c)
	defer pe.bw.Reset(nil) // the file is closed after the call
	if err := pe.encode(pe.bw, rows, items); err != nil {
		return partFile{}, err
	}
	if err := pe.bw.Flush(); err != nil {
		return partFile{}, err
	}
	return partFile{Rows: int64(len(rows)), Bytes: c.n, SHA256: hex.EncodeToString(c.h.Sum(nil))}, nil
}

// partChunk is how many rows encode writes to each column at a time.
// A column writer starts a page once its buffer holds partPageBuffer
// bytes after a write, so a page ends at most partChunk rows past it: 64,
// as parquet-go's GenericWriter cuts its writes.
const partChunk = 64

// The leaf columns of partSchema, in partRow's field order
// (TestWritePartRoundTrip reads each back by name).
const (
	pcEventID = iota
	pcOrderID
	pcEventType
	pcStoreID
	pcCustomerID
	pcCustomerEmailHash
	pcAmount
	pcCurrency
	pcPaymentMethod
	pcCardLast4
	pcChannel
	pcCountry
	pcItems
	pcEventTime
	pcBaseAmount
	pcRegion
	pcTimezone
	pcSourceTopic
	pcSourcePartition
	pcSourceOffset
	pcKafkaTime
	pcIngestTime
	pcAttributes
	pcExtras
	partColumnCount
)

// encode writes rows as one row group with parquet-go, zstd at its
// default level but for customer_email_hash (hashCodec): docs/PERFORMANCE.md ("Parquet writer") has the
// measurements this choice comes from. It writes each column's values
// straight from the rows, partChunk rows at a time, instead of building a
// partRow per row for parquet-go to take apart by reflection.
func (pe *partEncoder) encode(w io.Writer, rows []outRow, items []byte) error {
	for i := range rows {
		if err := checkPartRow(&rows[i]); err != nil {
			return err
		}
	}
	if pe.pw == nil {
		// One row group: its rows are never more than MaxInt64, parquet-go's
		// default bound.
		pe.pw = parquet.NewGenericWriter[any](w, partSchema, parquet.Compression(partCodec),
			parquet.PageBufferSize(partPageBuffer))
		pe.vals = make([]parquet.Value, partColumnCount*partChunk)
	}
	pe.pw.Reset(w)
	cols, vals := pe.pw.ColumnWriters(), pe.vals
	defer clear(vals) // the rows' strings: the collector may free them
	for i := 0; i < len(rows); i += partChunk {
		n := min(partChunk, len(rows)-i)
		for j := range n {
			r := &rows[i+j]
			ev := &r.ev
			setString(&vals[pcEventID*partChunk+j], ev.EventID)
			setStringOrNull(&vals[pcOrderID*partChunk+j], ev.OrderID)
			setString(&vals[pcEventType*partChunk+j], ev.EventType)
			setStringOrNull(&vals[pcStoreID*partChunk+j], ev.StoreID)
			setStringOrNull(&vals[pcCustomerID*partChunk+j], ev.CustomerID)
			setStringOrNull(&vals[pcCustomerEmailHash*partChunk+j], ev.CustomerEmailHash)
			vals[pcAmount*partChunk+j] = parquet.Int64Value(int64(ev.Amount))
			setStringOrNull(&vals[pcCurrency*partChunk+j], ev.Currency)
			setStringOrNull(&vals[pcPaymentMethod*partChunk+j], ev.PaymentMethod)
			setStringOrNull(&vals[pcCardLast4*partChunk+j], ev.CardLast4)
			setStringOrNull(&vals[pcChannel*partChunk+j], ev.Channel)
			setStringOrNull(&vals[pcCountry*partChunk+j], ev.Country)
			if v := &vals[pcItems*partChunk+j]; r.hasItems {
				// Not copied: parquet-go copies the bytes into its pages
				// before WriteRowValues returns, and the arena outlives the call.
				*v = parquet.ByteArrayValue(items[r.itemsFrom:r.itemsTo])
				v.SetDefinitionLevel(1)
			} else {
				*v = parquet.NullValue()
			}
			vals[pcEventTime*partChunk+j] = parquet.Int64Value(ev.EventTime.UnixMicro())
			if v := &vals[pcBaseAmount*partChunk+j]; ev.HasBaseAmount {
				*v = parquet.Int64Value(int64(ev.BaseAmount))
				v.SetDefinitionLevel(1)
			} else {
				*v = parquet.NullValue()
			}
			setStringOrNull(&vals[pcRegion*partChunk+j], ev.Region)
			setStringOrNull(&vals[pcTimezone*partChunk+j], ev.Timezone)
			setString(&vals[pcSourceTopic*partChunk+j], r.source.topic)
			vals[pcSourcePartition*partChunk+j] = parquet.Int32Value(r.source.partition)
			vals[pcSourceOffset*partChunk+j] = parquet.Int64Value(r.source.offset)
			vals[pcKafkaTime*partChunk+j] = parquet.Int64Value(r.source.kafkaTime.UnixMicro())
			vals[pcIngestTime*partChunk+j] = parquet.Int64Value(r.source.ingestTime.UnixMicro())
			setStringOrNull(&vals[pcAttributes*partChunk+j], ev.Attributes)
			setStringOrNull(&vals[pcExtras*partChunk+j], ev.Extras)
		}
		for c, cw := range cols {
			if _, err := cw.WriteRowValues(vals[c*partChunk : c*partChunk+n]); err != nil {
				pe.pw = nil // the next part starts from a new writer
				return err
			}
		}
	}
	if err := pe.pw.Close(); err != nil {
		pe.pw = nil
		return err
	}
	return nil
}

// setString sets v to s as a BYTE_ARRAY value, not copied: parquet-go
// copies it into the column's buffer or dictionary before WriteRowValues
// returns.
func setString(v *parquet.Value, s string) {
	*v = parquet.ByteArrayValue(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// setStringOrNull sets v to s, or to NULL for "" as nullString, in an
// optional column: a value present there has definition level 1.
func setStringOrNull(v *parquet.Value, s string) {
	if s == "" {
		*v = parquet.NullValue()
		return
	}
	setString(v, s)
	v.SetDefinitionLevel(1)
}

// checkPartRow refuses an amount the part's DECIMAL(18,4) columns cannot
// hold (DuckDB would read it back wrong, not fail).
func checkPartRow(r *outRow) error {
	if a := r.ev.Amount; a > maxPartDecimal || a < -maxPartDecimal {
		return fmt.Errorf("event %q: amount %v exceeds the part column DECIMAL(18,4): lower the topic's max_amount", r.ev.EventID, a)
	}
	if a := r.ev.BaseAmount; r.ev.HasBaseAmount && (a > maxPartDecimal || a < -maxPartDecimal) {
		return fmt.Errorf("event %q: base amount %v exceeds the part column DECIMAL(18,4): lower the topic's max_amount or its rates", r.ev.EventID, a)
	}
	return nil
}
