package nft

import (
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"strings"
)

// commentMax is the longest comment kept, as the reference plugins (knftables)
// cut theirs; the identifying hashes come first so a cut never loses them.
const commentMax = 128

// Attachment identifies one container attachment: the network, the container
// ID and the interface name inside the container (CNI_IFNAME).
type Attachment struct {
	Network     string
	ContainerID string
	IfName      string
}

// hash16 is the first 16 hex digits of sha512(s), the reference plugins' hash.
func hash16(s string) string {
	sum := sha512.Sum512([]byte(s))
	return hex.EncodeToString(sum[:8])
}

// NetworkKey is the hash that starts the comment of every object of network:
// the same value the reference nftables masquerade uses, so objects of both
// are found the same way.
func NetworkKey(network string) string { return hash16(network) }

// Key is the hash pair "<network>-<ifname:containerID>" that starts the
// comment of every object of the attachment (the reference's instance hash).
func (a Attachment) Key() string {
	return NetworkKey(a.Network) + "-" + hash16(a.IfName+":"+a.ContainerID)
}

// Comment is the comment put on the attachment's objects: its Key, then the
// names in clear, in the reference's format, cut at 128 characters.
func (a Attachment) Comment() string {
	clean := func(s string) string { return strings.ReplaceAll(s, `"`, "") }
	c := fmt.Sprintf("%s, net: %s, if: %s, id: %s", a.Key(), clean(a.Network), clean(a.IfName), clean(a.ContainerID))
	if len(c) > commentMax {
		c = c[:commentMax]
	}
	return c
}

// KeepSet is the set of attachment keys a GC request keeps.
type KeepSet map[string]bool

// NewKeepSet computes the keys of the attachments of network to keep.
func NewKeepSet(network string, keep []Attachment) KeepSet {
	set := KeepSet{}
	for _, a := range keep {
		a.Network = network
		set[a.Key()] = true
	}
	return set
}

// stale reports whether an object with comment belongs to network but not to
// an attachment in the set.
func (k KeepSet) stale(network, comment string) bool {
	prefix := NetworkKey(network) + "-"
	if !strings.HasPrefix(comment, prefix) || len(comment) < len(prefix)+16 {
		return false
	}
	return !k[comment[:len(prefix)+16]]
}
