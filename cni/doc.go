// Package cni is the Container Network Interface specification as a Go library:
// network configuration lists and plugin objects, results of every spec version
// (0.1.0 through 1.1.0) and the conversions between them, the error object and its
// well-known codes, CNI_ARGS parsing and the validation rules for container IDs,
// network names, interface names and plugin types.
//
// Results are held in one canonical in-memory form (the 1.1.0 shape, a superset of
// every older one) and encoded for a given version only when they are written; the
// lossy down-conversions of the spec happen in that encoding step.
package cni
