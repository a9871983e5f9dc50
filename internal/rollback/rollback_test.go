package rollback

import (
	"errors"
	"slices"
	"testing"
)

func TestOnError(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want []int // the steps undone, in order
	}{
		{"success undoes nothing", nil, nil},
		{"failure undoes every step, last first", errors.New("failed"), []int{3, 2, 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var undone []int
			verb := func() (err error) {
				var undo Steps
				defer undo.OnError(&err)
				for i := 1; i <= 3; i++ {
					undo = append(undo, func() { undone = append(undone, i) })
				}
				return tc.err
			}
			if err := verb(); err != tc.err {
				t.Fatalf("verb returned %v, want %v", err, tc.err)
			}
			if !slices.Equal(undone, tc.want) {
				t.Errorf("undone %v, want %v", undone, tc.want)
			}
		})
	}
}
