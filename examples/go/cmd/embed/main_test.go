package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"loopgain.dev/receiver-go/internal/fixtures"
)

// The test binary runs main() itself when asked to, so that the example is
// executed exactly as written, in a process of its own.
func TestMain(m *testing.M) {
	if os.Getenv("LGR_EMBED_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestEmbedExample(t *testing.T) {
	payloads, err := fixtures.Load()
	if err != nil {
		t.Fatal(err)
	}
	// The example runs on the system clock: stamp the payload with the
	// current hour so that it is inside the stats window.
	var doc map[string]any
	if err := json.Unmarshal(payloads[len(payloads)-1].Body, &doc); err != nil {
		t.Fatal(err)
	}
	doc["timestamp_hour"] = time.Now().UTC().Truncate(time.Hour).
		Format("2006-01-02T15:04:05+00:00")
	body, _ := json.Marshal(doc)
	dir := t.TempDir()
	path := filepath.Join(dir, "payload.json")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], path)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LGR_EMBED_RUN_MAIN=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("example failed: %v\n%s", err, stderr.String())
	}
	var stats struct {
		Totals struct {
			EventCount      int64 `json:"event_count"`
			TotalIterations int64 `json:"total_iterations"`
		} `json:"totals"`
	}
	if err := json.Unmarshal(out, &stats); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	iterations := int64(doc["loop"].(map[string]any)["iterations_used"].(float64))
	if stats.Totals.EventCount != 1 || stats.Totals.TotalIterations != iterations {
		t.Errorf("stats = %s", out)
	}
}
