// Package interop proves cnikit against programs nobody here wrote: the
// reference runtime library (libcni) drives cnikit's plugins, cnikit's runtime
// drives the reference plugins, and real container runtimes use cnikit. It is
// a module of its own so that the main module keeps no test-only dependencies.
package interop
