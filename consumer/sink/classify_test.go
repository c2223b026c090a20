package sink

import "testing"

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
