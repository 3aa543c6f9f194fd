package snowtest

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Snowflake's login and session error codes, as the driver expects them.
const (
	codeBadPassword    = "390100" // Incorrect username or password was specified.
	codeSessionGone    = "390111" // Session no longer exists.
	codeSessionExpired = "390112" // Your session has expired.
	codeMasterExpired  = "390114" // Authentication token has expired.
	codeBadJWT         = "390144" // JWT token is invalid.
	codeBadOAuth       = "390303" // Invalid OAuth access token.
)

// session is one logged-in driver connection. It owns a DuckDB connection,
// so transactions are per session as in Snowflake.
type session struct {
	id       int64
	user     string
	database string
	schema   string

	// Guarded by Server.mu.
	token      string
	tokenExp   time.Time
	master     string
	masterExp  time.Time
	tempStages []string

	// lastUsed is when the session's last statement ended (Unix
	// nanoseconds): a transaction idle since long ago is detached.
	lastUsed atomic.Int64
	// txID is the open transaction's id, 0 outside one (written under
	// mu).
	txID atomic.Int64

	mu       sync.Mutex // serialises statements; guards the fields below
	conn     *sql.Conn
	inTx     bool
	aborted  bool              // the transaction was rolled back as detached; the client has not ended it yet
	answered map[string][]byte // answers by requestId, for retried requests
}

// close ends the session's DuckDB connection, which rolls back an open
// transaction.
func (sess *session) close() {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.conn != nil {
		_ = sess.conn.Close()
		sess.conn = nil
	}
}

// idleSince is when the session's last statement ended.
func (sess *session) idleSince() time.Time { return time.Unix(0, sess.lastUsed.Load()) }

func newToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newQueryID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

type loginRequest struct {
	Data struct {
		AccountName   string `json:"ACCOUNT_NAME"`
		LoginName     string `json:"LOGIN_NAME"`
		Password      string `json:"PASSWORD"`
		Authenticator string `json:"AUTHENTICATOR"`
		Token         string `json:"TOKEN"`
	} `json:"data"`
}

func (s *Server) login(w http.ResponseWriter, r *http.Request, body []byte) {
	var req loginRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, failure(codeBadPassword, "", "snowtest: login request is not JSON"))
		return
	}
	d := req.Data
	if !strings.EqualFold(accountName(d.AccountName), s.opts.Account) {
		// Snowflake answers an unknown account with 403.
		writeJSON(w, http.StatusForbidden, failure(codeBadJWT, "", "Invalid account name or host."))
		return
	}
	var (
		user string
		fail response
	)
	switch strings.ToUpper(d.Authenticator) {
	case "", "SNOWFLAKE":
		user, fail = s.checkPassword(d.LoginName, d.Password)
	case "SNOWFLAKE_JWT":
		user, fail = s.checkJWT(d.Token)
	case "OAUTH":
		user, fail = s.checkOAuth(d.LoginName, d.Token)
	default:
		fail = failure(codeBadPassword, "", "snowtest: authenticator "+d.Authenticator+" is not supported")
	}
	if user == "" {
		writeJSON(w, http.StatusOK, fail)
		return
	}
	q := r.URL.Query()
	sess, err := s.openSession(r.Context(), user, q.Get("databaseName"), q.Get("schemaName"))
	if err != nil {
		writeJSON(w, http.StatusOK, failure("390201", "", "snowtest: cannot open a session: "+err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, ok(map[string]any{
		"token":                   sess.token,
		"validityInSeconds":       int(s.opts.SessionTTL.Seconds()),
		"masterToken":             sess.master,
		"masterValidityInSeconds": int(s.opts.MasterTTL.Seconds()),
		"sessionId":               sess.id,
		"serverVersion":           "snowtest",
		"displayUserName":         user,
		"parameters": []map[string]any{
			{"name": "TIMEZONE", "value": "UTC"},
			{"name": "AUTOCOMMIT", "value": true},
		},
		"sessionInfo": map[string]any{
			"databaseName":  sess.database,
			"schemaName":    sess.schema,
			"warehouseName": q.Get("warehouse"),
			"roleName":      q.Get("roleName"),
		},
	}))
}

// accountName is the account part of an account identifier
// ("acme.eu-west-1" -> "acme"), as the driver puts it in JWTs.
func accountName(a string) string {
	if i := strings.IndexByte(a, '.'); i > 0 {
		return a[:i]
	}
	return a
}

func (s *Server) lookupUser(name string) (User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[strings.ToUpper(name)]
	return u, ok
}

func (s *Server) checkPassword(name, password string) (string, response) {
	u, found := s.lookupUser(name)
	if !found || u.Password == "" || subtle.ConstantTimeCompare([]byte(u.Password), []byte(password)) != 1 {
		return "", failure(codeBadPassword, "", "Incorrect username or password was specified.")
	}
	return strings.ToUpper(u.Name), response{}
}

func (s *Server) checkOAuth(name, token string) (string, response) {
	u, found := s.lookupUser(name)
	if !found || u.OAuthToken == "" || subtle.ConstantTimeCompare([]byte(u.OAuthToken), []byte(token)) != 1 {
		return "", failure(codeBadOAuth, "", "Invalid OAuth access token. ")
	}
	return strings.ToUpper(u.Name), response{}
}

// checkJWT verifies a key-pair login token the way Snowflake does: an RS256
// signature by the user's registered key, iss =
// ACCOUNT.USER.SHA256:<base64 SHA-256 of the public key's DER>, sub =
// ACCOUNT.USER, and a current exp.
func (s *Server) checkJWT(tok string) (string, response) {
	bad := func(why string) (string, response) {
		return "", failure(codeBadJWT, "", "JWT token is invalid. ("+why+")")
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return bad("not a JWT")
	}
	var header struct{ Alg string }
	var claims struct {
		Iss string
		Sub string
		Exp int64
		Iat int64
	}
	if err := decodeSegment(parts[0], &header); err != nil || header.Alg != "RS256" {
		return bad("header is not RS256")
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return bad("claims are not JSON")
	}
	sub := strings.SplitN(claims.Sub, ".", 2)
	if len(sub) != 2 || !strings.EqualFold(sub[0], s.opts.Account) {
		return bad("subject is not ACCOUNT.USER for this account")
	}
	u, found := s.lookupUser(sub[1])
	if !found || u.PrivateKey == nil {
		return bad("user has no public key")
	}
	der, err := x509.MarshalPKIXPublicKey(&u.PrivateKey.PublicKey)
	if err != nil {
		return bad("cannot encode the registered key")
	}
	fp := sha256.Sum256(der)
	wantIss := strings.ToUpper(s.opts.Account) + "." + strings.ToUpper(u.Name) + ".SHA256:" + base64.StdEncoding.EncodeToString(fp[:])
	if claims.Iss != wantIss {
		return bad("issuer does not name the registered key's fingerprint")
	}
	now := time.Now().Unix()
	if claims.Exp < now || claims.Iat > now+60 {
		return bad("expired or issued in the future")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return bad("signature is not base64url")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&u.PrivateKey.PublicKey, crypto.SHA256, digest[:], sig); err != nil {
		return bad("signature does not verify")
	}
	return strings.ToUpper(u.Name), response{}
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// openSession gives a new session its DuckDB connection, with the
// Snowflake schema as the connection's current DuckDB schema (created if
// missing: the server has no provisioning step).
func (s *Server) openSession(ctx context.Context, user, database, schema string) (*session, error) {
	if database == "" {
		database = "OFFLOAD_DB"
	}
	if schema == "" {
		schema = "PUBLIC"
	}
	_, database = objectName(database)
	_, schema = objectName(schema)
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	for _, q := range []string{
		"SET TimeZone = 'UTC'",
		"CREATE SCHEMA IF NOT EXISTS " + quoteIdent(schema),
		"USE " + quoteIdent(schema),
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	now, id := time.Now(), s.newID()
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := &session{
		id:        id,
		user:      user,
		database:  database,
		schema:    schema,
		conn:      conn,
		token:     newToken(),
		tokenExp:  now.Add(s.opts.SessionTTL),
		master:    newToken(),
		masterExp: now.Add(s.opts.MasterTTL),
		answered:  map[string][]byte{},
	}
	s.sessions[sess.id] = sess
	return sess, nil
}

// authenticate finds the session whose token the request carries. On
// failure it returns the error answer to send.
func (s *Server) authenticate(r *http.Request) (*session, *response) {
	tok := strings.TrimSuffix(strings.TrimPrefix(r.Header.Get("Authorization"), `Snowflake Token="`), `"`)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.sessions {
		if sess.token != tok || tok == "" {
			continue
		}
		if time.Now().After(sess.tokenExp) {
			f := failure(codeSessionExpired, "", "Your session has expired. Please login again.")
			return nil, &f
		}
		return sess, nil
	}
	f := failure(codeSessionGone, "", "Session no longer exists.  New login required to access the service.")
	return nil, &f
}

// expire makes the session's current token invalid now.
func (s *Server) expire(r *http.Request) {
	sess, _ := s.authenticate(r)
	if sess != nil {
		s.mu.Lock()
		sess.tokenExp = time.Now().Add(-time.Second)
		s.mu.Unlock()
	}
}

// renew issues a new session token for the master token, as
// /session/token-request does.
func (s *Server) renew(w http.ResponseWriter, r *http.Request, body []byte) {
	var req struct {
		OldSessionToken string `json:"oldSessionToken"`
		RequestType     string `json:"requestType"`
	}
	_ = json.Unmarshal(body, &req)
	master := strings.TrimSuffix(strings.TrimPrefix(r.Header.Get("Authorization"), `Snowflake Token="`), `"`)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.sessions {
		if sess.master != master || master == "" {
			continue
		}
		if time.Now().After(sess.masterExp) {
			writeJSON(w, http.StatusOK, failure(codeMasterExpired, "", "Authentication token has expired.  The user must authenticate again."))
			return
		}
		sess.token = newToken()
		sess.tokenExp = time.Now().Add(s.opts.SessionTTL)
		writeJSON(w, http.StatusOK, ok(map[string]any{
			"sessionToken":        sess.token,
			"validityInSecondsST": int(s.opts.SessionTTL.Seconds()),
			"masterToken":         sess.master,
			"validityInSecondsMT": int(time.Until(sess.masterExp).Seconds()),
			"sessionId":           sess.id,
		}))
		return
	}
	writeJSON(w, http.StatusOK, failure(codeSessionGone, "", "Session no longer exists.  New login required to access the service."))
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request, f *Injected) {
	if f != nil && f.Kind == FaultSessionExpired {
		s.expire(r)
	}
	if _, fail := s.authenticate(r); fail != nil {
		writeJSON(w, http.StatusOK, *fail)
		return
	}
	writeJSON(w, http.StatusOK, ok(nil))
}

// closeSession ends a session (POST /session?delete=true): its DuckDB
// connection closes, rolling back an open transaction, and its temporary
// stages go. A statement of the session still running ends first, and
// until it has, the session and its transaction stay where
// SYSTEM$ABORT_TRANSACTION finds them: aborting a transaction returns
// once it is no longer running, committed or not.
func (s *Server) closeSession(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("delete") != "true" {
		writeJSON(w, http.StatusBadRequest, failure("390400", "", "snowtest: only POST /session?delete=true is supported"))
		return
	}
	sess, fail := s.authenticate(r)
	if fail != nil {
		writeJSON(w, http.StatusOK, *fail)
		return
	}
	sess.close()
	s.endTx(sess)
	s.mu.Lock()
	delete(s.sessions, sess.id)
	var dirs []string
	for _, name := range sess.tempStages {
		if st := s.stages[name]; st != nil && st.owner == sess.id {
			delete(s.stages, name)
			dirs = append(dirs, st.dir)
		}
	}
	s.mu.Unlock()
	var err error
	for _, d := range dirs {
		err = errors.Join(err, os.RemoveAll(d))
	}
	if err != nil {
		writeJSON(w, http.StatusOK, failure("390400", "", "snowtest: cannot remove a temporary stage: "+err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, ok(nil))
}
