package loader

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/offload/offload/engine/event"
)

// The transactions table's columns that follow the data and the
// configuration: ATTRIBUTES, the source fields no mapping reads, and the
// extra columns topics promote (docs/LOADER.md, "Attributes and extra
// columns").

// ExtraColumn is a typed column of the transactions table promoted from
// the source records by a topic's extra_columns: its value in a row is key
// Name of the row's extras (engine/event.Event.Extras) cast to Type.
type ExtraColumn struct {
	Name string // a lower-case identifier; upper-cased in the warehouse
	Type string // event.ExtraString, ExtraInt, ExtraDecimal, ExtraTimestamp or ExtraBool
}

// checkExtraColumns returns what is wrong with extras: each a name and a
// type of event.ExtraTypes (the configuration checks them first, with the
// option's name).
func checkExtraColumns(extras []ExtraColumn) []string {
	var errs []string
	for _, x := range extras {
		if !event.IsExtraColumnName(x.Name) {
			errs = append(errs, fmt.Sprintf("extra column %q: not a lower-case identifier, or a column of every row", x.Name))
		}
		if !slices.Contains(event.ExtraTypes(), x.Type) {
			errs = append(errs, fmt.Sprintf("extra column %s: type %q is not one of %s", x.Name, x.Type, strings.Join(event.ExtraTypes(), ", ")))
		}
	}
	return errs
}

// rowSQL writes the parts of a load that depend on the configured extra
// columns, in one sink's SQL.
type rowSQL struct {
	extras []ExtraColumn
	// types maps an extra column's type to the sink's SQL type in the
	// table, casts (when set) to the one of a CAST.
	types, casts map[string]string
	// staged (when set) turns a column's name into its staging table's.
	staged func(string) string
	// attributes is the type of ATTRIBUTES in the table; parse turns the
	// staged JSON text expr into its value.
	attributes string
	parse      func(expr string) string
	// extract returns the text at key name of the staged JSON text expr
	// (NULL when absent).
	extract func(expr, name string) string
}

// extraTypes are the SQL types of extra columns, by sink family: every
// sink maps each of event.ExtraTypes.
var (
	snowflakeExtraTypes = map[string]string{event.ExtraString: "VARCHAR", event.ExtraInt: "BIGINT",
		event.ExtraDecimal: "NUMBER(38,4)", event.ExtraTimestamp: "TIMESTAMP_TZ", event.ExtraBool: "BOOLEAN"}
	pgExtraTypes = map[string]string{event.ExtraString: "VARCHAR", event.ExtraInt: "BIGINT",
		event.ExtraDecimal: "NUMERIC(38,4)", event.ExtraTimestamp: "TIMESTAMPTZ", event.ExtraBool: "BOOLEAN"}
)

// fileColumns are the columns of a batch's rows files (engine.Export's
// RowsFiles), in file order: the transactions table's less BATCH_ID,
// which the load sets, with ATTRIBUTES as the JSON text the engine wrote,
// and EXTRAS, the JSON text of the extra columns. The staging tables of
// rows have them.
var fileColumns = func() []column {
	cols := slices.DeleteFunc(slices.Clone(transactionColumns), func(c column) bool { return c.name == "BATCH_ID" })
	for i := range cols {
		if cols[i].name == "ATTRIBUTES" {
			cols[i].typ = "VARCHAR"
		}
	}
	return append(cols, column{"EXTRAS", "VARCHAR"})
}()

// added are the transactions table's columns that a table created by an
// older offload lacks, and the extra columns: Prepare adds the missing.
func (r rowSQL) added() []column {
	cols := []column{{"ATTRIBUTES", r.attributes}}
	for _, x := range r.extras {
		cols = append(cols, column{strings.ToUpper(x.Name), r.types[x.Type]})
	}
	return cols
}

// tableColumns are the transactions table's columns: transactionColumns
// with ATTRIBUTES in the sink's type, then the extra columns.
func (r rowSQL) tableColumns(base []column) []column {
	cols := slices.Clone(base)
	for i := range cols {
		if cols[i].name == "ATTRIBUTES" {
			cols[i].typ = r.attributes
		}
	}
	return append(cols, r.added()[1:]...)
}

// values returns the values of a transactions row (tableColumns' order)
// from the staged row named by prefix: its columns, BATCH_ID set to batch
// (an SQL expression: the outbox's parts do not carry the id, known only
// when the batch is sealed), ATTRIBUTES parsed, and each extra column cast
// from its key of EXTRAS.
func (r rowSQL) values(prefix, batch string) string {
	name := func(c string) string {
		if r.staged != nil {
			c = r.staged(c)
		}
		return prefix + c
	}
	casts := r.casts
	if casts == nil {
		casts = r.types
	}
	out := make([]string, 0, len(transactionColumns)+len(r.extras))
	for _, c := range transactionColumns {
		v := name(c.name)
		switch c.name {
		case "BATCH_ID":
			v = batch
		case "ATTRIBUTES":
			v = r.parse(v)
		}
		out = append(out, v)
	}
	for _, x := range r.extras {
		out = append(out, "CAST("+r.extract(name("EXTRAS"), x.Name)+" AS "+casts[x.Type]+")")
	}
	return strings.Join(out, ", ")
}

// batchLiteral is batch id as an SQL string literal.
func batchLiteral(id string) string { return "'" + sqlString(id) + "'" }

// missingColumns returns the columns of cols that table lacks, read from
// the names of a query of no rows (every sink answers it, Redshift
// included, whose ALTER TABLE has no ADD COLUMN IF NOT EXISTS). args go
// to the driver: pgx's simple protocol, so that a cached description of
// the table before a change is never read.
func missingColumns(ctx context.Context, db *sql.DB, table string, cols []column, args ...any) ([]column, error) {
	rows, err := db.QueryContext(ctx, "SELECT * FROM "+table+" WHERE 1 = 0", args...)
	if err != nil {
		return nil, fmt.Errorf("cannot read the columns of %s: %w", table, err)
	}
	have, err := rows.Columns()
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read the columns of %s: %w", table, err)
	}
	var missing []column
	for _, c := range cols {
		if !slices.ContainsFunc(have, func(h string) bool { return strings.EqualFold(h, c.name) }) {
			missing = append(missing, c)
		}
	}
	return missing, nil
}

// addColumns adds to table the columns of cols it lacks, with the sink's
// statement (e.g. "ALTER TABLE %s ADD COLUMN %s %s"); args are
// missingColumns'.
func addColumns(ctx context.Context, db *sql.DB, table string, cols []column, stmt string, args ...any) error {
	missing, err := missingColumns(ctx, db, table, cols, args...)
	if err != nil {
		return err
	}
	for _, c := range missing {
		if _, err := db.ExecContext(ctx, fmt.Sprintf(stmt, table, c.name, c.typ)); err != nil {
			return fmt.Errorf("cannot add column %s to %s: %w (the role needs the table's ownership, or add it by hand: docs/LOADER.md)", c.name, table, err)
		}
	}
	return nil
}
