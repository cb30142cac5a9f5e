package mysql

import (
	"strings"
	"testing"
)

func TestCheckVersion(t *testing.T) {
	for version, ok := range map[string]bool{
		"10.11.6-MariaDB-0+deb12u1": true,
		"10.6.16-MariaDB":           true,
		"10.5.23-MariaDB":           false,
		"11.4.2-MariaDB-ubu2404":    true,
		"8.0.36":                    true,
		"8.0.12":                    false,
		"8.4.0":                     true,
		"9.1.0":                     true,
		"5.7.44-log":                false,
		"5.5.5-10.11.6-MariaDB":     true, // MariaDB's old replication prefix
	} {
		err := checkVersion(version)
		if (err == nil) != ok {
			t.Errorf("checkVersion(%q) = %v, want ok=%v", version, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "SKIP LOCKED") {
			t.Errorf("checkVersion(%q) = %v; want it to say why", version, err)
		}
	}
}
