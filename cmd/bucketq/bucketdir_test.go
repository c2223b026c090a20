package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestMissingBucketDirIsRefused: every command refuses a bucket directory
// that does not exist, naming the key and the directory, and creates
// nothing (consume --bucket-dir /missing/dir used to create it and wait on
// an empty queue); produce, consume and run create it when asked.
func TestMissingBucketDirIsRefused(t *testing.T) {
	top := t.TempDir()
	missing := filepath.Join(top, "missing", "dir")
	fsConf := filepath.Join(top, "fs.yaml")
	if err := os.WriteFile(fsConf, []byte("object_store:\n  type: FILESYSTEM\n  config:\n    directory: "+missing+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	quiet := []string{"--listen="}
	ingest := append(quiet, "--otlp-grpc=", "--otlp-http=")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{append([]string{"produce", "--bucket-dir", missing}, ingest...), `bucketq: config key "bucket_dir": bucket directory "` + missing + `" does not exist`},
		{append([]string{"consume", "--bucket-dir", missing}, quiet...), `bucketq: config key "bucket_dir": bucket directory "` + missing + `" does not exist`},
		{append([]string{"run", "--bucket-dir", missing}, ingest...), `pass --create-bucket-dir`},
		{append([]string{"run", "--bucket-dir", missing, "--create-bucket-dir=false"}, ingest...), `config key "bucket_dir"`},
		{append([]string{"consume", "--config", fsConf}, quiet...), `bucketq: config key "object_store": bucket directory "` + missing + `" does not exist`},
		{[]string{"inspect", "manifest", "--bucket-dir", missing}, `bucketq: config key "bucket_dir": bucket directory "` + missing + `" does not exist`},
		{[]string{"inspect", "batch", "ingest/data/x.batch", "--config", fsConf}, `config key "object_store"`},
		{[]string{"dead-letters", "list", "--bucket-dir", missing}, `bucketq: config key "bucket_dir": bucket directory "` + missing + `" does not exist`},
		{[]string{"dead-letters", "show", "x.json", "--config", fsConf}, `config key "object_store"`},
		// Reading commands cannot be asked to create one.
		{[]string{"inspect", "manifest", "--bucket-dir", missing, "--create-bucket-dir"}, `flag provided but not defined: -create-bucket-dir`},
		{[]string{"dead-letters", "list", "--bucket-dir", missing, "--create-bucket-dir"}, `flag provided but not defined: -create-bucket-dir`},
		// A file is not a directory.
		{append([]string{"consume", "--bucket-dir", fsConf}, quiet...), `bucketq: config key "bucket_dir": bucket directory "` + fsConf + `" is not a directory`},
	} {
		// Without the check the serving commands would run until
		// cancelled; the deadline only bounds that failure.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		var out, errOut strings.Builder
		code := runMain(ctx, tc.args, &out, &errOut, func(string) string { return "" })
		cancel()
		if code != 2 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and %q", tc.args, code, errOut.String(), tc.want)
		}
		if _, err := os.Stat(filepath.Dir(missing)); err == nil {
			t.Fatalf("%q created %s", tc.args, filepath.Dir(missing))
		}
	}
	// Asked to, the serving commands create it, also from the file.
	for _, args := range [][]string{
		append([]string{"produce", "--create-bucket-dir", "--bucket-dir", missing}, ingest...),
		append([]string{"consume", "--config", fsConf, "--create-bucket-dir"}, quiet...),
	} {
		os.RemoveAll(filepath.Dir(missing))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int, 1)
		var errOut syncBuffer
		go func() { done <- runMain(ctx, args, io.Discard, &errOut, func(string) string { return "" }) }()
		waitFor(t, func() bool { return strings.Contains(errOut.String(), "bucketq started") }, &errOut)
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("%q: exit %d: %s", args, code, errOut.String())
		}
		if fi, err := os.Stat(missing); err != nil || !fi.IsDir() {
			t.Errorf("%q did not create %s: %v", args, missing, err)
		}
	}
}

// TestQuickStartRunsOnAFreshMachine runs the README's first command as the
// Makefile runs it (make run: bin/bucketq run plus the Makefile's flags)
// in an empty working directory: it must create ./data and serve, not
// stop on the missing bucket directory.
func TestQuickStartRunsOnAFreshMachine(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "make run    # builds bin/bucketq and runs it on ./data") {
		t.Fatal("the README's quick start no longer starts with make run on ./data: update this test")
	}
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^run:.*\n\t\$\(BIN\) (run.*)$`).FindSubmatch(makefile)
	if m == nil {
		t.Fatal("Makefile has no run target running $(BIN) run")
	}
	args := strings.Fields(string(m[1]))
	// Free ports instead of the defaults, which may be taken here.
	args = append(args, "--listen", "127.0.0.1:0", "--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0")
	t.Chdir(t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var errOut syncBuffer
	go func() { done <- runMain(ctx, args, io.Discard, &errOut, func(string) string { return "" }) }()
	waitFor(t, func() bool { return strings.Contains(errOut.String(), "bucketq started") }, &errOut)
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("%q: exit %d: %s", args, code, errOut.String())
	}
	if fi, err := os.Stat("data"); err != nil || !fi.IsDir() {
		t.Fatalf("%q did not create ./data: %v", args, err)
	}
	// Without the Makefile's flag a missing ./data is refused.
	if err := os.RemoveAll("data"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second) // bounds a failure only
	defer cancel()
	var stderr strings.Builder
	code := runMain(ctx, []string{"run", "--listen=", "--otlp-grpc=", "--otlp-http="}, io.Discard, &stderr, func(string) string { return "" })
	if code != 2 || !strings.Contains(stderr.String(), `bucket directory "./data" does not exist`) {
		t.Fatalf("bucketq run without ./data: exit %d, %q", code, stderr.String())
	}
}

func waitFor(t *testing.T, cond func() bool, log *syncBuffer) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out; log:\n%s", log.String())
		}
	}
}
