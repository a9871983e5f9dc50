// Package rollback undoes what a plugin verb did before it failed, so that a
// failed ADD leaves nothing behind: each step that changes something is
// followed by the function that takes it back.
package rollback

// Steps are the undo functions of the steps taken so far, in order; append
// to it after each step.
type Steps []func()

// OnError runs the steps, last first, when *err is not nil. Defer it with the
// address of the verb's named error result:
//
//	var undo rollback.Steps
//	defer undo.OnError(&err)
func (s *Steps) OnError(err *error) {
	if *err == nil {
		return
	}
	for i := len(*s) - 1; i >= 0; i-- {
		(*s)[i]()
	}
}
