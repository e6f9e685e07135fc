package panics

import "testing"

func TestBeforeThePanic(t *testing.T) {}

// TestPanics dies of a runtime panic: the package stops there and the panic's text is the failure.
func TestPanics(t *testing.T) {
	var seen map[string]int
	seen["gateway"]++
}
