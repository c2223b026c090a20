package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/thanos-io/objstore"
	"golang.org/x/term"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
	"github.com/bucketq/bucketq/importer"
	"github.com/bucketq/bucketq/internal/objname"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/partition"
	"github.com/bucketq/bucketq/producer"
)

// partitionFlagText is " --partition P" for p ≥ 1, for the commands a
// message suggests.
func partitionFlagText(p int) string {
	if p == 0 {
		return ""
	}
	return fmt.Sprintf(" --partition %d", p)
}

// importHelpLines are the flags of import beyond its config options.
func importHelpLines() []string {
	return []string{
		fmt.Sprintf("  %-34s %s", "--prefix PREFIX", "import the objects under PREFIX of the source bucket (default: all)"),
		fmt.Sprintf("  %-34s %s", "--match GLOB", "only objects whose base name matches GLOB ('*.csv.gz'); a GLOB with '/' matches the name below --prefix"),
		fmt.Sprintf("  %-34s %s", "--job NAME", "the job's checkpoint name: a re-run with the same NAME resumes and skips done objects (default \"default\")"),
		fmt.Sprintf("  %-34s %s", "--force", "import objects the job's checkpoint says are done again (same ids: the metering API deduplicates)"),
		fmt.Sprintf("  %-34s %s", "--parallel N", "objects read at once (default 4)"),
		fmt.Sprintf("  %-34s %s", "--max-errors N", "stop the job once more than N rows were dead-lettered (default -1: no limit)"),
		fmt.Sprintf("  %-34s %s", "--format FORMAT", "auto, ndjson, csv or json (overrides import.format; default auto)"),
		fmt.Sprintf("  %-34s %s", "--dry-run", "read, map and count every row, print the bad ones; write nothing (no queue, checkpoint or dead letters)"),
		fmt.Sprintf("  %-34s %s", "--partition P", "with partitions > 1: enqueue into partition P (0 to partitions-1; its manifest, data and dead-letter prefix; default 0); the job's checkpoint records P and a run of the job with another P is refused"),
	}
}

// importCommand runs `bucketq import`.
func importCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv config.Env) error {
	fl := config.NewFlags("import", config.RolesImport)
	prefix := fl.String("prefix", "", "source prefix")
	match := fl.String("match", "", "glob")
	job := fl.String("job", "default", "job name")
	force := fl.Bool("force", false, "import done objects again")
	parallel := fl.Int("parallel", 4, "objects at once")
	maxErrors := fl.Int("max-errors", -1, "dead letters before stopping")
	formatFlag := fl.String("format", "", "row format")
	dryRun := fl.Bool("dry-run", false, "write nothing")
	part := fl.String("partition", "", "partition")
	pos, err := fl.Parse(args)
	if err != nil {
		return err
	}
	usage := func(format string, a ...any) error { return &config.Error{Msg: "import: " + fmt.Sprintf(format, a...)} }
	if len(pos) > 0 {
		return usage("unexpected argument %q (the source is import.source or --source-dir; narrow it with --prefix and --match)", pos[0])
	}
	if *parallel < 1 || *parallel > 256 {
		return usage("--parallel %d: want 1 to 256", *parallel)
	}
	if *maxErrors < -1 {
		return usage("--max-errors %d: want -1 (no limit) or more", *maxErrors)
	}
	p, _, err := partitionArg("import", fl, *part)
	if err != nil {
		return err
	}
	if err := importer.CheckJob(*job); err != nil {
		return usage("--job: %v", err)
	}
	if err := importer.CheckPrefix(*prefix); err != nil {
		return usage("--prefix: %v", err)
	}
	if _, err := path.Match(*match, ""); err != nil {
		return usage("--match %q: %v", *match, err)
	}
	cfg, err := fl.Load(getenv)
	if err != nil {
		return err
	}
	// Partition p ≥ partitions would be a queue no consumer takes: the
	// rows would be durable but never delivered.
	if _, err := partition.Choose(cfg.Partitions, p); err != nil {
		return usage("--partition: %v", err)
	}
	l := cfg.Layout().Partition(p)
	fc, err := importer.ParseFileConfig(cfg.Import)
	if err != nil {
		return &config.Error{Msg: "config key \"import\": " + err.Error()}
	}
	if *formatFlag != "" {
		if fc.Format, err = importer.ParseFormat(*formatFlag); err != nil {
			return usage("--format: %v", err)
		}
	}
	var mapper *importer.Mapper
	if fc.Mapping != nil {
		if mapper, err = importer.Compile(*fc.Mapping); err != nil {
			return &config.Error{Msg: "config key \"import\": " + err.Error()}
		}
	}
	log := cfg.Logger(stderr)

	if cfg.ImportSourceDir == "" && fc.Source == nil {
		return usage("no source bucket: set import.source in the config file (objstore config, like object_store) or --source-dir DIR")
	}
	var srcBkt objstore.Bucket
	if cfg.ImportSourceDir != "" {
		srcBkt, err = bucket.OpenReaderDir(cfg.ImportSourceDir)
	} else {
		srcBkt, err = bucket.OpenReader(fc.Source, log)
	}
	if err != nil {
		return &config.Error{Msg: "import source: " + err.Error()}
	}
	defer srcBkt.Close()

	icfg := importer.Config{
		Source: srcBkt, Job: *job, Prefix: *prefix, Match: *match, Format: fc.Format, Mapper: mapper,
		Parallel: *parallel, Force: *force, MaxErrors: *maxErrors, DryRun: *dryRun, DryRunOut: stdout,
		MaxRowBytes: fc.MaxRowBytes, CheckpointWindow: fc.CheckpointWindow, DeadLetterPrefix: l.DeadLetter, Log: log,
		// One checkpoint per job whatever the partition: it records the
		// partition, so a resume into another one is refused.
		CheckpointPath: importer.CheckpointName(path.Dir(cfg.ManifestPath), *job), Partition: p,
	}
	if objname.Within(icfg.CheckpointPath, l.Data) {
		return &config.Error{Msg: fmt.Sprintf("config key \"manifest_path\": the import checkpoint %s would lie inside data_prefix %q, where garbage collection deletes objects", icfg.CheckpointPath, l.Data)}
	}
	var prod *producer.Producer
	if !*dryRun {
		bkt, store, err := openBucket(ctx, cfg, log)
		if err != nil {
			return err
		}
		defer bkt.Close()
		pm := producer.NewMetrics(nil)
		q := manifest.NewQueue(store, l.Manifest, queueOptions(cfg, producer.QueueOptions(pm)))
		prod, err = producer.New(bkt, q, producerConfig(cfg, l.Data), pm, log.With("part", "producer"))
		if err != nil {
			return fmt.Errorf("starting producer: %w", err)
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			prod.Drain()
			if err := prod.Close(cctx); err != nil {
				log.Error("producer close", "error", err)
			}
		}()
		icfg.Queue, icfg.Store, icfg.App = bkt, store, prod
	}
	im, err := importer.New(icfg)
	if err != nil {
		return &config.Error{Msg: "import: " + err.Error()}
	}
	stopProgress := showProgress(stderr, im)
	sum, runErr := im.Run(ctx)
	stopProgress()
	printImportSummary(stdout, *job, sum, *dryRun)
	if runErr != nil {
		return fmt.Errorf("import job %q: %w", *job, runErr)
	}
	if sum.Stopped != "" {
		return fmt.Errorf("import job %q stopped: %s; fix the rows (bucketq dead-letters list%s), then run it again with --job %s%s to go on", *job, sum.Stopped, partitionFlagText(p), *job, partitionFlagText(p))
	}
	if sum.DeadLettered > 0 {
		return fmt.Errorf("%d rows dead-lettered (bucketq dead-letters list --reason %s%s)", sum.DeadLettered, importer.ReasonRow, partitionFlagText(p))
	}
	return nil
}

// showProgress reports im's progress on w until the returned func is
// called: a progress bar on a terminal, a plain line every 10 s otherwise.
func showProgress(w io.Writer, im *importer.Importer) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	f, isFile := w.(*os.File)
	tty := isFile && term.IsTerminal(int(f.Fd()))
	start := time.Now()
	line := func(p importer.Progress) string {
		rate := float64(p.Events) / max(time.Since(start).Seconds(), 1e-3)
		return fmt.Sprintf("rows %d, events %d (%.0f/s), dead letters %d, read %s", p.Rows, p.Events, rate, p.DeadLettered, humanBytes(p.BytesRead))
	}
	go func() {
		defer close(finished)
		if !tty {
			t := time.NewTicker(10 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					p := im.Progress()
					fmt.Fprintf(w, "import: objects %d/%d (skipped %d), %s\n", p.ObjectsDone+p.ObjectsSkipped+p.ObjectsFailed, p.ObjectsTotal, p.ObjectsSkipped, line(p))
				}
			}
		}
		bar := progressbar.NewOptions64(-1, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription("listing"),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionSetItsString("objects"), progressbar.OptionShowIts(),
			progressbar.OptionClearOnFinish())
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		sized := false
		for {
			select {
			case <-done:
				_ = bar.Finish()
				return
			case <-t.C:
				p := im.Progress()
				if !p.Listing && !sized {
					bar.ChangeMax64(p.ObjectsTotal)
					sized = true
				}
				bar.Describe("import: " + line(p))
				_ = bar.Set64(p.ObjectsDone + p.ObjectsSkipped + p.ObjectsFailed)
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

func printImportSummary(w io.Writer, job string, s importer.Summary, dry bool) {
	what := "import"
	if dry {
		what = "import (dry run, nothing written)"
	}
	rate := float64(s.Events) / max(s.Duration.Seconds(), 1e-3)
	fmt.Fprintf(w, "%s job %s: objects %d (done %d, skipped as done before %d, failed %d), rows %d, events %d, dead-lettered %d, read %s in %s (%.0f events/s)\n",
		what, job, s.ObjectsTotal, s.ObjectsDone, s.ObjectsSkipped, s.ObjectsFailed, s.Rows, s.Events, s.DeadLettered,
		humanBytes(s.BytesRead), s.Duration.Round(time.Millisecond), rate)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
