// Package auth checks the bearer tokens of ingest requests: one check shared
// by every front door (CloudEvents HTTP, OTLP/HTTP, OTLP/gRPC), so a token
// configured for the producer protects all of them alike.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// Tokens is a set of accepted bearer tokens. The zero value (no tokens)
// accepts every request: authentication is off.
type Tokens struct {
	sums [][sha256.Size]byte
}

// New returns the set of the given tokens; empty strings are ignored.
func New(tokens []string) Tokens {
	var t Tokens
	for _, s := range tokens {
		if s != "" {
			t.sums = append(t.sums, sha256.Sum256([]byte(s)))
		}
	}
	return t
}

// Enabled reports whether any token is configured.
func (t Tokens) Enabled() bool { return len(t.sums) > 0 }

// Allow checks an Authorization header value ("Bearer <token>"). With no
// tokens configured it allows everything. The comparison takes the same time
// whichever token matches: hashes of equal length, every token compared.
func (t Tokens) Allow(header string) bool {
	if !t.Enabled() {
		return true
	}
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return false
	}
	sum := sha256.Sum256([]byte(tok))
	match := 0
	for i := range t.sums {
		match |= subtle.ConstantTimeCompare(sum[:], t.sums[i][:])
	}
	return match == 1
}

// HTTP wraps next so that requests without an accepted token get 401 with
// "WWW-Authenticate: Bearer" and the given body (nil: a plain-text body).
func (t Tokens) HTTP(next http.Handler, reject func(w http.ResponseWriter, r *http.Request)) http.Handler {
	if !t.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if t.Allow(r.Header.Get("Authorization")) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", "Bearer")
		if reject != nil {
			reject(w, r)
			return
		}
		Unauthorized(w, r)
	})
}

// RejectMessage is the text of every refusal for a missing or wrong token:
// HTTP 401 bodies and the gRPC Unauthenticated status.
const RejectMessage = "missing or invalid bearer token"

// Unauthorized writes the plain-text 401 that HTTP answers when its reject
// function is nil.
func Unauthorized(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, RejectMessage, http.StatusUnauthorized)
}

// GRPC returns server options that refuse calls without an accepted token
// in the "authorization" metadata with codes.Unauthenticated (none when
// authentication is off). The check runs in a tap handle, on the call's
// headers before its message is received: a call without the token is
// refused whatever its size (not ResourceExhausted by the receive limit)
// and none of its message is read. The interceptors repeat the check for
// transports that run no tap handle (grpc.Server.ServeHTTP). rejected, if
// not nil, is called once for every refused call (for metrics).
func (t Tokens) GRPC(rejected func()) []grpc.ServerOption {
	if !t.Enabled() {
		return nil
	}
	allow := func(md metadata.MD) error {
		for _, v := range md.Get("authorization") {
			if t.Allow(v) {
				return nil
			}
		}
		if rejected != nil {
			rejected()
		}
		return status.Error(codes.Unauthenticated, RejectMessage)
	}
	check := func(ctx context.Context) error {
		md, _ := metadata.FromIncomingContext(ctx)
		return allow(md)
	}
	return []grpc.ServerOption{
		grpc.InTapHandle(func(ctx context.Context, info *tap.Info) (context.Context, error) {
			return ctx, allow(info.Header)
		}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := check(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := check(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}
