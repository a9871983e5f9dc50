package ipam

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
)

// plant writes a reservation file as the reference plugin does.
func plant(t *testing.T, dir, ip, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, ip), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// plantOwnerLinked writes a reservation as earlier cnikit versions did: the
// address file and its owner link, no index entry.
func plantOwnerLinked(t *testing.T, dir, ip string, att Attachment) {
	t.Helper()
	plant(t, dir, ip, att.ContainerID+"\r\n"+att.IfName)
	link, ok := ownerLink(netip.MustParseAddr(ip), att)
	if !ok {
		t.Fatalf("no owner link for %v", att)
	}
	if err := os.Link(filepath.Join(dir, ip), filepath.Join(dir, link)); err != nil {
		t.Fatal(err)
	}
}

// indexOf returns the target of att's index entry, or "" when it has none.
func indexOf(t *testing.T, dir string, att Attachment) string {
	t.Helper()
	name, _ := indexName(att)
	target, err := os.Readlink(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return target
}

// dirNames lists a store's entries other than lock and last_reserved_ip.N.
func dirNames(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.Name() != lockFileName && !strings.HasPrefix(e.Name(), lastReservedPrefix) {
			names = append(names, e.Name())
		}
	}
	return strings.Join(names, " ")
}

func TestIndexName(t *testing.T) {
	long := strings.Repeat("a", 234) // with ":e" and the prefix: NAME_MAX
	tests := []struct {
		name string
		att  Attachment
		want string // "" for no entry
	}{
		{"plain", Attachment{"c1", "eth0"}, ".cnikit-attachment:c1:eth0"},
		{"container ID trimmed as in the file", Attachment{" c1 ", "eth0"}, ".cnikit-attachment:c1:eth0"},
		{"longest plain name", Attachment{long, "e"}, ".cnikit-attachment:" + long + ":e"},
		{"too long: hashed", Attachment{long + "a", "e"}, hashedIndexPrefix + "51ccf26a750d9af277cc66999ddc4ea6657cd61cddc94a29c26f879d0667dfaf"},
		{"colon in the ID: hashed", Attachment{"a:b", "c"}, hashedIndexPrefix + "4ed08b0d3533b041d55a7abaa23da9dfdabe7c58644978d814b1abab869199cf"},
		{"slash in the interface: hashed", Attachment{"a", "b/c"}, hashedIndexPrefix + "ce4a0edd007ef8a93610c3b38b5ca85de29d164bb0061d42e4b5ad8e4498cd41"},
		{"old format owner", Attachment{"c1", ""}, ""},
		{"no container", Attachment{"", "eth0"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := indexName(tt.att)
			if ok != (tt.want != "") || got != tt.want {
				t.Errorf("indexName(%q, %q) = %q, %v; want %q", tt.att.ContainerID, tt.att.IfName, got, ok, tt.want)
			}
			if ok && (len(got) > maxNameLen || !isIndexName(got)) {
				t.Errorf("%q is not a valid index entry name", got)
			}
		})
	}
}

// TestStaleIndex: an index entry that no reservation confirms is not
// believed: ADD is no duplicate and rewrites it, DEL removes it and finds
// what the attachment really holds by reading the directory.
func TestStaleIndex(t *testing.T) {
	c1 := Attachment{"c1", "eth0"}
	// Each damage makes c1's entry, which lists v4 and v6, stale.
	tests := []struct {
		name   string
		damage func(t *testing.T, dir, v4, v6 string)
		others string // reservations of others that must stay
	}{
		{"address released by hand", func(t *testing.T, dir, v4, v6 string) {
			os.Remove(filepath.Join(dir, v4))
			os.Remove(filepath.Join(dir, v6))
		}, ""},
		{"released by a reference DEL, then reserved by another attachment", func(t *testing.T, dir, v4, v6 string) {
			plant(t, dir, v4, "other\r\neth0")
			plant(t, dir, v6, "other\r\neth0")
		}, "10.0.0.2=other/eth0 10.0.0.3=other/eth0 fd00::2=other/eth0 fd00::3=other/eth0"},
		{"not a symbolic link", func(t *testing.T, dir, v4, v6 string) {
			os.Remove(filepath.Join(dir, v4))
			os.Remove(filepath.Join(dir, v6))
			os.Remove(filepath.Join(dir, ".cnikit-attachment:c1:eth0"))
			plant(t, dir, ".cnikit-attachment:c1:eth0", v4)
		}, ""},
		{"target is not a list of addresses", func(t *testing.T, dir, v4, v6 string) {
			os.Remove(filepath.Join(dir, ".cnikit-attachment:c1:eth0"))
			os.Symlink(v4+",junk", filepath.Join(dir, ".cnikit-attachment:c1:eth0"))
			// The reservations themselves are gone too, lest the
			// second ADD be a true duplicate.
			os.Remove(filepath.Join(dir, v4))
			os.Remove(filepath.Join(dir, v6))
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			al := newAllocator(t, "10.0.0.0/24", "fd00::/120")
			dir := al.Store.Dir()
			if _, err := al.Allocate(c1, nil); err != nil {
				t.Fatal(err)
			}
			tt.damage(t, dir, "10.0.0.2", "fd00::2")
			listings := al.Store.listings
			leases, err := al.Allocate(c1, nil)
			if err != nil {
				t.Fatalf("ADD after the damage: %v", err)
			}
			if got := leaseString(leases); got != "10.0.0.3/24 gw 10.0.0.1, fd00::3/120 gw fd00::1" {
				t.Errorf("ADD got %s", got)
			}
			if got := indexOf(t, dir, c1); got != "10.0.0.3,fd00::3" {
				t.Errorf("index entry after ADD: %q", got)
			}
			tt.damage(t, dir, "10.0.0.3", "fd00::3") // the new entry goes stale the same way
			if err := al.Release(c1, nil); err != nil {
				t.Fatal(err)
			}
			if al.Store.listings == listings {
				t.Errorf("DEL with a stale index entry did not read the directory")
			}
			if left := allOwners(t, al); left != tt.others {
				t.Errorf("left %q, want %q", left, tt.others)
			}
			if left := dirNames(t, dir); strings.Contains(left, indexPrefix) {
				t.Errorf("index entry left: %s", left)
			}
		})
	}
}

// TestReleaseByIndex: DEL without a previous result finds the attachment's
// addresses through its index entry, without reading the directory, and
// leaves nothing of it behind. When the entry does not cover a range set,
// the directory is read for the rest.
func TestReleaseByIndex(t *testing.T) {
	al := newAllocator(t, "10.0.0.0/24", "fd00::/120")
	dir := al.Store.Dir()
	c1, c2 := Attachment{"c1", "eth0"}, Attachment{"c2", "eth0"}
	for _, att := range []Attachment{c1, c2} {
		if _, err := al.Allocate(att, nil); err != nil {
			t.Fatal(err)
		}
	}
	listings := al.Store.listings
	if err := al.Release(c2, nil); err != nil {
		t.Fatal(err)
	}
	if al.Store.listings != listings {
		t.Errorf("DEL with an index entry read the directory")
	}
	if left := dirNames(t, dir); left != ".cnikit-attachment:c1:eth0 10.0.0.2 fd00::2" {
		t.Errorf("left %s", left)
	}
	// c1's IPv6 reservation is replaced behind cnikit's back by one at
	// another address (a reference ADD after a reference DEL).
	os.Remove(filepath.Join(dir, "fd00::2"))
	plant(t, dir, "fd00::9", "c1\r\neth0")
	if err := al.Release(c1, nil); err != nil {
		t.Fatal(err)
	}
	if al.Store.listings != listings+1 {
		t.Errorf("DEL whose index entry misses a set listed %d times, want once", al.Store.listings-listings)
	}
	if left := dirNames(t, dir); left != "" {
		t.Errorf("left %s", left)
	}
}

// TestCheckByIndex: CHECK without a previous result finds the attachment's
// addresses through its index entry, without reading the directory.
func TestCheckByIndex(t *testing.T) {
	al := newAllocator(t, "10.0.0.0/24", "fd00::/120")
	c1 := Attachment{"c1", "eth0"}
	if _, err := al.Allocate(c1, nil); err != nil {
		t.Fatal(err)
	}
	listings := al.Store.listings
	if err := al.Check(c1, nil); err != nil {
		t.Fatal(err)
	}
	if al.Store.listings != listings {
		t.Errorf("CHECK with an index entry read the directory")
	}
	// An address released behind cnikit's back is missed, by the index and
	// by the directory.
	os.Remove(filepath.Join(al.Store.Dir(), "fd00::2"))
	if err := al.Check(c1, nil); cni.CodeOf(err) != CodeAllocationMissing || !strings.Contains(err.Error(), "ipam.ranges[1]") {
		t.Errorf("CHECK with the IPv6 reservation gone: %v", err)
	}
}

// TestMigrationFromOwnerLinks: reservations of an earlier cnikit version
// (address file and owner link, no index entry) are checked, released and
// collected by reading the directory; GC indexes those it keeps, after which
// ADD's duplicate check and DEL's direct release cover them.
func TestMigrationFromOwnerLinks(t *testing.T) {
	al := newAllocator(t, "10.0.0.0/24", "fd00::/120")
	dir := al.Store.Dir()
	c1, c2, c3 := Attachment{"c1", "eth0"}, Attachment{"c2", "eth0"}, Attachment{"c3", "eth0"}
	plantOwnerLinked(t, dir, "10.0.0.2", c1)
	plantOwnerLinked(t, dir, "fd00::2", c1)
	plantOwnerLinked(t, dir, "10.0.0.3", c2)
	plantOwnerLinked(t, dir, "fd00::3", c2)
	plantOwnerLinked(t, dir, "10.0.0.4", c3)
	plantOwnerLinked(t, dir, "fd00::4", c3)

	reads := al.Store.ownerReads
	if err := al.Check(c1, nil); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := al.Release(c2, nil); err != nil {
		t.Fatal(err)
	}
	if al.Store.ownerReads != reads {
		t.Errorf("read %d reservation files; the owner links tell their owners", al.Store.ownerReads-reads)
	}
	if left := allOwners(t, al); left != "10.0.0.2=c1/eth0 10.0.0.4=c3/eth0 fd00::2=c1/eth0 fd00::4=c3/eth0" {
		t.Errorf("after DEL of c2: %s", left)
	}
	if links, _ := filepath.Glob(filepath.Join(dir, ownerPrefix+"c2*")); len(links) != 0 {
		t.Errorf("c2's owner links left: %v", links)
	}

	if err := al.Store.Lock(); err != nil {
		t.Fatal(err)
	}
	released, err := al.Store.GC([]Attachment{c1})
	al.Store.Unlock()
	if err != nil || len(released) != 2 {
		t.Fatalf("GC released %v, %v; want c3's two addresses", released, err)
	}
	if got := indexOf(t, dir, c1); got != "10.0.0.2,fd00::2" {
		t.Errorf("GC indexed c1 as %q", got)
	}
	listings := al.Store.listings
	if _, err := al.Allocate(c1, nil); cni.CodeOf(err) != CodeDuplicateAllocation {
		t.Errorf("duplicate ADD of a migrated attachment: %v", err)
	}
	if err := al.Release(c1, nil); err != nil {
		t.Fatal(err)
	}
	if al.Store.listings != listings {
		t.Errorf("ADD and DEL of a migrated attachment read the directory")
	}
	if left := dirNames(t, dir); left != "" {
		t.Errorf("left %s", left)
	}
}

// TestReferenceAllocations: reservations a reference plugin made have no
// index entry. DEL without a previous result releases them by reading the
// directory, CHECK finds them the same way, and GC indexes those it keeps.
func TestReferenceAllocations(t *testing.T) {
	al := newAllocator(t, "10.0.0.0/24", "fd00::/120")
	dir := al.Store.Dir()
	r1, r2 := Attachment{"r1", "eth0"}, Attachment{"r2", "eth0"}
	plant(t, dir, "10.0.0.2", "r1\r\neth0")
	plant(t, dir, "fd00::2", "r1\r\neth0")
	plant(t, dir, "10.0.0.3", "r2\r\neth0")
	plant(t, dir, "fd00::3", "r2\r\neth0")
	if err := al.Check(r1, nil); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	listings := al.Store.listings
	if err := al.Release(r1, nil); err != nil {
		t.Fatal(err)
	}
	if al.Store.listings != listings+1 {
		t.Errorf("DEL of a reference allocation listed %d times, want once", al.Store.listings-listings)
	}
	if left := allOwners(t, al); left != "10.0.0.3=r2/eth0 fd00::3=r2/eth0" {
		t.Errorf("after DEL of r1: %s", left)
	}
	if err := al.Store.Lock(); err != nil {
		t.Fatal(err)
	}
	_, err := al.Store.GC([]Attachment{r2})
	al.Store.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if got := indexOf(t, dir, r2); got != "10.0.0.3,fd00::3" {
		t.Errorf("GC indexed r2 as %q", got)
	}
	if _, err := al.Allocate(r2, nil); cni.CodeOf(err) != CodeDuplicateAllocation {
		t.Errorf("duplicate ADD of an indexed reference allocation: %v", err)
	}
}

// TestGCIndex: GC removes the index entries of attachments that hold
// nothing after it, and rewrites those that do not list exactly what their
// attachment keeps.
func TestGCIndex(t *testing.T) {
	al := newAllocator(t, "10.0.0.0/24", "fd00::/120")
	dir := al.Store.Dir()
	keep, gone, wrong := Attachment{"keep", "eth0"}, Attachment{"gone", "eth0"}, Attachment{"wrong", "eth0"}
	for _, att := range []Attachment{keep, gone, wrong} {
		if _, err := al.Allocate(att, nil); err != nil {
			t.Fatal(err)
		}
	}
	// wrong's IPv4 address moved behind cnikit's back.
	os.Rename(filepath.Join(dir, "10.0.0.4"), filepath.Join(dir, "10.0.0.40"))
	// An entry without any reservation: a crash between DEL's steps.
	os.Symlink("10.0.0.9", filepath.Join(dir, ".cnikit-attachment:crashed:eth0"))
	if err := al.Store.Lock(); err != nil {
		t.Fatal(err)
	}
	_, err := al.Store.GC([]Attachment{keep, wrong})
	al.Store.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	want := ".cnikit-attachment:keep:eth0 .cnikit-attachment:wrong:eth0 10.0.0.2 10.0.0.40 fd00::2 fd00::4"
	if left := dirNames(t, dir); left != want {
		t.Errorf("after GC:\n got %s\nwant %s", left, want)
	}
	if got := indexOf(t, dir, keep); got != "10.0.0.2,fd00::2" {
		t.Errorf("keep's entry %q", got)
	}
	if got := indexOf(t, dir, wrong); got != "10.0.0.40,fd00::4" {
		t.Errorf("wrong's entry %q", got)
	}
}

// TestCrashLeftovers: what a process killed in the middle of ADD or DEL
// leaves behind disturbs nothing that follows.
func TestCrashLeftovers(t *testing.T) {
	c1 := Attachment{"c1", "eth0"}
	tests := []struct {
		name  string
		plant func(t *testing.T, dir string)
		// then runs after the plant and checks the outcome.
		then func(t *testing.T, al *Allocator)
	}{
		{"temporary reservation file (killed before its rename)", func(t *testing.T, dir string) {
			plant(t, dir, reservationTemp, "c9\r\neth0")
		}, func(t *testing.T, al *Allocator) {
			leases, err := al.Allocate(c1, nil)
			if err != nil || leaseString(leases) != "10.0.0.2/24 gw 10.0.0.1" {
				t.Fatalf("ADD: %s %v", leaseString(leases), err)
			}
			if left := dirNames(t, al.Store.Dir()); left != ".cnikit-attachment:c1:eth0 10.0.0.2" {
				t.Errorf("left %s", left)
			}
		}},
		{"index entry without reservation (killed between DEL's steps)", func(t *testing.T, dir string) {
			os.Symlink("10.0.0.2", filepath.Join(dir, ".cnikit-attachment:c1:eth0"))
		}, func(t *testing.T, al *Allocator) {
			if err := al.Release(c1, nil); err != nil {
				t.Fatal(err)
			}
			if left := dirNames(t, al.Store.Dir()); left != "" {
				t.Errorf("left after DEL %s", left)
			}
			os.Symlink("10.0.0.2", filepath.Join(al.Store.Dir(), ".cnikit-attachment:c1:eth0"))
			if _, err := al.Allocate(c1, nil); err != nil {
				t.Fatalf("ADD: %v", err)
			}
			if got := indexOf(t, al.Store.Dir(), c1); got != "10.0.0.2" {
				t.Errorf("index entry after ADD: %q", got)
			}
		}},
		{"reservation without index entry (killed before writing it)", func(t *testing.T, dir string) {
			plant(t, dir, "10.0.0.2", "c1\r\neth0")
		}, func(t *testing.T, al *Allocator) {
			// The runtime's DEL after the failed ADD finds it by reading
			// the directory.
			if err := al.Release(c1, nil); err != nil {
				t.Fatal(err)
			}
			if left := dirNames(t, al.Store.Dir()); left != "" {
				t.Errorf("left after DEL %s", left)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			al := newAllocator(t, "10.0.0.0/24")
			tt.plant(t, al.Store.Dir())
			tt.then(t, al)
		})
	}
}

// TestReferenceDelOfIndexedAllocation: with one range set the index entry
// resolves to the address file, so that the reference's DEL, which removes
// every file holding the attachment's content, removes the entry too.
func TestReferenceDelOfIndexedAllocation(t *testing.T) {
	al := newAllocator(t, "10.0.0.0/24")
	dir := al.Store.Dir()
	if _, err := al.Allocate(Attachment{"c1", "eth0"}, nil); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, ".cnikit-attachment:c1:eth0"))
	if err != nil || string(data) != "c1\r\neth0" {
		t.Errorf("reading through the entry: %q, %v; want the reservation's content", data, err)
	}
}

// TestIndexMergesRequested: an ADD with a requested address is not checked
// for duplicates, as in the reference; the attachment then holds two
// addresses of one set, its index entry lists both, and DEL releases both.
func TestIndexMergesRequested(t *testing.T) {
	al := newAllocator(t, "10.0.0.0/24")
	c1 := Attachment{"c1", "eth0"}
	if _, err := al.Allocate(c1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := al.Allocate(c1, addrs("10.0.0.5")); err != nil {
		t.Fatal(err)
	}
	if got := indexOf(t, al.Store.Dir(), c1); got != "10.0.0.5,10.0.0.2" {
		t.Errorf("index entry %q", got)
	}
	listings := al.Store.listings
	if err := al.Release(c1, nil); err != nil {
		t.Fatal(err)
	}
	if al.Store.listings != listings {
		t.Errorf("DEL read the directory")
	}
	if left := dirNames(t, al.Store.Dir()); left != "" {
		t.Errorf("left %s", left)
	}
}
