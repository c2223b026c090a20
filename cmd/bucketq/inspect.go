package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
	"github.com/bucketq/bucketq/cmd/bucketq/internal/inspect"
	"github.com/bucketq/bucketq/manifest/cas"
)

// inspectCommand runs `bucketq inspect manifest|batch ...`.
func inspectCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv config.Env) error {
	fl := config.NewFlags("inspect", config.RolesInspect)
	asJSON := fl.Bool("json", false, "print JSON")
	records := fl.Bool("records", false, "print the batch's records")
	pos, err := fl.Parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return &config.Error{Msg: "inspect: want \"manifest\" or \"batch LOCATION\""}
	}
	what := pos[0]
	switch {
	case what == "manifest" && len(pos) == 1:
		if *records {
			return &config.Error{Msg: "inspect manifest: --records applies to inspect batch"}
		}
	case what == "batch" && len(pos) == 2:
		if err := config.ObjectArg("inspect batch LOCATION", pos[1]); err != nil {
			return err
		}
	case what == "batch":
		return &config.Error{Msg: "inspect batch: want exactly one LOCATION (the batch's object name)"}
	case what == "manifest":
		return &config.Error{Msg: fmt.Sprintf("inspect manifest: unexpected argument %q", pos[1])}
	default:
		return &config.Error{Msg: fmt.Sprintf("inspect: unknown object %q (want manifest or batch)", what)}
	}
	cfg, err := fl.Load(getenv)
	if err != nil {
		return err
	}
	// openBucket refuses a missing bucket directory: inspecting must not
	// create one.
	log := cfg.Logger(stderr)
	bkt, store, err := openBucket(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer bkt.Close()

	if what == "manifest" {
		b, _, err := store.Read(ctx, cfg.ManifestPath)
		if errors.Is(err, cas.ErrNotExist) {
			// Not an empty queue: a producer or consumer writes the
			// manifest when it starts, so this is most likely a wrong
			// --manifest-path or bucket.
			return fmt.Errorf("manifest %s: no such object in the bucket (check manifest_path / --manifest-path and the bucket)", cfg.ManifestPath)
		}
		if err != nil {
			return fmt.Errorf("reading manifest %s: %w", cfg.ManifestPath, err)
		}
		m, err := inspect.Manifest(b)
		if err != nil {
			return fmt.Errorf("manifest %s: %w", cfg.ManifestPath, err)
		}
		if *asJSON {
			return inspect.WriteJSON(stdout, m)
		}
		return inspect.WriteManifestTable(stdout, cfg.ManifestPath, m)
	}

	location := pos[1]
	rc, err := bkt.Get(ctx, location)
	if err != nil {
		if bkt.IsObjNotFoundErr(err) {
			return fmt.Errorf("batch %s: no such object in the bucket", location)
		}
		return fmt.Errorf("reading batch %s: %w", location, err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("reading batch %s: %w", location, err)
	}
	bj, recs, err := inspect.Batch(b, *records)
	if err != nil {
		return fmt.Errorf("batch %s (%d bytes): %w", location, len(b), err)
	}
	if *asJSON {
		return inspect.WriteJSON(stdout, bj)
	}
	return inspect.WriteBatchTable(stdout, location, bj, recs)
}
