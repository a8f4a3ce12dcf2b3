package receiver_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	receiver "loopgain.dev/receiver-go"
	"loopgain.dev/receiver-go/internal/fixtures"
)

// fixture owns a receiver on a temporary database and one customer.
type fixture struct {
	t        *testing.T
	rcv      *receiver.Receiver
	db       string
	customer receiver.IssuedToken
	auth     string
	payloads []fixtures.Payload
}

func newFixture(t *testing.T, opts receiver.Options) *fixture {
	t.Helper()
	payloads, err := fixtures.Load()
	if err != nil {
		t.Fatalf("loading fixtures: %v", err)
	}
	if opts.DBPath == "" {
		opts.DBPath = filepath.Join(t.TempDir(), "telemetry.db")
	}
	if opts.FixedTime.IsZero() {
		opts.FixedTime = fixtures.Now
	}
	rcv, err := receiver.Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { rcv.Close() })
	customer, err := rcv.CreateCustomer("Acme", "ops@acme.test")
	if err != nil {
		t.Fatalf("CreateCustomer: %v", err)
	}
	return &fixture{t, rcv, opts.DBPath, customer, "Bearer " + customer.Token,
		payloads}
}

func (f *fixture) ingestAll() {
	f.t.Helper()
	for _, p := range f.payloads {
		if _, err := f.rcv.Ingest(f.auth, p.Body); err != nil {
			f.t.Fatalf("Ingest %s: %v", p.Name, err)
		}
	}
}

func (f *fixture) checkStats(stats *receiver.Stats, copies int64) {
	f.t.Helper()
	want, err := fixtures.Expect(f.payloads, copies)
	if err != nil {
		f.t.Fatal(err)
	}
	got := fixtures.Totals{
		EventCount:      stats.Totals.EventCount,
		TotalIterations: stats.Totals.TotalIterations,
		TotalSavings:    stats.Totals.TotalSavings,
		Rollbacks:       stats.Totals.Rollbacks,
	}
	if got != want.Totals {
		f.t.Errorf("totals = %+v, want %+v", got, want.Totals)
	}
	outcomes := map[string]int64{}
	for _, o := range stats.Outcomes {
		outcomes[o.Outcome] = o.Count
	}
	if !equalCounts(outcomes, want.Outcomes) {
		f.t.Errorf("outcomes = %v, want %v", outcomes, want.Outcomes)
	}
	workloads := map[string]int64{}
	for _, w := range stats.Workloads {
		if w.WorkloadID == nil {
			f.t.Errorf("unexpected null workload in %v", stats.Workloads)
			continue
		}
		workloads[*w.WorkloadID] = w.Count
	}
	if !equalCounts(workloads, want.Workloads) {
		f.t.Errorf("workloads = %v, want %v", workloads, want.Workloads)
	}
	if stats.CustomerID != f.customer.CustomerID || stats.WindowDays != 30 {
		f.t.Errorf("customer %q window %d", stats.CustomerID, stats.WindowDays)
	}
}

func equalCounts(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// wantError checks that err is an *Error with exactly these fields.
func wantError(t *testing.T, err error, code string, status receiver.Status,
	pointer string, httpStatus int) {
	t.Helper()
	var e *receiver.Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v (%T), want *receiver.Error %s", err, err, code)
	}
	if e.Code != code || e.Status != status || e.Pointer != pointer ||
		e.HTTPStatus != httpStatus || e.Message == "" {
		t.Errorf("error = %+v, want code %s status %v pointer %q http %d",
			*e, code, status, pointer, httpStatus)
	}
}

func TestVersion(t *testing.T) {
	if v := receiver.Version(); v != "0.2.0" {
		t.Errorf("Version() = %q", v)
	}
	if s := receiver.StatusStorage.String(); s != "LGR_ERR_STORAGE" {
		t.Errorf("StatusStorage.String() = %q", s)
	}
}

func TestRoundTrip(t *testing.T) {
	f := newFixture(t, receiver.Options{})
	trajectories := 0
	for _, p := range f.payloads {
		res, err := f.rcv.Ingest(f.auth, p.Body)
		if err != nil {
			t.Fatalf("Ingest %s: %v", p.Name, err)
		}
		if res.CustomerID != f.customer.CustomerID {
			t.Errorf("%s: customer %q", p.Name, res.CustomerID)
		}
		if strings.Contains(string(p.Body), `"per_iteration"`) {
			trajectories++
			if len(res.Redacted) != 1 || res.Redacted[0] != "/per_iteration" {
				t.Errorf("%s: redacted %v", p.Name, res.Redacted)
			}
		} else if len(res.Redacted) != 0 {
			t.Errorf("%s: redacted %v", p.Name, res.Redacted)
		}
	}
	if trajectories != 36 {
		t.Errorf("%d payloads with per_iteration, want 36", trajectories)
	}
	stats, err := f.rcv.Stats(f.customer.CustomerID)
	if err != nil {
		t.Fatal(err)
	}
	f.checkStats(stats, 1)

	customers, err := f.rcv.Customers()
	if err != nil {
		t.Fatal(err)
	}
	if len(customers) != 1 || customers[0].EventCount != int64(len(f.payloads)) ||
		customers[0].ActiveTokens != 1 || customers[0].Name != "Acme" ||
		customers[0].Email == nil || *customers[0].Email != "ops@acme.test" {
		t.Errorf("customers = %+v", customers)
	}
}

func TestReads(t *testing.T) {
	f := newFixture(t, receiver.Options{})
	f.ingestAll()
	id := f.customer.CustomerID
	want, _ := fixtures.Expect(f.payloads, 1)

	var events struct {
		CustomerID string            `json:"customer_id"`
		Events     []json.RawMessage `json:"events"`
	}
	for _, tc := range []struct {
		rollbacksOnly bool
		count         int64
	}{{false, want.Totals.EventCount}, {true, want.Totals.Rollbacks}} {
		data, err := f.rcv.EventsJSON(id, tc.rollbacksOnly)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &events); err != nil {
			t.Fatal(err)
		}
		if events.CustomerID != id || int64(len(events.Events)) != tc.count {
			t.Errorf("rollbacks_only=%v: %d events, want %d", tc.rollbacksOnly,
				len(events.Events), tc.count)
		}
	}

	data, err := f.rcv.ProfilesJSON(id, "wl-converged", 48)
	if err != nil {
		t.Fatal(err)
	}
	var profiles struct {
		WorkloadID string            `json:"workload_id"`
		Events     []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(data, &profiles); err != nil {
		t.Fatal(err)
	}
	if profiles.WorkloadID != "wl-converged" || len(profiles.Events) == 0 {
		t.Errorf("profiles = %s", data)
	}
}

func TestTokens(t *testing.T) {
	f := newFixture(t, receiver.Options{})
	id := f.customer.CustomerID
	if got, err := f.rcv.Authenticate(f.auth); err != nil || got != id {
		t.Fatalf("Authenticate = %q, %v", got, err)
	}
	token, err := f.rcv.RotateToken(id, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.rcv.Authenticate(f.auth)
	wantError(t, err, "unauthorized", receiver.StatusUnauthorized, "", 401)
	if !errors.Is(err, receiver.ErrUnauthorized) {
		t.Errorf("errors.Is(%v, ErrUnauthorized) = false", err)
	}
	if got, err := f.rcv.Authenticate("Bearer " + token); err != nil || got != id {
		t.Fatalf("Authenticate(new) = %q, %v", got, err)
	}
	if err := f.rcv.RevokeCustomer(id); err != nil {
		t.Fatal(err)
	}
	_, err = f.rcv.Ingest("Bearer "+token, f.payloads[0].Body)
	wantError(t, err, "unauthorized", receiver.StatusUnauthorized, "", 401)
	if err := f.rcv.DeleteCustomer(id); err != nil {
		t.Fatal(err)
	}
	err = f.rcv.DeleteCustomer(id)
	wantError(t, err, "customer_not_found", receiver.StatusNotFound, "", 404)
	if !errors.Is(err, receiver.ErrCustomerNotFound) {
		t.Errorf("errors.Is(%v, ErrCustomerNotFound) = false", err)
	}
}

func TestErrors(t *testing.T) {
	f := newFixture(t, receiver.Options{MaxBodyBytes: 4096})
	latest := f.payloads[len(f.payloads)-1].Body
	edit := func(change func(map[string]any)) []byte {
		var doc map[string]any
		if err := json.Unmarshal(latest, &doc); err != nil {
			t.Fatal(err)
		}
		change(doc)
		out, _ := json.Marshal(doc)
		return out
	}
	cases := []struct {
		name       string
		auth       string
		body       []byte
		code       string
		status     receiver.Status
		pointer    string
		httpStatus int
	}{
		{"invalid json", f.auth, []byte(`{"schema_version": 4,`),
			"invalid_json", receiver.StatusInvalidPayload, "", 400},
		{"empty body", f.auth, nil,
			"invalid_json", receiver.StatusInvalidPayload, "", 400},
		{"schema 9", f.auth,
			edit(func(d map[string]any) { d["schema_version"] = 9 }),
			"unsupported_schema_version", receiver.StatusInvalidPayload,
			"/schema_version", 422},
		{"wrong type", f.auth, edit(func(d map[string]any) {
			d["loop"].(map[string]any)["iterations_used"] = "five"
		}), "invalid_payload", receiver.StatusInvalidPayload,
			"/loop/iterations_used", 400},
		{"content field", f.auth,
			edit(func(d map[string]any) { d["prompt"] = "a secret" }),
			"privacy_violation", receiver.StatusInvalidPayload, "/prompt", 422},
		{"too large", f.auth,
			edit(func(d map[string]any) { d["team"] = strings.Repeat("x", 5000) }),
			"payload_too_large", receiver.StatusInvalidPayload, "", 413},
		{"no token", "", latest,
			"unauthorized", receiver.StatusUnauthorized, "", 401},
		{"unknown token", "Bearer lgk_" + strings.Repeat("A", 32), latest,
			"unauthorized", receiver.StatusUnauthorized, "", 401},
		{"wrong scheme", "Basic " + f.customer.Token, latest,
			"unauthorized", receiver.StatusUnauthorized, "", 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.rcv.Ingest(tc.auth, tc.body)
			wantError(t, err, tc.code, tc.status, tc.pointer, tc.httpStatus)
		})
	}

	_, err := f.rcv.ProfilesJSON(f.customer.CustomerID, "", 9000)
	wantError(t, err, "invalid_query", receiver.StatusInvalidQuery, "since_hours", 400)
	_, err = f.rcv.CreateCustomer("", "")
	wantError(t, err, "invalid_argument", receiver.StatusInvalidArgument, "name", 400)
	_, err = f.rcv.CreateCustomer("bad\xff", "")
	wantError(t, err, "invalid_argument", receiver.StatusInvalidArgument, "", 400)
	_, err = f.rcv.CreateCustomer("nul\x00inside", "")
	wantError(t, err, "invalid_argument", receiver.StatusInvalidArgument, "", 400)
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name   string
		opts   receiver.Options
		status receiver.Status
	}{
		{"policy", receiver.Options{DBPath: ":memory:", PrivacyPolicy: "everything"},
			receiver.StatusInvalidArgument},
		{"body cap", receiver.Options{DBPath: ":memory:", MaxBodyBytes: 17 << 20},
			receiver.StatusInvalidArgument},
		{"missing dir", receiver.Options{DBPath: filepath.Join(dir, "no", "x.db")},
			receiver.StatusStorage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv, err := receiver.Open(tc.opts)
			var e *receiver.Error
			if rcv != nil || !errors.As(err, &e) || e.Status != tc.status {
				t.Errorf("Open = %v, %v; want status %v", rcv, err, tc.status)
			}
		})
	}
}

func TestStrictPolicy(t *testing.T) {
	f := newFixture(t, receiver.Options{PrivacyPolicy: receiver.Strict})
	for _, p := range f.payloads {
		if strings.Contains(string(p.Body), `"per_iteration"`) {
			_, err := f.rcv.Ingest(f.auth, p.Body)
			wantError(t, err, "privacy_violation", receiver.StatusInvalidPayload,
				"/per_iteration", 422)
			return
		}
	}
	t.Fatal("no payload with per_iteration")
}

func TestUseAfterClose(t *testing.T) {
	f := newFixture(t, receiver.Options{})
	if err := f.rcv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.rcv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	id := f.customer.CustomerID
	calls := map[string]func() error{
		"Ingest": func() error { _, err := f.rcv.Ingest(f.auth, f.payloads[0].Body); return err },
		"Stats":  func() error { _, err := f.rcv.Stats(id); return err },
		"ProfilesJSON": func() error {
			_, err := f.rcv.ProfilesJSON(id, "", 0)
			return err
		},
		"EventsJSON":     func() error { _, err := f.rcv.EventsJSON(id, false); return err },
		"Authenticate":   func() error { _, err := f.rcv.Authenticate(f.auth); return err },
		"CreateCustomer": func() error { _, err := f.rcv.CreateCustomer("x", ""); return err },
		"RotateToken":    func() error { _, err := f.rcv.RotateToken(id, 0); return err },
		"RevokeCustomer": func() error { return f.rcv.RevokeCustomer(id) },
		"DeleteCustomer": func() error { return f.rcv.DeleteCustomer(id) },
		"Customers":      func() error { _, err := f.rcv.Customers(); return err },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, receiver.ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
			continue
		}
		wantError(t, err, "closed", receiver.StatusClosed, "", 503)
	}
	resp, err := f.rcv.HandleRequest(receiver.Request{Method: "GET", Path: "/health"})
	if err != nil || resp.Status != 503 {
		t.Fatalf("HandleRequest after Close = %+v, %v", resp, err)
	}
}

func TestEventsSurviveReopen(t *testing.T) {
	f := newFixture(t, receiver.Options{})
	f.ingestAll()
	if err := f.rcv.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := receiver.Open(receiver.Options{DBPath: f.db, FixedTime: fixtures.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	stats, err := again.Stats(f.customer.CustomerID)
	if err != nil {
		t.Fatal(err)
	}
	f.checkStats(stats, 1)
}

func TestConcurrentIngest(t *testing.T) {
	const goroutines = 32
	f := newFixture(t, receiver.Options{})
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	start := make(chan struct{})
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for _, p := range f.payloads {
				if _, err := f.rcv.Ingest(f.auth, p.Body); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Ingest: %v", err)
	}
	stats, err := f.rcv.Stats(f.customer.CustomerID)
	if err != nil {
		t.Fatal(err)
	}
	f.checkStats(stats, goroutines)
}

func TestLogger(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	f := newFixture(t, receiver.Options{
		LogLevel: receiver.LogDebug,
		Logger: func(level receiver.LogLevel, message string) {
			mu.Lock()
			defer mu.Unlock()
			lines = append(lines, level.String()+": "+message)
		},
	})
	f.ingestAll()
	if err := f.rcv.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lines) == 0 {
		t.Error("the logger received nothing")
	}
}

func TestHandleRequest(t *testing.T) {
	f := newFixture(t, receiver.Options{})
	for _, p := range f.payloads {
		resp, err := f.rcv.HandleRequest(receiver.Request{
			Method: "POST", Path: "/v1/aggregate", Authorization: f.auth,
			ContentType: "application/json", Body: p.Body,
		})
		if err != nil || resp.Status != 202 {
			t.Fatalf("%s: %+v, %v", p.Name, resp, err)
		}
		if resp.CustomerID != f.customer.CustomerID {
			t.Errorf("CustomerID = %q", resp.CustomerID)
		}
	}
	resp, err := f.rcv.HandleRequest(receiver.Request{
		Method: "GET", Path: "/v1/stats", Authorization: f.auth})
	if err != nil || resp.Status != 200 || resp.ContentType != "application/json" {
		t.Fatalf("GET /v1/stats: %+v, %v", resp, err)
	}
	direct, _ := f.rcv.StatsJSON(f.customer.CustomerID)
	if string(resp.Body) != string(direct) {
		t.Errorf("HTTP stats %s != StatsJSON %s", resp.Body, direct)
	}
	for _, tc := range []struct {
		req    receiver.Request
		status int
		code   string
	}{
		{receiver.Request{Method: "GET", Path: "/v1/stats"}, 401, "unauthorized"},
		{receiver.Request{Method: "GET", Path: "/nope"}, 404, "not_found"},
		{receiver.Request{Method: "PUT", Path: "/v1/aggregate"}, 405, "method_not_allowed"},
		{receiver.Request{Method: "GET", Path: "/v1/profiles", Query: "since_hours=0",
			HasQuery: true, Authorization: f.auth}, 400, "invalid_query"},
	} {
		resp, err := f.rcv.HandleRequest(tc.req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Error string }
		json.Unmarshal(resp.Body, &body)
		if resp.Status != tc.status || body.Error != tc.code {
			t.Errorf("%s %s: %d %s, want %d %s", tc.req.Method, tc.req.Path,
				resp.Status, resp.Body, tc.status, tc.code)
		}
	}
	if _, err := f.rcv.HandleRequest(receiver.Request{Path: "/health"}); err == nil {
		t.Error("a request without a method was accepted")
	}
}
