package nft

import (
	"encoding/binary"
	"fmt"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// google/nftables does not report how many references a chain has; the
// kernel does (NFTA_CHAIN_USE), so this one request is made directly.

// nfgenmsg is the nfnetlink header: family, version, resource id.
type nfgenmsg struct{ family uint8 }

func (m nfgenmsg) Len() int          { return 4 }
func (m nfgenmsg) Serialize() []byte { return []byte{m.family, unix.NFNETLINK_V0, 0, 0} }

// ChainInfo is what the kernel says of a chain besides its rules.
type ChainInfo struct {
	// Use counts the chain's rules and everything that jumps to it.
	Use uint32
	// Policy is the verdict of a base chain (NF_DROP 0 or NF_ACCEPT 1),
	// nil for a regular chain.
	Policy *uint32
}

// LookupChain asks the calling thread's network namespace for one chain of
// any table and family (unix.NFPROTO_*), with one request on a blocking
// socket: cheaper than a google/nftables connection for a single question.
// It returns false when the table or chain does not exist.
func LookupChain(family uint8, table, name string) (ChainInfo, bool, error) {
	req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETCHAIN, unix.NLM_F_ACK)
	req.AddData(nfgenmsg{family: family})
	req.AddData(nl.NewRtAttr(unix.NFTA_CHAIN_TABLE, nl.ZeroTerminated(table)))
	req.AddData(nl.NewRtAttr(unix.NFTA_CHAIN_NAME, nl.ZeroTerminated(name)))
	msgs, err := req.Execute(unix.NETLINK_NETFILTER, 0)
	if IsNotFound(err) {
		return ChainInfo{}, false, nil
	}
	if err != nil {
		return ChainInfo{}, false, fmt.Errorf("looking up nftables chain %s %s: %w", table, name, err)
	}
	var info ChainInfo
	for _, m := range msgs {
		if len(m) < 4 {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[4:])
		if err != nil {
			return ChainInfo{}, false, err
		}
		for _, a := range attrs {
			switch {
			case a.Attr.Type == unix.NFTA_CHAIN_USE && len(a.Value) == 4:
				info.Use = binary.BigEndian.Uint32(a.Value)
			case a.Attr.Type == unix.NFTA_CHAIN_POLICY && len(a.Value) == 4:
				p := binary.BigEndian.Uint32(a.Value)
				info.Policy = &p
			}
		}
	}
	return info, true, nil
}

// IsolationReferences returns how many container addresses jump to the
// bridge's isolation chain (its use count less its one rule), and whether
// the chain exists. DEL uses it to release the bridge in the same batch as
// its last container's elements, without a batch that fails.
func (c *Conn) IsolationReferences(bridge string) (int, bool, error) {
	info, exists, err := LookupChain(unix.NFPROTO_INET, TableName, IsolationChain(bridge))
	if err != nil || !exists {
		return 0, exists, err
	}
	return int(info.Use) - 1, true, nil
}
