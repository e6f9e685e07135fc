package ginkgofail

import (
	"fmt"
	"testing"
)

// TestGatewayE2E prints what a failing Ginkgo v2 suite prints under `go test -v`, then fails the Go test
// as Ginkgo's RunSpecs does.
func TestGatewayE2E(t *testing.T) {
	fmt.Println("Running Suite: Gateway E2E Suite - /src/test/e2e/gateway")
	fmt.Println("Will run 3 of 3 specs")
	fmt.Println("\x1b[38;5;9m[FAIL] Gateway signal ingestion [It] creates a RemediationRequest for a firing alert\x1b[0m")
	fmt.Println("  /src/test/e2e/gateway/signals_test.go:88")
	fmt.Println("")
	fmt.Println("\x1b[38;5;9m\x1b[1mRan 3 of 3 Specs in 2.500 seconds\x1b[0m")
	fmt.Println("\x1b[38;5;9m\x1b[1mFAIL!\x1b[0m -- \x1b[38;5;10m\x1b[1m2 Passed\x1b[0m | \x1b[38;5;9m\x1b[1m1 Failed\x1b[0m | \x1b[38;5;11m\x1b[1m0 Pending\x1b[0m | \x1b[38;5;14m\x1b[1m0 Skipped\x1b[0m")
	t.Fail()
}
