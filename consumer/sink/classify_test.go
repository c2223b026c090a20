package sink

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   Class
	}{
		{400, Reject}, {413, Reject}, {422, Reject},
		{429, Throttle}, {503, Throttle},
		{408, Transient}, {409, Transient}, {425, Transient}, {500, Transient}, {502, Transient}, {504, Transient}, {0, Transient},
		{401, Operator}, {403, Operator}, {404, Operator}, {405, Operator}, {415, Operator},
		{300, Operator}, {301, Operator}, {302, Operator}, {303, Operator}, {304, Operator}, {307, Operator}, {308, Operator},
	} {
		if got := Classify(tc.status); got != tc.want {
			t.Errorf("Classify(%d) = %d, want %d", tc.status, got, tc.want)
		}
	}
}

// TestReadFailure: an answer is classified by its status, a transport
// error is Transient, and only a Throttle's Retry-After (capped) replaces
// the backoff's pause.
func TestReadFailure(t *testing.T) {
	t.Parallel()
	const backoffPause = 7 * time.Millisecond
	next := func() time.Duration { return backoffPause }
	for _, tc := range []struct {
		name  string
		err   error
		class Class
		wait  time.Duration
	}{
		{"transport", errors.New("connection refused"), Transient, backoffPause},
		{"wrapped 503 with Retry-After", fmt.Errorf("send: %w", &HTTPError{Status: 503, RetryAfter: 2 * time.Second}), Throttle, 2 * time.Second},
		{"429 Retry-After capped", &HTTPError{Status: 429, RetryAfter: time.Hour}, Throttle, time.Minute},
		{"429 without Retry-After", &HTTPError{Status: 429}, Throttle, backoffPause},
		{"500 Retry-After ignored", &HTTPError{Status: 500, RetryAfter: time.Second}, Transient, backoffPause},
		{"400", &HTTPError{Status: 400}, Reject, backoffPause},
		{"401", &HTTPError{Status: 401}, Operator, backoffPause},
	} {
		f := ReadFailure(tc.err)
		if f.Class != tc.class {
			t.Errorf("%s: class %d, want %d", tc.name, f.Class, tc.class)
		}
		if got := f.Wait(next, time.Minute); got != tc.wait {
			t.Errorf("%s: wait %v, want %v", tc.name, got, tc.wait)
		}
		if _, isHTTP := tc.err.(*HTTPError); isHTTP && f.HTTP == nil {
			t.Errorf("%s: HTTP answer lost", tc.name)
		}
	}
}
