package passing

import "testing"

func TestAddition(t *testing.T) {
	if 2+2 != 4 {
		t.Fatal("arithmetic is broken")
	}
}

func TestTable(t *testing.T) {
	for _, name := range []string{"first", "second"} {
		t.Run(name, func(t *testing.T) {
			t.Logf("case %s ran", name)
		})
	}
}
