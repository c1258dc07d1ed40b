// Package crc32c is the one CRC-32C (Castagnoli) that pgb uses: in the envelope's
// trailer, in the manifest's per-file checksums, and in PostgreSQL's pg_control.
package crc32c

import (
	"hash"
	"hash/crc32"
)

// table is read-only after package initialisation.
var table = crc32.MakeTable(crc32.Castagnoli)

// Checksum returns the CRC-32C of b.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, table) }

// New returns a running CRC-32C.
func New() hash.Hash32 { return crc32.New(table) }
