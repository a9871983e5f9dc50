// Package invoke finds and executes CNI plugin binaries: the one place where
// cnikit's runtime library and its delegating plugins start another plugin.
//
// Lookup cannot be tricked into running a file outside the search path: the
// plugin type must be a bare name, only a regular executable file counts, and a
// root runtime refuses a binary that someone other than root could have
// replaced. Execution honours the context deadline (the plugin and everything
// it started are killed), retries a binary that is being replaced ("text file
// busy"), forwards the plugin's stderr, and turns a failed plugin's stdout into
// its *cni.Error.
package invoke
