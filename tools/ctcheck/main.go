// Command ctcheck checks TrustChain's Certificate Transparency artefacts with implementations that
// are not TrustChain's: certificate-transparency-go (SCTs, Merkle tree leaves, precertificates),
// transparency-dev/merkle (inclusion proofs), transparency-dev/formats (RFC 6962 checkpoint
// signatures, C2SP static-ct-api) and tessera's tlog-tiles client (tiles, root recomputation).
//
// It reads one JSON request on stdin and writes one JSON answer on stdout; any failed check
// exits with status 1 and the reason on stderr. The TrustChain tests run it; `make` builds it
// into build/bin/ctcheck.
//
//	ctcheck sct        {"chain": [leaf, issuer], "logKey": spki}
//	ctcheck inclusion  {"chain": [leaf, issuer], "logVkey": vkey, "checkpoint": note,
//	                    "leafIndex": n, "proof": [hash...]}
//	ctcheck monitor    {"url": prefix, "logVkey": vkey, "chain": [leaf, issuer]}
//
// Binary values are standard base64.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	ct "github.com/google/certificate-transparency-go"
	"github.com/google/certificate-transparency-go/ctutil"
	ctx509 "github.com/google/certificate-transparency-go/x509"
	"github.com/google/certificate-transparency-go/x509util"
	tnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/mod/sumdb/note"
)

type request struct {
	Chain      [][]byte `json:"chain"`
	LogKey     []byte   `json:"logKey"`
	LogVkey    string   `json:"logVkey"`
	Checkpoint string   `json:"checkpoint"`
	LeafIndex  uint64   `json:"leafIndex"`
	Proof      [][]byte `json:"proof"`
	URL        string   `json:"url"`
}

func main() {
	if len(os.Args) != 2 {
		fail(errors.New("usage: ctcheck sct|inclusion|monitor < request.json"))
	}
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fail(fmt.Errorf("bad request: %w", err))
	}
	var out any
	var err error
	switch os.Args[1] {
	case "sct":
		out, err = checkSCTs(req)
	case "inclusion":
		out, err = checkInclusion(req)
	case "monitor":
		out, err = monitor(req)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "ctcheck:", err)
	os.Exit(1)
}

// parseChain parses DER certificates with certificate-transparency-go's x509 (which keeps the
// SCT list and knows precertificates).
func parseChain(ders [][]byte) ([]*ctx509.Certificate, error) {
	if len(ders) < 2 {
		return nil, errors.New("chain needs the leaf and its issuer")
	}
	chain := make([]*ctx509.Certificate, len(ders))
	for i, d := range ders {
		c, err := ctx509.ParseCertificate(d)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", i, err)
		}
		chain[i] = c
	}
	return chain, nil
}

// leafIndex reads the static-ct-api leaf_index extension from CtExtensions.
func leafIndex(ext ct.CTExtensions) (uint64, error) {
	s := cryptobyte.String(ext)
	for !s.Empty() {
		var typ uint8
		var data cryptobyte.String
		if !s.ReadUint8(&typ) || !s.ReadUint16LengthPrefixed(&data) {
			return 0, errors.New("malformed CtExtensions")
		}
		if typ == 0 {
			if len(data) != 5 {
				return 0, errors.New("malformed leaf_index")
			}
			var idx uint64
			for _, b := range data {
				idx = idx<<8 | uint64(b)
			}
			return idx, nil
		}
	}
	return 0, errors.New("no leaf_index extension")
}

type sctResult struct {
	LogID     []byte `json:"logId"`
	Timestamp uint64 `json:"timestamp"`
	LeafIndex uint64 `json:"leafIndex"`
	LeafHash  []byte `json:"leafHash"`
}

// embeddedSCTs verifies every embedded SCT of chain[0] against the log key (ctutil.VerifySCT
// rebuilds the precertificate entry) and returns them with the Merkle leaf hash each stands for.
func embeddedSCTs(chain []*ctx509.Certificate, logKey []byte) ([]sctResult, error) {
	pub, err := ctx509.ParsePKIXPublicKey(logKey)
	if err != nil {
		return nil, fmt.Errorf("log key: %w", err)
	}
	logID := sha256.Sum256(logKey)
	scts, err := x509util.ParseSCTsFromSCTList(&chain[0].SCTList)
	if err != nil {
		return nil, fmt.Errorf("SCT list: %w", err)
	}
	if len(scts) == 0 {
		return nil, errors.New("the certificate embeds no SCT")
	}
	var out []sctResult
	for _, sct := range scts {
		if sct.SCTVersion != ct.V1 {
			return nil, errors.New("SCT is not version 1")
		}
		if sct.LogID.KeyID != logID {
			return nil, errors.New("SCT log ID is not SHA-256 of the log key's SubjectPublicKeyInfo")
		}
		if err := ctutil.VerifySCT(pub, chain, sct, true); err != nil {
			return nil, fmt.Errorf("SCT does not verify: %w", err)
		}
		idx, err := leafIndex(sct.Extensions)
		if err != nil {
			return nil, err
		}
		leaf, err := ct.MerkleTreeLeafForEmbeddedSCT(chain, sct.Timestamp)
		if err != nil {
			return nil, err
		}
		// A static-ct-api log's entries carry the SCT's extensions (the leaf index).
		leaf.TimestampedEntry.Extensions = sct.Extensions
		hash, err := ct.LeafHashForLeaf(leaf)
		if err != nil {
			return nil, err
		}
		out = append(out, sctResult{logID[:], sct.Timestamp, idx, hash[:]})
	}
	return out, nil
}

func checkSCTs(req request) (any, error) {
	chain, err := parseChain(req.Chain)
	if err != nil {
		return nil, err
	}
	scts, err := embeddedSCTs(chain, req.LogKey)
	if err != nil {
		return nil, err
	}
	return map[string]any{"scts": scts}, nil
}

type treeHead struct {
	Origin    string `json:"origin"`
	Size      uint64 `json:"size"`
	Root      []byte `json:"root"`
	Timestamp int64  `json:"timestamp"`
}

// openCheckpoint verifies a checkpoint's RFC 6962 note signature (static-ct-api) with
// transparency-dev/formats and parses its body with x/mod's note package.
func openCheckpoint(text []byte, vkey string) (treeHead, error) {
	v, err := tnote.NewRFC6962Verifier(vkey)
	if err != nil {
		return treeHead{}, fmt.Errorf("log vkey: %w", err)
	}
	n, err := note.Open(text, note.VerifierList(v))
	if err != nil {
		return treeHead{}, fmt.Errorf("checkpoint: %w", err)
	}
	// The RFC6962NoteSignature starts with the tree head's uint64 timestamp (ms), after the key ID.
	sig, err := base64.StdEncoding.DecodeString(n.Sigs[0].Base64)
	if err != nil || len(sig) < 12 {
		return treeHead{}, errors.New("malformed RFC 6962 note signature")
	}
	timestamp := int64(binary.BigEndian.Uint64(sig[4:12]))
	var origin, root string
	var size uint64
	if _, err := fmt.Sscanf(n.Text, "%s\n%d\n%s\n", &origin, &size, &root); err != nil {
		return treeHead{}, fmt.Errorf("checkpoint body: %w", err)
	}
	if origin != v.Name() {
		return treeHead{}, errors.New("checkpoint origin is not the log's name")
	}
	rootHash, err := base64.StdEncoding.DecodeString(root)
	if err != nil || len(rootHash) != 32 {
		return treeHead{}, errors.New("checkpoint root is not a SHA-256 hash")
	}
	return treeHead{origin, size, rootHash, timestamp}, nil
}

// certificateSCTs verifies the embedded SCTs of the request's chain against the log of its vkey.
func certificateSCTs(req request) ([]sctResult, error) {
	chain, err := parseChain(req.Chain)
	if err != nil {
		return nil, err
	}
	key, err := vkeyPublicKey(req.LogVkey)
	if err != nil {
		return nil, err
	}
	return embeddedSCTs(chain, key)
}

func checkInclusion(req request) (any, error) {
	scts, err := certificateSCTs(req)
	if err != nil {
		return nil, err
	}
	head, err := openCheckpoint([]byte(req.Checkpoint), req.LogVkey)
	if err != nil {
		return nil, err
	}
	if scts[0].LeafIndex != req.LeafIndex {
		return nil, errors.New("the proof is not for the SCT's leaf index")
	}
	err = proof.VerifyInclusion(rfc6962.DefaultHasher, req.LeafIndex, head.Size, scts[0].LeafHash, req.Proof, head.Root)
	if err != nil {
		return nil, fmt.Errorf("inclusion proof: %w", err)
	}
	return map[string]any{"treeHead": head, "leafHash": scts[0].LeafHash}, nil
}

// vkeyPublicKey returns the SubjectPublicKeyInfo inside an RFC 6962 (0x05) vkey.
func vkeyPublicKey(vkey string) ([]byte, error) {
	parts := bytes.SplitN([]byte(vkey), []byte("+"), 3)
	if len(parts) != 3 {
		return nil, errors.New("malformed vkey")
	}
	raw, err := base64.StdEncoding.DecodeString(string(parts[2]))
	if err != nil || len(raw) < 2 || raw[0] != 0x05 {
		return nil, errors.New("vkey is not an RFC 6962 (0x05) key")
	}
	return raw[1:], nil
}

type fetcher struct {
	base *url.URL
	http *http.Client
}

func (f fetcher) get(ctx context.Context, path string) ([]byte, error) {
	u := f.base.JoinPath(path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	res, err := f.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, res.Status)
	}
	return body, nil
}

type entryResult struct {
	Index     uint64   `json:"index"`
	Timestamp uint64   `json:"timestamp"`
	Serial    string   `json:"serial"`
	DNSNames  []string `json:"dnsNames"`
}

// monitor reads the log as a static-ct-api monitor: verifies the checkpoint, recomputes the root
// from the hash tiles, reads every entry from the data tiles, checks each against the level-0
// tile hashes and its precertificate, fetches the issuers, and finally proves the given
// certificate's SCT entry included with a proof built from the tiles.
func monitor(req request) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base, err := url.Parse(req.URL)
	if err != nil {
		return nil, err
	}
	f := fetcher{base, &http.Client{Timeout: 30 * time.Second}}
	cp, err := f.get(ctx, layout.CheckpointPath)
	if err != nil {
		return nil, err
	}
	head, err := openCheckpoint(cp, req.LogVkey)
	if err != nil {
		return nil, err
	}
	tiles := func(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
		return f.get(ctx, layout.TilePath(level, index, p))
	}

	// The root, from the tiles alone (tessera's client fetches the nodes of the compact range).
	nodes, err := client.FetchRangeNodes(ctx, head.Size, tiles)
	if err != nil {
		return nil, fmt.Errorf("range nodes: %w", err)
	}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	rng, err := rf.NewRange(0, head.Size, nodes)
	if err != nil {
		return nil, err
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(root, head.Root) {
		return nil, errors.New("the tiles do not hash to the checkpoint's root")
	}

	// Every entry, from the data tiles, against the leaf hashes of the level-0 tiles.
	leafHashes, err := client.FetchLeafHashes(ctx, tiles, 0, head.Size, head.Size)
	if err != nil {
		return nil, fmt.Errorf("leaf hashes: %w", err)
	}
	issuers := map[[32]byte][]byte{}
	var entries []entryResult
	for n := uint64(0); n*layout.EntryBundleWidth < head.Size; n++ {
		width := layout.PartialTileSize(0, n, head.Size)
		data, err := f.get(ctx, "tile/data/"+layout.NWithSuffix(0, n, width))
		if err != nil {
			return nil, err
		}
		s := cryptobyte.String(data)
		for !s.Empty() {
			index := uint64(len(entries))
			e, err := readTileLeaf(&s, index)
			if err != nil {
				return nil, fmt.Errorf("entry %d: %w", index, err)
			}
			if index >= head.Size || !bytes.Equal(e.leafHash[:], leafHashes[index]) {
				return nil, fmt.Errorf("entry %d does not hash to its level-0 tile hash", index)
			}
			for _, fp := range e.chain {
				if _, ok := issuers[fp]; !ok {
					der, err := f.get(ctx, "issuer/"+hex.EncodeToString(fp[:]))
					if err != nil {
						return nil, err
					}
					if sha256.Sum256(der) != fp {
						return nil, errors.New("an issuer does not hash to its fingerprint")
					}
					issuers[fp] = der
				}
			}
			entries = append(entries, e.result)
		}
	}
	if uint64(len(entries)) != head.Size {
		return nil, fmt.Errorf("data tiles hold %d entries, the checkpoint %d", len(entries), head.Size)
	}

	// The given certificate: its SCT's entry, proven included with a proof built from tiles.
	out := map[string]any{"treeHead": head, "entries": entries, "issuers": len(issuers)}
	if len(req.Chain) > 0 {
		scts, err := certificateSCTs(req)
		if err != nil {
			return nil, err
		}
		idx := scts[0].LeafIndex
		if idx >= head.Size || !bytes.Equal(scts[0].LeafHash, leafHashes[idx]) {
			return nil, errors.New("the certificate's SCT entry is not the log's entry at its index")
		}
		pb, err := client.NewProofBuilder(ctx, head.Size, tiles)
		if err != nil {
			return nil, err
		}
		path, err := pb.InclusionProof(ctx, idx)
		if err != nil {
			return nil, err
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, idx, head.Size, scts[0].LeafHash, path, head.Root); err != nil {
			return nil, fmt.Errorf("inclusion proof from tiles: %w", err)
		}
		out["certificate"] = map[string]any{"leafIndex": idx, "proof": path}
	}
	return out, nil
}

type tileEntry struct {
	leafHash [32]byte
	chain    [][32]byte
	result   entryResult
}

// readTileLeaf reads one static-ct-api TileLeaf: the TimestampedEntry is decoded by
// certificate-transparency-go, the rest with cryptobyte, and the precertificate is checked to be
// the entry's TBSCertificate plus the poison extension.
func readTileLeaf(s *cryptobyte.String, index uint64) (tileEntry, error) {
	start := []byte(*s)
	var timestamp uint64
	var entryType uint16
	if !s.ReadUint64(&timestamp) || !s.ReadUint16(&entryType) {
		return tileEntry{}, errors.New("truncated entry")
	}
	if entryType != uint16(ct.PrecertLogEntryType) {
		return tileEntry{}, errors.New("not a precertificate entry")
	}
	var issuerKeyHash []byte
	var tbs, extensions, pre, fingerprints cryptobyte.String
	if !s.ReadBytes(&issuerKeyHash, 32) || !s.ReadUint24LengthPrefixed(&tbs) ||
		!s.ReadUint16LengthPrefixed(&extensions) {
		return tileEntry{}, errors.New("truncated TimestampedEntry")
	}
	teBytes := start[:len(start)-len(*s)]
	if !s.ReadUint24LengthPrefixed(&pre) || !s.ReadUint16LengthPrefixed(&fingerprints) {
		return tileEntry{}, errors.New("truncated precertificate data")
	}
	var te ct.TimestampedEntry
	if rest, err := ctTLSUnmarshal(teBytes, &te); err != nil || len(rest) != 0 {
		return tileEntry{}, fmt.Errorf("TimestampedEntry: %v", err)
	}
	idx, err := leafIndex(te.Extensions)
	if err != nil {
		return tileEntry{}, err
	}
	if idx != index {
		return tileEntry{}, fmt.Errorf("leaf_index %d at position %d", idx, index)
	}
	leaf := ct.MerkleTreeLeaf{Version: ct.V1, LeafType: ct.TimestampedEntryLeafType, TimestampedEntry: &te}
	hash, err := ct.LeafHashForLeaf(&leaf)
	if err != nil {
		return tileEntry{}, err
	}
	precert, err := ctx509.ParseCertificate(pre)
	if err != nil && !errors.As(err, new(ctx509.NonFatalErrors)) {
		return tileEntry{}, fmt.Errorf("precertificate: %w", err)
	}
	if !precert.IsPrecertificate() {
		return tileEntry{}, errors.New("pre_certificate lacks the poison extension")
	}
	defanged, err := ctx509.RemoveCTPoison(precert.RawTBSCertificate)
	if err != nil {
		return tileEntry{}, err
	}
	if !bytes.Equal(defanged, te.PrecertEntry.TBSCertificate) {
		return tileEntry{}, errors.New("the entry's TBSCertificate is not the precertificate's without poison")
	}
	var chain [][32]byte
	for !fingerprints.Empty() {
		var fp [32]byte
		if !fingerprints.CopyBytes(fp[:]) {
			return tileEntry{}, errors.New("truncated fingerprint")
		}
		chain = append(chain, fp)
	}
	return tileEntry{hash, chain, entryResult{
		Index:     index,
		Timestamp: te.Timestamp,
		Serial:    precert.SerialNumber.Text(16),
		DNSNames:  precert.DNSNames,
	}}, nil
}
