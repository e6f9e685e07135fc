// Package gosuite is a small Go test module, run by the real `go test -json` in the project's tests
// (tests/test_real_gotest.py) to check how `invoke e2e.test` counts and reports a real suite:
// passing, failing, skipped and not-compiling packages, and Ginkgo-style output printed by plain tests.
// Standard library only, so it builds without a network.
package gosuite
