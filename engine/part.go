package engine

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"
)

// partFile describes a part written by writePart.
type partFile struct {
	Rows   int64
	Bytes  int64  // file size
	SHA256 string // hex of the file's bytes, as sha256sum prints it
}

// maxPartDecimal bounds the units an amount may have in a part: the
// columns are DECIMAL(18,4), so at most 18 digits.
const maxPartDecimal = 999_999_999_999_999_999

// partRow is one row of a part: the columns of outbox_rows in
// engine/schema.go without batch_id, in the same order. An optional string
// column writes "" as NULL, as writeRows does with nullString.
type partRow struct {
	EventID           string    `parquet:"event_id"`
	OrderID           string    `parquet:"order_id,optional"`
	EventType         string    `parquet:"event_type,dict"`
	StoreID           string    `parquet:"store_id,optional,dict"`
	CustomerID        string    `parquet:"customer_id,optional"`
	CustomerEmailHash string    `parquet:"customer_email_hash,optional,plain"`
	Amount            int64     `parquet:"amount,decimal(4:18)"`
	Currency          string    `parquet:"currency,optional,dict"`
	PaymentMethod     string    `parquet:"payment_method,optional,dict"`
	CardLast4         string    `parquet:"card_last4,optional"`
	Channel           string    `parquet:"channel,optional,dict"`
	Country           string    `parquet:"country,optional,dict"`
	Items             string    `parquet:"items,optional"`
	EventTime         time.Time `parquet:"event_time,timestamp(microsecond:utc),delta"`
	BaseAmount        *int64    `parquet:"base_amount,optional,decimal(4:18)"`
	Region            string    `parquet:"region,optional,dict"`
	Timezone          string    `parquet:"timezone,optional,dict"`
	SourceTopic       string    `parquet:"source_topic,dict"`
	SourcePartition   int32     `parquet:"source_partition,dict"`
	SourceOffset      int64     `parquet:"source_offset,delta"`
	KafkaTime         time.Time `parquet:"kafka_time,timestamp(microsecond:utc)"`
	IngestTime        time.Time `parquet:"ingest_time,timestamp(microsecond:utc)"`
}

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

// writePart writes rows (their items JSON in items[r.itemsFrom:r.itemsTo]
// when r.hasItems) to path as a zstd Parquet file: written to path+".tmp",
// fsync'd, renamed to path, and the directory fsync'd, so a file under its
// final name is complete and durable. It returns the file's size and
// SHA-256 (computed while writing, not by re-reading).
func writePart(path string, rows []outRow, items []byte) (partFile, error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return partFile{}, fmt.Errorf("cannot create part %s: %w (check the outbox directory's permissions and free space)", tmp, err)
	}
	pf, err := encodePartFile(f, rows, items)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return partFile{}, errors.Join(fmt.Errorf("cannot write part %s: %w (check free space in the outbox directory)", path, err), removeIfExists(tmp))
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return partFile{}, errors.Join(fmt.Errorf("cannot write part %s: %w", path, err), removeIfExists(path))
	}
	return pf, nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cannot remove %s: %w", path, err)
	}
	return nil
}

// encodePartFile writes the Parquet bytes of rows to f through a buffer,
// counting and hashing them.
func encodePartFile(f *os.File, rows []outRow, items []byte) (partFile, error) {
	c := &partCounter{w: f, h: sha256.New()}
	bw := bufio.NewWriterSize(c, 1<<20)
	if err := partEncoder(bw, rows, items); err != nil {
		return partFile{}, err
	}
	if err := bw.Flush(); err != nil {
		return partFile{}, err
	}
	return partFile{Rows: int64(len(rows)), Bytes: c.n, SHA256: hex.EncodeToString(c.h.Sum(nil))}, nil
}

var partEncoder = encodePQGo

var partZstdLevel = zstd.SpeedDefault

func encodePQGo(w io.Writer, rows []outRow, items []byte) error {
	for i := range rows {
		if err := checkPartRow(&rows[i]); err != nil {
			return err
		}
	}
	pw := parquet.NewGenericWriter[partRow](w, parquet.Compression(&zstd.Codec{Level: partZstdLevel}),
		parquet.MaxRowsPerRowGroup(int64(max(len(rows), 1))), parquet.PageBufferSize(1<<20))
	const chunk = 1024
	buf := make([]partRow, chunk)
	base := make([]int64, chunk)
	for i := 0; i < len(rows); i += chunk {
		n := min(chunk, len(rows)-i)
		for j := 0; j < n; j++ {
			r := &rows[i+j]
			ev := &r.ev
			p := &buf[j]
			*p = partRow{
				EventID: ev.EventID, OrderID: ev.OrderID, EventType: ev.EventType, StoreID: ev.StoreID,
				CustomerID: ev.CustomerID, CustomerEmailHash: ev.CustomerEmailHash, Amount: int64(ev.Amount),
				Currency: ev.Currency, PaymentMethod: ev.PaymentMethod, CardLast4: ev.CardLast4,
				Channel: ev.Channel, Country: ev.Country, EventTime: ev.EventTime,
				Region: ev.Region, Timezone: ev.Timezone, SourceTopic: r.source.topic,
				SourcePartition: r.source.partition, SourceOffset: r.source.offset,
				KafkaTime: r.source.kafkaTime, IngestTime: r.source.ingestTime,
			}
			if r.hasItems && r.itemsTo > r.itemsFrom {
				p.Items = unsafe.String(&items[r.itemsFrom], r.itemsTo-r.itemsFrom)
			}
			if ev.HasBaseAmount {
				base[j] = int64(ev.BaseAmount)
				p.BaseAmount = &base[j]
			}
		}
		if _, err := pw.Write(buf[:n]); err != nil {
			return err
		}
	}
	return pw.Close()
}

func checkPartRow(r *outRow) error {
	if a := r.ev.Amount; a > maxPartDecimal || a < -maxPartDecimal {
		return fmt.Errorf("event %q: amount %v exceeds DECIMAL(18,4)", r.ev.EventID, a)
	}
	if a := r.ev.BaseAmount; r.ev.HasBaseAmount && (a > maxPartDecimal || a < -maxPartDecimal) {
		return fmt.Errorf("event %q: base amount %v exceeds DECIMAL(18,4)", r.ev.EventID, a)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
