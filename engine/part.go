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

// partRow is one row of a part: the columns of outbox_rows in
// engine/schema.go without batch_id, in the same order. A nil pointer is
// NULL: nullString's "" for the strings (parquet-go's optional string
// without a pointer did not write every "" as NULL), !hasItems and
// !HasBaseAmount.
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
// hashCodec. Compression is not part of a node's type, so parquet-go still
// takes its direct struct-to-column path for partRow.
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
// column buffers, its row conversion buffers and its file buffer from one
// part to the next: a new writer per part allocated ~800 bytes a row for
// the collector (docs/PERFORMANCE.md, "Drain"). The zero value is ready.
type partEncoder struct {
	pw  *parquet.GenericWriter[partRow]
	bw  *bufio.Writer
	buf []partRow
	js  []string
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

// partChunk is how many rows encode converts to partRow at a time.
const partChunk = 1024

// encode writes rows as one row group with parquet-go, zstd at its
// default level but for customer_email_hash (hashCodec): docs/PERFORMANCE.md ("Parquet writer") has the
// measurements this choice comes from.
func (pe *partEncoder) encode(w io.Writer, rows []outRow, items []byte) error {
	for i := range rows {
		if err := checkPartRow(&rows[i]); err != nil {
			return err
		}
	}
	if pe.pw == nil {
		// One row group: its rows are never more than MaxInt64, parquet-go's
		// default bound.
		pe.pw = parquet.NewGenericWriter[partRow](w, partSchema, parquet.Compression(partCodec),
			parquet.PageBufferSize(partPageBuffer))
		pe.buf = make([]partRow, partChunk)
		pe.js = make([]string, partChunk)
	}
	pe.pw.Reset(w)
	buf, js := pe.buf, pe.js
	defer clear(buf) // the rows' strings: the collector may free them
	for i := 0; i < len(rows); i += len(buf) {
		n := min(len(buf), len(rows)-i)
		for j := range n {
			r := &rows[i+j]
			ev := &r.ev
			p := &buf[j]
			*p = partRow{
				EventID: ev.EventID, OrderID: strOrNull(&ev.OrderID), EventType: ev.EventType,
				StoreID: strOrNull(&ev.StoreID), CustomerID: strOrNull(&ev.CustomerID),
				CustomerEmailHash: strOrNull(&ev.CustomerEmailHash), Amount: int64(ev.Amount),
				Currency: strOrNull(&ev.Currency), PaymentMethod: strOrNull(&ev.PaymentMethod),
				CardLast4: strOrNull(&ev.CardLast4), Channel: strOrNull(&ev.Channel), Country: strOrNull(&ev.Country),
				EventTime: ev.EventTime, Region: strOrNull(&ev.Region), Timezone: strOrNull(&ev.Timezone),
				SourceTopic: r.source.topic, SourcePartition: r.source.partition, SourceOffset: r.source.offset,
				KafkaTime: r.source.kafkaTime, IngestTime: r.source.ingestTime,
				Attributes: strOrNull(&ev.Attributes), Extras: strOrNull(&ev.Extras),
			}
			if r.hasItems {
				// Not copied: parquet-go copies the bytes into its pages
				// before Write returns, and the arena outlives the call.
				js[j] = unsafe.String(unsafe.SliceData(items[r.itemsFrom:r.itemsTo]), r.itemsTo-r.itemsFrom)
				p.Items = &js[j]
			}
			if ev.HasBaseAmount {
				p.BaseAmount = (*int64)(&ev.BaseAmount)
			}
		}
		if _, err := pe.pw.Write(buf[:n]); err != nil {
			pe.pw = nil // the next part starts from a new writer
			return err
		}
	}
	if err := pe.pw.Close(); err != nil {
		pe.pw = nil
		return err
	}
	return nil
}

// strOrNull is s, or nil (NULL) for "", as nullString.
func strOrNull(s *string) *string {
	if *s == "" {
		return nil
	}
	return s
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
