package pglock_test

// A PostgreSQL server of a test's own, for what the shared one must not
// suffer (a stop and a restart): the binaries of PGLOCK_PG_CONFIG --bindir,
// run as postgres (through scripts/as-postgres when the tests run as root),
// on a Unix socket only, in a folder /tmp/pglock-go-test-*, on a port of
// 55521-55539. Stopped and removed when the test ends, also on failure.

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

type ownServer struct {
	t      testing.TB
	bindir string
	dir    string
	port   int
	prefix []string // the command that runs a program as postgres
}

func startOwnServer(t testing.TB, port int) *ownServer {
	t.Helper()
	requireServer(t)
	if port < 55521 || port > 55539 {
		t.Fatalf("port %d is outside 55521-55539", port)
	}
	pgConfig := os.Getenv("PGLOCK_PG_CONFIG")
	if pgConfig == "" {
		t.Fatal("PGLOCK_PG_CONFIG is not set")
	}
	out, err := exec.Command(pgConfig, "--bindir").Output()
	if err != nil {
		t.Fatalf("%s --bindir: %v", pgConfig, err)
	}
	s := &ownServer{t: t, bindir: strings.TrimSpace(string(out)), port: port}
	if os.Geteuid() == 0 {
		// initdb and postgres refuse root.
		asPostgres, err := findUp("scripts/as-postgres")
		if err != nil {
			t.Fatal(err)
		}
		s.prefix = []string{asPostgres}
	}
	s.dir, err = os.MkdirTemp("/tmp", "pglock-go-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.remove)
	if err := os.Mkdir(filepath.Join(s.dir, "socket"), 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		pg, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		for _, p := range []string{s.dir, filepath.Join(s.dir, "socket")} {
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.run("initdb", "-D", s.data(), "-U", "postgres", "--auth=trust", "--no-sync")
	s.start()
	admin, err := sql.Open("postgres", s.dsn("postgres", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for _, q := range []string{
		"CREATE DATABASE pglock_test",
		"CREATE ROLE " + roleApp + " LOGIN",
	} {
		if _, err := admin.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db, err := sql.Open("postgres", s.dsn("postgres", "pglock_test"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{"CREATE EXTENSION pglock", "GRANT pglock_user TO " + roleApp} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return s
}

func (s *ownServer) data() string   { return filepath.Join(s.dir, "data") }
func (s *ownServer) socket() string { return filepath.Join(s.dir, "socket") }

func (s *ownServer) dsn(user, dbname string) string {
	return dsnFor(s.socket(), strconv.Itoa(s.port), user, dbname)
}

func (s *ownServer) run(program string, args ...string) {
	s.t.Helper()
	argv := append(append(append([]string{}, s.prefix...), filepath.Join(s.bindir, program)), args...)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

func (s *ownServer) start() {
	s.t.Helper()
	s.run("pg_ctl", "-D", s.data(), "-l", filepath.Join(s.dir, "server.log"), "-w", "-o",
		fmt.Sprintf("-c port=%d -c listen_addresses= -c unix_socket_directories=%s "+
			"-c shared_preload_libraries=pglock -c max_connections=40 -c fsync=off", s.port, s.socket()),
		"start")
}

func (s *ownServer) stop() {
	s.t.Helper()
	s.run("pg_ctl", "-D", s.data(), "-m", "fast", "-w", "stop")
}

// remove stops the server if it runs and removes its folder.
func (s *ownServer) remove() {
	if _, err := os.Stat(filepath.Join(s.data(), "postmaster.pid")); err == nil {
		argv := append(append([]string{}, s.prefix...), filepath.Join(s.bindir, "pg_ctl"), "-D", s.data(), "-m", "immediate", "-w", "stop")
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			s.t.Logf("stopping the server: %v\n%s", err, out)
		}
	}
	if s.t.Failed() {
		if log, err := os.ReadFile(filepath.Join(s.dir, "server.log")); err == nil {
			s.t.Logf("server log:\n%s", log)
		}
	}
	_ = os.RemoveAll(s.dir)
}

// findUp finds path in the working directory or one above it: the tests run
// in clients/go/pglock of a checkout, wherever that is.
func findUp(path string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, path)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New(path + " not found above the working directory")
		}
		dir = parent
	}
}
