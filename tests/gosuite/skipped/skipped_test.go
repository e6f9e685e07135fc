package skipped

import "testing"

func TestNeedsCluster(t *testing.T) {
	t.Skip("skipping: E2E_NAMESPACE is not set")
}

func TestRuns(t *testing.T) {}
