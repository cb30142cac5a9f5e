package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --cpuprofile and --memprofile: a path that cannot be written is refused
// before the run, naming the flag; good paths get both profiles.
func TestBenchProfilesRefuseBadPathsFirst(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "missing", "p.prof")
	if _, err := startProfiles("", bad); err == nil || !strings.Contains(err.Error(), "--memprofile") {
		t.Errorf("bad --memprofile: %v", err)
	}
	if _, err := startProfiles(bad, filepath.Join(dir, "m.prof")); err == nil || !strings.Contains(err.Error(), "--cpuprofile") {
		t.Errorf("bad --cpuprofile: %v", err)
	}
	cpu, mem := filepath.Join(dir, "c.prof"), filepath.Join(dir, "m2.prof")
	stop, err := startProfiles(cpu, mem)
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{cpu, mem} {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v, size %v", p, err, st)
		}
	}
}
