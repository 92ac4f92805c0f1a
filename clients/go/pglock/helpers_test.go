package pglock_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/lib/pq"

	"github.com/pglock/pglock/clients/go/pglock"
)

// The tests run against the server the environment names, as the project's
// test command sets it: PGHOST (a socket folder), PGPORT, PGUSER (a
// superuser), PGLOCK_TEST_DB (a database with the extension) and
// PGLOCK_PG_CONFIG (for the servers some tests start of their own).

// drivers are the database/sql drivers every behaviour is shown with.
var drivers = []string{"postgres", "pgx"} // lib/pq, pgx/v5/stdlib

// The roles the tests act as: two applications that may use pglock, and one
// that may not. Created once, by the superuser.
const (
	roleApp      = "pglock_go_app"
	roleOther    = "pglock_go_other"
	roleOutsider = "pglock_go_outsider"
)

func TestMain(m *testing.M) {
	if os.Getenv(holderEnv) != "" {
		os.Exit(runHolder())
	}
	os.Exit(m.Run())
}

func requireServer(t testing.TB) {
	t.Helper()
	for _, v := range []string{"PGHOST", "PGPORT", "PGUSER", "PGLOCK_TEST_DB"} {
		if os.Getenv(v) == "" {
			t.Skipf("%s is not set: these tests need the server of the test command (see clients/go/test.sh)", v)
		}
	}
	rolesOnce.Do(createRoles)
	if rolesErr != nil {
		t.Fatal(rolesErr)
	}
}

// dsnFor is a connection string, in the key=value form both drivers read.
func dsnFor(host, port, user, dbname string) string {
	return fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable", host, port, user, dbname)
}

func dsn(user string) string {
	return dsnFor(os.Getenv("PGHOST"), os.Getenv("PGPORT"), user, os.Getenv("PGLOCK_TEST_DB"))
}

func superuser() string { return os.Getenv("PGUSER") }

// openDB opens a pool for role with driver, bounded to maxConns connections
// (the test server allows 200 in all), closed when the test ends.
func openDB(t testing.TB, driver, role string, maxConns int) *sql.DB {
	t.Helper()
	requireServer(t)
	db, err := sql.Open(driver, dsn(role))
	if err != nil {
		t.Fatal("cannot open the test database:", err)
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	t.Cleanup(func() { db.Close() })
	return db
}

var (
	rolesOnce sync.Once
	rolesErr  error
)

// createRoles creates the tests' roles, guarded against concurrent creation
// (by another run of these tests, or the project's other suites) by an
// advisory lock, as tests/over_connections/src/lib.rs does.
func createRoles() {
	db, err := sql.Open("postgres", dsn(superuser()))
	if err != nil {
		rolesErr = err
		return
	}
	defer db.Close()
	for _, r := range []struct {
		name  string
		grant bool
	}{{roleApp, true}, {roleOther, true}, {roleOutsider, false}} {
		grant := ""
		if r.grant {
			grant = "GRANT pglock_user TO " + r.name + ";"
		}
		_, err := db.Exec(`BEGIN;
SELECT pg_advisory_xact_lock(hashtext('pglock-tests roles'));
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '` + r.name + `') THEN
        CREATE ROLE ` + r.name + ` LOGIN;
    END IF;
END $$;
` + grant + `
COMMIT;`)
		if err != nil {
			rolesErr = fmt.Errorf("create role %s: %w", r.name, err)
			return
		}
	}
}

// lockName is a name no other test uses.
func lockName(t testing.TB) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return strings.ReplaceAll(t.Name(), "/", ".") + "-" + hex.EncodeToString(b)
}

func eachDriver(t *testing.T, f func(t *testing.T, driver string)) {
	for _, d := range drivers {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			f(t, d)
		})
	}
}

func newClient(t testing.TB, db *sql.DB, opts ...pglock.ClientOption) *pglock.Client {
	t.Helper()
	c, err := pglock.New(db, append([]pglock.ClientOption{pglock.WithLevelLogger(&testLogger{t: t})}, opts...)...)
	if err != nil {
		t.Fatal("cannot create lock client:", err)
	}
	return c
}

func testContext(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// admin runs a statement as the superuser, e.g. to remove a lock as an
// operator would (pglock_force_release).
func admin(t testing.TB, query string, args ...any) {
	t.Helper()
	db := adminDB(t)
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

var (
	adminOnce sync.Once
	adminPool *sql.DB
)

func adminDB(t testing.TB) *sql.DB {
	t.Helper()
	requireServer(t)
	adminOnce.Do(func() {
		db, err := sql.Open("postgres", dsn(superuser()))
		if err == nil {
			db.SetMaxOpenConns(4)
			adminPool = db
		}
	})
	if adminPool == nil {
		t.Fatal("cannot open the superuser's pool")
	}
	return adminPool
}

// row reads the lock as the superuser, from the view (which every role of
// pglock_user may read too).
type viewRow struct {
	owner     string
	rvn       int64
	released  bool
	holder    string
	updatedAt time.Time
}

func lockRow(t testing.TB, name string) (viewRow, bool) {
	t.Helper()
	var r viewRow
	err := adminDB(t).QueryRow(`SELECT owner, rvn, released, holder_role::text, updated_at
  FROM pglock_locks WHERE name = $1`, name).Scan(&r.owner, &r.rvn, &r.released, &r.holder, &r.updatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false
	}
	if err != nil {
		t.Fatal("cannot read pglock_locks:", err)
	}
	return r, true
}

// testLogger logs the client's lines in the test's log and keeps them, so a
// test can look for a SQLSTATE a retry would hide.
type testLogger struct {
	t     testing.TB
	mu    sync.Mutex
	lines []string
	quiet bool
}

func (l *testLogger) add(level, msg string, args []any) {
	line := level + ": " + fmt.Sprintf(msg, args...)
	l.mu.Lock()
	l.lines = append(l.lines, line)
	quiet := l.quiet
	l.mu.Unlock()
	if !quiet {
		l.t.Log(line)
	}
}

func (l *testLogger) Debug(msg string, args ...any) { l.add("DEBUG", msg, args) }
func (l *testLogger) Error(msg string, args ...any) { l.add("ERROR", msg, args) }

func (l *testLogger) find(substrings ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var found []string
	for _, line := range l.lines {
		for _, s := range substrings {
			if strings.Contains(line, s) {
				found = append(found, line)
				break
			}
		}
	}
	return found
}

// printLogger is a Logger (the deprecated kind) for WithLogger.
type printLogger struct{ t testing.TB }

func (p printLogger) Println(v ...interface{}) { p.t.Log(v...) }

// eventually polls cond every 20 ms until it holds or ctx ends.
func eventually(ctx context.Context, cond func() bool) bool {
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return cond()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func getenv(name string) string { return os.Getenv(name) }

func contains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }
