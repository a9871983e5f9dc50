package nft

import (
	"fmt"
	"net"

	"github.com/google/nftables"
)

// addrVerdictElement is the element type of a pair of maps from container
// address to verdict, one per family: the masquerade maps (MasqElement) and
// the firewall maps (FirewallElement).
type addrVerdictElement interface {
	~struct {
		IP      net.IP
		Chain   string
		Comment string
	}
}

// listAddrVerdicts returns every element of the maps, with the chain each
// one jumps to; none of a map (or table) that does not exist.
func listAddrVerdicts[E addrVerdictElement](c *Conn, maps ...*nftables.Set) ([]E, error) {
	var out []E
	for _, m := range maps {
		elems, err := c.nft.GetSetElements(m)
		if IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing nftables map %s %s: %w", TableName, m.Name, err)
		}
		for _, e := range elems {
			chain := ""
			if e.VerdictData != nil {
				chain = e.VerdictData.Chain
			} else {
				chain = verdictChain(e.Val)
			}
			out = append(out, E{IP: net.IP(append([]byte(nil), e.Key...)), Chain: chain, Comment: e.Comment})
		}
	}
	return out, nil
}

// familyMap returns, of a pair of maps keyed by address, the one of ip's
// family (m4 or m6), and ip as its key.
func familyMap(ip net.IP, m4, m6 *nftables.Set) (*nftables.Set, []byte) {
	if v4 := ip.To4(); v4 != nil {
		return m4, []byte(v4)
	}
	return m6, []byte(ip.To16())
}
