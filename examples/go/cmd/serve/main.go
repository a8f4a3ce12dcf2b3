// Command serve is an HTTP host for loopgain-receiver on net/http.
//
// Every request goes to lgr_handle_request() through receiver.Handler, so
// the routes and answers are the library's, as in the C++ example server
// (loopgain-receiver-server), whose flags and JSON log lines it follows.
//
//	go run ./cmd/serve --db ./var/telemetry.db --listen 127.0.0.1:8787
//
// SIGINT or SIGTERM stops the server after in-flight requests are
// answered; the receiver then commits every acknowledged event. Exit
// status: 0 after a clean stop, 1 when the database or the listening
// socket cannot be opened, 2 for bad usage.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	receiver "loopgain.dev/receiver-go"
)

const maxBodyCeiling = 16 * 1024 * 1024

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt,
		syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

type config struct {
	db            string
	listen        string
	policy        string
	maxBody       int64
	corsOrigins   []string
	quiet         bool
	now           int64
	shutdownGrace time.Duration
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.db, "db", "./var/telemetry.db",
		"SQLite database, created and migrated on start (its directory must exist)")
	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:8787",
		"HOST:PORT to listen on; IPv6 as [::1]:8787; port 0 picks a free port, "+
			"reported in the \"listening\" log line")
	fs.StringVar(&cfg.policy, "privacy-policy", "summary_only",
		"summary_only, trajectories or strict")
	fs.Int64Var(&cfg.maxBody, "max-body", receiver.DefaultMaxBodyBytes,
		"largest request body, 1..16777216; larger bodies get 413")
	fs.Var((*stringList)(&cfg.corsOrigins), "cors-origin",
		"a browser origin allowed to call the read routes, exact match (repeatable)")
	fs.BoolVar(&cfg.quiet, "quiet", false,
		"no access log (diagnostics are still logged)")
	fs.Int64Var(&cfg.now, "now", 0,
		"testing and replays only: a fixed \"now\" (UNIX seconds) for time "+
			"windows and the future-timestamp check")
	fs.DurationVar(&cfg.shutdownGrace, "shutdown-grace", 10*time.Second,
		"how long a stop waits for in-flight requests")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if cfg.maxBody < 1 || cfg.maxBody > maxBodyCeiling {
		return nil, fmt.Errorf("--max-body: expected 1..%d", maxBodyCeiling)
	}
	if cfg.now < 0 {
		return nil, errors.New("--now: expected UNIX seconds (an integer >= 0)")
	}
	if _, _, err := net.SplitHostPort(cfg.listen); err != nil {
		return nil, fmt.Errorf("--listen: expected HOST:PORT: %v", err)
	}
	return cfg, nil
}

// run serves until ctx is cancelled and returns the exit status.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	log := &jsonLog{w: stderr}
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "serve:", err)
		return 2
	}

	opts := receiver.Options{
		DBPath:        cfg.db,
		PrivacyPolicy: receiver.PrivacyPolicy(cfg.policy),
		MaxBodyBytes:  int(cfg.maxBody),
		CORSOrigins:   cfg.corsOrigins,
		LogLevel:      receiver.LogInfo,
		Logger: func(level receiver.LogLevel, message string) {
			log.line(level.String(), "library", "message", message)
		},
	}
	if cfg.now != 0 {
		opts.FixedTime = time.Unix(cfg.now, 0)
	}
	rcv, err := receiver.Open(opts)
	if err != nil {
		log.line("error", "open_failed", "db", cfg.db, "message", err.Error())
		return 1
	}
	defer rcv.Close()

	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		log.line("error", "listen_failed", "message", err.Error())
		return 1
	}
	addr := ln.Addr().(*net.TCPAddr)
	log.line("info", "listening", "address", addr.IP.String(),
		"port", addr.Port, "db", cfg.db, "max_body_bytes", cfg.maxBody,
		"version", receiver.Version())

	srv := &http.Server{
		Handler:           newHandler(rcv, cfg.maxBody, log, cfg.quiet),
		ReadHeaderTimeout: 15 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 * 1024,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		log.line("error", "serve_failed", "message", err.Error())
		return 1
	case <-ctx.Done():
	}
	log.line("info", "stopping")
	shutdownCtx, cancel := context.WithTimeout(context.Background(),
		cfg.shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.line("warn", "shutdown_incomplete", "message", err.Error())
	}
	if err := rcv.Close(); err != nil { // commits every acknowledged event
		log.line("error", "close_failed", "message", err.Error())
		return 1
	}
	log.line("info", "stopped")
	return 0
}

// newHandler is the whole HTTP side: the library's route table behind a
// body cap, with one access-log line per request.
func newHandler(rcv *receiver.Receiver, maxBody int64, log *jsonLog, quiet bool) http.Handler {
	h := receiver.NewHandler(rcv, maxBody)
	if !quiet {
		h.AccessLog = func(r *http.Request, resp *receiver.Response, _ int, elapsed time.Duration) {
			logAccess(log, r, resp, elapsed)
		}
	}
	return h
}

func logAccess(log *jsonLog, r *http.Request, resp *receiver.Response, elapsed time.Duration) {
	target := r.RequestURI
	path, query, hasQuery := strings.Cut(target, "?")
	if len(path) > 512 {
		path = path[:512]
	}
	kv := []any{"method", r.Method, "path", path}
	if hasQuery {
		names := []string{}
		for _, pair := range strings.Split(query, "&") {
			name, _, _ := strings.Cut(pair, "=")
			if len(name) > 64 {
				name = name[:64]
			}
			if name != "" && len(names) < 20 {
				names = append(names, name)
			}
		}
		kv = append(kv, "query_params", names)
	}
	kv = append(kv, "status", resp.Status, "bytes", len(resp.Body),
		"duration_us", elapsed.Microseconds())
	if resp.CustomerID != "" {
		kv = append(kv, "customer_id", resp.CustomerID)
	}
	log.line("info", "request", kv...)
}

// jsonLog writes one JSON object per line: time, level, event, then the
// given key/value pairs in order.
type jsonLog struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *jsonLog) line(level, event string, kv ...any) {
	var b strings.Builder
	b.WriteString(`{"time":`)
	writeJSON(&b, time.Now().UTC().Format("2006-01-02T15:04:05.000Z"))
	b.WriteString(`,"level":`)
	writeJSON(&b, level)
	b.WriteString(`,"event":`)
	writeJSON(&b, event)
	for i := 0; i+1 < len(kv); i += 2 {
		b.WriteByte(',')
		writeJSON(&b, fmt.Sprint(kv[i]))
		b.WriteByte(':')
		writeJSON(&b, kv[i+1])
	}
	b.WriteString("}\n")
	l.mu.Lock()
	defer l.mu.Unlock()
	io.WriteString(l.w, b.String())
}

func writeJSON(b *strings.Builder, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		data = []byte(strconv.Quote(fmt.Sprint(v)))
	}
	b.Write(data)
}
