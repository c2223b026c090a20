package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
)

type command struct {
	name, short, usage, summary string
	roles                       config.Role
	examples                    []string
	extra                       []string // help lines of flags not in config.Options
}

var commands = []command{
	{name: "run", short: "produce and consume in one process (the quick start)", usage: "bucketq run [flags]", roles: config.RolesRun,
		summary: "Produce and consume in one process: accept events, queue them in the bucket, deliver them.\n" +
			"With no flags it uses the directory ./data as the bucket and prints delivered events on stdout;\n" +
			"--create-bucket-dir creates ./data the first time (a missing bucket directory is an error).",
		examples: []string{
			"bucketq run --create-bucket-dir",
			"bucketq run --bucket-dir /var/lib/bucketq --sink https://openmeter.cloud/api/v1/events --sink-token \"$OPENMETER_TOKEN\"",
		}},
	{name: "produce", short: "accept events over HTTP and OTLP and queue them in the bucket", usage: "bucketq produce [flags]", roles: config.RolesProduce,
		summary: "Accept CloudEvents on POST /api/v1/events (OpenMeter-compatible) and OTLP logs, metrics and traces,\n" +
			"batch them, write each batch as one object and append it to the manifest. A request gets 2xx only\n" +
			"once its events are durable and queued. Run one producer per zone, all on the same bucket.",
		examples: []string{
			"bucketq produce --config bucketq.yaml",
			"bucketq produce --bucket-dir ./data --listen 0.0.0.0:8888 --token ingest-secret --otlp-grpc '' --otlp-http ''",
		}},
	{name: "consume", short: "deliver queued events to the metering API, then delete delivered batches", usage: "bucketq consume [flags]", roles: config.RolesConsume,
		summary: "Deliver queued events, in order and at least once, to an OpenMeter-compatible API (or file:, stdout),\n" +
			"dead-letter what the API rejects, dequeue what is done and delete delivered batch files.\n" +
			"Run ONE consumer per manifest: a new one fences the old one out. --listen serves /metrics and health.",
		examples: []string{
			"bucketq consume --config bucketq.yaml",
			"BUCKETQ_SINK_TOKEN=... bucketq consume --bucket-dir ./data --listen 127.0.0.1:8889 --sink https://openmeter.cloud/api/v1/events",
		}},
	{name: "import", short: "enqueue usage files (NDJSON, CSV, JSON arrays; gzip, zstd) from a bucket, resumably", usage: "bucketq import [--prefix PREFIX] [--match GLOB] [--job NAME] [--partition P] [--force] [--dry-run] [flags]", roles: config.RolesImport,
		summary: "Read every object under --prefix of the source bucket (import.source in the config file, same shape as\n" +
			"object_store, or --source-dir DIR) and enqueue one CloudEvent per row through a producer, into the same\n" +
			"queue POST /api/v1/events fills: the consumer delivers them like any other event. Rows are NDJSON,\n" +
			"CSV with a header row, or a JSON array of objects; gzip and zstd are recognised from their first bytes.\n" +
			"A row that is a CloudEvent (has \"specversion\") is sent as it is; other rows are mapped by import.mapping,\n" +
			"CEL expressions over `row` (the columns), `object`, `row_number` and `object_time`:\n" +
			"\n" +
			"    import:\n" +
			"      source: {type: S3, config: {bucket: exports, endpoint: s3.eu-west-1.amazonaws.com, region: eu-west-1}}\n" +
			"      mapping:\n" +
			"        type: '\"llm-tokens\"'               # required\n" +
			"        subject: row.customer_id            # required\n" +
			"        time: row.timestamp                 # RFC 3339 string or timestamp; default object_time\n" +
			"        data: {tokens: int(row.tokens), model: row.model}\n" +
			"\n" +
			"CSV values are strings: int(row.x) and double(row.x) make numbers (a value that does not parse makes\n" +
			"the row a dead letter). A row without an id gets a UUIDv5 of object name, row number and row content,\n" +
			"so importing a file again yields the same ids and the metering API deduplicates. Bad rows are dead\n" +
			"letters (reason import_row, naming object and row; see bucketq dead-letters list); an unreadable tail\n" +
			"(a truncated gzip) is one import_object dead letter. Progress is checkpointed per object in the queue's\n" +
			"bucket (<manifest dir>/import/JOB.checkpoint) once the rows are durable: after a crash, run the same\n" +
			"command again to resume; done objects are skipped unless --force. With partitions > 1 the rows go to\n" +
			"partition 0, or --partition P (which a consumer with the same partitions takes); the checkpoint records\n" +
			"P, and running the job into another partition is refused. Exit 1 if rows were dead-lettered\n" +
			"or the job failed, 2 for bad flags or config.",
		examples: []string{
			"bucketq import --config bucketq.yaml --prefix usage/2026/11/ --match '*.csv.gz' --job nov-2026",
			"bucketq import --bucket-dir ./data --source-dir ./exports --dry-run",
			"bucketq import --config bucketq.yaml --job nov-2026 --force --parallel 8",
		},
		extra: importHelpLines()},
	{name: "inspect", short: "print the manifest, a batch file or the journal (table or JSON)", usage: "bucketq inspect manifest [--json | --verify] [flags]\n  bucketq inspect batch LOCATION [--records] [--json] [flags]\n  bucketq inspect journal [--json | --verify] [flags]\n  bucketq inspect journal SEGMENT [--json] [flags]", roles: config.RolesInspect,
		summary: "Print the manifest (footer and entries), or the footer (and records) of one batch file.\n" +
			"inspect journal lists the journal segments under journal_prefix (one per dequeue, RFC 0004) in sequence\n" +
			"order from their footers: sequence range, entry count, when journaled, the ingestion times they span,\n" +
			"the consumer epoch; --verify reads every segment whole and checks its checksum and entries. With a\n" +
			"SEGMENT (an object name from the listing) it prints that segment's entries, as inspect manifest does.\n" +
			"A damaged segment is reported with its name and byte offset, and the exit code is 1.\n" +
			"LOCATION is the batch's object name as the manifest lists it. --json prints one line of JSON:\n" +
			"  manifest: {\"version\":1,\"epoch\":E,\"next_sequence\":N,\"entries\":[{\"sequence\":S,\"location\":\"...\",\n" +
			"             \"metadata\":[{\"start_index\":I,\"ingestion_time_ms\":T,\"payload\":\"<hex>\",\"signal\":\"events\",\"encoding\":\"cloudevents-json\"}]}]}\n" +
			"  batch:    {\"compression\":\"zstd\",\"record_count\":N,\"version\":1,\"records\":[\"<base64>\",...]}  (records only with --records)\n" +
			"Corrupt data is an error (exit code 1).",
		examples: []string{
			"bucketq inspect manifest --bucket-dir ./data",
			"bucketq inspect manifest --config bucketq.yaml --json",
			"bucketq inspect manifest --config bucketq.yaml --verify",
			"bucketq inspect batch ingest/data/01JBZ3M6Q8X2V4K7N9P0R5T1W3.batch --records",
			"bucketq inspect journal --config bucketq.yaml --verify",
			"bucketq inspect journal ingest/journal/00000000000000000003-00000000000000000004.journal --json",
		},
		extra: []string{
			fmt.Sprintf("  %-34s %s", "--json", "print one line of JSON instead of a table"),
			fmt.Sprintf("  %-34s %s", "--records", "(inspect batch) also print the records"),
			fmt.Sprintf("  %-34s %s", "--verify", "(inspect manifest) check its checksums, read and check every batch it lists; (inspect journal) read and check every segment; exit 1 on damage"),
		}},
	{name: "repair", short: "repair a damaged manifest, keeping every entry whose checksum verifies", usage: "bucketq repair manifest [--partition P] [--dry-run] [--requeue-unreferenced] [flags]", roles: config.RolesInspect,
		summary: "Repair a manifest that no longer decodes (producers answer 503, the consumer refuses to start). Stop the\n" +
			"consumer first. Every entry whose own CRC-32C verifies is kept, in order; an entry whose checksum fails\n" +
			"is dropped and listed with its location as read; the walk stops where no entry can be framed. The new\n" +
			"manifest gets a next_sequence above every sequence seen and a fresh epoch (which fences any consumer).\n" +
			"The damaged object is saved first as MANIFEST.damaged-TIMESTAMP; no batch file is deleted. Version 1\n" +
			"manifests carry no checksums and are refused. Check first with: bucketq inspect manifest --verify\n" +
			"With partitions > 1 and no --partition, every partition's manifest is checked and each damaged one is\n" +
			"repaired, with a section per partition and a summary line: each repair is conditional on the bytes it\n" +
			"read and the partitions share no object, so this is what repairing them one by one would do (a manifest\n" +
			"that verifies, or was never written, is left alone). Exit 1 if any partition could not be repaired.",
		examples: []string{
			"bucketq repair manifest --config bucketq.yaml --dry-run",
			"bucketq repair manifest --bucket-dir ./data",
			"bucketq repair manifest --config bucketq.yaml --partition 3",
		},
		extra: []string{
			fmt.Sprintf("  %-34s %s", "--partition P", "with partitions > 1: repair partition P's manifest only (manifest_path with suffix -000P; 0 to partitions-1); default: every damaged one"),
			fmt.Sprintf("  %-34s %s", "--dry-run", "report what would be kept and dropped; write nothing"),
			fmt.Sprintf("  %-34s %s", "--requeue-unreferenced", "queue again the CloudEvents batch files under data_prefix the manifest no longer lists"),
		}},
	{name: "dead-letters", short: "list, show and re-drive dead letters (alias deadletters)",
		usage: "bucketq dead-letters list [--reason REASON] [--json] [flags]\n  bucketq dead-letters show NAME [flags]\n  bucketq dead-letters redrive [--reason REASON] [--dry-run] [--timeout DURATION] [flags]",
		roles: config.RolesDeadLetters,
		summary: "Work on the dead letters under dead_letter_prefix (same config file as consume). list prints one line per\n" +
			"dead letter and a count by reason; show prints one as JSON. redrive sends them to the sink again:\n" +
			"a poison_event as stored, convert_error and unknown_signal records converted again with the CURRENT\n" +
			"conversion config (same ids as the consumer's). A dead letter is deleted only after the sink answers\n" +
			"2xx; one it still refuses (400) stays, and the exit code is 1. batch_missing and batch_corrupt are\n" +
			"skipped (nothing to resend). Safe while a consumer runs. Re-sent events keep their ids, so the\n" +
			"metering API deduplicates a resend after a crash.",
		examples: []string{
			"bucketq dead-letters list --config bucketq.yaml",
			"bucketq dead-letters show ingest/dead-letter/00000000000000000042-01JBZ3M6Q8X2V4K7N9P0R5T1W3.batch/poison-r000003-e0000.json",
			"bucketq dead-letters redrive --config bucketq.yaml --reason convert_error --dry-run",
		},
		extra: deadLettersHelpLines()},
	{name: "replay", short: "re-send delivered history from the journal (read-only on the queue)",
		usage: "bucketq replay --from TIME [--to TIME] [filters] [--sink URL] [--rate N] [--dry-run] [flags]\n  bucketq replay --from-seq N [--to-seq N] [filters] [--checkpoint FILE [--resume]] [flags]",
		roles: config.RolesReplay,
		summary: "Re-send events the consumer already delivered, from the journal it writes before every dequeue\n" +
			"(journal_retention, default 24h, keeps the segments and their batch files). Select by ingestion time\n" +
			"(--from/--to: exactly the records ingested in [from, to)) or by manifest sequence (--from-seq/--to-seq,\n" +
			"as bucketq inspect manifest shows them); narrow with --type, --source, --subject, --signal.\n" +
			"The records go through the consumer's own decoding and conversion (use the SAME conversion config as\n" +
			"the consumer did), so each event is byte-identical to the delivered one: same id and source, which the\n" +
			"metering API deduplicates. Replay only reads the bucket: no fence, no manifest write, no GC, no dead\n" +
			"letters, so it is safe while the consumer runs. Try --dry-run first; replay into file:PATH for an audit.\n" +
			"With --checkpoint FILE an interrupted replay (Ctrl-C, crash) continues with the same flags plus --resume;\n" +
			"events of the last unfinished request are sent again (deduplicated downstream).\n" +
			"Exit code 0: everything selected was sent; 1: something was not (a batch file gone, sequences in no\n" +
			"segment, a record no converter reads, an event the sink refused: all listed), or replay stopped on an\n" +
			"error (a damaged segment or batch, the sink refusing requests); 2: bad flags.",
		examples: []string{
			"bucketq replay --config bucketq.yaml --from 2026-01-31T10:00:00Z --to 2026-01-31T11:00:00Z --dry-run",
			"bucketq replay --config bucketq.yaml --from 2026-01-31T10:00:00Z --to 2026-01-31T11:00:00Z --sink file:audit.ndjson",
			"bucketq replay --config bucketq.yaml --from-seq 1200 --to-seq 1900 --subject customer-42 --rate 500 \\\n      --sink https://openmeter.cloud/api/v1/events --checkpoint replay.ckpt",
		},
		extra: replayHelpLines()},
	{name: "bench", short: "load a running producer and report throughput, ack latency and storage cost", usage: "bucketq bench [flags]",
		summary: "Send CloudEvents (or OTLP logs) to a running producer with concurrent clients, for a duration or an\n" +
			"event count, at a fixed rate or as fast as it acks. Reports events/s and MB/s accepted, ack latency\n" +
			"p50/p99/max, bytes stored per event, object PUTs and manifest CAS writes per million events (read from\n" +
			"the producer's /metrics) and errors by kind. A live progress line goes to stderr.",
		examples: []string{
			"bucketq bench --duration 30s",
			"bucketq bench --clients 16 --batch-size 500 --count 1000000 --json",
			"bucketq bench --protocol otlp-http --url http://127.0.0.1:4318 --metrics-url http://127.0.0.1:8888/metrics --rate 50000 --duration 1m",
		},
		extra: benchHelpLines()},
	{name: "version", short: "print the version", usage: "bucketq version", summary: "Print the bucketq module version and the Go version.",
		examples: []string{"bucketq version"}},
	{name: "help", short: "print this help, or one command's help", usage: "bucketq help [COMMAND]", summary: "Print this help, or one command's help with all its flags (also: bucketq COMMAND --help).",
		examples: []string{"bucketq help consume"}},
}

const configHelp = `Configuration:
  Every flag is also a key in the --config YAML file (snake_case: --flush-interval is flush_interval,
  --token is the list tokens). Precedence, lowest first: built-in default < config file <
  environment (only BUCKETQ_SINK_TOKEN, for sink_token) < flags. Values in the file may use ${VAR},
  $VAR or ${VAR:-default} (expanded inside values after parsing; an unset or empty VAR without a
  default is an error; $$ is a literal $; quote a ${VAR} inside [ ] or { }). Unknown keys
  are errors. One file can serve every command: keys a command does not use are ignored.
  The bucket is either --bucket-dir DIR (default ./data) or, in the file only, object_store: with
  exactly the thanos objstore config, for example:

    object_store:
      type: S3
      config:
        bucket: metering
        endpoint: s3.eu-west-1.amazonaws.com
        region: eu-west-1
    sink: https://openmeter.cloud/api/v1/events
    sink_token: ${OPENMETER_TOKEN}

  Addresses are HOST:PORT with PORT 0-65535 (0: any free port). produce and run require
  max_buffered_bytes >= 2 x max_body_bytes and memory_limit >= max_buffered_bytes (or 0).
  Bad flags or config exit with code 2 and a one-line error naming the key; runtime failures exit 1.
  SIGINT/SIGTERM shut down gracefully: stop accepting, flush and commit, stop the consumer.
`

func writeHelp(w io.Writer) {
	fmt.Fprint(w, `bucketq is a durable queue in an object-storage bucket for usage metering events.
Producers accept events (OpenMeter-compatible HTTP, OTLP), store them as batch objects and list them
in a manifest; one consumer delivers them to the metering API at least once.

Usage:
  bucketq COMMAND [flags]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.short)
	}
	for _, c := range commands {
		fmt.Fprintln(w)
		writeCommandSummary(w, c)
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, configHelp)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Flags (the commands each applies to in brackets):")
	config.FlagHelp(w, config.RolesRun|config.RolesInspect|config.RolesDeadLetters|config.RolesImport, true)
	for _, c := range commands {
		for _, line := range c.extra {
			fmt.Fprintf(w, "%s [%s]\n", line, c.name)
		}
	}
}

func writeCommandSummary(w io.Writer, c command) {
	fmt.Fprintf(w, "%s\n  %s\n", strings.ToUpper(c.name[:1])+c.name[1:]+":", c.usage)
	for _, line := range strings.Split(c.summary, "\n") {
		fmt.Fprintf(w, "  %s\n", line)
	}
	fmt.Fprintln(w, "  Examples:")
	for _, e := range c.examples {
		fmt.Fprintf(w, "    %s\n", e)
	}
}

// writeCommandHelp prints one command's help with its flags; false if there
// is no such command.
func writeCommandHelp(w io.Writer, name string) bool {
	for _, c := range commands {
		if c.name != name {
			continue
		}
		writeCommandSummary(w, c)
		if c.roles == 0 && len(c.extra) > 0 {
			fmt.Fprintln(w, "\nFlags:")
			for _, line := range c.extra {
				fmt.Fprintln(w, line)
			}
		}
		if c.roles != 0 {
			fmt.Fprintln(w, "\nFlags:")
			config.FlagHelp(w, c.roles, false)
			for _, line := range c.extra {
				fmt.Fprintln(w, line)
			}
			fmt.Fprintln(w)
			fmt.Fprint(w, configHelp)
		}
		return true
	}
	return false
}

// Set at link time by builds without VCS stamping (the Dockerfile, which
// has no .git): go build -ldflags "-X main.linkVersion=v1.2.3 -X main.linkRevision=abc123".
var linkVersion, linkRevision string

func writeVersion(w io.Writer) {
	bi, _ := debug.ReadBuildInfo()
	version, rev := versionInfo(bi, linkVersion, linkRevision)
	fmt.Fprintf(w, "bucketq %s\n", version)
	if rev != "" {
		fmt.Fprintf(w, "commit %s\n", rev)
	}
	fmt.Fprintf(w, "go %s %s/%s\n", strings.TrimPrefix(runtime.Version(), "go"), runtime.GOOS, runtime.GOARCH)
}

// versionInfo is the module version and git revision: the build info's
// (go install of a tagged module, or a build in a git checkout stamps
// vcs.revision, with "+dirty" for uncommitted changes), else the link-time
// values.
func versionInfo(bi *debug.BuildInfo, linkVer, linkRev string) (version, rev string) {
	version = "(unknown)"
	if bi != nil && bi.Main.Version != "" {
		version = bi.Main.Version
	}
	if linkVer != "" && (version == "(unknown)" || version == "(devel)") {
		version = linkVer
	}
	dirty := false
	if bi != nil {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if rev == "" {
		return version, linkRev
	}
	if dirty {
		rev += "+dirty"
	}
	return version, rev
}
