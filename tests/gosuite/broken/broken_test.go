package broken

import "testing"

// This file does not compile on purpose: the suite must report a build failure, not "0 tests, ok".
func TestDoesNotCompile(t *testing.T) {
	var count int = "three"
	_ = count
}
