package tracker

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Limits of a location label (see Peer.Location and ValidLocation).
const (
	// MaxLocationSegments is the most segments a location has:
	// region/zone/rack needs three, and a few more leave room for sites
	// that nest deeper.
	MaxLocationSegments = 8
	// MaxLocationSegmentLen is the longest segment, in bytes: a DNS label's
	// limit, which Kubernetes label values share.
	MaxLocationSegmentLen = 63
	// MaxLocationLen is the longest location, in bytes.
	MaxLocationLen = 255
)

// ErrInvalidLocation is wrapped by the errors of ValidLocation.
var ErrInvalidLocation = errors.New("tracker: invalid location")

// ValidLocation reports whether loc is a valid location label, returning
// an error that wraps ErrInvalidLocation and names the problem if not.
//
// A location is where a peer sits in the network, from the widest part
// to the narrowest: "eu-west-1/eu-west-1a/rack7". It is 1 to
// MaxLocationSegments segments separated by "/", each 1 to
// MaxLocationSegmentLen bytes of ASCII letters, digits, '.', '_' and '-'
// (what Kubernetes label values are made of), at most MaxLocationLen
// bytes in all. Labels compare byte for byte: "EU" and "eu" differ. The
// empty string is valid and means unknown.
func ValidLocation(loc string) error {
	if msg := locationProblem(loc); msg != "" {
		return fmt.Errorf("%w %q: %s", ErrInvalidLocation, loc, msg)
	}
	return nil
}

// locationProblem returns what is wrong with loc, or "" if nothing is.
// It does not allocate for a valid loc: the server checks every announce's.
func locationProblem(loc string) string {
	if loc == "" {
		return ""
	}
	if len(loc) > MaxLocationLen {
		return fmt.Sprintf("%d bytes, at most %d allowed", len(loc), MaxLocationLen)
	}
	seg, start := 1, 0
	for i := 0; i <= len(loc); i++ {
		if i < len(loc) && loc[i] != '/' {
			if c := loc[i]; !locationByte(c) {
				return fmt.Sprintf("segment %d holds %q: want letters, digits, '.', '_' or '-'", seg, c)
			}
			continue
		}
		switch n := i - start; {
		case n == 0:
			return fmt.Sprintf("segment %d is empty", seg)
		case n > MaxLocationSegmentLen:
			return fmt.Sprintf("segment %d is %d bytes, at most %d allowed", seg, n, MaxLocationSegmentLen)
		}
		if i < len(loc) {
			if seg++; seg > MaxLocationSegments {
				return fmt.Sprintf("more than %d segments", MaxLocationSegments)
			}
		}
		start = i + 1
	}
	return ""
}

func locationByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

// affinity is the number of leading segments the locations a and b share:
// 0 if either is unknown, the number of segments of both if they are
// equal. Both must be valid.
func affinity(a, b string) int {
	if a == "" || b == "" {
		return 0
	}
	n := 0
	for {
		ia, ib := strings.IndexByte(a, '/'), strings.IndexByte(b, '/')
		sa, sb := a, b
		if ia >= 0 {
			sa = a[:ia]
		}
		if ib >= 0 {
			sb = b[:ib]
		}
		if sa != sb {
			return n
		}
		n++
		if ia < 0 || ib < 0 {
			return n
		}
		a, b = a[ia+1:], b[ib+1:]
	}
}

// LocationRule gives a location to the peers whose address is in Prefix
// and that announce none themselves (Config.Locations). In the eagle
// binary's YAML: {cidr: 10.1.0.0/16, location: eu-west-1/eu-west-1a}.
type LocationRule struct {
	// Prefix is the network the rule covers, for example 10.1.0.0/16.
	// Its host bits are ignored.
	Prefix netip.Prefix `yaml:"cidr"`
	// Location is the label its peers get (see ValidLocation); not empty.
	Location string `yaml:"location"`
}

// validateLocations reports the problems of rules, naming each as the
// YAML key locations[i].cidr or locations[i].location.
func validateLocations(rules []LocationRule) []error {
	var errs []error
	seen := make(map[netip.Prefix]int, len(rules))
	for i, r := range rules {
		if !r.Prefix.IsValid() {
			errs = append(errs, fmt.Errorf("locations[%d].cidr: missing or invalid (want a network such as 10.1.0.0/16)", i))
		} else if j, dup := seen[r.Prefix.Masked()]; dup {
			errs = append(errs, fmt.Errorf("locations[%d].cidr %s: given twice (also locations[%d])", i, r.Prefix, j))
		} else {
			seen[r.Prefix.Masked()] = i
		}
		if r.Location == "" {
			errs = append(errs, fmt.Errorf("locations[%d].location: missing", i))
		} else if msg := locationProblem(r.Location); msg != "" {
			errs = append(errs, fmt.Errorf("locations[%d].location %q: %s", i, r.Location, msg))
		}
	}
	return errs
}

// locator finds the location of an address by the longest matching
// prefix of Config.Locations.
type locator []LocationRule

// newLocator returns the locator of valid rules: masked, longest prefix
// first, so that the first match is the longest. IPv4-mapped IPv6
// prefixes are unmapped, as the server unmaps addresses.
func newLocator(rules []LocationRule) locator {
	l := make(locator, 0, len(rules))
	for _, r := range rules {
		p := r.Prefix.Masked()
		if a := p.Addr(); a.Is4In6() {
			if bits := p.Bits() - 96; bits >= 0 {
				p = netip.PrefixFrom(a.Unmap(), bits)
			}
		}
		l = append(l, LocationRule{Prefix: p, Location: r.Location})
	}
	slices.SortStableFunc(l, func(a, b LocationRule) int { return b.Prefix.Bits() - a.Prefix.Bits() })
	return l
}

// locate returns the location of addr, or "" if no rule covers it.
func (l locator) locate(addr netip.Addr) string {
	addr = addr.Unmap()
	for _, r := range l {
		if r.Prefix.Contains(addr) {
			return r.Location
		}
	}
	return ""
}
