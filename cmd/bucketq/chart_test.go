package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
)

// The Helm chart (deploy/helm/bucketq) and the files that check it.
const (
	chartDir     = "../../deploy/helm/bucketq"
	chartEnvHelm = "BUCKETQ_HELM"
)

// chartValueFiles are the value files the chart is checked with: the
// defaults alone (a producer) and each ci/ file over them.
func chartValueFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("chart ci/ value files: %v %v", files, err)
	}
	return append([]string{""}, files...)
}

// readYAML decodes a YAML file into plain JSON-like values.
func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// mergeValues is Helm's values merge: maps merge key by key, anything else
// in over replaces base.
func mergeValues(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if bm, ok := out[k].(map[string]any); ok {
			if om, ok := v.(map[string]any); ok {
				out[k] = mergeValues(bm, om)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// jsonValues round-trips v through JSON, the types the schema validator
// expects (float64 numbers, []any, map[string]any).
func jsonValues(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func chartSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	s, err := c.Compile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	return s
}

// TestChartValuesMatchSchema: values.yaml, alone and under each ci/ file,
// passes values.schema.json, and values the chart cannot work with fail it
// (so the schema checks something).
func TestChartValuesMatchSchema(t *testing.T) {
	schema := chartSchema(t)
	defaults := readYAML(t, filepath.Join(chartDir, "values.yaml"))
	for _, f := range chartValueFiles(t) {
		vals := defaults
		if f != "" {
			vals = mergeValues(defaults, readYAML(t, f))
		}
		if err := schema.Validate(jsonValues(t, vals)); err != nil {
			t.Errorf("values.yaml + %q: %v", f, err)
		}
	}
	bad := []struct {
		name  string
		over  string
		field string
	}{
		{"unknown mode", "mode: both", "/mode"},
		{"no object store", "config: {object_store: null}", "'object_store'"},
		{"filesystem bucket", "config: {object_store: {type: FILESYSTEM, config: {directory: /data}}}", "/config/object_store/type"},
		{"no http port", "ports: {http: 0}", "/ports/http"},
		{"zero drain", "shutdownTimeoutSeconds: 0", "/shutdownTimeoutSeconds"},
		{"daemonset typo", "producer: {kind: Daemonset}", "/producer/kind"},
		{"unknown traffic distribution", "service: {trafficDistribution: SameZone}", "/service/trafficDistribution"},
		{"misspelt top-level value", "replicas: 2", "replicas"},
		{"secret key not an env name", "secret: {create: {ingest-token: x}}", "'ingest-token'"},
		{"memory limit not a quantity", "resources: {limits: {memory: lots}}", "/resources/limits/memory"},
		{"drain as a duration string", "shutdownTimeoutSeconds: 1m30s", "/shutdownTimeoutSeconds"},
		{"drain as a numeric string", "shutdownTimeoutSeconds: '90'", "/shutdownTimeoutSeconds"},
		{"empty config", "config: {object_store: null, ingest: null}", "'object_store'"},
		{"existing secret not a Kubernetes name", "secret: {existingSecret: My_Secret}", "/secret/existingSecret"},
	}
	for _, tc := range bad {
		var over map[string]any
		if err := yaml.Unmarshal([]byte(tc.over), &over); err != nil {
			t.Fatal(err)
		}
		vals := mergeValues(defaults, over)
		if c, ok := vals["config"].(map[string]any); ok && c["object_store"] == nil {
			delete(c, "object_store") // null removes a value in Helm
		}
		err := schema.Validate(jsonValues(t, vals))
		if err == nil {
			t.Errorf("%s (%s): schema accepted it", tc.name, tc.over)
		} else if !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error does not name %s: %v", tc.name, tc.field, err)
		}
	}
}

// loadBucketqConfig loads a bucketq YAML config as the command for mode
// would, with env standing in for the Secret.
func loadBucketqConfig(t *testing.T, yml []byte, mode string, env map[string]string) (*config.Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bucketq.yaml")
	if err := os.WriteFile(path, yml, 0o600); err != nil {
		t.Fatal(err)
	}
	name, roles := "produce", config.RolesProduce
	if mode == "consumer" {
		name, roles = "consume", config.RolesConsume
	}
	fl := config.NewFlags(name, roles)
	if _, err := fl.Parse([]string{"--config", path}); err != nil {
		return nil, err
	}
	return fl.Load(func(k string) string { return env[k] })
}

// chartSecretEnv stands in for the Secret's keys each role needs: the
// consumer's Secret need not hold the ingest token, nor the producers' the
// sink token.
var chartSecretEnv = map[string]map[string]string{
	"producer": {"INGEST_TOKEN": "t0ken"},
	"consumer": {"BUCKETQ_SINK_TOKEN": "s1nk"},
}

// TestChartDefaultConfigLoads: values.config, with the keys the chart sets,
// is a valid bucketq config for both commands, without helm.
func TestChartDefaultConfigLoads(t *testing.T) {
	defaults := readYAML(t, filepath.Join(chartDir, "values.yaml"))
	cfg := mergeValues(defaults["config"].(map[string]any), map[string]any{
		"listen": "0.0.0.0:8888", "otlp_grpc": "0.0.0.0:4317", "otlp_http": "0.0.0.0:4318", "shutdown_timeout": "30s",
	})
	yml, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"producer", "consumer"} {
		if _, err := loadBucketqConfig(t, yml, mode, chartSecretEnv[mode]); err != nil {
			t.Errorf("%s: values.config is not a valid bucketq config: %v\n%s", mode, err, yml)
		}
	}
}

// needTool finds a checking tool: $env, or the path scripts/tool.sh
// installed it to (tests never install: .ci/run and `make chart` do). It
// skips without the tool, except in CI (CI=true), where the tool is part of
// what CI checks and a missing one fails the test.
func needTool(t *testing.T, name, env string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	out, err := exec.Command("../../scripts/tool.sh", "--installed", name).Output()
	if p := strings.TrimSpace(string(out)); err == nil && p != "" {
		return p
	}
	msg := fmt.Sprintf("%s not installed: run scripts/tool.sh --install-only %s, or set %s", name, name, env)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: .ci/run installs it)")
	}
	t.Skip(msg)
	return ""
}

func needHelm(t *testing.T) string { return needTool(t, "helm", chartEnvHelm) }

// k8sObject is the part of a rendered manifest the checks read.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Replicas            *int           `yaml:"replicas"`
		Strategy            map[string]any `yaml:"strategy"`
		TrafficDistribution string         `yaml:"trafficDistribution"`
		VolumeClaimTemplate []any          `yaml:"volumeClaimTemplates"`
		Template            struct {
			Metadata struct {
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds int            `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               map[string]any `yaml:"securityContext"`
				TopologySpreadConstraints     []any          `yaml:"topologySpreadConstraints"`
				Volumes                       []map[string]any
				Containers                    []struct {
					Args           []string         `yaml:"args"`
					Env            []map[string]any `yaml:"env"`
					EnvFrom        []map[string]any `yaml:"envFrom"`
					LivenessProbe  map[string]any   `yaml:"livenessProbe"`
					ReadinessProbe map[string]any   `yaml:"readinessProbe"`
					Lifecycle      struct {
						PreStop struct {
							Sleep struct {
								Seconds int `yaml:"seconds"`
							} `yaml:"sleep"`
						} `yaml:"preStop"`
					} `yaml:"lifecycle"`
					SecurityContext map[string]any `yaml:"securityContext"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

func renderChart(t *testing.T, helm, valuesFile string) []k8sObject {
	t.Helper()
	args := []string{"template", "bq", chartDir, "--namespace", "metering"}
	if valuesFile != "" {
		args = append(args, "-f", valuesFile)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(helm, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var objs []k8sObject
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var o k8sObject
		if err := dec.Decode(&o); err != nil {
			if errors.Is(err, os.ErrClosed) || err.Error() == "EOF" {
				break
			}
			t.Fatalf("rendered YAML: %v", err)
		}
		if o.Kind != "" {
			objs = append(objs, o)
		}
	}
	return objs
}

// TestChartRenders runs helm lint and helm template with each value file
// and checks what the chart promises: the rendered bucketq config loads for
// the pod's command, probes on /healthz and /readyz, a grace period that
// covers preStop + shutdown_timeout, non-root with a read-only root
// filesystem and no privilege escalation, no PVC, config checksum
// annotations, producers spread over zones behind a PreferSameZone/Close
// Service, and a single Recreate consumer. Skips without helm (fails in CI).
func TestChartRenders(t *testing.T) {
	helm := needHelm(t)
	for _, f := range chartValueFiles(t) {
		name := "defaults"
		if f != "" {
			name = filepath.Base(f)
		}
		t.Run(name, func(t *testing.T) {
			lint := []string{"lint", chartDir, "--strict"}
			if f != "" {
				lint = append(lint, "-f", f)
			}
			if out, err := exec.Command(helm, lint...).CombinedOutput(); err != nil {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
			checkRendered(t, renderChart(t, helm, f))
		})
	}
}

func checkRendered(t *testing.T, objs []k8sObject) {
	t.Helper()
	byKind := map[string][]k8sObject{}
	for _, o := range objs {
		byKind[o.Kind] = append(byKind[o.Kind], o)
	}
	if n := len(byKind["PersistentVolumeClaim"]) + len(byKind["StatefulSet"]); n != 0 {
		t.Errorf("%d PVCs or StatefulSets: the bucket holds the state", n)
	}
	cms := byKind["ConfigMap"]
	if len(cms) != 1 {
		t.Fatalf("%d ConfigMaps, want 1", len(cms))
	}
	cfgYAML := cms[0].Data["bucketq.yaml"]
	workloads := append(byKind["Deployment"], byKind["DaemonSet"]...)
	if len(workloads) != 1 {
		t.Fatalf("%d workloads, want 1", len(workloads))
	}
	w := workloads[0]
	pod := w.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	mode := map[string]string{"produce": "producer", "consume": "consumer"}[c.Args[0]]
	if mode == "" {
		t.Fatalf("container args %v: not produce or consume", c.Args)
	}

	// The rendered config is one bucketq accepts for that command.
	bc, err := loadBucketqConfig(t, []byte(cfgYAML), mode, chartSecretEnv[mode])
	if err != nil {
		t.Fatalf("rendered config rejected by bucketq %s: %v\n%s", c.Args[0], err, cfgYAML)
	}
	if sum := sha256.Sum256([]byte(strings.TrimSuffix(cfgYAML, "\n"))); w.Spec.Template.Metadata.Annotations["checksum/config"] != hex.EncodeToString(sum[:]) {
		t.Errorf("checksum/config %q is not the config's sha256", w.Spec.Template.Metadata.Annotations["checksum/config"])
	}

	// Probes.
	probePath := func(p map[string]any) string {
		hg, _ := p["httpGet"].(map[string]any)
		return fmt.Sprint(hg["path"])
	}
	if probePath(c.LivenessProbe) != "/healthz" || probePath(c.ReadinessProbe) != "/readyz" {
		t.Errorf("probes: liveness %v, readiness %v", c.LivenessProbe, c.ReadinessProbe)
	}

	// The grace period covers the preStop sleep and the whole drain.
	need := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds)*time.Second + bc.ShutdownTimeout
	if got := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second; got <= need {
		t.Errorf("terminationGracePeriodSeconds %s does not exceed preStop %ds + shutdown_timeout %s", got, c.Lifecycle.PreStop.Sleep.Seconds, bc.ShutdownTimeout)
	}

	// Security.
	if pod.SecurityContext["runAsNonRoot"] != true {
		t.Errorf("pod securityContext %v: not runAsNonRoot", pod.SecurityContext)
	}
	if c.SecurityContext["readOnlyRootFilesystem"] != true || c.SecurityContext["allowPrivilegeEscalation"] != false {
		t.Errorf("container securityContext %v", c.SecurityContext)
	}
	for _, v := range pod.Volumes {
		if _, ok := v["persistentVolumeClaim"]; ok {
			t.Errorf("volume %v is a PVC", v["name"])
		}
	}

	// GOMEMLIMIT below the memory limit, when set.
	for _, e := range c.Env {
		if e["name"] == "GOMEMLIMIT" {
			var n int64
			if _, err := fmt.Sscan(fmt.Sprint(e["value"]), &n); err != nil || n < bc.MaxBufferedBytes {
				t.Errorf("GOMEMLIMIT %v: not a byte count above max_buffered_bytes %d", e["value"], bc.MaxBufferedBytes)
			}
		}
	}

	svcs := byKind["Service"]
	if len(svcs) != 1 {
		t.Fatalf("%d Services", len(svcs))
	}
	switch mode {
	case "producer":
		if td := svcs[0].Spec.TrafficDistribution; td != "PreferSameZone" && td != "PreferClose" {
			t.Errorf("producer Service trafficDistribution %q", td)
		}
		if w.Kind == "Deployment" && len(pod.TopologySpreadConstraints) == 0 {
			t.Error("producer Deployment without topologySpreadConstraints")
		}
		if len(bc.Tokens) == 0 {
			t.Error("producer config has no ingest token")
		}
	case "consumer":
		if w.Kind != "Deployment" || w.Spec.Replicas == nil || *w.Spec.Replicas != 1 || w.Spec.Strategy["type"] != "Recreate" {
			t.Errorf("consumer %s replicas %v strategy %v: want one Recreate Deployment", w.Kind, w.Spec.Replicas, w.Spec.Strategy)
		}
		if len(byKind["PodDisruptionBudget"])+len(byKind["HorizontalPodAutoscaler"]) != 0 {
			t.Error("consumer with a PDB or HPA")
		}
	}
}
