package ipam

import "github.com/cnikit/cnikit/cni"

// Plugin-specific error codes (the spec leaves 100 and above to plugins). The
// well-known codes used besides these: 7 for configuration and requested
// addresses that cannot be valid, 11 for a requested address another
// attachment holds, 5 for store I/O failures, 50 for a failed STATUS.
const (
	// CodeRangeExhausted: a range set has no free address left.
	CodeRangeExhausted cni.Code = 100
	// CodeDuplicateAllocation: the attachment already holds an address in a
	// range set (ADD twice without DEL).
	CodeDuplicateAllocation cni.Code = 101
	// CodeAllocationMissing: CHECK found no reservation for the attachment.
	CodeAllocationMissing cni.Code = 102
)
