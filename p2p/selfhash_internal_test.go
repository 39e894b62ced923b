package p2p

import (
	"testing"
)

// TestSelfHash: a piece the wire filled passes anacrolix's check (the
// SHA-1 in the info comes back) exactly when its bytes are right, with the
// piece chain or without; with the chain, a piece that passed is chained
// and stays complete, so the commit adopts the blob without hashing the
// pieces again, and the wire's chunks for it are dropped from then on.
func TestSelfHash(t *testing.T) {
	for _, withChain := range []bool{true, false} {
		c := newChainDownload(t)
		if !withChain {
			c.ent.data.setChain(nil)
		}
		n := c.info.NumPieces()
		for i := range n {
			p := pieceData{d: c.ent.data, p: c.info.Piece(i)}
			want := c.info.Piece(i).V1Hash().Unwrap()

			bad := c.piece(i)
			bad[len(bad)/2] ^= 1
			c.write(i, bad)
			if got, err := p.SelfHash(); err != nil || got == want {
				t.Fatalf("chain %v, piece %d with a wrong byte: SelfHash = %x, %v; want another hash than the info's", withChain, i, got, err)
			}
			if c.ent.data.isComplete(i) || c.ent.data.isChained(i) {
				t.Fatalf("chain %v, piece %d with a wrong byte: complete %v, chained %v", withChain, i, c.ent.data.isComplete(i), c.ent.data.isChained(i))
			}

			c.write(i, c.piece(i))
			if got, err := p.SelfHash(); err != nil || got != want {
				t.Fatalf("chain %v, piece %d: SelfHash = %x, %v; want the info's %x", withChain, i, got, err, want)
			}
			if withChain {
				if !c.ent.data.isComplete(i) || !c.ent.data.isChained(i) {
					t.Fatalf("piece %d passed the chain: complete %v, chained %v; want both", i, c.ent.data.isComplete(i), c.ent.data.isChained(i))
				}
				// anacrolix marking it incomplete (a later hash failed)
				// and the wire writing into it change nothing.
				p.MarkNotComplete()
				c.write(i, bad)
			} else {
				p.MarkComplete()
			}
		}
		a := &keepAdopter{}
		if err := c.adopt(a); err != nil {
			t.Fatalf("chain %v: %v", withChain, err)
		}
		if string(a.got) != string(c.data) {
			t.Fatalf("chain %v: the adopted file is not the blob", withChain)
		}
	}
}

// write writes b into piece i in 16 KiB chunks, as the peer wire does.
func (c *chainDownload) write(i int, b []byte) {
	p := pieceData{d: c.ent.data, p: c.info.Piece(i)}
	for off := 0; off < len(b); off += 16 << 10 {
		p.WriteAt(b[off:min(len(b), off+16<<10)], int64(off))
	}
}
