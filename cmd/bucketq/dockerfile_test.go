package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// No Docker engine runs on the project's machines, so the image is never
// built here. TestDockerfile checks what can be checked without one: the
// build stage's `go build` (run as written, with the build args set, when
// BUCKETQ_DOCKERFILE_BUILD=1) builds
// the same package as `make build` into a static binary whose `version`
// prints the revision passed in; the runtime stage is distroless/scratch,
// runs a non-root USER, and its ENTRYPOINT is the binary the build copied.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// One instruction per line: join continuation lines, drop comments.
	var instrs []string
	for _, l := range strings.Split(strings.ReplaceAll(string(b), "\\\n", " "), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			instrs = append(instrs, l)
		}
	}
	var stages [][]string // instructions per FROM
	for _, in := range instrs {
		if strings.HasPrefix(in, "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], in)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(stages))
	}

	// The runtime stage.
	final := stages[len(stages)-1]
	if !regexp.MustCompile(`^FROM (gcr\.io/distroless/static\S*|scratch)$`).MatchString(final[0]) {
		t.Errorf("runtime stage %q: want distroless static or scratch (no shell, no libc)", final[0])
	}
	var user, entry, copied string
	for _, in := range final {
		switch f := strings.Fields(in); f[0] {
		case "USER":
			user = f[1]
		case "ENTRYPOINT":
			entry = in
		case "COPY":
			if len(f) == 4 && f[1] == "--from=build" {
				copied = f[2] + " " + f[3]
			}
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("runtime USER %q: want a non-root uid", user)
	}
	if copied != "/out/bucketq /usr/local/bin/bucketq" || !strings.Contains(entry, `"/usr/local/bin/bucketq"`) {
		t.Errorf("runtime stage copies %q and runs %q: want /out/bucketq as /usr/local/bin/bucketq", copied, entry)
	}

	// The build stage's go build, run as the Dockerfile writes it.
	var build string
	for _, in := range stages[0] {
		if strings.HasPrefix(in, "RUN ") && strings.Contains(in, "go build") {
			build = strings.TrimPrefix(in, "RUN ")
		}
	}
	for strings.HasPrefix(build, "--mount=") {
		_, build, _ = strings.Cut(build, " ")
		build = strings.TrimSpace(build)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-o /out/bucketq", " ./cmd/bucketq"} {
		if !strings.Contains(build, want) {
			t.Fatalf("Dockerfile go build %q lacks %q", build, want)
		}
	}
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^build:\n\t\$\(GO\) build .*\./cmd/bucketq$`).Match(mk) {
		t.Error("make build does not build ./cmd/bucketq, the package the Dockerfile builds")
	}
	// -trimpath recompiles every dependency: minutes on 2 cores (8.5 min
	// measured under heavy load), too much for every `make test`.
	if os.Getenv("BUCKETQ_DOCKERFILE_BUILD") != "1" {
		t.Skip("set BUCKETQ_DOCKERFILE_BUILD=1 (make chart does) to run the Dockerfile's go build")
	}
	bin := filepath.Join(t.TempDir(), "bucketq")
	cmd := exec.Command("sh", "-c", strings.Replace(build, "/out/bucketq", bin, 1))
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "VERSION=v0.0.0-dockertest", "REVISION=d0c4e7f11e", "TARGETOS="+runtime.GOOS, "TARGETARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("Dockerfile's go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a dynamic loader (PT_INTERP): not static, it would not start on distroless/static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary links %v: not static", libs)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "v0.0.0-dockertest") || !strings.Contains(string(out), "d0c4e7f11e") {
		t.Errorf("bucketq version from the Dockerfile's build: %v\n%s\nwant the VERSION and REVISION build args", err, out)
	}
}
