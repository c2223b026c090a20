package main

import (
	"errors"
	"fmt"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
)

// checkBucketDir refuses a directory bucket whose directory does not exist
// (or is not a directory), unless create_bucket_dir is set: opening one
// creates it, so a typo in --bucket-dir used to start a producer writing
// into a new, empty queue, or a consumer waiting on one. The directory is
// bucket_dir, or the directory of an object_store of type FILESYSTEM.
// Only produce, consume and run can set create_bucket_dir: inspect and
// dead-letters never create a bucket.
func checkBucketDir(cfg *config.Config) error {
	key, dir := "bucket_dir", cfg.BucketDir
	if cfg.ObjectStore != nil {
		// Not a directory bucket, or bucket.Open says what is wrong.
		if dir = bucket.FilesystemDirectory(cfg.ObjectStore); dir == "" {
			return nil
		}
		key = "object_store"
	}
	if cfg.CreateBucketDir {
		return nil
	}
	err := bucket.CheckDir(dir)
	switch {
	case errors.Is(err, bucket.ErrDirMissing):
		return &config.Error{Msg: fmt.Sprintf("config key %q: bucket directory %q does not exist (a typo? create it, or pass --create-bucket-dir to let produce, consume or run create it)", key, dir)}
	case errors.Is(err, bucket.ErrDirNotADir):
		return &config.Error{Msg: fmt.Sprintf("config key %q: bucket directory %q is not a directory", key, dir)}
	}
	return err
}
