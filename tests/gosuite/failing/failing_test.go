package failing

import "testing"

func TestGatewayAcceptsSignal(t *testing.T) {
	got, want := 503, 201
	if got != want {
		t.Errorf("POST /api/v1/signals/prometheus: status %d, want %d", got, want)
	}
}

func TestStillPasses(t *testing.T) {}

func TestWithSubtests(t *testing.T) {
	t.Run("ok", func(t *testing.T) {})
	t.Run("broken", func(t *testing.T) { t.Fatal("subtest failure: redis unreachable") })
}
