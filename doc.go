// Package idem makes data-pipeline writes safe to run twice, and proves it.
//
// The root package holds the domain: typed canonical values, the content
// fingerprint, load specs and results, the run ledger entry, the Target
// interface every backend implements (sqlite, postgres and later ones, each
// in its own package), snapshots and diffs of a table's content, and the
// verifier that reruns and crashes a job. Backends and the command line
// build on it; nothing here talks to a database directly.
//
// # Content fingerprint
//
// `idem checksum`, the output_fingerprint of every load, `idem verify` and
// `idem runs` drift detection share one fingerprint, specified here so that
// other tools can reproduce it bit for bit.
//
// Step 1, canonical values. Each value is brought to one text form per
// logical type; NULL is not a text form and stays distinct from "":
//
//	integer, numeric  plain decimal: no exponent, no leading zeros, no
//	                  trailing fractional zeros, no "+", "-0" is "0"
//	                  ("1.50" and "1.5" are both "1.5"; "007" is "7")
//	boolean           "true" or "false"
//	date              "YYYY-MM-DD"
//	timestamp         UTC, "YYYY-MM-DDTHH:MM:SS[.ffffff]Z", fraction to the
//	                  microsecond without trailing zeros; a value without a
//	                  zone is UTC
//	text              the string itself (UTF-8, no NUL byte)
//
// Step 2, row encoding. The columns taking part (all, minus --exclude) are
// ordered by name, bytewise. For each column append uvarint(len(name)),
// the name, then one tag byte: 0x00 for NULL (nothing follows), else 'n'
// (integer and numeric, so 1 and 1.0 agree across backends), 'b' boolean,
// 'd' date, 't' timestamp or 's' text, followed by uvarint(len(value)) and
// the canonical value. uvarint is the unsigned LEB128 varint of
// encoding/binary.
//
// Step 3, row hash: the first 16 bytes of SHA-256 of the row encoding, read
// as a big-endian unsigned 128-bit integer.
//
// Step 4, fingerprint: the sum of all row hashes modulo 2^128, printed as 32
// lowercase hex digits, with the row count beside it. A sum is a multiset
// hash: row order does not matter, and a duplicated row adds its hash twice
// where XOR would cancel it out; a lost duplicate, a changed value or two
// swapped values all change it. The empty table's fingerprint is 32 zeros.
//
// # Diffs
//
// A Snapshot assigns each row to one of 4096 segments by an FNV-1a hash of
// its key (or of its row hash without a key) and keeps one fingerprint per
// segment, with the rows spooled to local disk. Compare reads back only the
// segments whose fingerprints differ, so diffing two 10M-row states that
// differ in a few rows holds a few thousand rows in memory, not ten million.
package idem
