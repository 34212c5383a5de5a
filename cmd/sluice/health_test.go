package main

import (
	"strings"
	"testing"
)

// TestHealth proves sluice health, the container's HEALTHCHECK: exit 0 when the server
// answers its health endpoint, given as URL or, with none, found from SLUICE_ADDR as
// sluice serve would listen; 1 with one line when it answers otherwise; 7 when it cannot
// be connected to.
func TestHealth(t *testing.T) {
	addr := freeAddr(t)
	srv := startSluice(t, addr, t.TempDir())
	down := "http://" + freeAddr(t) + "/health"
	for _, tt := range []struct {
		args []string
		env  string
		code int
		msg  string
	}{
		{[]string{"health", srv.url + "/health"}, "", 0, ""},
		{[]string{"health", srv.url + "/readyz"}, "", 0, ""},
		{[]string{"health"}, "SLUICE_ADDR=" + addr, 0, ""},
		{[]string{"health", "--timeout=2s", srv.url + "/no-such-thing"}, "", 1, "404"},
		{[]string{"health", down}, "", 7, "refused"},
	} {
		cmd := sluiceCmd(t.Context(), t.TempDir(), tt.args...)
		if tt.env != "" {
			cmd.Env = append(cmd.Env, tt.env)
		}
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		code := exitStatus(t, cmd.Run())
		if code != tt.code || stdout.Len() != 0 || strings.Count(stderr.String(), "\n") != min(tt.code, 1) || !strings.Contains(stderr.String(), tt.msg) {
			t.Errorf("%v %s: exit %d, stdout %q, stderr %q; want %d and %q", tt.args, tt.env, code, stdout.String(), stderr.String(), tt.code, tt.msg)
		}
	}
}
