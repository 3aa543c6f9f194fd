package event

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Mapping says how one topic's records map onto the canonical event. It is
// a per-topic setting that the engine configuration embeds.
type Mapping struct {
	// Format is "json" (the default) or "csv". A CSV topic carries one CSV
	// line per Kafka record.
	Format string `yaml:"format"`
	// Columns names a CSV record's columns in order. Exactly one of
	// Columns and HeaderLine is set for CSV.
	Columns []string `yaml:"columns"`
	// HeaderLine is a CSV header line ("id,type,store,...") split with
	// Delimiter, instead of Columns.
	HeaderLine string `yaml:"header_line"`
	// Delimiter is the CSV field delimiter: one ASCII character other than
	// '"', CR and LF. Default ",".
	Delimiter string `yaml:"delimiter"`
	// Fields maps a canonical field name (see Fields) to its source. For
	// JSON the source is a key or a dotted path into nested objects
	// ("customer.email"); the item sub-fields "items.sku", "items.qty" and
	// "items.unit_price" are paths inside each element of the items array.
	// For CSV the source is a column name. "-" means the topic has no such
	// field even if a key of the canonical name exists. A canonical field
	// left out is read from the key or column of its own name.
	Fields map[string]string `yaml:"fields"`
	// KeepUnmapped keeps a JSON record's keys that no field reads in
	// Event.Attributes (default true; false drops them, still counted).
	KeepUnmapped *bool `yaml:"keep_unmapped"`
	// ExtraColumns promotes source fields of a JSON topic to typed
	// columns of their own, by column name.
	ExtraColumns map[string]ExtraColumn `yaml:"extra_columns"`
}

// Formats.
const (
	FormatJSON = "json"
	FormatCSV  = "csv"
)

// maxPathDepth bounds dotted paths; deeper nesting is a configuration
// mistake more often than a real schema.
const maxPathDepth = 8

// Validate checks the mapping and returns every problem, each naming its
// option under prefix (e.g. prefix "topics.orders" gives
// "topics.orders.fields.amount: ...").
func (m *Mapping) Validate(prefix string) error {
	_, err := compileMapping(m, prefix)
	return err
}

func optName(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// compiled is a Mapping turned into lookup structures.
type compiled struct {
	json     bool
	top      pathTree // JSON: the record object
	item     pathTree // JSON: each item object
	cols     [numTop]int
	ncols    int
	columns  []string
	delim    byte
	source   [numFields]string // source key, path or column, for messages
	ignored  [numFields]bool   // mapped to "-"
	hasField [numTop]bool      // CSV: the field has a column
	keep     bool              // JSON: keep unmapped keys in Attributes
	extras   []compiledExtra   // by name
}

// pathTree is the set of source paths as a tree of object keys. Node 0 is
// the root object. A node is either a leaf (fields read from that key) or
// an inner node (an object holding further keys), never both.
type pathTree struct {
	nodes []pathNode
}

type pathNode struct {
	key      string
	fields   []field // leaf: canonical fields read from this key
	children []int32
	path     string // full dotted path, for messages
	// kids are the children's keys sorted by length; byLen[l] is the
	// index of the first of length l (l < maxIndexedLen; longer keys
	// start at byLen[maxIndexedLen]). Most keys of a record are compared
	// with at most one or two candidates.
	kids  []kid
	byLen [maxIndexedLen + 2]uint8
}

const maxIndexedLen = 32

type kid struct {
	key string
	idx int32
}

func (t *pathTree) init() {
	t.nodes = []pathNode{{}}
}

// child returns the index of n's child named k, or -1.
func (t *pathTree) child(n int32, k []byte) int32 {
	node := &t.nodes[n]
	l := len(k)
	if l > maxIndexedLen {
		l = maxIndexedLen
	}
	for i, end := int(node.byLen[l]), int(node.byLen[l+1]); i < end; i++ {
		if node.kids[i].key == string(k) {
			return node.kids[i].idx
		}
	}
	return -1
}

// index builds every node's length index; call it once all paths are in.
func (t *pathTree) index() {
	for n := range t.nodes {
		node := &t.nodes[n]
		node.kids = node.kids[:0]
		for _, c := range node.children {
			node.kids = append(node.kids, kid{t.nodes[c].key, c})
		}
		sort.SliceStable(node.kids, func(i, j int) bool { return len(node.kids[i].key) < len(node.kids[j].key) })
		k := 0
		for l := 0; l <= maxIndexedLen+1; l++ {
			for k < len(node.kids) && len(node.kids[k].key) < l {
				k++
			}
			node.byLen[l] = uint8(k)
		}
		// Keys of maxIndexedLen bytes or more share the last bucket.
		node.byLen[maxIndexedLen+1] = uint8(len(node.kids))
	}
}

// insert adds a path for f; it reports a conflict with an existing path.
func (t *pathTree) insert(segs []string, f field) error {
	n := int32(0)
	for i, seg := range segs {
		c := int32(-1)
		for _, k := range t.nodes[n].children {
			if t.nodes[k].key == seg {
				c = k
			}
		}
		if c < 0 {
			c = int32(len(t.nodes))
			t.nodes = append(t.nodes, pathNode{key: seg, path: strings.Join(segs[:i+1], ".")})
			t.nodes[n].children = append(t.nodes[n].children, c)
		}
		node := &t.nodes[c]
		last := i == len(segs)-1
		if last && len(node.children) > 0 {
			return fmt.Errorf("%q is also an object on the path of %s", node.path, t.firstFieldUnder(c))
		}
		if !last && len(node.fields) > 0 {
			return fmt.Errorf("%q is the source of %s, so it cannot also be an object", node.path, node.fields[0])
		}
		if last {
			node.fields = append(node.fields, f)
		}
		n = c
	}
	return nil
}

func (t *pathTree) firstFieldUnder(n int32) field {
	for len(t.nodes[n].fields) == 0 {
		n = t.nodes[n].children[0]
	}
	return t.nodes[n].fields[0]
}

// compileMapping turns m into lookup structures, or returns every problem
// found, each naming its option under prefix.
func compileMapping(m *Mapping, prefix string) (*compiled, error) {
	errs := &mappingErrors{prefix: prefix}
	c := &compiled{}
	switch m.Format {
	case "", FormatJSON:
		c.json = true
	case FormatCSV:
	default:
		errs.add("format", "%q is not allowed; use json or csv", m.Format)
		return nil, errs.err()
	}
	c.compileSources(m, errs)
	if c.json {
		c.compileJSON(m, errs)
	} else {
		c.compileCSV(m, errs)
	}
	c.compileExtras(m, errs)
	if err := errs.err(); err != nil {
		return nil, err
	}
	c.top.index()
	c.item.index()
	return c, nil
}

// mappingErrors collects a mapping's problems, each naming its option.
type mappingErrors struct {
	prefix string
	errs   []string
}

func (e *mappingErrors) add(opt, format string, args ...any) {
	e.errs = append(e.errs, optName(e.prefix, opt)+": "+fmt.Sprintf(format, args...))
}

// err returns the problems sorted, so that messages do not depend on map
// order, or nil when there are none.
func (e *mappingErrors) err() error {
	if len(e.errs) == 0 {
		return nil
	}
	sort.Strings(e.errs)
	return errors.New(strings.Join(e.errs, "\n"))
}

// compileSources checks the canonical names in m.Fields and records each
// field's source: the key, path or column it is read from, or "-".
func (c *compiled) compileSources(m *Mapping, errs *mappingErrors) {
	for k := range m.Fields {
		if _, ok := lookupField(k); !ok {
			errs.add("fields."+k, "unknown canonical field; use one of %s", strings.Join(fieldNames[:], ", "))
		}
	}
	source := func(f field) string {
		if s, ok := m.Fields[fieldNames[f]]; ok {
			return s
		}
		if f >= numTop {
			return itemKeys[f-numTop]
		}
		return fieldNames[f]
	}
	for f := field(0); f < numFields; f++ {
		c.source[f] = source(f)
		c.ignored[f] = c.source[f] == "-"
	}
}

// compileJSON builds the path trees of the record object and of each item
// object from the fields' sources.
func (c *compiled) compileJSON(m *Mapping, errs *mappingErrors) {
	if m.Delimiter != "" || m.HeaderLine != "" || len(m.Columns) > 0 {
		errs.add("format", "columns, header_line and delimiter apply to csv only")
	}
	c.top.init()
	c.item.init()
	// Insert in a fixed order so messages do not depend on map order.
	for f := field(0); f < numFields; f++ {
		src := c.source[f]
		opt := "fields." + fieldNames[f]
		if c.ignored[f] {
			continue
		}
		segs := strings.Split(src, ".")
		bad := len(segs) > maxPathDepth
		for _, s := range segs {
			if s == "" || strings.TrimSpace(s) != s {
				bad = true
			}
		}
		if bad {
			errs.add(opt, "%q is not a key or dotted path (at most %d non-empty segments without surrounding spaces)", src, maxPathDepth)
			continue
		}
		tree := &c.top
		if f >= numTop {
			tree = &c.item
		}
		if err := tree.insert(segs, f); err != nil {
			errs.add(opt, "%v", err)
		}
	}
	if c.ignored[fItems] {
		for f := fItemSku; f < numFields; f++ {
			if _, ok := m.Fields[fieldNames[f]]; ok {
				errs.add("fields."+fieldNames[f], "items is mapped to \"-\"; drop this option")
			}
		}
	}
}

// compileCSV reads the delimiter and the column names and finds each
// field's column.
func (c *compiled) compileCSV(m *Mapping, errs *mappingErrors) {
	c.compileDelimiter(m, errs)
	colOpt := c.compileColumns(m, errs)
	c.ncols = len(c.columns)
	for f := field(0); f < numTop; f++ {
		c.cols[f] = -1
		if c.ignored[f] {
			continue
		}
		for i, col := range c.columns {
			if col == c.source[f] && col != "" {
				c.cols[f] = i
				c.hasField[f] = true
				break
			}
		}
		if _, explicit := m.Fields[fieldNames[f]]; explicit && c.cols[f] < 0 && len(c.columns) > 0 {
			errs.add("fields."+fieldNames[f], "column %q is not among the %s", c.source[f], colOpt)
		}
	}
	for f := fItemSku; f < numFields; f++ {
		if _, ok := m.Fields[fieldNames[f]]; ok {
			errs.add("fields."+fieldNames[f], "item sub-fields apply to json only; csv items use the compact form sku:qty:unit_price|...")
		}
	}
}

// compileDelimiter sets c.delim from m.Delimiter (default ',').
func (c *compiled) compileDelimiter(m *Mapping, errs *mappingErrors) {
	c.delim = ','
	switch {
	case m.Delimiter == "":
	case len(m.Delimiter) == 1 && m.Delimiter[0] < 0x80 && m.Delimiter[0] != '"' &&
		m.Delimiter[0] != '\r' && m.Delimiter[0] != '\n':
		c.delim = m.Delimiter[0]
	default:
		errs.add("delimiter", "%q is not allowed; use one ASCII character other than '\"', CR and LF (e.g. \",\", \";\", \"\\t\", \"|\")", m.Delimiter)
	}
}

// compileColumns sets c.columns from m.Columns or m.HeaderLine, checks
// that no name appears twice and returns the option the names came from.
func (c *compiled) compileColumns(m *Mapping, errs *mappingErrors) (colOpt string) {
	switch {
	case len(m.Columns) > 0 && m.HeaderLine != "":
		errs.add("columns", "set either columns or header_line, not both")
	case len(m.Columns) > 0:
		c.columns = m.Columns
	case m.HeaderLine != "":
		var sp csvSplitter
		cells, err := sp.split([]byte(m.HeaderLine), c.delim)
		if err != nil {
			errs.add("header_line", "%v", err)
		}
		for _, cell := range cells {
			c.columns = append(c.columns, strings.TrimSpace(string(cell)))
		}
	default:
		errs.add("columns", "a csv topic needs columns or header_line")
	}
	colOpt = "columns"
	if m.HeaderLine != "" {
		colOpt = "header_line"
	}
	seen := map[string]bool{}
	for _, col := range c.columns {
		if col == "" {
			continue // an unnamed column is read by no field
		}
		if seen[col] {
			errs.add(colOpt, "column %q appears twice", col)
		}
		seen[col] = true
	}
	return colOpt
}
