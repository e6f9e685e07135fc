package hang

import (
	"os"
	"testing"
	"time"
)

func TestFinishes(t *testing.T) {}

// TestHangs outlives `go test -timeout`, unless GOSUITE_HANG is unset (then it is skipped), so the
// suite's handling of a test that never finished can be checked.
func TestHangs(t *testing.T) {
	if os.Getenv("GOSUITE_HANG") == "" {
		t.Skip("GOSUITE_HANG is not set")
	}
	time.Sleep(time.Minute)
}
