package snowtest

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// stage is an internal stage: a directory the server owns. The driver
// writes PUT files into it itself (stage type LOCAL_FS).
type stage struct {
	name  string
	dir   string
	owner int64 // the session of a temporary stage, 0 otherwise
}

const stageName = `("(?:[^"]|"")+"|[\w$.]+)`

var (
	createStageRE = regexp.MustCompile(`(?is)^CREATE\s+(OR\s+REPLACE\s+)?((?:TEMP|TEMPORARY)\s+)?STAGE\s+(IF\s+NOT\s+EXISTS\s+)?` + stageName + `(.*)$`)
	dropStageRE   = regexp.MustCompile(`(?is)^DROP\s+STAGE\s+(IF\s+EXISTS\s+)?` + stageName + `\s*$`)
	putRE         = regexp.MustCompile(`(?is)^PUT\s+('file://[^']*'|file://\S+)\s+('@[^']*'|@\S+)(.*)$`)
	listRE        = regexp.MustCompile(`(?is)^(?:LIST|LS)\s+('@[^']*'|@\S+)(.*)$`)
	removeRE      = regexp.MustCompile(`(?is)^(?:REMOVE|RM)\s+('@[^']*'|@\S+)(.*)$`)
	copyRE        = regexp.MustCompile(`(?is)^COPY\s+INTO\s+(\S+)\s+FROM\s+('@[^']*'|@\S+)(.*)$`)
	plainNameRE   = regexp.MustCompile(`^[A-Z0-9_~]+$`)
	optionRE      = regexp.MustCompile(`(?is)(\w+)\s*=\s*(\((?:[^()]|\([^()]*\))*\)|'(?:[^']|'')*'|[^\s,)]+)`)
)

func syntaxError(stmt string) error {
	return &sqlError{"001003", "42000", "SQL compilation error:\nsyntax error in " + stmt + " (or a form the snowtest server does not support)"}
}

// parseOptions reads NAME = value options; keys are upper-cased, values
// lose their quotes or parentheses.
func parseOptions(s string) map[string]string {
	opts := map[string]string{}
	for _, m := range optionRE.FindAllStringSubmatch(s, -1) {
		v := m[2]
		switch {
		case strings.HasPrefix(v, "("):
			v = v[1 : len(v)-1]
		case strings.HasPrefix(v, "'"):
			v = strings.ReplaceAll(v[1:len(v)-1], "''", "'")
		}
		opts[strings.ToUpper(m[1])] = v
	}
	return opts
}

func (s *Server) stageDir(name string) string {
	dirName := name
	if !plainNameRE.MatchString(name) {
		dirName = hex.EncodeToString([]byte(name))
	}
	return filepath.Join(s.dir, "stages", dirName)
}

// stageDDL runs CREATE [OR REPLACE] [TEMPORARY] STAGE [IF NOT EXISTS] and
// DROP STAGE [IF EXISTS].
func (s *Server) stageDDL(sess *session, text string) (*result, error) {
	if m := dropStageRE.FindStringSubmatch(text); m != nil {
		_, name := objectName(m[2])
		s.mu.Lock()
		st := s.stages[name]
		delete(s.stages, name)
		s.mu.Unlock()
		if st == nil {
			if m[1] != "" {
				return status(stmtDDL, "Drop statement executed successfully ("+name+" already dropped)."), nil
			}
			return nil, compileError("Stage '%s' does not exist or not authorized.", name)
		}
		if err := os.RemoveAll(st.dir); err != nil {
			return nil, fmt.Errorf("snowtest: cannot remove stage %s: %w", name, err)
		}
		return status(stmtDDL, name+" successfully dropped."), nil
	}
	m := createStageRE.FindStringSubmatch(text)
	if m == nil {
		return nil, syntaxError("CREATE STAGE")
	}
	orReplace, temp, ifNotExists := m[1] != "", m[2] != "", m[3] != ""
	_, name := objectName(m[4])
	if _, ok := parseOptions(m[5])["URL"]; ok {
		return nil, unsupported("an external stage (URL=)")
	}
	st := &stage{name: name, dir: s.stageDir(name)}
	if temp {
		st.owner = sess.id
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, exists := s.stages[name]; exists {
		switch {
		case ifNotExists:
			return status(stmtDDL, name+" already exists, statement succeeded."), nil
		case !orReplace:
			return nil, &sqlError{"002002", "42710", "SQL compilation error:\nObject '" + name + "' already exists."}
		}
	}
	if err := os.RemoveAll(st.dir); err != nil {
		return nil, fmt.Errorf("snowtest: cannot empty stage %s: %w", name, err)
	}
	if err := os.MkdirAll(st.dir, 0o755); err != nil {
		return nil, fmt.Errorf("snowtest: cannot create stage %s: %w", name, err)
	}
	s.stages[name] = st
	if temp {
		sess.tempStages = append(sess.tempStages, name)
	}
	return status(stmtDDL, "Stage area "+name+" successfully created."), nil
}

// resolveStage finds the stage of a reference like @name/path, '@name/path'
// or @~/path (the user's stage, created on first use). It returns the stage
// and the path inside it.
func (s *Server) resolveStage(sess *session, ref string) (*stage, string, error) {
	ref = strings.TrimPrefix(strings.Trim(ref, "'"), "@")
	nameText, path, _ := strings.Cut(ref, "/")
	if strings.HasPrefix(nameText, "%") {
		return nil, "", unsupported("a table stage (@%table)")
	}
	name := "~" + sess.user
	if nameText != "~" {
		_, name = objectName(nameText)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stages[name]
	if st == nil && nameText == "~" {
		st = &stage{name: name, dir: s.stageDir(name)}
		s.stages[name] = st
	}
	if st == nil {
		return nil, "", compileError("Stage '%s' does not exist or not authorized.", name)
	}
	return st, strings.Trim(path, "/"), nil
}

// put answers PUT with the upload information the driver needs to copy
// the file into the stage's directory itself.
func (s *Server) put(sess *session, text string) (*result, error) {
	m := putRE.FindStringSubmatch(text)
	if m == nil {
		return nil, syntaxError("PUT")
	}
	src := strings.TrimPrefix(strings.Trim(m[1], "'"), "file://")
	st, prefix, err := s.resolveStage(sess, m[2])
	if err != nil {
		return nil, err
	}
	opts := parseOptions(m[3])
	overwrite := strings.EqualFold(opts["OVERWRITE"], "TRUE")
	compression := opts["SOURCE_COMPRESSION"]
	if compression == "" {
		compression = "AUTO_DETECT"
	}
	loc := filepath.Join(st.dir, filepath.FromSlash(prefix))
	if err := os.MkdirAll(loc, 0o755); err != nil {
		return nil, fmt.Errorf("snowtest: cannot create %s: %w", loc, err)
	}
	if overwrite && !strings.ContainsAny(src, "*?[") {
		// The driver writes into the existing file without truncating
		// it; a cloud stage replaces the object, so remove it first.
		base := filepath.Join(loc, filepath.Base(src))
		for _, p := range []string{base, base + ".gz"} {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("snowtest: cannot replace %s: %w", p, err)
			}
		}
	}
	return &result{
		stmtType: stmtPut,
		columns:  []column{},
		extra: map[string]any{
			"command":           "UPLOAD",
			"src_locations":     []string{src},
			"autoCompress":      !strings.EqualFold(opts["AUTO_COMPRESS"], "FALSE"),
			"overwrite":         overwrite,
			"sourceCompression": compression,
			"parallel":          4,
			"stageInfo": map[string]any{
				"locationType": "LOCAL_FS",
				"location":     loc,
				"path":         "",
			},
		},
	}, nil
}

// stagedFile is a file in a stage.
type stagedFile struct {
	rel  string // slash-separated path inside the stage
	path string
	info fs.FileInfo
}

// stageFiles resolves the stage reference ref (@name[/path]) and lists the
// stage's files whose path starts with ref's path (as Snowflake matches
// paths) and whose path matches pattern, if any. It returns the stage and
// ref's path too.
func (s *Server) stageFiles(sess *session, ref, pattern string) (*stage, string, []stagedFile, error) {
	st, prefix, err := s.resolveStage(sess, ref)
	if err != nil {
		return nil, "", nil, err
	}
	var re *regexp.Regexp
	if pattern != "" {
		if re, err = regexp.Compile("^(?:" + pattern + ")$"); err != nil {
			return nil, "", nil, &sqlError{"001003", "42000", "SQL compilation error:\ninvalid PATTERN: " + err.Error()}
		}
	}
	var files []stagedFile
	err = filepath.WalkDir(st.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(st.dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if !strings.HasPrefix(rel, prefix) || re != nil && !re.MatchString(rel) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files = append(files, stagedFile{rel: rel, path: p, info: info})
		return nil
	})
	if err != nil {
		return nil, "", nil, fmt.Errorf("snowtest: cannot list stage %s: %w", st.name, err)
	}
	return st, prefix, files, nil
}

func (f stagedFile) name(st *stage) string { return strings.ToLower(st.name) + "/" + f.rel }

func textColumns(names ...string) []column {
	cols := make([]column, len(names))
	for i, n := range names {
		cols[i] = column{Name: n, Type: "text", Length: 16777216, Nullable: true}
	}
	return cols
}

// list answers LIST @stage[/path] [PATTERN = '...'].
func (s *Server) list(sess *session, text string) (*result, error) {
	m := listRE.FindStringSubmatch(text)
	if m == nil {
		return nil, syntaxError("LIST")
	}
	st, _, files, err := s.stageFiles(sess, m[1], parseOptions(m[2])["PATTERN"])
	if err != nil {
		return nil, err
	}
	res := &result{stmtType: stmtList, columns: textColumns("name", "size", "md5", "last_modified")}
	res.columns[1] = column{Name: "size", Type: "fixed", Precision: 19}
	for _, f := range files {
		sum, err := md5File(f.path)
		if err != nil {
			return nil, err
		}
		name, size := f.name(st), strconv.FormatInt(f.info.Size(), 10)
		modified := f.info.ModTime().UTC().Format(time.RFC1123)
		res.rows = append(res.rows, []*string{&name, &size, &sum, &modified})
	}
	return res, nil
}

func md5File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("snowtest: cannot read staged file: %w", err)
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("snowtest: cannot read staged file: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// remove answers REMOVE @stage[/path] [PATTERN = '...'].
func (s *Server) remove(sess *session, text string) (*result, error) {
	m := removeRE.FindStringSubmatch(text)
	if m == nil {
		return nil, syntaxError("REMOVE")
	}
	st, _, files, err := s.stageFiles(sess, m[1], parseOptions(m[2])["PATTERN"])
	if err != nil {
		return nil, err
	}
	res := &result{stmtType: stmtRemove, columns: textColumns("name", "result")}
	for _, f := range files {
		if err := os.Remove(f.path); err != nil {
			return nil, fmt.Errorf("snowtest: cannot remove %s: %w", f.rel, err)
		}
		name, removed := f.name(st), "removed"
		res.rows = append(res.rows, []*string{&name, &removed})
	}
	return res, nil
}

// copyInto loads staged Parquet files into a table, matching columns by
// name as MATCH_BY_COLUMN_NAME does, in one transaction. Files already
// loaded into the table are skipped unless FORCE = TRUE, as Snowflake's
// load metadata does.
func (s *Server) copyInto(ctx context.Context, sess *session, text string) (*result, error) {
	m := copyRE.FindStringSubmatch(text)
	if m == nil {
		if strings.Contains(strings.ToUpper(strings.Join(strings.Fields(text), "")), "FROM(") {
			return nil, unsupported("COPY with a transformation (FROM (SELECT ...))")
		}
		return nil, syntaxError("COPY INTO")
	}
	if strings.Contains(m[1], "(") {
		return nil, unsupported("COPY INTO with a column list")
	}
	opts := parseOptions(m[3])
	format := parseOptions(opts["FILE_FORMAT"])
	if !strings.EqualFold(strings.Trim(format["TYPE"], "'"), "PARQUET") {
		return nil, unsupported("COPY without FILE_FORMAT = (TYPE = PARQUET)")
	}
	match := strings.ToUpper(opts["MATCH_BY_COLUMN_NAME"])
	if match != "CASE_INSENSITIVE" && match != "CASE_SENSITIVE" {
		return nil, unsupported("COPY of Parquet without MATCH_BY_COLUMN_NAME")
	}
	if onErr := opts["ON_ERROR"]; onErr != "" && !strings.EqualFold(onErr, "ABORT_STATEMENT") {
		return nil, unsupported("ON_ERROR = " + onErr)
	}
	schema, table := objectName(m[1])
	target := quoteIdent(table)
	if schema != "" {
		target = quoteIdent(schema) + "." + target
	}
	tableCols, err := columnNames(ctx, sess, "SELECT * FROM "+target+" LIMIT 0")
	if err != nil {
		return nil, compileError("Table '%s' does not exist or not authorized.", table)
	}
	st, prefix, files, err := s.stageFiles(sess, m[2], opts["PATTERN"])
	if err != nil {
		return nil, err
	}
	if names := opts["FILES"]; names != "" {
		var wanted []string
		for _, n := range strings.Split(names, ",") {
			wanted = append(wanted, strings.Trim(strings.Trim(strings.TrimSpace(n), "'"), "/"))
		}
		files = slices.DeleteFunc(files, func(f stagedFile) bool {
			return !slices.Contains(wanted, strings.TrimPrefix(strings.TrimPrefix(f.rel, prefix), "/"))
		})
	}
	force := strings.EqualFold(opts["FORCE"], "TRUE")
	tableKey := schema + "." + table
	if schema == "" {
		tableKey = sess.schema + "." + table
	}
	s.mu.Lock()
	loaded := s.loaded[tableKey]
	if loaded == nil {
		loaded = map[string]bool{}
		s.loaded[tableKey] = loaded
	}
	files = slices.DeleteFunc(files, func(f stagedFile) bool { return !force && loaded[fileKey(f)] })
	s.mu.Unlock()
	if len(files) == 0 {
		return status(stmtCopy, "Copy executed with 0 files processed."), nil
	}
	if s.opts.OnCopy != nil {
		for _, f := range files {
			s.opts.OnCopy(f.path)
		}
	}

	ownTx := !sess.inTx
	if ownTx {
		if _, err := sess.conn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
			return nil, duckError(err)
		}
	}
	res := &result{stmtType: stmtCopy, columns: textColumns("file", "status", "rows_parsed", "rows_loaded", "error_limit",
		"errors_seen", "first_error", "first_error_line", "first_error_character", "first_error_column_name")}
	for _, i := range []int{2, 3, 4, 5, 7, 8} {
		res.columns[i] = column{Name: res.columns[i].Name, Type: "fixed", Precision: 19, Nullable: true}
	}
	for _, f := range files {
		parsed, loadedRows, err := loadParquet(ctx, sess, target, tableCols, f.path, match == "CASE_INSENSITIVE")
		if err != nil {
			if ownTx {
				_, _ = sess.conn.ExecContext(ctx, "ROLLBACK")
			}
			se := duckError(err).(*sqlError)
			return nil, &sqlError{se.code, se.state, "COPY of " + f.name(st) + " failed: " + se.msg}
		}
		name, loadedStatus, p, l, limit, seen := f.name(st), "LOADED", strconv.FormatInt(parsed, 10), strconv.FormatInt(loadedRows, 10), "1", "0"
		res.rows = append(res.rows, []*string{&name, &loadedStatus, &p, &l, &limit, &seen, nil, nil, nil, nil})
	}
	if ownTx {
		if _, err := sess.conn.ExecContext(ctx, "COMMIT"); err != nil {
			_, _ = sess.conn.ExecContext(ctx, "ROLLBACK")
			return nil, duckError(err)
		}
	}
	s.mu.Lock()
	for _, f := range files {
		loaded[fileKey(f)] = true
	}
	s.mu.Unlock()
	if strings.EqualFold(opts["PURGE"], "TRUE") {
		for _, f := range files {
			if err := os.Remove(f.path); err != nil {
				return nil, fmt.Errorf("snowtest: cannot purge %s: %w", f.rel, err)
			}
		}
	}
	return res, nil
}

// fileKey identifies a staged file's content for the load metadata, as
// Snowflake uses the file's name and checksum.
func fileKey(f stagedFile) string {
	return f.rel + "|" + strconv.FormatInt(f.info.Size(), 10) + "|" + f.info.ModTime().String()
}

func columnNames(ctx context.Context, sess *session, query string) ([]string, error) {
	rows, err := sess.conn.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return rows.Columns()
}

// loadParquet inserts one Parquet file's columns that match the table's
// columns by name. Table columns missing from the file get NULL; file
// columns missing from the table are ignored.
func loadParquet(ctx context.Context, sess *session, target string, tableCols []string, path string, fold bool) (parsed, loaded int64, err error) {
	source := "read_parquet(" + quoteString(path) + ")"
	fileCols, err := columnNames(ctx, sess, "SELECT * FROM "+source+" LIMIT 0")
	if err != nil {
		return 0, 0, err
	}
	var into, from []string
	for _, tc := range tableCols {
		for _, fc := range fileCols {
			if tc == fc || fold && strings.EqualFold(tc, fc) {
				into, from = append(into, quoteIdent(tc)), append(from, quoteIdent(fc))
				break
			}
		}
	}
	if len(into) == 0 {
		return 0, 0, &sqlError{"100072", "22000", fmt.Sprintf("no column of the file (%s) matches a column of the table (%s)",
			strings.Join(fileCols, ", "), strings.Join(tableCols, ", "))}
	}
	if err := sess.conn.QueryRowContext(ctx, "SELECT count(*) FROM "+source).Scan(&parsed); err != nil {
		return 0, 0, err
	}
	r, err := sess.conn.ExecContext(ctx, "INSERT INTO "+target+" ("+strings.Join(into, ", ")+") SELECT "+strings.Join(from, ", ")+" FROM "+source)
	if err != nil {
		return 0, 0, err
	}
	loaded, err = r.RowsAffected()
	return parsed, loaded, err
}
