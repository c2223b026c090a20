package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/ingest/ingestmetrics"
	"github.com/bucketq/bucketq/journal"
	"github.com/bucketq/bucketq/producer"
	"github.com/thanos-io/objstore"
)

// descRecorder is a Registerer that only records metric names.
type descRecorder struct{ names []string }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d *descRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 8)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := fqName.FindStringSubmatch(desc.String()); m != nil {
			d.names = append(d.names, m[1])
		}
	}
	return nil
}
func (d *descRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		d.Register(c)
	}
}
func (d *descRecorder) Unregister(prometheus.Collector) bool { return true }

// TestREADMEDocumentsEverything keeps the README's reference tables in step
// with the code: every config key, flag and default, and every metric.
func TestREADMEDocumentsEverything(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, o := range config.Options {
		row := ""
		for _, line := range strings.Split(readme, "\n") {
			if strings.HasPrefix(line, "| `"+o.Key+"` |") {
				row = line
			}
		}
		if row == "" {
			t.Errorf("README configuration table has no row for key %s", o.Key)
			continue
		}
		if o.Flag != "" && !strings.Contains(row, "`--"+o.Flag+"`") {
			t.Errorf("README row of %s lacks flag --%s", o.Key, o.Flag)
		}
		if o.Default != "" && !strings.Contains(row, "`"+o.Default+"`") {
			t.Errorf("README row of %s lacks default %s", o.Key, o.Default)
		}
		// The commands column (4th) lists exactly the commands using the key.
		if cells := strings.Split(row, "|"); len(cells) > 4 {
			if got, want := strings.TrimSpace(cells[4]), strings.Join(o.Commands(), ", "); got != want {
				t.Errorf("README row of %s says commands %q, the code %q", o.Key, got, want)
			}
		}
	}
	rec := &descRecorder{}
	// Everything a `run` process registers, wired as serve.go wires it.
	producer.NewMetrics(rec)
	consumer.NewMetrics(rec)
	ingestmetrics.New(rec)
	journal.NewMetrics(rec)
	objstore.WrapWithMetrics(objstore.NewInMemBucket(), rec, "queue")
	if len(rec.names) < 30 {
		t.Fatalf("found only %d metrics", len(rec.names))
	}
	for _, name := range rec.names {
		if !regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(name) + "[`{]").MatchString(readme) {
			t.Errorf("README metrics table lacks %s", name)
		}
	}
	for _, s := range []string{"make run", "make test", "http://127.0.0.1:8888/api/v1/events", "### What the chaos test shows", "rfcs/"} {
		if !strings.Contains(readme, s) {
			t.Errorf("README lacks %q", s)
		}
	}
}
