package main

import (
	"fmt"
	"os"
)

// runCLI is replaced by the cobra command tree.
func runCLI(args []string) int {
	fmt.Fprintln(os.Stderr, "cnikit: command-line runtime not built yet")
	return 2
}
