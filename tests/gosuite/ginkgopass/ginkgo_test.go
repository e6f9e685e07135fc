package ginkgopass

import (
	"fmt"
	"testing"
)

// TestGatewayE2E prints what a Ginkgo v2 suite prints under `go test -v`: Ginkgo runs every spec inside
// one Go test and reports its own counts in a summary line, with colours.
func TestGatewayE2E(t *testing.T) {
	fmt.Println("Running Suite: Gateway E2E Suite - /src/test/e2e/gateway")
	fmt.Println("===================================================================")
	fmt.Println("Random Seed: \x1b[1m1717171717\x1b[0m")
	fmt.Println("")
	fmt.Println("Will run \x1b[1m3\x1b[0m of \x1b[1m4\x1b[0m specs")
	fmt.Println("\x1b[38;5;10m•\x1b[0m\x1b[38;5;10m•\x1b[0m\x1b[38;5;14mS\x1b[0m\x1b[38;5;10m•\x1b[0m")
	fmt.Println("")
	fmt.Println("\x1b[38;5;10m\x1b[1mRan 3 of 4 Specs in 1.234 seconds\x1b[0m")
	fmt.Println("\x1b[38;5;10m\x1b[1mSUCCESS!\x1b[0m -- \x1b[38;5;10m\x1b[1m3 Passed\x1b[0m | \x1b[38;5;9m\x1b[1m0 Failed\x1b[0m | \x1b[38;5;11m\x1b[1m0 Pending\x1b[0m | \x1b[38;5;14m\x1b[1m1 Skipped\x1b[0m")
}
