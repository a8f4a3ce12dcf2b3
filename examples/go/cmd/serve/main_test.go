package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	receiver "loopgain.dev/receiver-go"
	"loopgain.dev/receiver-go/internal/fixtures"
)

const testCap = 64 * 1024

type server struct {
	t        *testing.T
	rcv      *receiver.Receiver
	url      string
	auth     string
	customer string
	payloads []fixtures.Payload
	logs     *syncBuffer
}

// newServer runs cmd/serve's handler on httptest with a fresh receiver.
func newServer(t *testing.T) *server {
	t.Helper()
	payloads, err := fixtures.Load()
	if err != nil {
		t.Fatal(err)
	}
	rcv, err := receiver.Open(receiver.Options{
		DBPath:    filepath.Join(t.TempDir(), "telemetry.db"),
		FixedTime: fixtures.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	customer, err := rcv.CreateCustomer("Acme", "")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ts := httptest.NewServer(newHandler(rcv, testCap, &jsonLog{w: logs}, false))
	t.Cleanup(func() {
		ts.Close()
		rcv.Close()
	})
	return &server{t, rcv, ts.URL, "Bearer " + customer.Token,
		customer.CustomerID, payloads, logs}
}

func (s *server) do(method, path string, body []byte,
	header map[string]string) (*http.Response, []byte) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp, data
}

func errorCode(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	json.Unmarshal(body, &e)
	return e.Error
}

func TestHTTPRoundTrip(t *testing.T) {
	s := newServer(t)
	for _, p := range s.payloads {
		resp, body := s.do("POST", "/v1/aggregate", p.Body, map[string]string{
			"Authorization": s.auth, "Content-Type": "application/json"})
		if resp.StatusCode != 202 {
			t.Fatalf("%s: %d %s", p.Name, resp.StatusCode, body)
		}
	}
	resp, body := s.do("GET", "/v1/stats", nil,
		map[string]string{"Authorization": s.auth})
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" ||
		resp.Header.Get("Content-Length") != strconv.Itoa(len(body)) {
		t.Fatalf("GET /v1/stats: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	direct, err := s.rcv.StatsJSON(s.customer)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, direct) {
		t.Errorf("HTTP %s != library %s", body, direct)
	}
	var stats receiver.Stats
	if err := json.Unmarshal(body, &stats); err != nil {
		t.Fatal(err)
	}
	want, _ := fixtures.Expect(s.payloads, 1)
	if stats.Totals.EventCount != want.Totals.EventCount ||
		stats.Totals.TotalIterations != want.Totals.TotalIterations ||
		stats.Totals.TotalSavings != want.Totals.TotalSavings ||
		stats.Totals.Rollbacks != want.Totals.Rollbacks {
		t.Errorf("totals %+v, want %+v", stats.Totals, want.Totals)
	}

	resp, body = s.do("GET", "/v1/events?rollbacks_only=true", nil,
		map[string]string{"Authorization": s.auth})
	var events struct{ Events []json.RawMessage }
	json.Unmarshal(body, &events)
	if resp.StatusCode != 200 || int64(len(events.Events)) != want.Totals.Rollbacks {
		t.Errorf("rollbacks: %d, %d events", resp.StatusCode, len(events.Events))
	}

	if !strings.Contains(s.logs.String(), `"customer_id":"`+s.customer+`"`) {
		t.Errorf("no access log line with the customer:\n%s", s.logs)
	}
	if strings.Contains(s.logs.String(), "lgk_") {
		t.Errorf("a token reached the log:\n%s", s.logs)
	}
}

func TestHTTPErrors(t *testing.T) {
	s := newServer(t)
	ok := s.payloads[0].Body
	for _, tc := range []struct {
		method, path string
		body         []byte
		header       map[string]string
		status       int
		code         string
	}{
		{"POST", "/v1/aggregate", []byte("{nope"),
			map[string]string{"Authorization": s.auth}, 400, "invalid_json"},
		{"POST", "/v1/aggregate", ok,
			map[string]string{"Authorization": "Bearer lgk_wrong"}, 401, "unauthorized"},
		{"POST", "/v1/aggregate", ok, map[string]string{
			"Authorization": s.auth, "Content-Type": "text/plain"},
			415, "unsupported_media_type"},
		{"POST", "/v1/aggregate", ok, map[string]string{
			"Authorization": s.auth, "Origin": "https://evil.example"},
			403, "browser_requests_not_allowed"},
		{"GET", "/v1/nothing", nil, nil, 404, "not_found"},
		{"PATCH", "/v1/aggregate", nil, nil, 405, "method_not_allowed"},
		{"GET", "/v1/profiles?since_hours=x", nil,
			map[string]string{"Authorization": s.auth}, 400, "invalid_query"},
		{"POST", "/v1/aggregate", bytes.Repeat([]byte(" "), testCap+1),
			map[string]string{"Authorization": s.auth}, 413, "payload_too_large"},
	} {
		resp, body := s.do(tc.method, tc.path, tc.body, tc.header)
		if resp.StatusCode != tc.status || errorCode(body) != tc.code {
			t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.path,
				resp.StatusCode, body, tc.status, tc.code)
		}
	}
	resp, body := s.do("GET", "/health", nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"status":"ok"`) {
		t.Errorf("GET /health: %d %s", resp.StatusCode, body)
	}
	// HEAD is answered as GET by the route table; the host sends the
	// headers, GET's Content-Length among them, without the body.
	get := body
	resp, _ = s.do("PUT", "/health", nil, nil)
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD, OPTIONS" {
		t.Errorf("PUT /health: %d %v", resp.StatusCode, resp.Header)
	}
	resp, body = s.do("HEAD", "/health", nil, nil)
	if resp.StatusCode != 200 || len(body) != 0 ||
		resp.Header.Get("Content-Length") != strconv.Itoa(len(get)) {
		t.Errorf("HEAD /health: %d %v", resp.StatusCode, resp.Header)
	}
	resp, body = s.do("OPTIONS", "/health", nil, map[string]string{
		"Origin": "https://dash.example", "Access-Control-Request-Method": "GET"})
	if resp.StatusCode != 204 || len(body) != 0 ||
		resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("OPTIONS /health: %d %v", resp.StatusCode, resp.Header)
	}
}

// A declared Content-Length over the cap is refused before any body byte
// is read: the server answers although the body never arrives.
func TestDeclaredLengthOverCap(t *testing.T) {
	s := newServer(t)
	resp, body := rawRequest(t, s, fmt.Sprintf(
		"POST /v1/aggregate HTTP/1.1\r\nHost: test\r\n"+
			"Authorization: %s\r\nContent-Type: application/json\r\n"+
			"Content-Length: 1000000000\r\n\r\n{", s.auth))
	if resp.StatusCode != 413 || errorCode(body) != "payload_too_large" {
		t.Errorf("%d %s", resp.StatusCode, body)
	}

	// A client that sends the whole oversized body still gets the answer.
	conn2, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	conn2.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		fmt.Fprintf(conn2, "POST /v1/aggregate HTTP/1.1\r\nHost: test\r\n"+
			"Authorization: %s\r\nContent-Length: %d\r\n\r\n", s.auth, 4*testCap)
		conn2.Write(bytes.Repeat([]byte(" "), 4*testCap))
	}()
	resp, err = http.ReadResponse(bufio.NewReader(conn2), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != 413 {
		t.Errorf("with the body sent: %d %s", resp.StatusCode, body)
	}
}

// rawRequest writes `raw` on a new connection and reads the first response,
// for what http.Client will not send.
func rawRequest(t *testing.T, s *server, raw string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// Expect: 100-continue with a token the library refuses: the final answer
// comes without 100 Continue, although the body is never sent.
func TestExpectContinueWithRefusedToken(t *testing.T) {
	s := newServer(t)
	resp, body := rawRequest(t, s, "POST /v1/aggregate HTTP/1.1\r\nHost: test\r\n"+
		"Authorization: Bearer lgk_"+strings.Repeat("A", 32)+"\r\n"+
		"Expect: 100-continue\r\nContent-Type: application/json\r\n"+
		"Content-Length: 100\r\n\r\n")
	if resp.StatusCode != 401 || errorCode(body) != "unauthorized" {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
	if !resp.Close { // ReadResponse takes "Connection: close" into Close
		t.Error("the connection stays open with the body unread")
	}
}

// A chunked body has no declared length; http.MaxBytesReader stops it.
func TestChunkedBodyOverCap(t *testing.T) {
	s := newServer(t)
	big := io.MultiReader(bytes.NewReader(bytes.Repeat([]byte(" "), testCap)),
		bytes.NewReader(s.payloads[0].Body))
	req, _ := http.NewRequest("POST", s.url+"/v1/aggregate", big)
	req.ContentLength = -1 // chunked
	req.Header.Set("Authorization", s.auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 413 {
		t.Errorf("%d %s", resp.StatusCode, body)
	}

	small, _ := http.NewRequest("POST", s.url+"/v1/aggregate",
		io.MultiReader(bytes.NewReader(s.payloads[0].Body)))
	small.ContentLength = -1
	small.Header.Set("Authorization", s.auth)
	resp, err = http.DefaultClient.Do(small)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Errorf("chunked within the cap: %d %s", resp.StatusCode, body)
	}
}

func TestHTTPConcurrentIngest(t *testing.T) {
	s := newServer(t)
	const clients = 8
	var wg sync.WaitGroup
	errs := make(chan string, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, p := range s.payloads {
				req, _ := http.NewRequest("POST", s.url+"/v1/aggregate",
					bytes.NewReader(p.Body))
				req.Header.Set("Authorization", s.auth)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err.Error()
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 202 {
					errs <- p.Name + ": " + resp.Status
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	stats, err := s.rcv.Stats(s.customer)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(clients * len(s.payloads)); stats.Totals.EventCount != want {
		t.Errorf("event_count %d, want %d", stats.Totals.EventCount, want)
	}
}

// run() as main() calls it: flags, the "listening" line, a clean stop.
func TestRunStopsCleanly(t *testing.T) {
	db := filepath.Join(t.TempDir(), "t.db")
	rcv, err := receiver.Open(receiver.Options{DBPath: db, FixedTime: fixtures.Now})
	if err != nil {
		t.Fatal(err)
	}
	customer, err := rcv.CreateCustomer("Run", "")
	if err != nil {
		t.Fatal(err)
	}
	rcv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &syncBuffer{}
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"--db", db, "--listen", "127.0.0.1:0",
			"--now", strconv.FormatInt(fixtures.Now.Unix(), 10)}, logs)
	}()

	var port int
	for deadline := time.Now().Add(20 * time.Second); port == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no listening line:\n%s", logs)
		}
		for _, line := range strings.Split(logs.String(), "\n") {
			var rec struct {
				Event string `json:"event"`
				Port  int    `json:"port"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Event == "listening" {
				port = rec.Port
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	payloads, _ := fixtures.Load()
	req, _ := http.NewRequest("POST",
		fmt.Sprintf("http://127.0.0.1:%d/v1/aggregate", port),
		bytes.NewReader(payloads[0].Body))
	req.Header.Set("Authorization", "Bearer "+customer.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("POST: %d", resp.StatusCode)
	}

	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, logs)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop")
	}
	if !strings.Contains(logs.String(), `"event":"stopped"`) {
		t.Errorf("no stopped line:\n%s", logs)
	}

	again, err := receiver.Open(receiver.Options{DBPath: db, FixedTime: fixtures.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	stats, err := again.Stats(customer.CustomerID)
	if err != nil || stats.Totals.EventCount != 1 {
		t.Errorf("after restart: %+v, %v", stats, err)
	}
}

func TestBadUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--max-body", "0"}, {"--listen", "nope"}, {"--now", "-1"}, {"extra"},
	} {
		var out syncBuffer
		if code := run(context.Background(), args, &out); code != 2 {
			t.Errorf("run(%v) = %d, want 2", args, code)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
